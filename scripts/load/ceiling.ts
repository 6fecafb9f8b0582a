import { createServer } from 'node:http';
import pg from 'pg';

/**
 * The ceiling `npm run bench:load` measures the service against: the storefront page (STOREFRONT_PAGE,
 * 20 products × 5 reviews with authors, average rating) as the very JSON the gateway answers, built by
 * ONE SQL statement on the same database and served by a bare `node:http` server with no framework, no
 * GraphQL and no cache. It is what one process and PostgreSQL need to produce the page, so the service's
 * figures read as a share of it (the issue's goals are ratios to this, in the same run).
 *
 * PostgreSQL writes the whole body, byte for byte what the gateway sends: compact, keys in the query's
 * order. It is concatenated text with to_json() for strings, not json_build_object/json_agg: those put
 * spaces around colons and after commas (JSON.stringify does not), and nested row_to_json subqueries
 * cost PostgreSQL a third more CPU. Cursors are lib/pagination's encodeCursor: base64url of
 * `["<key>","<ISO instant>","<id>"]`. The body comes back as text, so pg never parses it: it goes to the
 * socket as it is. The statement is prepared once per connection (a named query), as a tuned service's
 * would be.
 *
 * Run as its own process (`node --import tsx scripts/load/ceiling.ts`), so its CPU is read from /proc
 * like each service process's: DATABASE_URL, PORT (required), HOST (default 127.0.0.1), POOL_SIZE
 * (default 10). GET /readyz answers 200 once the database does; any POST /graphql gets the page.
 */

/** Products on the page (`products(first: 20)`) and reviews per product (`reviews(first: 5)`). */
export const PAGE_PRODUCTS = 20;
export const PAGE_REVIEWS = 5;

/** lib/pagination's encodeCursor in SQL: `key` is an SQL expression, `at` a timestamptz, `id` a uuid. */
const cursor = (key: string, at: string, id: string) =>
  `translate(encode(convert_to('["' || ${key} || '","' || ` +
  `to_char(${at} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '","' || ${id} || '"]', 'UTF8'), ` +
  `'base64'), E'+/=\\n', '-_')`;

/** A JSON string literal of a text (escaped as JSON.stringify escapes it). */
const jsonString = (text: string) => `to_json(${text})`;

/**
 * The page in one statement, its body written as text by concatenation. Products newest first
 * (catalog's default order; cursor key `products:createdAt:desc:` for no filter), one more than shown
 * to answer hasNextPage; per product, LATERAL: the mean rating over all of its reviews
 * (avg(rating)::float8, as reviews/sql.ts computes it; float8's text is the shortest round-trip form,
 * as JSON.stringify writes a number) and its newest reviews, one more than shown, each with its author
 * (null when accounts has none). A review's cursor key is `reviews:createdAt:desc:product:<id>`.
 */
export const CEILING_SQL = `
WITH listed AS (
  SELECT id, title, price_cents, currency, created_at FROM products
  ORDER BY created_at DESC, id DESC LIMIT ${PAGE_PRODUCTS + 1}
),
shown AS (
  SELECT l.id, l.created_at, row_number() OVER (ORDER BY l.created_at DESC, l.id DESC) AS n,
    '{"node":{"id":"' || l.id || '","title":' || ${jsonString('l.title')} ||
    ',"price":{"amountCents":' || l.price_cents || ',"currency":' || ${jsonString('l.currency::text')} ||
    '},"averageRating":' || coalesce(stats.average::text, 'null') ||
    ',"reviews":{"edges":[' || array_to_string(page.edges[1:${PAGE_REVIEWS}], ',') ||
    '],"pageInfo":{"hasNextPage":' || (cardinality(page.edges) > ${PAGE_REVIEWS}) || ',"endCursor":' ||
    CASE WHEN cardinality(page.edges) = 0 THEN 'null' ELSE '"' || ${cursor(
      `'reviews:createdAt:desc:product:' || l.id`,
      `page.ats[least(${PAGE_REVIEWS}, cardinality(page.ats))]`,
      `page.ids[least(${PAGE_REVIEWS}, cardinality(page.ids))]`,
    )} || '"' END || '}}}}' AS edge
  FROM listed l
  CROSS JOIN LATERAL (SELECT avg(rating)::float8 AS average FROM reviews WHERE product_id = l.id) stats
  CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(r.edge ORDER BY r.created_at DESC, r.id DESC), '{}') AS edges,
      array_agg(r.created_at ORDER BY r.created_at DESC, r.id DESC) AS ats,
      array_agg(r.id ORDER BY r.created_at DESC, r.id DESC) AS ids
    FROM (
      SELECT x.created_at, x.id,
        '{"node":{"id":"' || x.id || '","rating":' || x.rating || ',"body":' || ${jsonString('x.body')} ||
        ',"author":' || CASE WHEN u.id IS NULL THEN 'null'
          ELSE '{"id":"' || u.id || '","displayName":' || ${jsonString('u.display_name')} || '}' END || '}}' AS edge
      FROM (SELECT id, rating, body, author_id, created_at FROM reviews WHERE product_id = l.id
            ORDER BY created_at DESC, id DESC LIMIT ${PAGE_REVIEWS + 1}) x
      LEFT JOIN users u ON u.id = x.author_id
    ) r
  ) page
)
SELECT '{"data":{"products":{"edges":[' || coalesce(page.edges, '') || '],"pageInfo":{"hasNextPage":' || page.more ||
  ',"endCursor":' || CASE WHEN page.end_id IS NULL THEN 'null'
    ELSE '"' || ${cursor(`'products:createdAt:desc:'`, 'page.end_at', 'page.end_id')} || '"' END || '}}}}' AS body
FROM (
  SELECT string_agg(edge, ',' ORDER BY n) FILTER (WHERE n <= ${PAGE_PRODUCTS}) AS edges,
    count(*) > ${PAGE_PRODUCTS} AS more,
    (array_agg(created_at ORDER BY n DESC) FILTER (WHERE n <= ${PAGE_PRODUCTS}))[1] AS end_at,
    (array_agg(id ORDER BY n DESC) FILTER (WHERE n <= ${PAGE_PRODUCTS}))[1] AS end_id
  FROM shown
) page`;

async function main() {
  const port = Number(process.env.PORT);
  if (!process.env.DATABASE_URL || !Number.isInteger(port) || port <= 0)
    throw new Error('scripts/load/ceiling.ts needs DATABASE_URL and PORT');
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 10) });
  pool.on('error', () => undefined);
  const server = createServer((request, response) => {
    const fail = (error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(String(error));
    };
    if (request.method === 'GET' && request.url === '/readyz') {
      pool.query('SELECT 1').then(() => response.end('ok'), fail);
      return;
    }
    if (request.method !== 'POST' || request.url !== '/graphql') {
      response.writeHead(404).end();
      return;
    }
    // The body is read to its end (any body), as a server must before it answers on a kept-alive connection.
    request.resume();
    request.on('end', () => {
      pool.query<{ body: string }>({ name: 'storefront-page', text: CEILING_SQL }).then(({ rows }) => {
        const body = rows[0]!.body;
        response.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(body),
        });
        response.end(body);
      }, fail);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, process.env.HOST ?? '127.0.0.1');
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void pool.end().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module)
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
