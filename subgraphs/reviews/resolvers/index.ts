import { DateTimeResolver } from 'graphql-scalars';
import { z } from 'zod';
import { forbidden, isPrismaError, notFound, unauthenticated } from '../../../lib/errors';
import { isUuid, parseId } from '../../../lib/ids';
import { forList, pageRequest, toConnection, type PageArgs } from '../../../lib/pagination';
import { validate } from '../../../lib/validation';
import type { Resolvers } from '../__generated__/resolvers-types';
import type { Context } from '../context';
import { NEWEST_FIRST } from '../loaders';
import type { ReviewParent } from '../sql';

const createInput = z.object({
  productId: z.string().uuid('must be a UUID'),
  rating: z.number().int().min(1, 'must be between 1 and 5').max(5, 'must be between 1 and 5'),
  body: z.string().trim().min(1, 'must not be empty').max(5_000, 'must be at most 5000 characters'),
});

/** One page of a product's or an author's reviews, newest first, batched with its siblings. */
async function reviewPage({ loaders }: Context, parent: ReviewParent, parentId: string, args: PageArgs) {
  // A cursor from one product's (or author's) reviews is refused on another's.
  const ordering = forList(NEWEST_FIRST, parent, parentId);
  const page = pageRequest(args, ordering);
  return toConnection(await loaders.reviewPage(parent, parentId, page), page, ordering);
}

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  Query: {
    review: (_root, { id }, { loaders }) => loaders.reviewById.load(parseId(id, 'id')),
  },
  Mutation: {
    createReview: async (_root, { input }, { db, callerId, loaders }) => {
      if (!callerId) throw unauthenticated('Sign in to write a review.');
      const data = validate(createInput, input, 'input');
      const productId = data.productId.toLowerCase();
      if (!(await loaders.productExists(productId)))
        throw notFound('input.productId', `No product with id ${productId}.`);
      const review = await db.review.create({
        data: { productId, authorId: callerId, rating: data.rating, body: data.body },
      });
      // Before answering, so the next read of the product's rating and reviews sees this one.
      await loaders.invalidateReviews({ productId, authorId: callerId });
      return review;
    },
    deleteReview: async (_root, { id }, { db, callerId, loaders }) => {
      if (!callerId) throw unauthenticated('Sign in to delete a review.');
      const reviewId = parseId(id, 'id');
      try {
        // Deletes only the caller's own review, in one statement: no check-then-act race.
        const deleted = await db.review.delete({
          where: { id: reviewId, authorId: callerId },
          select: { productId: true },
        });
        await loaders.invalidateReviews({ productId: deleted.productId, authorId: callerId, reviewId });
        return { deletedReviewId: reviewId, productId: deleted.productId };
      } catch (error) {
        if (!isPrismaError(error, 'P2025')) throw error;
      }
      const existing = await db.review.findUnique({ where: { id: reviewId }, select: { id: true } });
      if (existing) throw forbidden('Only the author can delete a review.');
      throw notFound('id', `No review with id ${reviewId}.`);
    },
  },
  Review: {
    __resolveReference: (ref, { loaders }) => (isUuid(ref.id) ? loaders.reviewById.load(ref.id.toLowerCase()) : null),
    author: (review) => ({ id: review.authorId }),
    product: (review) => ({ id: review.productId }),
  },
  Product: {
    // Products are owned by catalog: a reference is all this subgraph needs to contribute fields.
    // Ids are stored and returned lower-case; a representation may not be.
    __resolveReference: (ref) => ({ id: ref.id.toLowerCase() }),
    reviews: (product, args, context) => (isUuid(product.id) ? reviewPage(context, 'product', product.id, args) : null),
    reviewCount: async (product, _args, { loaders }) =>
      isUuid(product.id) ? (await loaders.ratingStats(product.id)).reviewCount : null,
    averageRating: async (product, _args, { loaders }) =>
      isUuid(product.id) ? (await loaders.ratingStats(product.id)).averageRating : null,
  },
  DeleteReviewPayload: {
    product: (payload) => ({ id: payload.productId }),
  },
  User: {
    __resolveReference: (ref) => ({ id: ref.id.toLowerCase() }),
    reviews: (user, args, context) => (isUuid(user.id) ? reviewPage(context, 'author', user.id, args) : null),
  },
};
