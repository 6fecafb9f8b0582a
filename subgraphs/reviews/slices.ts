import { Prisma, type Review } from '../../generated/prisma/client';
import type { PrismaClient } from '../../lib/db';
import { pageKey, type PageRequest } from '../../lib/pagination';
import { pageSql, ratingStatsSql, STATS_BRANCH, type ReviewParent, type SliceRow } from './sql';

/** The reviews subgraph sees only the tables it owns; products and users are known by key only. */
export type ReviewsDb = Pick<PrismaClient, 'review' | '$queryRaw'>;

export interface RatingStats {
  reviewCount: number;
  averageRating: number | null;
}

/** One thing a resolver wants from the reviews table about one parent entity. */
export type ReviewSlice =
  | { kind: 'ratingStats'; productId: string }
  | { kind: 'page'; parent: ReviewParent; parentId: string; page: PageRequest };

export type SliceResult = RatingStats | Review[];

/** Identifies a slice within a request (DataLoader's cache key). */
export const sliceKey = (slice: ReviewSlice) =>
  slice.kind === 'ratingStats'
    ? `stats:${slice.productId}`
    : `page:${slice.parent}:${slice.parentId}:${pageKey(slice.page)}`;

/**
 * Everything the resolvers of one subgraph fetch asked about reviews by parent (rating stats,
 * pages of a product's or an author's reviews) in ONE statement: a UNION ALL with a branch per
 * kind of request (sql.ts). Results come back in slice order. Being one statement, it fails as one: the
 * resolvers validate arguments (pageRequest) before loading, so only a database failure gets here.
 */
export async function loadSlices(db: ReviewsDb, slices: readonly ReviewSlice[]): Promise<SliceResult[]> {
  const statsIds = new Set<string>();
  const pageGroups = new Map<
    string,
    { branch: number; parent: ReviewParent; page: PageRequest; parentIds: Set<string> }
  >();
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
    const review: Review = {
      id: row.id!,
      rating: row.rating!,
      body: row.body!,
      authorId: row.author_id!,
      productId: row.product_id!,
      createdAt: row.created_at!,
    };
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

const newestFirst = (a: Review, b: Review) =>
  b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
const oldestFirst = (a: Review, b: Review) => -newestFirst(a, b);
