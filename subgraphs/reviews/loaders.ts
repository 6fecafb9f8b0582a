import DataLoader from 'dataloader';
import type { Review } from '../../generated/prisma/client';
import type { EntityTypeCache } from '../../lib/entity-cache';
import { dataLoaderOptions, keyedLoader } from '../../lib/loaders';
import { MAX_PAGE_SIZE, type Ordering, type PageRequest } from '../../lib/pagination';
import type { LoaderDependencies } from '../../lib/subgraph-definition';
import { createCatalogClient } from './catalog-client';
import { loadSlices, sliceKey, type RatingStats, type ReviewsDb, type ReviewSlice, type SliceResult } from './slices';
import type { ReviewParent } from './sql';

export type { ReviewsDb } from './slices';

/** The one order reviews are listed in; sql.ts spells it out (created_at, id). */
export const NEWEST_FIRST: Ordering<'createdAt'> = {
  key: 'reviews:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};

/** Cached Review rows, and a product's rating stats and first pages; bump a version when its shape changes. */
export const REVIEW_CACHE = { subgraph: 'reviews', name: 'Review', version: 1 } as const;
export const PRODUCT_REVIEWS_CACHE = { subgraph: 'reviews', name: 'ProductReviews', version: 1 } as const;

/**
 * What of a product's reviews is cached across requests: its rating stats and its first pages
 * (`first: n`, no cursor), the reads a storefront repeats. Cursor pages, `last` pages and authors'
 * pages are not: they are rarer and would widen what a write must invalidate (productReviewIds).
 */
function cacheIdOf(slice: ReviewSlice): string | null {
  if (slice.kind === 'ratingStats') return `${slice.productId}:stats`;
  const { page } = slice;
  return slice.parent === 'product' && !page.backward && !page.after && !page.before
    ? `${slice.parentId}:first:${page.size}`
    : null;
}

/** Everything cacheIdOf may have cached for a product: what a write of one of its reviews makes stale. */
export function productReviewIds(productId: string): string[] {
  return [
    `${productId}:stats`,
    ...Array.from({ length: MAX_PAGE_SIZE + 1 }, (_, size) => `${productId}:first:${size}`),
  ];
}

/**
 * A batch of slices through the entity cache, as every cached read goes (EntityTypeCache.load): hits
 * from the cache, slices another request is already loading joined, and the rest (cache misses and
 * uncacheable slices together) in ONE statement, written back unless a write changed them meanwhile.
 */
async function loadSlicesCached(
  db: ReviewsDb,
  slices: readonly ReviewSlice[],
  cache: EntityTypeCache<SliceResult>,
): Promise<SliceResult[]> {
  const cacheIds = slices.map(cacheIdOf);
  const uncacheable = slices.filter((_slice, index) => cacheIds[index] === null);
  const sliceById = new Map(
    slices.flatMap((slice, index) => (cacheIds[index] === null ? [] : [[cacheIds[index]!, slice] as const])),
  );
  let uncacheableResults: SliceResult[] | undefined;
  const cached = sliceById.size
    ? await cache.load([...sliceById.keys()], async (missing) => {
        const loaded = await loadSlices(db, [...missing.map((id) => sliceById.get(id)!), ...uncacheable]);
        uncacheableResults = loaded.slice(missing.length);
        return new Map(missing.map((id, index) => [id, loaded[index]!]));
      })
    : [];
  uncacheableResults ??= uncacheable.length ? await loadSlices(db, uncacheable) : [];
  const byId = new Map([...sliceById.keys()].map((id, index) => [id, cached[index]!]));
  let next = 0;
  return slices.map((_slice, index) =>
    cacheIds[index] === null ? uncacheableResults![next++]! : byId.get(cacheIds[index]!)!,
  );
}

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(
  db: ReviewsDb,
  { loaderOptions, cache, signIdentity, signReadAfter, subgraphUrl, tags }: LoaderDependencies,
) {
  const sliceCache = cache?.type<SliceResult>(PRODUCT_REVIEWS_CACHE);
  const slices = new DataLoader<ReviewSlice, SliceResult, string>(
    (keys) => (sliceCache ? loadSlicesCached(db, keys, sliceCache) : loadSlices(db, keys)),
    dataLoaderOptions(loaderOptions, sliceKey),
  );
  const reviewById = keyedLoader(
    (ids: string[]) => db.review.findMany({ where: { id: { in: ids } } }),
    (review) => review.id,
    loaderOptions,
    cache?.type<Review>(REVIEW_CACHE),
    { type: 'Review', tags },
  );
  return {
    reviewById,
    /** Count and mean rating of a product's reviews. */
    ratingStats: (productId: string) => {
      tags.hold('Product', [productId]);
      return slices.load({ kind: 'ratingStats', productId }) as Promise<RatingStats>;
    },
    /** One page of a product's or an author's reviews, in fetch order (see toConnection). */
    reviewPage: (parent: ReviewParent, parentId: string, page: PageRequest) => {
      // The page is its parent's: a review written or deleted changes its product's and its author's.
      tags.hold(parent === 'product' ? 'Product' : 'User', [parentId]);
      return slices.load({ kind: 'page', parent, parentId, page }) as Promise<Review[]>;
    },
    /**
     * Whether the catalog knows a product (asked through its _entities field: reviews never reads its
     * tables). The client is made when asked, so only createReview pays for it, not every read.
     */
    productExists: (productId: string) =>
      createCatalogClient(subgraphUrl('catalog'), signIdentity, undefined, signReadAfter).productExists(productId),
    /**
     * After a review of `productId` by `authorId` is written (or `reviewId` deleted), before answering: its
     * stats and first pages, and the review itself, in this request and across requests; and the product's
     * and the author's reviews for the response cache.
     */
    async invalidateReviews(change: { productId: string; authorId: string; reviewId?: string }) {
      slices.clearAll();
      tags.change('Product', [change.productId], { lists: false });
      tags.change('User', [change.authorId], { lists: false });
      await Promise.all([
        sliceCache?.invalidate(productReviewIds(change.productId)),
        change.reviewId ? reviewById.invalidate([change.reviewId]) : undefined,
      ]);
    },
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
