import DataLoader from 'dataloader';
import { Prisma, type Review } from '../../generated/prisma/client';
import type { EntityCache, EntityTypeCache } from '../../lib/entity-cache';
import { dataLoaderOptions, keyedLoader, type LoaderOptions } from '../../lib/loaders';
import { MAX_PAGE_SIZE } from '../../lib/pagination';
import { pageKey, type Ordering, type PageRequest, type Seek } from '../../lib/pagination';
import type { ReviewsDb } from './context';

/** The one order reviews are listed in; the SQL below spells it out (created_at, id). */
export const NEWEST_FIRST: Ordering<'createdAt'> = { key: 'reviews:createdAt:desc', field: 'createdAt', direction: 'desc', kind: 'date' };

export interface RatingStats {
  reviewCount: number;
  averageRating: number | null;
}

/** Whose reviews a page lists: a product's or an author's. */
export type ReviewParent = 'product' | 'author';

/** One thing a resolver wants from the reviews table about one parent entity. */
type ReviewSlice =
  | { kind: 'ratingStats'; productId: string }
  | { kind: 'page'; parent: ReviewParent; parentId: string; page: PageRequest };

type SliceResult = RatingStats | Review[];

/**
 * A row of the combined statement: either a product's rating stats or one review of a page. Every
 * branch names its columns, since any branch may come first and name them for the union.
 */
interface SliceRow {
  branch: number;
  parent_id: string;
  review_count: number | null;
  average_rating: number | null;
  id: string | null;
  rating: number | null;
  body: string | null;
  author_id: string | null;
  product_id: string | null;
  created_at: Date | null;
}

const PARENT_COLUMN: Record<ReviewParent, Prisma.Sql> = { product: Prisma.raw('product_id'), author: Prisma.raw('author_id') };
const STATS_BRANCH = 0;

/** Count and mean rating per product, grouped; served by the (product_id, ...) index. */
function ratingStatsSql(productIds: string[]): Prisma.Sql {
  return Prisma.sql`(SELECT ${STATS_BRANCH}::int AS branch, product_id AS parent_id, count(*)::int AS review_count,
      avg(rating)::float8 AS average_rating, NULL::uuid AS id, NULL::int2 AS rating, NULL::text AS body,
      NULL::uuid AS author_id, NULL::uuid AS product_id, NULL::timestamptz AS created_at
    FROM reviews WHERE product_id = ANY(${productIds}::uuid[]) GROUP BY product_id)`;
}

/**
 * The same page of reviews for each parent: a LATERAL subquery per parent walks the
 * (parent column, created_at, id) index from the cursor and stops after size + 1 rows.
 */
function pageSql(branch: number, parent: ReviewParent, parentIds: string[], page: PageRequest): Prisma.Sql {
  // The cursor's ISO instant carries its zone (Z), so the comparison holds in any session time zone.
  const position = (seek: Seek) => Prisma.sql`(${String(seek.value)}::timestamptz, ${seek.id}::uuid)`;
  // Newest first: rows after a cursor are older (smaller), rows before it newer.
  const bounds = [
    ...(page.after ? [Prisma.sql`AND (created_at, id) < ${position(page.after)}`] : []),
    ...(page.before ? [Prisma.sql`AND (created_at, id) > ${position(page.before)}`] : []),
  ];
  const order = page.backward ? Prisma.raw('created_at ASC, id ASC') : Prisma.raw('created_at DESC, id DESC');
  return Prisma.sql`(SELECT ${branch}::int AS branch, p.parent_id, NULL::int AS review_count, NULL::float8 AS average_rating,
      r.id, r.rating, r.body, r.author_id, r.product_id, r.created_at
    FROM unnest(${parentIds}::uuid[]) AS p(parent_id)
    CROSS JOIN LATERAL (
      SELECT id, rating, body, author_id, product_id, created_at FROM reviews
      WHERE ${PARENT_COLUMN[parent]} = p.parent_id ${bounds.length ? Prisma.join(bounds, ' ') : Prisma.empty}
      ORDER BY ${order} LIMIT ${page.size + 1}
    ) r)`;
}

/**
 * Everything the resolvers of one subgraph fetch asked about reviews by parent (rating stats,
 * pages of a product's or an author's reviews) in ONE statement: a UNION ALL with a branch per
 * kind of request. Results come back in slice order. Being one statement, it fails as one: the
 * resolvers validate arguments (pageRequest) before loading, so only a database failure gets here.
 */
async function loadSlices(db: ReviewsDb, slices: readonly ReviewSlice[]): Promise<SliceResult[]> {
  const statsIds = new Set<string>();
  const pageGroups = new Map<string, { branch: number; parent: ReviewParent; page: PageRequest; parentIds: Set<string> }>();
  for (const slice of slices) {
    if (slice.kind === 'ratingStats') {
      statsIds.add(slice.productId);
      continue;
    }
    const groupKey = `${slice.parent}:${pageKey(slice.page)}`;
    let group = pageGroups.get(groupKey);
    if (!group) {
      group = { branch: pageGroups.size + 1, parent: slice.parent, page: slice.page, parentIds: new Set() };
      pageGroups.set(groupKey, group);
    }
    group.parentIds.add(slice.parentId);
  }
  const branches = [
    ...(statsIds.size ? [ratingStatsSql([...statsIds])] : []),
    ...[...pageGroups.values()].map((group) => pageSql(group.branch, group.parent, [...group.parentIds], group.page)),
  ];
  const rows = await db.$queryRaw<SliceRow[]>`${Prisma.join(branches, ' UNION ALL ')}`;

  const stats = new Map<string, RatingStats>();
  const pages = new Map<string, Review[]>();
  for (const row of rows) {
    if (row.branch === STATS_BRANCH) {
      stats.set(row.parent_id, { reviewCount: row.review_count!, averageRating: row.average_rating });
      continue;
    }
    const key = `${row.branch}:${row.parent_id}`;
    const review: Review = { id: row.id!, rating: row.rating!, body: row.body!, authorId: row.author_id!, productId: row.product_id!, createdAt: row.created_at! };
    const page = pages.get(key);
    if (page) page.push(review);
    else pages.set(key, [review]);
  }
  return slices.map((slice) => {
    if (slice.kind === 'ratingStats') return stats.get(slice.productId) ?? { reviewCount: 0, averageRating: null };
    const group = pageGroups.get(`${slice.parent}:${pageKey(slice.page)}`)!;
    // A UNION ALL promises no row order, so each page is put in fetch order here (at most 101 rows).
    return (pages.get(`${group.branch}:${slice.parentId}`) ?? []).sort(slice.page.backward ? oldestFirst : newestFirst);
  });
}

const newestFirst = (a: Review, b: Review) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
const oldestFirst = (a: Review, b: Review) => -newestFirst(a, b);

/** Cached Review rows, and a product's rating stats and first pages; bump a version when its shape changes. */
export const REVIEW_CACHE = { subgraph: 'reviews', name: 'Review', version: 1 } as const;
export const PRODUCT_REVIEWS_CACHE = { subgraph: 'reviews', name: 'ProductReviews', version: 1 } as const;

type ProductReviewsCache = EntityTypeCache<SliceResult>;

/**
 * What of a product's reviews is cached across requests: its rating stats and its first pages
 * (`first: n`, no cursor), the reads a storefront repeats. Cursor pages, `last` pages and authors'
 * pages are not: they are rarer and would widen what a write must invalidate.
 */
function cacheIdOf(slice: ReviewSlice): string | null {
  if (slice.kind === 'ratingStats') return `${slice.productId}:stats`;
  const { page } = slice;
  return slice.parent === 'product' && !page.backward && !page.after && !page.before ? `${slice.parentId}:first:${page.size}` : null;
}

/** After a review of `productId` is written or deleted: its stats and every first page it may have cached. */
export function productReviewIds(productId: string): string[] {
  return [`${productId}:stats`, ...Array.from({ length: MAX_PAGE_SIZE + 1 }, (_, size) => `${productId}:first:${size}`)];
}

/**
 * loadSlices behind the cache: hits answered from it, every miss in ONE statement, then stored unless
 * a write changed the entry meanwhile (see EntityTypeCache.writeBack).
 */
async function loadSlicesCached(db: ReviewsDb, slices: readonly ReviewSlice[], cache: ProductReviewsCache): Promise<SliceResult[]> {
  const cacheIds = slices.map(cacheIdOf);
  const wanted = [...new Set(cacheIds.filter((id): id is string => id !== null))];
  const { values, snapshot } = await cache.read(wanted);
  const cached = new Map<string, SliceResult>();
  values.forEach((value, index) => {
    if (value !== undefined) cached.set(wanted[index]!, value);
  });
  const results: SliceResult[] = [];
  const remaining: number[] = [];
  slices.forEach((_slice, index) => {
    const hit = cacheIds[index] ? cached.get(cacheIds[index]!) : undefined;
    if (hit !== undefined) results[index] = hit;
    else remaining.push(index);
  });
  if (remaining.length) {
    const loaded = await loadSlices(db, remaining.map((index) => slices[index]!));
    remaining.forEach((index, position) => {
      results[index] = loaded[position]!;
    });
    await cache.writeBack(remaining.filter((index) => cacheIds[index]).map((index) => [cacheIds[index]!, results[index]!] as const), snapshot);
  }
  return results;
}

const sliceKey = (slice: ReviewSlice) =>
  slice.kind === 'ratingStats' ? `stats:${slice.productId}` : `page:${slice.parent}:${slice.parentId}:${pageKey(slice.page)}`;

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(db: ReviewsDb, options: LoaderOptions = {}, cache: EntityCache | null = null) {
  const sliceCache = cache?.type<SliceResult>(PRODUCT_REVIEWS_CACHE);
  const slices = new DataLoader<ReviewSlice, SliceResult, string>(
    (keys) => (sliceCache ? loadSlicesCached(db, keys, sliceCache) : loadSlices(db, keys)),
    dataLoaderOptions(options, sliceKey),
  );
  return {
    reviewById: keyedLoader((ids: string[]) => db.review.findMany({ where: { id: { in: ids } } }), (review) => review.id, options, cache?.type<Review>(REVIEW_CACHE)),
    /** Count and mean rating of a product's reviews. */
    ratingStats: (productId: string) => slices.load({ kind: 'ratingStats', productId }) as Promise<RatingStats>,
    /** One page of a product's or an author's reviews, in fetch order (see toConnection). */
    reviewPage: (parent: ReviewParent, parentId: string, page: PageRequest) =>
      slices.load({ kind: 'page', parent, parentId, page }) as Promise<Review[]>,
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
