import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { composeServices } from '@apollo/composition';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { GraphQLError, parse } from 'graphql';
import pino from 'pino';
import { SUBGRAPH_UNAVAILABLE, SubgraphDataSource, type SubgraphDataSourceOptions } from './subgraph-data-source';

// Everything here runs on 127.0.0.1; nothing may call out to Apollo's telemetry.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

const sha256 = (body: string | Buffer) => createHash('sha256').update(body).digest('hex');
const LINK = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])';
/** As in the real contracts: public hints on the catalog data, the caller's own data PRIVATE. */
const CACHE_CONTROL = `
  enum CacheControlScope { PUBLIC PRIVATE }
  directive @cacheControl(maxAge: Int, scope: CacheControlScope) on FIELD_DEFINITION | OBJECT
`;
const PRODUCTS_SDL = `${LINK}${CACHE_CONTROL}
  type Query {
    products: [Product!]! @cacheControl(maxAge: 30)
    whoami: String @cacheControl(maxAge: 0, scope: PRIVATE)
  }
  type Mutation { touch: Int! }
  type Product @key(fields: "id") @cacheControl(maxAge: 30) { id: ID! title: String! }
`;
const RATINGS_SDL = `${LINK}${CACHE_CONTROL}
  type Product @key(fields: "id") @cacheControl(maxAge: 30) { id: ID! rating: Float }
`;
const PRODUCTS = [
  { id: 'p1', title: 'Kettle' },
  { id: 'p2', title: 'Teapot' },
  { id: 'p3', title: 'Mug' },
];
const RATINGS: Record<string, number> = { p1: 4.5, p2: 3, p3: 5 };
const PAGE = '{ products { id title rating } }';
const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** How the ratings subgraph misbehaves. */
type RatingsMode = 'ok' | 'slow' | 'http500' | 'http400' | 'html' | 'graphqlError';
const SLOW_MS = 1_000;

interface TestSubgraph {
  url: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** HTTP requests received so far. */
  requests: number;
  /** How long each request waits before it is answered (to hold fetches in flight). Defaults to 0. */
  delayMs: number;
  /** The x-caller header of the last request. */
  lastCaller: string | undefined;
  /** Whether the last request's x-signed-body header was the SHA-256 of the body received, and no internal header leaked. */
  lastSignatureMatched: boolean | undefined;
  /** Requests whose signature did not match their body (or that leaked an internal header). */
  unsignedRequests: number;
  mode: RatingsMode;
  stop(): Promise<void>;
}

interface SubgraphContext {
  subgraph: TestSubgraph;
  caller: string | undefined;
}

/** A real subgraph on Apollo Server + Express 5, with counters and a switchable failure mode. */
async function startSubgraph(sdl: string, resolvers: GraphQLResolverMap<unknown>, port = 0): Promise<TestSubgraph> {
  const stopping = new AbortController();
  const apollo = new ApolloServer<SubgraphContext>({
    schema: buildSubgraphSchema({ typeDefs: parse(sdl), resolvers }),
    logger: silent,
    plugins: [ApolloServerPluginInlineTraceDisabled()],
  });
  await apollo.start();
  const app = express();
  const httpServer = http.createServer(app);
  const subgraph: TestSubgraph = {
    url: '',
    port: 0,
    connections: 0,
    requests: 0,
    delayMs: 0,
    lastCaller: undefined,
    lastSignatureMatched: undefined,
    unsignedRequests: 0,
    mode: 'ok',
    stop: async () => {
      stopping.abort();
      await apollo.stop();
      // Kill keep-alive sockets too: a stopped subgraph must look dead to the gateway, not idle.
      httpServer.closeAllConnections();
      await new Promise<void>((resolve, reject) => httpServer.close((error) => (error ? reject(error) : resolve())));
    },
  };
  httpServer.on('connection', () => subgraph.connections++);
  app.use('/graphql', async (req, res, next) => {
    subgraph.requests++;
    subgraph.lastCaller = req.headers['x-caller'] as string | undefined;
    if (subgraph.mode === 'http500') {
      res.status(500).json({ errors: [{ message: 'connect ECONNREFUSED db.internal:5432' }] });
      return;
    }
    if (subgraph.mode === 'http400') {
      res.status(400).json({ errors: [{ message: 'Cannot query field "rating" (schema at db.internal)' }] });
      return;
    }
    if (subgraph.mode === 'html') {
      res.status(200).type('html').send('<html>proxy error at db.internal</html>');
      return;
    }
    if (subgraph.delayMs) await sleep(subgraph.delayMs);
    if (subgraph.mode === 'slow') {
      await sleep(SLOW_MS, undefined, { signal: stopping.signal }).catch(() => {});
      if (stopping.signal.aborted) return;
    }
    next();
  });
  const checkSignature = (req: http.IncomingMessage, _res: unknown, body: Buffer) => {
    const internalHeaders = Object.keys(req.headers).filter((name) => name.startsWith('x-storefront'));
    subgraph.lastSignatureMatched = internalHeaders.length === 0 && req.headers['x-signed-body'] === sha256(body);
    if (!subgraph.lastSignatureMatched) subgraph.unsignedRequests += 1;
  };
  app.use(
    '/graphql',
    express.json({ verify: checkSignature }),
    expressMiddleware(apollo, {
      context: async ({ req }) => ({ subgraph, caller: req.headers['x-caller'] as string | undefined }),
    }),
  );
  await new Promise<void>((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  subgraph.port = (httpServer.address() as AddressInfo).port;
  subgraph.url = `http://127.0.0.1:${subgraph.port}/graphql`;
  return subgraph;
}

const startProducts = () =>
  startSubgraph(PRODUCTS_SDL, {
    Query: {
      products: () => PRODUCTS,
      whoami: (_root: unknown, _args: unknown, context: unknown) => (context as SubgraphContext).caller ?? null,
    },
    Mutation: {
      touch: (_root: unknown, _args: unknown, context: unknown) => (context as SubgraphContext).subgraph.requests,
    },
    Product: { __resolveReference: (ref: { id: string }) => PRODUCTS.find((p) => p.id === ref.id) },
  });

const startRatings = (port?: number) =>
  startSubgraph(
    RATINGS_SDL,
    {
      Product: {
        __resolveReference: (ref: { id: string }) => ({ id: ref.id }),
        rating: (product: { id: string }, _args: unknown, context: unknown) => {
          if ((context as SubgraphContext).subgraph.mode === 'graphqlError') {
            throw new GraphQLError('Ratings are not shown for this product.', {
              extensions: { code: 'BAD_USER_INPUT' },
            });
          }
          return RATINGS[product.id];
        },
      },
    },
    port,
  );

interface LogEntry {
  level: 'info' | 'warn';
  msg?: string;
  [key: string]: unknown;
}

interface GatewayContext {
  caller?: string;
}

interface Stack {
  products: TestSubgraph;
  ratings: TestSubgraph;
  sources: Map<string, SubgraphDataSource<GatewayContext>>;
  logs: LogEntry[];
  /** The page (or `query`) as `caller`. Defaults to PAGE as user-42. */
  query(options?: {
    caller?: string;
    query?: string;
  }): Promise<{ status: number; ms: number; body: { data?: any; errors?: any[] } }>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Last started, first stopped: the gateway before the data sources, the data sources before the subgraphs.
  while (cleanups.length) await cleanups.pop()!();
});

/** Both subgraphs, composed, behind a gateway whose data sources are SubgraphDataSources. */
async function startStack(ratingsOptions: Partial<SubgraphDataSourceOptions<GatewayContext>> = {}): Promise<Stack> {
  const products = await startProducts();
  cleanups.push(() => products.stop());
  const ratings = await startRatings();
  // Through the holder, so a test that restarts ratings gets its replacement stopped.
  const stack = { products, ratings } as Stack;
  cleanups.push(() => stack.ratings.stop());

  const composition = composeServices([
    { name: 'products', url: products.url, typeDefs: parse(PRODUCTS_SDL) },
    { name: 'ratings', url: ratings.url, typeDefs: parse(RATINGS_SDL) },
  ]);
  if (composition.errors) throw new Error(composition.errors.map((e) => e.message).join('\n'));

  const logs: LogEntry[] = [];
  const captureLogger = {
    info: (obj: object, msg?: string) => logs.push({ level: 'info', ...obj, msg }),
    warn: (obj: object, msg?: string) => logs.push({ level: 'warn', ...obj, msg }),
  };
  const sources = new Map<string, SubgraphDataSource<GatewayContext>>();
  cleanups.push(async () => {
    for (const source of sources.values()) await source.dispose();
  });
  const gateway = new ApolloGateway({
    supergraphSdl: composition.supergraphSdl,
    logger: silent,
    buildService: ({ name, url }) => {
      const source = new SubgraphDataSource<GatewayContext>({
        name,
        url: url!,
        signRequest: {
          describe: (context) => context.caller ?? '',
          sign: async (caller, body) => ({ 'x-signed-body': sha256(body), ...(caller && { 'x-caller': caller }) }),
        },
        // products: a real pino Logger, to prove it fits the option; ratings: captured, to check the logs.
        logger: name === 'ratings' ? captureLogger : pino({ level: 'silent' }),
        ...(name === 'ratings' ? ratingsOptions : {}),
      });
      sources.set(name, source);
      return source;
    },
  });
  const server = new ApolloServer<GatewayContext>({
    gateway,
    logger: silent,
    includeStacktraceInErrorResponses: false,
  });
  const { url } = await startStandaloneServer(server, {
    listen: { port: 0, host: '127.0.0.1' },
    context: async ({ req }) => ({ caller: req.headers['x-caller'] as string | undefined }),
  });
  cleanups.push(() => server.stop());

  return Object.assign(stack, {
    sources,
    logs,
    async query({ caller = 'user-42', query = PAGE } = {}) {
      const started = performance.now();
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-caller': caller },
        body: JSON.stringify({ query }),
      });
      const body = (await response.json()) as { data?: any; errors?: any[] };
      return { status: response.status, ms: performance.now() - started, body };
    },
  });
}

/** The page rendered without ratings: every title, every rating null, one SUBGRAPH_UNAVAILABLE error. */
function expectPageWithoutRatings(result: Awaited<ReturnType<Stack['query']>>, reason: string) {
  expect(result.status).toBe(200);
  expect(result.body.data).toEqual({ products: PRODUCTS.map((p) => ({ ...p, rating: null })) });
  expect(result.body.errors).toEqual([
    {
      message: 'The ratings subgraph is unavailable.',
      extensions: { code: SUBGRAPH_UNAVAILABLE, subgraph: 'ratings', reason },
    },
  ]);
}

const FULL_PAGE = { products: PRODUCTS.map((p) => ({ ...p, rating: RATINGS[p.id] })) };
const BREAKER = { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 300 };

describe('SubgraphDataSource behind a real gateway', () => {
  it('returns both subgraphs’ data, signs each request for its exact body, and reuses one connection per subgraph', async () => {
    const stack = await startStack({ breaker: BREAKER });
    for (let i = 0; i < 5; i++) {
      const result = await stack.query();
      expect(result.status).toBe(200);
      expect(result.body).toEqual({ data: FULL_PAGE });
    }
    expect(stack.ratings.requests).toBe(5);
    expect(stack.ratings.connections).toBe(1);
    expect(stack.products.connections).toBe(1);
    expect(stack.ratings.lastCaller).toBe('user-42');
    expect(stack.ratings.lastSignatureMatched).toBe(true);
    expect([stack.ratings.unsignedRequests, stack.products.unsignedRequests]).toEqual([0, 0]);
    expect(stack.sources.get('ratings')!.breakerState()).toBe('closed');
  });

  it('answers without the ratings of a subgraph slower than timeoutMs, as soon as the timeout fires', async () => {
    const stack = await startStack({ timeoutMs: 200, breaker: BREAKER });
    stack.ratings.mode = 'slow';
    const result = await stack.query();
    expectPageWithoutRatings(result, 'timeout');
    // Functional, not a benchmark: the answer came at the timeout, not after the subgraph's 1 s sleep.
    expect(result.ms).toBeLessThan(900);
    expect(stack.logs).toContainEqual(
      expect.objectContaining({ level: 'warn', subgraph: 'ratings', reason: 'timeout' }),
    );
  });

  it('opens the breaker on a dead subgraph, fails fast without calling it, then probes and closes', async () => {
    const stack = await startStack({ breaker: BREAKER });
    const source = stack.sources.get('ratings')!;
    const { port } = stack.ratings;
    await stack.ratings.stop();

    // Below volumeThreshold the breaker stays closed whatever the failure rate.
    for (let i = 0; i < BREAKER.volumeThreshold - 1; i++) {
      expectPageWithoutRatings(await stack.query(), 'unreachable');
      expect(source.breakerState()).toBe('closed');
    }
    expectPageWithoutRatings(await stack.query(), 'unreachable');
    expect(source.breakerState()).toBe('open');
    expect(stack.logs).toContainEqual(
      expect.objectContaining({ level: 'warn', subgraph: 'ratings', msg: expect.stringMatching(/opened/) }),
    );

    // The subgraph is back, but the open breaker must not call it before resetTimeoutMs.
    stack.ratings = await startRatings(port);
    expect(source.breakerState()).toBe('open');
    expectPageWithoutRatings(await stack.query(), 'circuit_open');
    expect(stack.ratings.requests).toBe(0);

    await sleep(BREAKER.resetTimeoutMs + 100);
    expect(source.breakerState()).toBe('halfOpen');
    const probe = await stack.query();
    expect(probe.status).toBe(200);
    expect(probe.body).toEqual({ data: FULL_PAGE });
    expect(stack.ratings.requests).toBe(1);
    expect(source.breakerState()).toBe('closed');
    expect(stack.logs.map((entry) => entry.msg)).toEqual(
      expect.arrayContaining([expect.stringMatching(/half-open/), expect.stringMatching(/closed/)]),
    );
  });

  it('counts HTTP 500 as a failure (bad_status) and never shows the subgraph’s body', async () => {
    const stack = await startStack({ breaker: BREAKER });
    stack.ratings.mode = 'http500';
    for (let i = 0; i < BREAKER.volumeThreshold; i++) {
      const result = await stack.query();
      expectPageWithoutRatings(result, 'bad_status');
      expect(JSON.stringify(result.body)).not.toMatch(/internal|127\.0\.0\.1|5432/);
    }
    expect(stack.sources.get('ratings')!.breakerState()).toBe('open');
    expect(stack.logs).toContainEqual(
      expect.objectContaining({ subgraph: 'ratings', reason: 'bad_status', status: 500 }),
    );
  });

  it('does not count GraphQL errors in a 200 answer as breaker failures', async () => {
    const stack = await startStack({ breaker: BREAKER });
    stack.ratings.mode = 'graphqlError';
    for (let i = 0; i < 4 * BREAKER.volumeThreshold; i++) {
      const result = await stack.query();
      expect(result.status).toBe(200);
      expect(result.body.data).toEqual({ products: PRODUCTS.map((p) => ({ ...p, rating: null })) });
      const codes = result.body.errors!.map((error) => error.extensions.code);
      expect(codes.length).toBeGreaterThan(0);
      expect(new Set(codes)).toEqual(new Set(['BAD_USER_INPUT']));
    }
    expect(stack.sources.get('ratings')!.breakerState()).toBe('closed');
  });

  it('reports a 4xx (bad_status) or a non-JSON 200 (bad_response) without opening the breaker', async () => {
    const stack = await startStack({ breaker: BREAKER });
    for (const [mode, reason] of [
      ['http400', 'bad_status'],
      ['html', 'bad_response'],
    ] as const) {
      stack.ratings.mode = mode;
      for (let i = 0; i < 2 * BREAKER.volumeThreshold; i++) {
        const result = await stack.query();
        expectPageWithoutRatings(result, reason);
        expect(JSON.stringify(result.body)).not.toMatch(/internal|127\.0\.0\.1/);
      }
    }
    // A 4xx is this request's problem and a bad body is not an outage: neither may cut the subgraph off.
    expect(stack.sources.get('ratings')!.breakerState()).toBe('closed');
  });
});

describe('shared in-flight fetches', () => {
  it('N identical concurrent pages, whoever asks, cost one fetch per subgraph when the answers are public', async () => {
    const stack = await startStack();
    stack.products.delayMs = stack.ratings.delayMs = 150;
    const pages = await Promise.all(Array.from({ length: 10 }, (_, i) => stack.query({ caller: `user-${i}` })));
    for (const page of pages) expect(page.body).toEqual({ data: FULL_PAGE });
    expect(stack.products.requests).toBe(1);
    expect(stack.ratings.requests).toBe(1);
    // Each request is its own again once nothing is in flight.
    await stack.query();
    expect(stack.products.requests).toBe(2);
  });

  it('shares nothing with shareFetches: false (SHARE_SUBGRAPH_FETCHES=off)', async () => {
    const stack = await startStack({ shareFetches: false });
    stack.products.delayMs = stack.ratings.delayMs = 150;
    const pages = await Promise.all(Array.from({ length: 5 }, (_, i) => stack.query({ caller: `user-${i}` })));
    for (const page of pages) expect(page.body).toEqual({ data: FULL_PAGE });
    expect(stack.products.requests).toBe(1);
    expect(stack.ratings.requests).toBe(5);
  });

  it("never shares a caller's private answer with another caller, and shares it with the same caller", async () => {
    const stack = await startStack();
    stack.products.delayMs = 150;
    const asks = ['alice', 'bob', 'alice', 'bob', 'alice'].map((caller) => ({ caller, query: '{ whoami }' }));
    const answers = await Promise.all(asks.map((ask) => stack.query(ask)));
    expect(answers.map((answer) => answer.body.data.whoami)).toEqual(asks.map((ask) => ask.caller));
    // One call each for alice and bob: bob never joined alice's (no-store, PRIVATE) call.
    expect(stack.products.requests).toBe(2);
  });

  it('never shares a mutation, and no query joins a fetch sent before a write it follows', async () => {
    const stack = await startStack();
    const touches = await Promise.all(Array.from({ length: 4 }, () => stack.query({ query: 'mutation { touch }' })));
    expect(new Set(touches.map((touch) => touch.body.data.touch)).size).toBe(4);
    expect(stack.products.requests).toBe(4);

    stack.products.delayMs = 300;
    const before = stack.query({ query: '{ products { id title } }' });
    while (stack.products.requests < 5) await sleep(10);
    stack.products.delayMs = 0;
    await stack.query({ query: 'mutation { touch }' });
    // Sent after the write returned: a call of its own, though an identical one is still in flight.
    const after = await stack.query({ query: '{ products { id title } }' });
    expect(after.body.data.products).toHaveLength(3);
    expect(stack.products.requests).toBe(7);
    expect((await before).body.data.products).toHaveLength(3);
  });
});
