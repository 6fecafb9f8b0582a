import { Prisma } from '../../generated/prisma/client';
import type { PageRequest, Seek } from '../../lib/pagination';

/** Whose reviews a page lists: a product's or an author's. */
export type ReviewParent = 'product' | 'author';

/**
 * A row of the combined statement (slices.ts): either a product's rating stats or one review of a page.
 * Every branch names its columns, since any branch may come first and name them for the union.
 */
export interface SliceRow {
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

const PARENT_COLUMN: Record<ReviewParent, Prisma.Sql> = {
  product: Prisma.raw('product_id'),
  author: Prisma.raw('author_id'),
};

/** The branch number of the rating-stats rows; page branches are numbered from 1. */
export const STATS_BRANCH = 0;

/** Count and mean rating per product, grouped; served by the (product_id, ...) index. */
export function ratingStatsSql(productIds: string[]): Prisma.Sql {
  return Prisma.sql`(SELECT ${STATS_BRANCH}::int AS branch, product_id AS parent_id, count(*)::int AS review_count,
      avg(rating)::float8 AS average_rating, NULL::uuid AS id, NULL::int2 AS rating, NULL::text AS body,
      NULL::uuid AS author_id, NULL::uuid AS product_id, NULL::timestamptz AS created_at
    FROM reviews WHERE product_id = ANY(${productIds}::uuid[]) GROUP BY product_id)`;
}

/**
 * The same page of reviews for each parent: a LATERAL subquery per parent walks the
 * (parent column, created_at, id) index from the cursor and stops after size + 1 rows.
 */
export function pageSql(branch: number, parent: ReviewParent, parentIds: string[], page: PageRequest): Prisma.Sql {
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
