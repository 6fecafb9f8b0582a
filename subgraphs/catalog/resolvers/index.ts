import { DateTimeResolver } from 'graphql-scalars';
import { z } from 'zod';
import { clientError, ErrorCode, isPrismaError, notFound } from '../../../lib/errors';
import { isUuid, parseId } from '../../../lib/ids';
import { forList, pageRequest, seekQuery, toConnection, type Ordering } from '../../../lib/pagination';
import { validate } from '../../../lib/validation';
import type { ProductOrder, Resolvers } from '../__generated__/resolvers-types';

type ProductSortField = 'createdAt' | 'priceCents';

/** Every order the schema offers, each served by an index ending in (field, id); newest first by default. */
function productOrdering(orderBy: ProductOrder | null | undefined): Ordering<ProductSortField> {
  const field = orderBy?.field === 'PRICE' ? 'priceCents' : 'createdAt';
  // NEWEST (deprecated) is CREATED_AT, DESC whatever the direction says.
  const direction = orderBy && orderBy.field !== 'NEWEST' ? (orderBy.direction === 'DESC' ? 'desc' : 'asc') : 'desc';
  return { key: `products:${field}:${direction}`, field, direction, kind: field === 'priceCents' ? 'int' : 'date' };
}

const money = z.object({
  amountCents: z.number().int().min(0, 'must not be negative').max(100_000_000, 'is too large'),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD'),
});
const title = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
const description = z.string().max(10_000, 'must be at most 10000 characters');
const createInput = z.object({
  sku: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1 to 64 letters, digits, dots, dashes or underscores'),
  title,
  description: description.nullish().transform((value) => value ?? ''),
  price: money,
  status: z
    .enum(['ACTIVE', 'DRAFT', 'ARCHIVED'])
    .nullish()
    .transform((value) => value ?? 'DRAFT'),
});
const updateInput = z
  .object({
    title: title.nullish(),
    description: description.nullish(),
    price: money.nullish(),
    status: z.enum(['ACTIVE', 'DRAFT', 'ARCHIVED']).nullish(),
    // Deprecated: a price without its currency keeps the product's currency.
    priceCents: money.shape.amountCents.nullish(),
  })
  .refine((input) => Object.values(input).some((value) => value != null), 'give at least one field to change');

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  Query: {
    product: (_root, { id }, { loaders }) => loaders.productById.load(parseId(id, 'id')),
    products: async (_root, { filter: given, status, orderBy, ...pageArgs }, { db, tags }) => {
      // A list: any product's change (or a new one) may change it.
      tags.hold('Product');
      // The deprecated `status` argument still works; `filter` wins when both are given.
      const filter = { status: given?.status ?? status ?? null };
      // A cursor belongs to one filter as well as one order.
      const ordering = forList(productOrdering(orderBy), filter?.status);
      const page = pageRequest(pageArgs, ordering);
      const seek = seekQuery(ordering, page);
      const rows = await db.product.findMany({
        ...seek,
        where: { ...seek.where, ...(filter?.status ? { status: filter.status } : {}) },
      });
      return toConnection(rows, page, ordering);
    },
  },
  Mutation: {
    createProduct: async (_root, { input }, { db, loaders }) => {
      const data = validate(createInput, input, 'input');
      try {
        const created = await db.product.create({
          data: {
            sku: data.sku,
            title: data.title,
            description: data.description,
            priceCents: data.price.amountCents,
            currency: data.price.currency,
            status: data.status,
          },
        });
        // Lists of products now hold one more.
        await loaders.productById.invalidate([created.id]);
        return created;
      } catch (error) {
        if (isPrismaError(error, 'P2002')) {
          throw clientError(ErrorCode.CONFLICT, `A product with sku ${data.sku} already exists.`, {
            argumentName: 'input.sku',
          });
        }
        throw error;
      }
    },
    updateProduct: async (_root, { id, input }, { db, loaders }) => {
      const productId = parseId(id, 'id');
      const data = validate(updateInput, input, 'input');
      try {
        const updated = await db.product.update({
          where: { id: productId },
          data: {
            ...(data.title != null && { title: data.title }),
            ...(data.description != null && { description: data.description }),
            ...(data.price != null && { priceCents: data.price.amountCents, currency: data.price.currency }),
            ...(data.price == null && data.priceCents != null && { priceCents: data.priceCents }),
            ...(data.status != null && { status: data.status }),
          },
        });
        // Before answering: a read after this write, on any replica, must not see the old row.
        await loaders.productById.invalidate([productId]);
        return updated;
      } catch (error) {
        if (isPrismaError(error, 'P2025')) throw notFound('id', `No product with id ${productId}.`);
        throw error;
      }
    },
  },
  Product: {
    __resolveReference: (ref, { loaders }) => (isUuid(ref.id) ? loaders.productById.load(ref.id.toLowerCase()) : null),
    price: (product) => ({ amountCents: product.priceCents, currency: product.currency }),
  },
};
