import { createDatabaseClient } from '../lib/db';
import { createLogger } from '../lib/logger';
import { startSubgraph } from '../lib/subgraph';
import { generateDataset } from '../prisma/seed';
import accounts from '../subgraphs/accounts';
import { FIXTURE_SCALE } from './global-setup';
import { testSubgraphServices, useHarness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const newestFirst = <T extends { createdAt: Date; id: string }>(rows: T[]) =>
  [...rows].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
const usersById = new Map(dataset.users.map((u) => [u.id, u]));

const suite = useHarness();

const STOREFRONT = /* GraphQL */ `
  query Storefront($first: Int, $after: String) {
    products(first: $first, after: $after) {
      edges {
        cursor
        node {
          id
          sku
          title
          price {
            amountCents
            currency
          }
          status
          createdAt
          reviewCount
          averageRating
          reviews(first: 3) {
            edges {
              node {
                id
                rating
                body
                author {
                  id
                  displayName
                }
              }
            }
            pageInfo {
              hasNextPage
            }
          }
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`;

describe('a query crossing all three subgraphs', () => {
  it('returns exactly the seeded products, their newest reviews and each review author', async () => {
    const { status, data, errors } = await suite.harness.query(STOREFRONT, { first: 5 });
    expect(status).toBe(200);
    expect(errors).toBeUndefined();

    const expected = newestFirst(dataset.products)
      .slice(0, 5)
      .map((product) => {
        const reviews = dataset.reviews.filter((r) => r.productId === product.id);
        const mean = reviews.reduce((sum, r) => sum + r.rating, 0) / reviews.length;
        return {
          id: product.id,
          sku: product.sku,
          title: product.title,
          price: { amountCents: product.priceCents, currency: 'USD' },
          status: product.status,
          createdAt: product.createdAt.toISOString(),
          reviewCount: reviews.length,
          averageRating: reviews.length ? expect.closeTo(mean, 10) : null,
          reviews: {
            edges: newestFirst(reviews)
              .slice(0, 3)
              .map((r) => ({
                node: {
                  id: r.id,
                  rating: r.rating,
                  body: r.body,
                  author: { id: r.authorId, displayName: usersById.get(r.authorId)!.displayName },
                },
              })),
            pageInfo: { hasNextPage: reviews.length > 3 },
          },
        };
      });
    expect(data!.products.edges.map((edge: any) => edge.node)).toEqual(expected);
    expect(data!.products.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
  });

  it('pages through every product once with cursors', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const { data, errors }: any = await suite.harness.query(
        'query ($after: String) { products(first: 15, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }',
        { after },
      );
      expect(errors).toBeUndefined();
      seen.push(...data.products.edges.map((e: any) => e.node.id));
      if (!data.products.pageInfo.hasNextPage) break;
      after = data.products.pageInfo.endCursor;
    }
    expect(seen).toEqual(newestFirst(dataset.products).map((p) => p.id));
  });

  it('orders and filters products by price within a status', async () => {
    const { data, errors } = await suite.harness.query(
      '{ products(first: 10, filter: { status: ACTIVE }, orderBy: { field: PRICE, direction: ASC }) { edges { node { id } } } }',
    );
    expect(errors).toBeUndefined();
    const expected = dataset.products
      .filter((p) => p.status === 'ACTIVE')
      .sort((a, b) => a.priceCents - b.priceCents || (a.id < b.id ? -1 : 1))
      .slice(0, 10)
      .map((p) => p.id);
    expect(data!.products.edges.map((e: any) => e.node.id)).toEqual(expected);
  });

  it("resolves a user's reviews and the reviewed products through the gateway", async () => {
    const user = dataset.users[0]!;
    const { data, errors } = await suite.harness.query(
      'query ($id: ID!) { user(id: $id) { displayName reviews(first: 2) { edges { node { id product { id title } } } } } }',
      { id: user.id },
    );
    expect(errors).toBeUndefined();
    const expected = newestFirst(dataset.reviews.filter((r) => r.authorId === user.id)).slice(0, 2);
    expect(data!.user.displayName).toBe(user.displayName);
    expect(data!.user.reviews.edges.map((e: any) => e.node)).toEqual(
      expected.map((r) => ({
        id: r.id,
        product: { id: r.productId, title: dataset.products.find((p) => p.id === r.productId)!.title },
      })),
    );
  });
});

describe('writes through the gateway', () => {
  const author = dataset.users[1]!;
  const someoneElse = dataset.users[2]!;
  const product = newestFirst(dataset.products)[0]!;
  const CREATE =
    'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id rating body author { id displayName } product { id title } } }';

  it('creates a review as the caller and reads it back as the newest review of the product', async () => {
    const created = await suite.harness.query(
      CREATE,
      { input: { productId: product.id, rating: 4, body: 'Sturdy and light.' } },
      { as: author.id },
    );
    expect(created.errors).toBeUndefined();
    const review = created.data!.createReview;
    expect(review).toMatchObject({
      rating: 4,
      body: 'Sturdy and light.',
      author: { id: author.id, displayName: author.displayName },
      product: { id: product.id, title: product.title },
    });

    const read = await suite.harness.query(
      'query ($id: ID!) { product(id: $id) { reviewCount reviews(first: 1) { edges { node { id body } } } } }',
      { id: product.id },
    );
    expect(read.data!.product.reviews.edges[0].node).toEqual({ id: review.id, body: 'Sturdy and light.' });
    expect(read.data!.product.reviewCount).toBe(dataset.reviews.filter((r) => r.productId === product.id).length + 1);

    const forbidden = await suite.harness.query(
      'mutation ($id: ID!) { deleteReview(id: $id) { deletedReviewId } }',
      { id: review.id },
      { as: someoneElse.id },
    );
    expect(forbidden.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const deleted = await suite.harness.query(
      'mutation ($id: ID!) { deleteReview(id: $id) { deletedReviewId product { id } } }',
      { id: review.id },
      { as: author.id },
    );
    expect(deleted.errors).toBeUndefined();
    expect(deleted.data!.deleteReview).toEqual({ deletedReviewId: review.id, product: { id: product.id } });
    const again = await suite.harness.query('query ($id: ID!) { review(id: $id) { id } }', { id: review.id });
    expect(again.data!.review).toBeNull();
  });

  it('creates and updates a product, keeping money exact', async () => {
    const editor = { as: dataset.users[0]!.id, scopes: ['catalog:write'] };
    const created = await suite.harness.query(
      'mutation { createProduct(input: { sku: "TEST-1", title: "Test kettle", price: { amountCents: 1999, currency: "EUR" }, status: ACTIVE }) { id sku price { amountCents currency } status } }',
      {},
      editor,
    );
    expect(created.errors).toBeUndefined();
    const id = created.data!.createProduct.id;
    expect(created.data!.createProduct).toMatchObject({
      sku: 'TEST-1',
      price: { amountCents: 1999, currency: 'EUR' },
      status: 'ACTIVE',
    });
    const updated = await suite.harness.query(
      'mutation ($id: ID!) { updateProduct(id: $id, input: { title: "Better kettle" }) { title price { amountCents } } }',
      { id },
      editor,
    );
    expect(updated.data!.updateProduct).toEqual({ title: 'Better kettle', price: { amountCents: 1999 } });
    const duplicate = await suite.harness.query(
      'mutation { createProduct(input: { sku: "TEST-1", title: "Again", price: { amountCents: 1 } }) { id } }',
      {},
      editor,
    );
    expect(duplicate.errors?.[0]?.extensions).toMatchObject({ code: 'CONFLICT', argumentName: 'input.sku' });
  });
});

describe('bad input gets a clear, coded error', () => {
  const author = dataset.users[3]!;
  const product = dataset.products[0]!;
  const CREATE = 'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }';
  const asAuthor = { as: author.id };

  const expectCleanError = (response: { status: number; errors?: any[] }, code: string) => {
    expect(response.status).toBeLessThan(500);
    expect(response.errors).toHaveLength(1);
    expect(response.errors![0].extensions.code).toBe(code);
    expect(JSON.stringify(response.errors)).not.toMatch(/stacktrace| {4}at |prisma|SELECT|127\.0\.0\.1/i);
  };

  it('rejects a rating of 0', async () => {
    const response = await suite.harness.query(
      CREATE,
      { input: { productId: product.id, rating: 0, body: 'zero' } },
      asAuthor,
    );
    expectCleanError(response, 'BAD_USER_INPUT');
    expect(response.errors![0].extensions!.argumentName).toBe('input.rating');
  });

  it('rejects an unknown product id', async () => {
    const response = await suite.harness.query(
      CREATE,
      { input: { productId: '00000000-0000-4000-8000-000000000000', rating: 3, body: 'ghost' } },
      asAuthor,
    );
    expectCleanError(response, 'NOT_FOUND');
    expect(response.errors![0].extensions!.argumentName).toBe('input.productId');
  });

  it('rejects a malformed id', async () => {
    expectCleanError(await suite.harness.query('{ product(id: "not-a-uuid") { id } }'), 'BAD_USER_INPUT');
    expectCleanError(
      await suite.harness.query(CREATE, { input: { productId: 'nope', rating: 3, body: 'x' } }, asAuthor),
      'BAD_USER_INPUT',
    );
  });

  it('rejects a review without a signed-in user', async () => {
    expectCleanError(
      await suite.harness.query(CREATE, { input: { productId: product.id, rating: 3, body: 'anon' } }),
      'UNAUTHENTICATED',
    );
  });

  it('rejects page sizes out of bounds and tampered cursors', async () => {
    const tooMany = await suite.harness.query('{ users(first: 101) { edges { cursor } } }');
    expectCleanError(tooMany, 'BAD_USER_INPUT');
    expect(tooMany.errors![0].extensions!.argumentName).toBe('first');
    expectCleanError(await suite.harness.query('{ users(first: -1) { edges { cursor } } }'), 'BAD_USER_INPUT');
    expectCleanError(await suite.harness.query('{ users(after: "garbage") { edges { cursor } } }'), 'BAD_USER_INPUT');
    const { data } = await suite.harness.query('{ products(first: 1) { pageInfo { endCursor } } }');
    // A cursor from the products list is refused by the users list.
    expectCleanError(
      await suite.harness.query('query ($after: String) { users(after: $after) { edges { cursor } } }', {
        after: data!.products.pageInfo.endCursor,
      }),
      'BAD_USER_INPUT',
    );
  });

  it('answers a malformed body and an unknown field with codes, and keeps serving', async () => {
    const malformed = await fetch(suite.harness.gatewayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": ',
    });
    expect(malformed.status).toBe(400);
    const body = await malformed.text();
    expect(JSON.parse(body).errors[0].extensions.code).toBe('BAD_REQUEST');
    expect(body).not.toMatch(/ {4}at /);
    expectCleanError(await suite.harness.query('{ nope }'), 'GRAPHQL_VALIDATION_FAILED');
    const after = await suite.harness.query('{ products(first: 1) { edges { node { id } } } }');
    expect(after.errors).toBeUndefined();
  });
});

describe('HTTP surface', () => {
  it('serves health, readiness and the Sandbox landing page', async () => {
    const gatewayBase = suite.harness.gatewayUrl.replace('/graphql', '');
    for (const server of Object.values(suite.harness.subgraphs).map((s) => s.url.replace('/graphql', ''))) {
      expect((await fetch(`${server}/healthz`)).status).toBe(200);
      const ready = await fetch(`${server}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready' });
    }
    // The gateway's readiness names each subgraph's, as it last checked it.
    expect((await fetch(`${gatewayBase}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gatewayBase}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      subgraphs: { accounts: 'ready', catalog: 'ready', reviews: 'ready', jobs: 'ready' },
    });
    const landing = await fetch(suite.harness.gatewayUrl, { headers: { accept: 'text/html' } });
    expect(landing.status).toBe(200);
    expect(await landing.text()).toMatch(/embeddable-sandbox/);
  });

  it('reports a subgraph as not ready when its database is unreachable', async () => {
    const unreachable = createDatabaseClient('postgresql://postgres@127.0.0.1:1/nowhere', { poolSize: 1 });
    const server = await startSubgraph('accounts', accounts, {
      port: 0,
      host: '127.0.0.1',
      database: unreachable,
      services: testSubgraphServices(),
      logger: createLogger('test', 'silent'),
    });
    try {
      const ready = await fetch(server.url.replace('/graphql', '/readyz'));
      expect(ready.status).toBe(503);
      const masked = await suite.harness.query(
        '{ users(first: 1) { edges { cursor } } }',
        {},
        { url: server.url, subgraph: true },
      );
      // An unreachable database is an outage, named and retryable, not a bug (no stack, no host).
      expect(masked.errors![0].message).toBe('The accounts database is unavailable; retry shortly.');
      expect(masked.errors![0].extensions).toEqual({
        code: 'DEPENDENCY_UNAVAILABLE',
        dependency: 'database',
        retryable: true,
      });
    } finally {
      await server.stop();
      await unreachable.close();
    }
  });
});
