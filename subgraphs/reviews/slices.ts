import { Prisma, type Review } from '../../generated/prisma/client';
import { queryRows, type PrismaClient } from '../../lib/db';
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

/** The slices of one page branch: the same page of several parents' reviews. */
interface PageGroup {
  branch: number;
  parent: ReviewParent;
  page: PageRequest;
  parentIds: string[];
  /** Reviews by parent id, filled from the branch's rows. */
  pages: Map<string, Review[]>;
}

/**
 * Everything the resolvers of one subgraph fetch asked about reviews by parent (rating stats,
 * pages of a product's or an author's reviews) in ONE statement: a UNION ALL with a branch per
 * kind of request (sql.ts). Results come back in slice order. Being one statement, it fails as one: the
 * resolvers validate arguments (pageRequest) before loading, so only a database failure gets here.
 * The statement goes through the pool (lib/db.ts queryRows): its rows are read once, into the results.
 */
export async function loadSlices(db: ReviewsDb, slices: readonly ReviewSlice[]): Promise<SliceResult[]> {
  const statsIds = new Set<string>();
  const groups = new Map<string, PageGroup>();
  // Each slice's group (undefined for stats), so the results need no second look-up by key.
  const groupOf = new Array<PageGroup | undefined>(slices.length);
  slices.forEach((slice, index) => {
    if (slice.kind === 'ratingStats') {
      statsIds.add(slice.productId);
      return;
    }
    const groupKey = `${slice.parent}:${pageKey(slice.page)}`;
    let group = groups.get(groupKey);
    if (!group) {
      group = { branch: groups.size + 1, parent: slice.parent, page: slice.page, parentIds: [], pages: new Map() };
      groups.set(groupKey, group);
    }
    // DataLoader gives each slice key once, so a parent is in a group at most once.
    if (!group.pages.has(slice.parentId)) {
      group.parentIds.push(slice.parentId);
      group.pages.set(slice.parentId, []);
    }
    groupOf[index] = group;
  });
  const byBranch = [undefined, ...groups.values()];
  const branches = [
    ...(statsIds.size ? [ratingStatsSql([...statsIds])] : []),
    ...byBranch.slice(1).map((group) => pageSql(group!.branch, group!.parent, group!.parentIds, group!.page)),
  ];
  const statement = Prisma.join(branches, ' UNION ALL ');
  const rows = await queryRows<SliceRow>(db, statement.text, statement.values);

  const stats = new Map<string, RatingStats>();
  for (const row of rows) {
    if (row.branch === STATS_BRANCH) {
      stats.set(row.parent_id, { reviewCount: row.review_count!, averageRating: row.average_rating });
      continue;
    }
    // PostgreSQL answers parent ids as it stores them (lower case), as the resolvers ask for them.
    byBranch[row.branch]?.pages.get(row.parent_id)?.push({
      id: row.id!,
      rating: row.rating!,
      body: row.body!,
      authorId: row.author_id!,
      productId: row.product_id!,
      createdAt: row.created_at!,
    });
  }
  return slices.map((slice, index) => {
    if (slice.kind === 'ratingStats') return stats.get(slice.productId) ?? { reviewCount: 0, averageRating: null };
    // A UNION ALL promises no row order, so each page is put in fetch order here (at most 101 rows).
    return groupOf[index]!.pages.get(slice.parentId)!.sort(slice.page.backward ? oldestFirst : newestFirst);
  });
}

const newestFirst = (a: Review, b: Review) =>
  b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
const oldestFirst = (a: Review, b: Review) => -newestFirst(a, b);
