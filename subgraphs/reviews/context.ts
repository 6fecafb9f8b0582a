import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import type { Caller } from '../../lib/authorization';
import type { SubgraphServices } from '../../lib/subgraph';
import type { CatalogClient } from './catalog-client';
import type { EntityCache } from '../../lib/entity-cache';
import { createLoaders, PRODUCT_REVIEWS_CACHE, productReviewIds, REVIEW_CACHE, type Loaders } from './loaders';

/** The reviews subgraph sees only the tables it owns; products and users are known by key only. */
export type ReviewsDb = Pick<PrismaClient, 'review' | '$queryRaw'>;

/** The caller (user id and scopes) from the gateway's signed identity, then what this subgraph reads with. */
export interface Context extends Caller {
  db: ReviewsDb;
  loaders: Loaders;
  catalog: CatalogClient;
  /** Drops what a review write changes from the entity cache (no-op when caching is off). */
  invalidate: ReturnType<typeof reviewInvalidation>;
}

/** What a write of a review of `productId` (and, for deletes, the review itself) makes stale. */
function reviewInvalidation(cache: EntityCache | null) {
  return async (change: { productId: string; reviewId?: string }) => {
    if (!cache) return;
    await Promise.all([
      cache.type(PRODUCT_REVIEWS_CACHE).invalidate(productReviewIds(change.productId)),
      change.reviewId ? cache.type(REVIEW_CACHE).invalidate([change.reviewId]) : undefined,
    ]);
  };
}

export function createContext(db: ReviewsDb, catalog: CatalogClient, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions' | 'cache'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    ...(await services.verifyCaller(req)),
    loaders: createLoaders(db, services.loaderOptions, services.cache),
    invalidate: reviewInvalidation(services.cache),
    catalog,
  });
}
