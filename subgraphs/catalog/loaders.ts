import type { Product } from '../../generated/prisma/client';
import type { PrismaClient } from '../../lib/db';
import { keyedLoader } from '../../lib/loaders';
import type { LoaderDependencies } from '../../lib/subgraph-definition';

/** The catalog subgraph sees only the tables it owns. */
export type CatalogDb = Pick<PrismaClient, 'product'>;

/** Cached Product rows; bump the version whenever the cached shape (the model's columns) changes. */
export const PRODUCT_CACHE = { subgraph: 'catalog', name: 'Product', version: 1 } as const;

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(
  db: CatalogDb,
  { loaderOptions, cache, tags }: Pick<LoaderDependencies, 'loaderOptions' | 'cache' | 'tags'>,
) {
  return {
    /** Products by id; `productById.invalidate([id])` after a write of one. */
    productById: keyedLoader(
      (ids: string[]) => db.product.findMany({ where: { id: { in: ids } } }),
      (product) => product.id,
      loaderOptions,
      cache?.type<Product>(PRODUCT_CACHE),
      { type: 'Product', tags },
    ),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
