/** The statements reviews builds (sql.ts): what is compared, in which order, and how far each LATERAL reads. */
import { pageRequest, type Seek } from '../../lib/pagination';
import { NEWEST_FIRST } from './loaders';
import { pageSql, ratingStatsSql, STATS_BRANCH } from './sql';

const ids = ['0190a6d8-0000-7000-8000-000000000001', '0190a6d8-0000-7000-8000-000000000002'];
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
const at: Seek = { value: '2026-01-31T12:00:00.000Z', id: '0190a6d8-0000-7000-8000-0000000000ff' };

describe('reviews SQL', () => {
  it('rating stats: one grouped branch over every product asked for', () => {
    const sql = ratingStatsSql(ids);
    expect(oneLine(sql.text)).toMatch(
      /^\(SELECT \$1::int AS branch, product_id AS parent_id, count\(\*\)::int AS review_count, avg\(rating\)::float8 AS average_rating,/,
    );
    expect(oneLine(sql.text)).toMatch(/FROM reviews WHERE product_id = ANY\(\$2::uuid\[\]\) GROUP BY product_id\)$/);
    expect(sql.values).toEqual([STATS_BRANCH, ids]);
  });

  it('a first page: newest first, one row past the page (to know there is a next), per parent', () => {
    const sql = pageSql(1, 'product', ids, pageRequest({ first: 5 }, NEWEST_FIRST));
    const text = oneLine(sql.text);
    expect(text).toMatch(/FROM unnest\(\$2::uuid\[\]\) AS p\(parent_id\) CROSS JOIN LATERAL \(/);
    expect(text).toMatch(/WHERE product_id = p\.parent_id ORDER BY created_at DESC, id DESC LIMIT \$3/);
    expect(sql.values).toEqual([1, ids, 6]);
  });

  it('cursors: after reads older rows, before newer ones; `last` reads from the far end', () => {
    const forward = pageSql(2, 'author', ids, { size: 3, backward: false, after: at, before: null });
    expect(oneLine(forward.text)).toMatch(
      /WHERE author_id = p\.parent_id AND \(created_at, id\) < \(\$3::timestamptz, \$4::uuid\) ORDER BY created_at DESC, id DESC LIMIT \$5/,
    );
    expect(forward.values).toEqual([2, ids, at.value, at.id, 4]);
    const backward = pageSql(3, 'product', ids, { size: 2, backward: true, after: null, before: at });
    expect(oneLine(backward.text)).toMatch(
      /AND \(created_at, id\) > \(\$3::timestamptz, \$4::uuid\) ORDER BY created_at ASC, id ASC LIMIT \$5/,
    );
    expect(backward.values).toEqual([3, ids, at.value, at.id, 3]);
  });
});
