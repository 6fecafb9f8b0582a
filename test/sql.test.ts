/**
 * Proof by counting, on a bench-scale database: how many statements each subgraph sends per
 * operation (exact), and how PostgreSQL plans each of them: from an index for pages of the sizes
 * clients ask for, and with an index available even for the largest batches.
 */
import pg from 'pg';
import { SESSION_OPTIONS, type SqlStatement } from '../lib/db';
import { BENCH_SCALE, generateDataset, type SeedReview } from '../prisma/seed';
import {
  PRODUCT_REVIEWS,
  PRODUCTS_BY_DATE,
  PRODUCTS_BY_PRICE,
  REVIEW_BY_ID,
  STOREFRONT_PAGE,
  USER_REVIEWS,
  USERS_LIST,
  USERS_PAGE,
} from '../scripts/operations';
import { startSubgraphsAndGateway, useHarness, type QueryOptions } from './harness';

const dataset = generateDataset(BENCH_SCALE);
const newestFirst = <T extends { createdAt: Date; id: string }>(rows: T[]) =>
  [...rows].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
const groupBy = <T>(rows: T[], key: (row: T) => string) => {
  const groups = new Map<string, T[]>();
  for (const row of rows) groups.set(key(row), [...(groups.get(key(row)) ?? []), row]);
  return groups;
};
const reviewsByProduct = groupBy(dataset.reviews, (r) => r.productId);
const reviewsByAuthor = groupBy(dataset.reviews, (r) => r.authorId);
const usersById = new Map(dataset.users.map((u) => [u.id, u]));
const productsById = new Map(dataset.products.map((p) => [p.id, p]));
const mean = (reviews: SeedReview[]) =>
  reviews.length ? reviews.reduce((sum, r) => sum + r.rating, 0) / reviews.length : null;

// The entity cache is off here: these tests count what batching alone sends to PostgreSQL.
const suite = useHarness({ scale: BENCH_SCALE, env: { ENTITY_CACHE: 'off' } });

/** Runs an operation through the gateway and returns its data and the statements each subgraph sent. */
async function counted(query: string, variables: Record<string, unknown> = {}) {
  suite.harness.sql.reset();
  const { data, errors } = await suite.harness.query(query, variables);
  expect(errors).toBeUndefined();
  return { data: data!, counts: suite.harness.sql.counts() };
}

describe('statements per operation', () => {
  it.each([5, 20, 100])('a storefront page of %i products costs one statement per subgraph fetch', async (first) => {
    const { data, counts } = await counted(STOREFRONT_PAGE, { first });
    // Query plan: catalog (products) -> reviews (_entities: pages + ratings) -> accounts (_entities: authors).
    expect(counts).toEqual({ catalog: 1, reviews: 1, accounts: 1, jobs: 0 });

    const expected = newestFirst(dataset.products)
      .slice(0, first)
      .map((product) => {
        const reviews = reviewsByProduct.get(product.id) ?? [];
        return {
          id: product.id,
          averageRating: reviews.length ? expect.closeTo(mean(reviews)!, 10) : null,
          reviews: newestFirst(reviews)
            .slice(0, 5)
            .map((r) => ({
              id: r.id,
              author: { id: r.authorId, displayName: usersById.get(r.authorId)!.displayName },
            })),
          hasNextPage: reviews.length > 5,
        };
      });
    const received = data.products.edges.map(({ node }: any) => ({
      id: node.id,
      averageRating: node.averageRating,
      reviews: node.reviews.edges.map(({ node: review }: any) => ({ id: review.id, author: review.author })),
      hasNextPage: node.reviews.pageInfo.hasNextPage,
    }));
    expect(received).toEqual(expected);
  });

  it.each([5, 20, 100])(
    "a page of %i users with their reviews' products costs one statement per subgraph fetch",
    async (first) => {
      const { data, counts } = await counted(USERS_PAGE, { first });
      expect(counts).toEqual({ accounts: 1, reviews: 1, catalog: 1, jobs: 0 });
      const expected = newestFirst(dataset.users)
        .slice(0, first)
        .map((user) => ({
          id: user.id,
          reviews: newestFirst(reviewsByAuthor.get(user.id) ?? [])
            .slice(0, 5)
            .map((r) => ({ id: r.id, product: { id: r.productId, title: productsById.get(r.productId)!.title } })),
        }));
      const received = data.users.edges.map(({ node }: any) => ({
        id: node.id,
        reviews: node.reviews.edges.map(({ node: review }: any) => ({ id: review.id, product: review.product })),
      }));
      expect(received).toEqual(expected);
    },
  );

  it('batches differently-shaped pages and rating stats of many products into one statement', async () => {
    const { data, counts } = await counted(/* GraphQL */ `
      {
        products(first: 30) {
          edges {
            node {
              id
              reviewCount
              averageRating
              newest: reviews(first: 3) {
                edges {
                  node {
                    id
                  }
                }
              }
              oldest: reviews(last: 2) {
                edges {
                  node {
                    id
                  }
                }
              }
            }
          }
        }
      }
    `);
    expect(counts).toEqual({ catalog: 1, reviews: 1, accounts: 0, jobs: 0 });
    for (const { node } of data.products.edges) {
      const reviews = newestFirst(reviewsByProduct.get(node.id) ?? []);
      expect(node.reviewCount).toBe(reviews.length);
      expect(node.newest.edges.map((e: any) => e.node.id)).toEqual(reviews.slice(0, 3).map((r) => r.id));
      expect(node.oldest.edges.map((e: any) => e.node.id)).toEqual(reviews.slice(-2).map((r) => r.id));
    }
  });

  it.each([
    ['catalog', 'Product', 'title', dataset.products],
    ['accounts', 'User', 'displayName', dataset.users],
  ] as const)(
    'resolves 100 %s representations in one statement, in order, null for each miss',
    async (subgraph, typename, field, rows) => {
      const known = rows.slice(0, 97).map((row) => row.id);
      const ids = [
        ...known.slice(0, 50),
        '00000000-0000-4000-8000-000000000000',
        'not-a-uuid',
        ...known.slice(50),
        crypto.randomUUID(),
      ];
      suite.harness.sql.reset();
      const { data, errors } = await suite.harness.query(
        `query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on ${typename} { id ${field} } } }`,
        { representations: ids.map((id) => ({ __typename: typename, id })) },
        { url: suite.harness.subgraphs[subgraph].url },
      );
      expect(errors).toBeUndefined();
      expect(suite.harness.sql.counts()[subgraph]).toBe(1);
      const byId = new Map<string, any>(rows.map((row) => [row.id, row]));
      expect(data!._entities).toEqual(ids.map((id) => (byId.has(id) ? { id, [field]: byId.get(id)[field] } : null)));
    },
  );

  it('resolves 100 review representations in one statement, null for each miss', async () => {
    const ids = [...dataset.reviews.slice(0, 98).map((r) => r.id), crypto.randomUUID(), 'not-a-uuid'];
    suite.harness.sql.reset();
    const { data, errors } = await suite.harness.query(
      'query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Review { id rating } } }',
      { representations: ids.map((id) => ({ __typename: 'Review', id })) },
      { url: suite.harness.subgraphs.reviews.url },
    );
    expect(errors).toBeUndefined();
    expect(suite.harness.sql.counts().reviews).toBe(1);
    expect(data!._entities).toEqual([
      ...dataset.reviews.slice(0, 98).map((r) => ({ id: r.id, rating: r.rating })),
      null,
      null,
    ]);
  });

  it("answers a product's review fields the same whatever the case of its id in the representation", async () => {
    const product = dataset.products[2]!;
    const reviews = newestFirst(reviewsByProduct.get(product.id) ?? []);
    const { data, errors } = await suite.harness.query(
      'query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { reviewCount reviews(first: 1) { edges { node { id } } } } } }',
      { representations: [product.id, product.id.toUpperCase()].map((id) => ({ __typename: 'Product', id })) },
      { url: suite.harness.subgraphs.reviews.url },
    );
    expect(errors).toBeUndefined();
    const expected = { reviewCount: reviews.length, reviews: { edges: [{ node: { id: reviews[0]!.id } }] } };
    expect(data!._entities).toEqual([expected, expected]);
  });

  it('keeps loaders to one request: the next request reads again and sees a change made in between', async () => {
    const product = dataset.products[10]!;
    const query = 'query ($id: ID!) { product(id: $id) { title } again: product(id: $id) { title } }';
    const before = await counted(query, { id: product.id });
    // Within a request the two lookups of one key are one statement.
    expect(before).toEqual({
      data: { product: { title: product.title }, again: { title: product.title } },
      counts: { catalog: 1, reviews: 0, accounts: 0, jobs: 0 },
    });
    await suite.harness.database.prisma.product.update({
      where: { id: product.id },
      data: { title: 'Changed between requests' },
    });
    try {
      const after = await counted(query, { id: product.id });
      expect(after.data.product.title).toBe('Changed between requests');
      expect(after.counts.catalog).toBe(1);
    } finally {
      await suite.harness.database.prisma.product.update({ where: { id: product.id }, data: { title: product.title } });
    }
  });

  it('counts one statement per item when batching is off (the N+1 the loaders prevent)', async () => {
    const naive = await startSubgraphsAndGateway(suite.databaseUrl, { batching: false, env: { ENTITY_CACHE: 'off' } });
    try {
      naive.sql.reset();
      const { data, errors } = await naive.query(STOREFRONT_PAGE, { first: 10 });
      expect(errors).toBeUndefined();
      const products = newestFirst(dataset.products).slice(0, 10);
      const reviewsShown = products.reduce((sum, p) => sum + Math.min(5, reviewsByProduct.get(p.id)?.length ?? 0), 0);
      expect(data!.products.edges).toHaveLength(10);
      // Per product: its page and its rating; per review shown: its author.
      expect(naive.sql.counts()).toEqual({ catalog: 1, reviews: 20, accounts: reviewsShown, jobs: 0 });
    } finally {
      await naive.stop();
    }
  });
});

/** Every relation a plan reads with a sequential scan. */
function seqScans(plan: any): string[] {
  const own = plan['Node Type'] === 'Seq Scan' ? [plan['Relation Name'] as string] : [];
  return [...own, ...((plan.Plans as any[] | undefined) ?? []).flatMap(seqScans)];
}

type CapturedStatement = SqlStatement & { subgraph: string };

/** Plans each SELECT/UPDATE/DELETE and returns those that read users, products or reviews sequentially. */
async function sequentialScans(statements: CapturedStatement[], options: { enableSeqscan: boolean }) {
  // Planned with the service's own session settings, as its statements are.
  const client = new pg.Client({ connectionString: suite.databaseUrl, options: SESSION_OPTIONS });
  await client.connect();
  try {
    if (!options.enableSeqscan) await client.query('SET enable_seqscan = off');
    const offenders: Array<{ statement: string; scans: string[] }> = [];
    for (const statement of statements) {
      const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${statement.text}`, statement.values as unknown[]);
      const scans = seqScans(rows[0]['QUERY PLAN'][0].Plan).filter((relation) =>
        ['users', 'products', 'reviews'].includes(relation),
      );
      if (scans.length) offenders.push({ statement: statement.text.slice(0, 300), scans });
    }
    return offenders;
  } finally {
    await client.end();
  }
}

describe('every statement is served by an index', () => {
  const captured: CapturedStatement[] = [];
  /** Distinct statements that read or change rows (BEGIN, COMMIT and plain INSERTs scan nothing). */
  const planned = (from: CapturedStatement[]) =>
    [...new Map(from.map((s) => [s.text, s])).values()].filter((s) =>
      /^\s*\(?\s*(SELECT|UPDATE|DELETE|WITH)\b/i.test(s.text),
    );
  const run = async (
    query: string,
    variables: Record<string, unknown> = {},
    as: QueryOptions = {},
    into = captured,
  ) => {
    suite.harness.sql.reset();
    const response = await suite.harness.query(query, variables, as);
    expect(response.errors).toBeUndefined();
    for (const [subgraph, list] of Object.entries(suite.harness.sql.statements))
      into.push(...list.map((s) => ({ ...s, subgraph })));
    return response.data!;
  };

  beforeAll(async () => {
    const product = newestFirst(dataset.products)[3]!;
    const user = newestFirst(dataset.users)[5]!;
    const review = dataset.reviews[7]!;
    // Pages of the default size (20), as clients ask for them, then cursors both ways and writes.
    await run(STOREFRONT_PAGE, { first: 20 });
    await run(USERS_PAGE, { first: 20 });
    for (const status of [null, 'ACTIVE']) {
      for (const direction of ['ASC', 'DESC']) {
        const page = await run(PRODUCTS_BY_PRICE, { status, direction });
        await run(PRODUCTS_BY_PRICE, { status, direction, after: page.products.pageInfo.endCursor });
        await run(PRODUCTS_BY_PRICE, { status, direction, last: 20, before: page.products.pageInfo.endCursor });
      }
      const page = await run(PRODUCTS_BY_DATE, { status });
      await run(PRODUCTS_BY_DATE, { status, after: page.products.pageInfo.endCursor });
      await run(PRODUCTS_BY_DATE, { status, last: 20 });
    }
    const users = await run(USERS_LIST);
    await run(USERS_LIST, { after: users.users.pageInfo.endCursor });
    await run(USERS_LIST, { last: 20, before: users.users.pageInfo.endCursor });
    const reviews = await run(PRODUCT_REVIEWS, { id: product.id, first: 5 });
    await run(PRODUCT_REVIEWS, { id: product.id, first: 5, after: reviews.product.reviews.pageInfo.endCursor });
    await run(PRODUCT_REVIEWS, { id: product.id, last: 5, before: reviews.product.reviews.pageInfo.endCursor });
    // Signed in as the user: their own email is read too (User.email is for signed-in callers only).
    const userReviews = await run(USER_REVIEWS, { id: user.id }, { as: user.id });
    await run(USER_REVIEWS, { id: user.id, after: userReviews.user.reviews.pageInfo.endCursor }, { as: user.id });
    await run(REVIEW_BY_ID, { id: review.id });
    // Writes: their statements are planned too (EXPLAIN without ANALYZE runs nothing).
    await run(
      'mutation ($id: ID!) { updateProduct(id: $id, input: { title: "Renamed" }) { id title } }',
      { id: product.id },
      { as: user.id, scopes: ['catalog:write'] },
    );
    const created = await run(
      'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
      { input: { productId: product.id, rating: 4, body: 'Indexed.' } },
      { as: user.id },
    );
    await run(
      'mutation ($id: ID!) { deleteReview(id: $id) { deletedReviewId } }',
      { id: created.createReview.id },
      { as: user.id },
    );
  }, 60_000);

  it('plans no sequential scan of users, products or reviews for any statement the resolvers issue', async () => {
    const statements = planned(captured);
    // Every kind of statement was captured: lists, seeks both ways, by-key batches, pages, stats, writes.
    expect(statements.length).toBeGreaterThanOrEqual(15);
    expect(await sequentialScans(statements, { enableSeqscan: true })).toEqual([]);
  });

  it('has an index path for the largest batches too (100 products, ~500 authors in one statement)', async () => {
    // With ~5% of a 10,000-row table in one IN list, PostgreSQL may rightly prefer a sequential scan;
    // what must hold is that an index can serve it. With sequential scans disabled, a plan still
    // contains one only where no index applies.
    const large: CapturedStatement[] = [];
    await run(STOREFRONT_PAGE, { first: 100 }, {}, large);
    await run(USERS_PAGE, { first: 100 }, {}, large);
    expect(await sequentialScans(planned(large), { enableSeqscan: false })).toEqual([]);
  });

  it('names its columns (never SELECT *) and never pages with OFFSET', () => {
    expect(captured.length).toBeGreaterThan(0);
    for (const { text, values } of captured) {
      expect(text).not.toMatch(/SELECT\s+(\w+\.)?\*|,\s*(\w+\.)?\*\s*(,|FROM)/i);
      // Prisma writes OFFSET $n even when it skips nothing: the value must be 0.
      for (const [, index] of text.matchAll(/OFFSET \$(\d+)/gi)) expect(String(values[Number(index) - 1])).toBe('0');
    }
  });
});
