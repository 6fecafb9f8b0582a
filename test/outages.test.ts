/**
 * Dependency outages, end to end on real servers and a real PostgreSQL: a subgraph whose database is
 * unreachable answers DEPENDENCY_UNAVAILABLE, the gateway turns an answer with nothing but outages into
 * 503 with Retry-After, the outage is logged once and its end once, and createReview never calls an
 * existing product missing because the catalog could not look it up.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { useOutageStatus } from '../gateway/outage-status';
import type { RunningGateway } from '../gateway/server';
import { createDatabaseClient, type DatabaseClient } from '../lib/db';
import type { RunningServer } from '../lib/http-server';
import { createIdentitySigner } from '../lib/identity';
import { startSubgraph } from '../lib/subgraph';
import { generateDataset } from '../prisma/seed';
import catalog from '../subgraphs/catalog';
import type { SubgraphName } from '../subgraphs/registry';
import reviews from '../subgraphs/reviews';
import { createCatalogClient } from '../subgraphs/reviews/catalog-client';
import { FIXTURE_SCALE } from './global-setup';
import { TEST_IDENTITY_SECRET, testSubgraphServices, useHarness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const suite = useHarness();

const UNREACHABLE_DATABASE = 'postgresql://postgres@127.0.0.1:1/nowhere';
const PRODUCTS = '{ products(first: 2) { edges { node { id title } } } }';
const REVIEW_WITH_PRODUCT = 'query ($id: ID!) { review(id: $id) { rating product { title } } }';
const CREATE_REVIEW =
  'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id rating product { id } } }';

/** A pino logger whose lines are kept, parsed. */
function capturedLogger() {
  const lines: Array<Record<string, any>> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (chunk, _encoding, done) => done(void lines.push(JSON.parse(String(chunk)))) }),
  );
  return { logger, lines };
}

/**
 * A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones closed at once, as a
 * database that went away looks to its pool) and restored, on one port throughout.
 */
async function databaseProxy(databaseUrl: string) {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(databaseUrl);
  url.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: url.toString(),
    cut() {
      cut = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Everything a test started, stopped after it in reverse order. */
const started: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  for (const item of started.splice(0).reverse()) await item.stop();
});

/** A catalog subgraph of its own on `database`, logging to `logger`. */
async function catalogOn(database: DatabaseClient, logger: pino.Logger): Promise<RunningServer> {
  const services = testSubgraphServices();
  const server = await startSubgraph('catalog', catalog, { port: 0, host: '127.0.0.1', database, services, logger });
  started.push({
    stop: async () => {
      await server.stop();
      await services.close();
      await database.close();
    },
  });
  return server;
}

/** A gateway over the harness's subgraphs but for the given ones. */
async function gatewayWith(subgraphUrls: Partial<Record<SubgraphName, string>>) {
  const { subgraphs } = suite.harness;
  const gateway: RunningGateway = await suite.harness.startGateway({
    subgraphUrls: {
      accounts: subgraphs.accounts.url,
      catalog: subgraphs.catalog.url,
      reviews: subgraphs.reviews.url,
      ...subgraphUrls,
    },
  });
  started.push(gateway);
  return gateway;
}

const outageLines = (lines: Array<Record<string, any>>) => lines.filter((line) => line.level >= 40);
const PRIVATE = /127\.0\.0\.1|:1\/|nowhere|ECONNREFUSED|P1001|stack|postgres/i;

describe('a subgraph whose database is unreachable', () => {
  it('answers DEPENDENCY_UNAVAILABLE, and the gateway 503 with Retry-After when nothing else is left', async () => {
    const { logger, lines } = capturedLogger();
    const broken = await catalogOn(createDatabaseClient(UNREACHABLE_DATABASE, { poolSize: 1 }), logger);

    const direct = await suite.harness.query(PRODUCTS, {}, { url: broken.url, subgraph: true });
    expect(direct.status).toBe(200);
    expect(direct.errors).toEqual([
      {
        message: 'The catalog database is unavailable; retry shortly.',
        path: ['products'],
        locations: expect.any(Array),
        extensions: { code: 'DEPENDENCY_UNAVAILABLE', dependency: 'database', retryable: true },
      },
    ]);

    const gateway = await gatewayWith({ catalog: broken.url });
    const response = await fetch(gateway.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: PRODUCTS }),
    });
    const text = await response.text();
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    const body = JSON.parse(text);
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]).toMatchObject({
      message: 'The catalog database is unavailable; retry shortly.',
      extensions: { code: 'DEPENDENCY_UNAVAILABLE', dependency: 'database', retryable: true },
    });
    expect(text).not.toMatch(PRIVATE);
    // The catalog answered (200, with errors): its breaker stays closed.
    expect(gateway.breakerStates().catalog).toBe('closed');
    expect(outageLines(lines)).toHaveLength(1);
  });

  it('leaves an answer with partial data at 200', async () => {
    const { logger } = capturedLogger();
    const broken = await catalogOn(createDatabaseClient(UNREACHABLE_DATABASE, { poolSize: 1 }), logger);
    const gateway = await gatewayWith({ catalog: broken.url });
    const review = dataset.reviews[0]!;
    const answer = await suite.harness.query(REVIEW_WITH_PRODUCT, { id: review.id }, { url: gateway.url });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('retry-after')).toBeNull();
    expect(answer.data).toEqual({ review: { rating: review.rating, product: null } });
    expect(answer.errors?.map((error) => error.extensions?.code)).toEqual(['DEPENDENCY_UNAVAILABLE']);
    expect(JSON.stringify(answer.errors)).not.toMatch(PRIVATE);
  });

  it('logs the outage once for 20 requests, no stack, and its end once when the database is back', async () => {
    const { logger, lines } = capturedLogger();
    const proxy = await databaseProxy(suite.databaseUrl);
    started.push({ stop: () => proxy.close() });
    const flaky = await catalogOn(createDatabaseClient(proxy.url, { poolSize: 2 }), logger);
    const gateway = await gatewayWith({ catalog: flaky.url });
    const products = () => suite.harness.query(PRODUCTS, {}, { url: gateway.url });

    const before = await products();
    expect(before.status).toBe(200);
    expect(before.data?.products.edges).toHaveLength(2);

    proxy.cut();
    const during = await Promise.all(Array.from({ length: 20 }, () => products()));
    for (const answer of during) {
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toBe('5');
      expect(answer.errors?.map((error) => error.extensions?.code)).toEqual(['DEPENDENCY_UNAVAILABLE']);
    }
    const warnings = outageLines(lines);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      level: 40,
      dependency: 'database',
      msg: expect.stringMatching(/catalog database unavailable/),
    });
    expect(JSON.stringify(lines)).not.toMatch(/"stack"|\\n\s+at /);
    expect(lines.filter((line) => line.msg === 'unexpected error masked')).toEqual([]);

    proxy.restore();
    const after = await products();
    expect(after.status).toBe(200);
    expect(after.errors).toBeUndefined();
    expect(after.data?.products.edges).toEqual(before.data?.products.edges);
    const recoveries = lines.filter((line) => line.msg === 'catalog database is back');
    expect(recoveries).toEqual([
      expect.objectContaining({
        level: 30,
        dependency: 'database',
        downMs: expect.any(Number),
        failures: expect.any(Number),
      }),
    ]);
    await products();
    expect(lines.filter((line) => line.msg === 'catalog database is back')).toHaveLength(1);
    expect(outageLines(lines)).toHaveLength(1);
  });
});

describe('createReview while the catalog cannot reach its database', () => {
  it('says the catalog is unavailable, not that the product does not exist, and writes nothing', async () => {
    const { logger } = capturedLogger();
    const broken = await catalogOn(createDatabaseClient(UNREACHABLE_DATABASE, { poolSize: 1 }), logger);
    // A reviews subgraph of its own on the test database that asks the broken catalog about products.
    const database = createDatabaseClient(suite.databaseUrl, { poolSize: 2 });
    const services = testSubgraphServices();
    const reviewsServer = await startSubgraph('reviews', reviews, {
      port: 0,
      host: '127.0.0.1',
      database,
      services: {
        ...services,
        subgraphUrl: (name) => (name === 'catalog' ? broken.url : suite.harness.subgraphs[name as SubgraphName].url),
      },
      logger,
    });
    started.push({
      stop: async () => {
        await reviewsServer.stop();
        await services.close();
        await database.close();
      },
    });
    const gateway = await gatewayWith({ catalog: broken.url, reviews: reviewsServer.url });
    const author = dataset.users[3]!;
    const product = dataset.products[0]!;
    const count = () => suite.harness.database.prisma.review.count();
    const rowsBefore = await count();

    const answer = await suite.harness.query(
      CREATE_REVIEW,
      { input: { productId: product.id, rating: 4, body: 'Written during an outage.' } },
      { url: gateway.url, as: author.id },
    );
    expect(answer.status).toBe(503);
    expect(answer.headers.get('retry-after')).toBe('5');
    expect(answer.data).toBeNull();
    expect(answer.errors).toHaveLength(1);
    expect(answer.errors![0]).toMatchObject({
      message: 'The catalog is unavailable; try again shortly.',
      path: ['createReview'],
      extensions: { code: 'DEPENDENCY_UNAVAILABLE', dependency: 'catalog', retryable: true },
    });
    expect(await count()).toBe(rowsBefore);

    // With the catalog answering, a product that does not exist is still NOT_FOUND.
    const missing = await suite.harness.query(
      CREATE_REVIEW,
      { input: { productId: '00000000-0000-4000-8000-000000000000', rating: 4, body: 'No such product.' } },
      { as: author.id },
    );
    expect(missing.status).toBe(200);
    expect(missing.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', argumentName: 'input.productId' });
    expect(await count()).toBe(rowsBefore);
  });
});

describe('the catalog client', () => {
  const signIdentity = createIdentitySigner(TEST_IDENTITY_SECRET);

  /** An HTTP server answering every request with `answer` (or never, when it is null). */
  async function catalogStandIn(answer: { status: number; body: unknown } | null): Promise<string> {
    const server = http.createServer((req, res) => {
      req.resume();
      if (answer) res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    started.push({
      stop: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  }

  const product = () => dataset.products[0]!.id;

  it('reads a clean answer: an entity is a product, a null entity without errors is none', async () => {
    expect(await createCatalogClient(suite.harness.subgraphs.catalog.url, signIdentity).productExists(product())).toBe(
      true,
    );
    const none = await catalogStandIn({ status: 200, body: { data: { _entities: [null] } } });
    expect(await createCatalogClient(none, signIdentity).productExists(product())).toBe(false);
  });

  it.each([
    [
      'a null entity with an error',
      {
        status: 200,
        body: {
          data: { _entities: [null] },
          errors: [{ message: 'x', path: ['_entities', 0], extensions: { code: 'DEPENDENCY_UNAVAILABLE' } }],
        },
      },
    ],
    ['an error and no data', { status: 200, body: { data: null, errors: [{ message: 'x' }] } }],
    ['HTTP 500', { status: 500, body: { data: { _entities: [{ id: 'x' }] } } }],
    ['HTTP 401', { status: 401, body: { errors: [{ message: 'x' }] } }],
    ['a body that is not an answer', { status: 200, body: ['nonsense'] }],
  ])('is unavailable on %s', async (_name, answer) => {
    const url = await catalogStandIn(answer);
    await expect(createCatalogClient(url, signIdentity).productExists(product())).rejects.toMatchObject({
      extensions: { code: 'DEPENDENCY_UNAVAILABLE', dependency: 'catalog', retryable: true },
    });
  });

  it('is unavailable when the catalog does not answer in time or at all', async () => {
    const silent = await catalogStandIn(null);
    const startedAt = Date.now();
    await expect(createCatalogClient(silent, signIdentity, 200).productExists(product())).rejects.toMatchObject({
      extensions: { code: 'DEPENDENCY_UNAVAILABLE' },
    });
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    await expect(
      createCatalogClient('http://127.0.0.1:1/graphql', signIdentity).productExists(product()),
    ).rejects.toMatchObject({ extensions: { code: 'DEPENDENCY_UNAVAILABLE' } });
  });
});

describe('useOutageStatus', () => {
  /** The status and Retry-After the plugin leaves on an answer with this data and these error codes. */
  async function statusOf(data: Record<string, unknown> | null, codes: string[], status?: number) {
    const headers = new Map<string, string>();
    const response = {
      http: { status, headers },
      body: {
        kind: 'single',
        singleResult: { data, errors: codes.map((code) => ({ message: code, extensions: { code } })) },
      },
    };
    const listener = await useOutageStatus().requestDidStart!({} as never);
    await listener!.willSendResponse!({ response } as never);
    return { status: response.http.status ?? 200, retryAfter: headers.get('retry-after') ?? null };
  }

  it('makes an answer with no data and only outage errors a 503 with Retry-After', async () => {
    const unavailable = { status: 503, retryAfter: '5' };
    expect(await statusOf(null, ['DEPENDENCY_UNAVAILABLE'])).toEqual(unavailable);
    expect(await statusOf({ me: null, products: null }, ['SUBGRAPH_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE'])).toEqual(
      unavailable,
    );
  });

  it('leaves partial data, other errors, no errors and refusals alone', async () => {
    const untouched = { status: 200, retryAfter: null };
    expect(await statusOf({ me: null, products: { edges: [] } }, ['SUBGRAPH_UNAVAILABLE'])).toEqual(untouched);
    expect(await statusOf(null, ['DEPENDENCY_UNAVAILABLE', 'NOT_FOUND'])).toEqual(untouched);
    expect(await statusOf(null, ['INTERNAL_SERVER_ERROR'])).toEqual(untouched);
    expect(await statusOf({ products: null }, [])).toEqual(untouched);
    expect(await statusOf(null, ['SUBGRAPH_UNAVAILABLE'], 429)).toEqual({ status: 429, retryAfter: null });
  });
});
