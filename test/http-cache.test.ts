/**
 * HTTP caching at the gateway, end to end over real servers: Cache-Control from the contract's
 * @cacheControl hints, queries over GET (with CSRF prevention), automatic persisted queries (shared
 * through Redis by two gateways), ETag / If-None-Match, and private answers that never reach another user.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { RunningGateway } from '../gateway/server';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';
import { itWithRedis } from './redis-available';

const dataset = generateDataset(FIXTURE_SCALE);
const [alice, bob] = dataset.users as [(typeof dataset.users)[0], (typeof dataset.users)[0]];
const suite = useHarness();
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const logger = createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent');

/** What a GET must carry to pass CSRF prevention (any header a browser would preflight). */
const PREFLIGHT = { 'apollo-require-preflight': 'true' };
const SCREAMING_SNAKE = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;

interface Answer {
  status: number;
  headers: Headers;
  /** The raw body ('' for a 304). */
  text: string;
  body: {
    data?: any;
    errors?: Array<{ message: string; extensions?: Record<string, any> }>;
    extensions?: Record<string, any>;
  } | null;
}

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  const body = text ? (JSON.parse(text) as Answer['body']) : null;
  for (const error of body?.errors ?? []) expect(error.extensions?.code).toMatch(SCREAMING_SNAKE);
  return { status: response.status, headers: response.headers, text, body };
}

async function post(
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
  url = suite.harness.gatewayUrl,
): Promise<Answer> {
  return answer(
    await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    }),
  );
}

/** The GET URL of an operation: query, variables and extensions as URL parameters (JSON-encoded). */
function getUrl(
  operation: { query?: string; variables?: Record<string, unknown>; extensions?: Record<string, unknown> },
  url = suite.harness.gatewayUrl,
): string {
  const target = new URL(url);
  if (operation.query !== undefined) target.searchParams.set('query', operation.query);
  if (operation.variables) target.searchParams.set('variables', JSON.stringify(operation.variables));
  if (operation.extensions) target.searchParams.set('extensions', JSON.stringify(operation.extensions));
  return target.toString();
}

async function get(url: string, headers: Record<string, string> = PREFLIGHT): Promise<Answer> {
  return answer(await fetch(url, { method: 'GET', headers }));
}

const bearer = async (userId: string, scopes?: string[]) => ({
  authorization: `Bearer ${await suite.harness.tokenFor(userId, { scopes })}`,
});
const sha256 = (query: string) => createHash('sha256').update(query).digest('hex');
const persisted = (query: string) => ({ persistedQuery: { version: 1, sha256Hash: sha256(query) } });

const PRODUCTS =
  '{ products(first: 3) { edges { node { id title price { amountCents currency } } } pageInfo { hasNextPage endCursor } } }';
const product = dataset.products[0]!;
const PRODUCT = `query Product($id: ID!) { product(id: $id) { id title } }`;

describe('Cache-Control from the contract', () => {
  it('makes public catalog data public for 60 s, over POST and over GET', async () => {
    const posted = await post({ query: PRODUCTS });
    expect(posted.status).toBe(200);
    expect(posted.body!.errors).toBeUndefined();
    expect(posted.body!.data.products.edges).toHaveLength(3);
    expect(posted.headers.get('cache-control')).toBe('max-age=60, public');

    const got = await get(getUrl({ query: PRODUCTS }));
    expect(got.status).toBe(200);
    expect(got.body!.data).toEqual(posted.body!.data);
    expect(got.headers.get('cache-control')).toBe('max-age=60, public');
  });

  it('takes the shortest max-age of every subgraph called: reviews and users make it 30 s', async () => {
    const page = await post({ query: STOREFRONT_PAGE, variables: { first: 3 } });
    expect(page.body!.errors).toBeUndefined();
    expect(page.headers.get('cache-control')).toBe('max-age=30, public');
    // Signed in or not, data that is the same for everyone stays public.
    const signedIn = await post(
      { query: `{ user(id: "${alice.id}") { displayName reviews(first: 2) { edges { node { rating } } } } }` },
      await bearer(alice.id),
    );
    expect(signedIn.body!.errors).toBeUndefined();
    expect(signedIn.headers.get('cache-control')).toBe('max-age=30, public');
  });

  it.each([
    ['me', '{ me { id displayName } }'],
    ['User.email', `{ user(id: "${alice.id}") { displayName email } }`],
    ['me next to public data', `{ products(first: 1) { edges { node { id } } } me { id } }`],
    [
      'an email reached through reviews',
      `{ product(id: "${product.id}") { reviews(first: 1) { edges { node { author { email } } } } } }`,
    ],
  ])('never makes user-specific data public: %s is no-store', async (_name, query) => {
    const { status, body, headers } = await post({ query }, await bearer(alice.id));
    expect(status).toBe(200);
    expect(body!.errors).toBeUndefined();
    expect(headers.get('cache-control')).toBe('no-store');
  });

  it('never caches a mutation, though it returns cacheable types', async () => {
    const updated = await post(
      {
        query:
          'mutation ($id: ID!) { updateProduct(id: $id, input: { description: "Unchanged in spirit." }) { id title price { amountCents } } }',
        variables: { id: dataset.products[1]!.id },
      },
      await bearer(bob.id, ['catalog:write']),
    );
    expect(updated.body!.errors).toBeUndefined();
    expect(updated.headers.get('cache-control')).toBe('no-store');
    const review = await post(
      {
        query:
          'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id rating product { title } author { displayName } } }',
        variables: { input: { productId: dataset.products[1]!.id, rating: 4, body: 'Cached nowhere.' } },
      },
      await bearer(bob.id),
    );
    expect(review.body!.errors).toBeUndefined();
    expect(review.headers.get('cache-control')).toBe('no-store');
  });

  it('does not cache errors, or answers no subgraph vouched for', async () => {
    const invalid = await post({ query: '{ products { nope } }' });
    expect(invalid.status).toBe(400);
    expect(invalid.body!.errors![0]!.extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(invalid.headers.get('cache-control')).toBe('no-store');
    const typename = await post({ query: '{ __typename }' });
    expect(typename.headers.get('cache-control')).toBe('no-store');
  });
});

describe('GET', () => {
  it('runs a query sent with a CSRF-safe header (apollo-require-preflight, x-apollo-operation-name or content-type: application/json)', async () => {
    const url = getUrl({ query: PRODUCT, variables: { id: product.id } });
    const safe: Array<Record<string, string>> = [
      PREFLIGHT,
      { 'x-apollo-operation-name': 'Product' },
      { 'content-type': 'application/json' },
    ];
    for (const headers of safe) {
      const { status, body } = await get(url, headers);
      expect(status).toBe(200);
      expect(body).toMatchObject({ data: { product: { id: product.id } } });
    }
  });

  it('refuses a mutation with 405 and Allow: POST, and runs nothing', async () => {
    const before = (await post({ query: PRODUCT, variables: { id: product.id } })).body!.data.product.title as string;
    const { status, body, headers } = await get(
      getUrl({
        query: `mutation { updateProduct(id: "${product.id}", input: { title: "Changed by GET" }) { title } }`,
      }),
    );
    expect(status).toBe(405);
    expect(headers.get('allow')).toBe('POST');
    expect(body!.data).toBeUndefined();
    expect(body!.errors).toHaveLength(1);
    expect(body!.errors![0]!.extensions).toEqual({ code: 'BAD_REQUEST' });
    expect((await post({ query: PRODUCT, variables: { id: product.id } })).body!.data.product.title).toBe(before);
  });

  it('refuses a GET without a CSRF-safe header (a simple request a browser sends cross-site)', async () => {
    suite.harness.sql.reset();
    const { status, body } = await get(getUrl({ query: PRODUCT, variables: { id: product.id } }), {});
    expect(status).toBe(400);
    expect(body!.errors![0]!.extensions).toEqual({ code: 'BAD_REQUEST' });
    expect(body!.errors![0]!.message).toMatch(/CSRF/);
    expect(suite.harness.sql.counts()).toEqual({ accounts: 0, catalog: 0, reviews: 0, jobs: 0 });
  });
});

describe('automatic persisted queries', () => {
  /** A query no earlier run registered (Redis outlives test runs). */
  const fresh = () =>
    `query Fresh_${randomBytes(6).toString('hex')} { products(first: 2) { edges { node { id title } } } }`;

  it('asks for an unknown hash, registers it with the query, then answers GET with the hash only', async () => {
    const query = fresh();
    const byHash = getUrl({ extensions: persisted(query) });
    const unknown = await get(byHash);
    expect(unknown.status).toBe(200);
    expect(unknown.body!.errors!.map((e) => e.extensions!.code)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    expect(unknown.headers.get('cache-control')).not.toMatch(/public/);

    const registered = await post({ query, extensions: persisted(query) });
    expect(registered.body!.errors).toBeUndefined();

    const hit = await get(byHash);
    expect(hit.status).toBe(200);
    expect(hit.body!.errors).toBeUndefined();
    expect(hit.body!.data).toEqual(registered.body!.data);
    expect(hit.headers.get('cache-control')).toBe('max-age=60, public');
  });

  it('refuses a hash that does not match the query', async () => {
    const { status, body } = await post({ query: fresh(), extensions: persisted(fresh()) });
    expect(status).toBe(400);
    expect(body!.errors).toEqual([
      { message: 'provided sha does not match query', extensions: { code: 'PERSISTED_QUERY_HASH_MISMATCH' } },
    ]);
    const version = await post({ query: fresh(), extensions: { persistedQuery: { version: 2, sha256Hash: 'x' } } });
    expect(version.status).toBe(400);
    expect(version.body!.errors![0]!.extensions).toEqual({ code: 'PERSISTED_QUERY_NOT_SUPPORTED' });
  });

  itWithRedis('shares registered queries between gateways through Redis', async () => {
    const redises = [connectRedis(REDIS_URL, logger), connectRedis(REDIS_URL, logger)];
    const gateways: RunningGateway[] = [];
    try {
      expect(await Promise.all(redises.map((r) => r.ready()))).toEqual([true, true]);
      for (const r of redises) gateways.push(await suite.harness.startGateway({ redis: r }));
      const [one, two] = gateways as [RunningGateway, RunningGateway];
      const query = fresh();
      const registered = await post({ query, extensions: persisted(query) }, {}, one.url);
      expect(registered.body!.errors).toBeUndefined();
      // Registration is written in the background: wait until Redis has it.
      const key = `${suite.harness.namespace}:apq:${sha256(query)}`;
      for (let i = 0; i < 50 && !(await redises[0]!.client.exists(key)); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 20));
      const ttl = await redises[0]!.client.ttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(24 * 60 * 60);

      const elsewhere = await get(getUrl({ extensions: persisted(query) }, two.url));
      expect(elsewhere.body!.errors).toBeUndefined();
      expect(elsewhere.body!.data).toEqual(registered.body!.data);
      // The harness's own gateway has no Redis: its in-memory store never saw the query.
      const inMemory = await get(getUrl({ extensions: persisted(query) }));
      expect(inMemory.body!.errors!.map((e) => e.extensions!.code)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    } finally {
      await Promise.all(gateways.map((g) => g.stop()));
      await Promise.all(redises.map((r) => r.close()));
    }
  });
});

describe('ETag', () => {
  it('validates a GET with If-None-Match (304, no body) until the data changes', async () => {
    const target = dataset.products[2]!;
    const url = getUrl({ query: PRODUCT, variables: { id: target.id } });
    const first = await get(url);
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^W\/"[\w-]+"$/);
    // The ETag covers data and errors, not extensions: the remaining budget changes, the ETag does not.
    const again = await get(url);
    expect(again.body!.extensions!.cost.remaining).toBeLessThan(first.body!.extensions!.cost.remaining);
    expect(again.headers.get('etag')).toBe(etag);

    const notModified = await get(url, { ...PREFLIGHT, 'if-none-match': etag! });
    expect(notModified.status).toBe(304);
    expect(notModified.text).toBe('');
    expect(notModified.headers.get('etag')).toBe(etag);
    expect(notModified.headers.get('cache-control')).toBe('max-age=60, public');

    const title = `Renamed ${randomBytes(4).toString('hex')}`;
    const updated = await post(
      {
        query: 'mutation ($id: ID!, $title: String!) { updateProduct(id: $id, input: { title: $title }) { title } }',
        variables: { id: target.id, title },
      },
      await bearer(alice.id, ['catalog:write']),
    );
    expect(updated.body!.data).toEqual({ updateProduct: { title } });

    const changed = await get(url, { ...PREFLIGHT, 'if-none-match': etag! });
    expect(changed.status).toBe(200);
    expect(changed.body!.data).toEqual({ product: { id: target.id, title } });
    expect(changed.headers.get('etag')).not.toBe(etag);
  });

  it('answers 304 only to GET: a POST with a matching If-None-Match gets the full answer', async () => {
    const first = await get(getUrl({ query: PRODUCT, variables: { id: product.id } }));
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^W\//);
    const second = await post({ query: PRODUCT, variables: { id: product.id } }, { 'if-none-match': etag });
    expect(second.status).toBe(200);
    expect(second.body!.data).toEqual(first.body!.data);
  });

  it('hashes a POST’s answer only when it carries If-None-Match, and then with the ETag a GET gets', async () => {
    const etag = (await get(getUrl({ query: PRODUCT, variables: { id: product.id } }))).headers.get('etag')!;
    expect(etag).toMatch(/^W\/"[\w-]{27}"$/);
    // A plain POST cannot make a conditional request: its answer is not hashed at all (nor by Express).
    const plain = await post({ query: PRODUCT, variables: { id: product.id } });
    expect(plain.headers.get('etag')).toBeNull();
    const conditional = await post({ query: PRODUCT, variables: { id: product.id } }, { 'if-none-match': etag });
    expect(conditional.status).toBe(200);
    expect(conditional.headers.get('etag')).toBe(etag);
    expect(conditional.body!.data).toEqual(plain.body!.data);
  });
});

describe('private answers', () => {
  it('reach only their own user: the same GET URL answers each caller with their own data, never cacheably', async () => {
    const url = getUrl({ query: '{ me { id email } }' });
    const asAlice = await get(url, { ...PREFLIGHT, ...(await bearer(alice.id)) });
    const asBob = await get(url, { ...PREFLIGHT, ...(await bearer(bob.id)) });
    const anonymous = await get(url);
    expect(asAlice.body!.data).toEqual({ me: { id: alice.id, email: alice.email } });
    expect(asBob.body!.data).toEqual({ me: { id: bob.id, email: bob.email } });
    // An anonymous caller may not select User.email at all (@authenticated).
    expect(anonymous.status).toBe(401);
    expect(anonymous.body!.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    for (const { headers } of [asAlice, asBob, anonymous]) {
      expect(headers.get('cache-control')).toMatch(/^(no-store|max-age=\d+, private)$/);
    }
    // Each user's ETag is their own: Alice's validator never gets Bob a 304 (and so Alice's cached copy).
    expect(asAlice.headers.get('etag')).not.toBe(asBob.headers.get('etag'));
    const bobWithAlicesEtag = await get(url, {
      ...PREFLIGHT,
      ...(await bearer(bob.id)),
      'if-none-match': asAlice.headers.get('etag')!,
    });
    expect(bobWithAlicesEtag.status).toBe(200);
    expect(bobWithAlicesEtag.body!.data).toEqual({ me: { id: bob.id, email: bob.email } });
    // Alice revalidating her own answer does get a 304.
    const aliceAgain = await get(url, {
      ...PREFLIGHT,
      ...(await bearer(alice.id)),
      'if-none-match': asAlice.headers.get('etag')!,
    });
    expect(aliceAgain.status).toBe(304);
  });

  it('keeps another user’s email out of a public answer: it is null for them and still no-store', async () => {
    const url = getUrl({ query: `{ user(id: "${alice.id}") { id email } }` });
    const asBob = await get(url, { ...PREFLIGHT, ...(await bearer(bob.id)) });
    expect(asBob.body!.data).toEqual({ user: { id: alice.id, email: null } });
    expect(asBob.headers.get('cache-control')).toBe('no-store');
    const asAlice = await get(url, { ...PREFLIGHT, ...(await bearer(alice.id)) });
    expect(asAlice.body!.data).toEqual({ user: { id: alice.id, email: alice.email } });
    expect(asAlice.headers.get('cache-control')).toBe('no-store');
  });
});
