/**
 * The service on a real Redis Cluster (test/redis-cluster.ts starts them here): two gateways share one budget
 * and one response cache, and a write through one is seen at once through the other; a killed master degrades
 * the service as a Redis outage does (local counters, the caches skipped, every request answered) until it is
 * back (restarted empty) or, with replicas, until its replica has taken over.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DeprecationUsage } from '../gateway/deprecation-usage';
import type { RunningGateway } from '../gateway/server';
import { EntityCache } from '../lib/entity-cache';
import { isCluster, connectRedis, type RedisConnection } from '../lib/redis';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { freePort } from './databases';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness, type GraphQLResponse } from './harness';
import { redisClusterUnavailable, startRedisCluster, type LocalRedisCluster } from './redis-cluster';
import { until } from './service';

const unavailable = redisClusterUnavailable();
if (unavailable) console.warn(`test/redis-cluster.test.ts is skipped: no Redis Cluster can run here (${unavailable}).`);
const describeWithCluster = unavailable ? describe.skip : describe;

const dataset = generateDataset(FIXTURE_SCALE);
const PRODUCT = 'query ($id: ID!) { product(id: $id) { id title reviewCount } }';
const RENAME = 'mutation ($id: ID!, $title: String!) { updateProduct(id: $id, input: { title: $title }) { title } }';
const writer = { as: dataset.users[0]!.id, scopes: ['catalog:write'] };
const none = { accounts: 0, catalog: 0, reviews: 0, jobs: 0 };
const BUDGET = { points: 1_000, windowSeconds: 60 };

// The whole stack runs on the first cluster: the subgraphs' entity cache and every gateway's budgets, response
// cache and persisted queries (REDIS_CLUSTER_NODES, as a deployment sets it).
let main: LocalRedisCluster | undefined;
const env: NodeJS.ProcessEnv = { RESPONSE_CACHE: 'on' };
beforeAll(async () => {
  if (unavailable) return;
  main = await startRedisCluster();
  env.REDIS_CLUSTER_NODES = main.nodes;
}, 60_000);
const suite = useHarness({ env });
afterAll(() => main?.stop());

/** What every test started (connections, gateways, clusters), stopped after it, last first, even when it failed. */
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A logger whose lines the test reads back. */
function capturedLogger() {
  const lines: Array<{ msg: string }> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (chunk, _encoding, done) => done(void lines.push(JSON.parse(String(chunk)))) }),
  );
  const count = (prefix: string) => lines.filter((line) => line.msg.startsWith(prefix)).length;
  return { logger, outages: () => count('Redis unavailable'), recoveries: () => count('Redis is back') };
}

/** A guarded connection to `url` (a cluster's), ready. */
async function connect(url: string, logger = pino({ level: 'silent' })): Promise<RedisConnection> {
  const connection = connectRedis(url, logger);
  cleanups.push(connection.close);
  expect(await connection.ready(5_000)).toBe(true);
  expect(isCluster(connection.client)).toBe(true);
  return connection;
}

/** A gateway over the harness's subgraphs whose budgets, response cache and persisted queries use `redis`. */
async function gatewayOn(redis: RedisConnection): Promise<RunningGateway> {
  const gateway = await suite.harness.startGateway({ redis, budget: BUDGET });
  cleanups.push(gateway.stop);
  return gateway;
}

/** Every answer a test got, to check that none was a server error, whatever Redis was doing. */
const answers: GraphQLResponse[] = [];
async function ask(
  gateway: RunningGateway,
  query: string,
  variables: Record<string, unknown>,
  options: { as?: string; scopes?: string[] } = {},
): Promise<GraphQLResponse> {
  const answer = await suite.harness.query(query, variables, { ...options, url: gateway.url });
  answers.push(answer);
  return answer;
}
afterEach(() => {
  const failed = answers
    .splice(0)
    .filter(
      (answer) =>
        answer.status >= 500 || answer.errors?.some((error) => error.extensions?.code === 'INTERNAL_SERVER_ERROR'),
    );
  expect(failed).toEqual([]);
});

/** What a storefront page costs `user` on `gateway`, and the budget it has left (X-RateLimit-Remaining). */
async function spend(gateway: RunningGateway, user: string) {
  const answer = await ask(gateway, STOREFRONT_PAGE, { first: 20 }, { as: user });
  return {
    status: answer.status,
    cost: answer.extensions?.cost?.requested as number,
    remaining: Number(answer.headers.get('x-ratelimit-remaining')),
    code: answer.errors?.[0]?.extensions?.code as string | undefined,
  };
}

/** Whether `gateway`'s /metrics says its rate-limit store is degraded. */
async function storeDegraded(gateway: RunningGateway): Promise<boolean> {
  const text = await (await fetch(gateway.url.replace('/graphql', '/metrics'))).text();
  return /^rate_limit_store_degraded(\{[^}]*\})? 1$/m.test(text);
}

/** The key of the response cache's epoch: the master holding it holds every version (one hash tag). */
const epochKey = (namespace: string) => `${namespace}:{${namespace}:responses}:epoch`;

describeWithCluster('on a Redis Cluster of three masters', () => {
  it('two gateways share one budget: a client that spends it on one is refused by the other too', async () => {
    const [a, b] = [
      await gatewayOn(await connect(suite.harness.config.REDIS_URL!)),
      await gatewayOn(await connect(suite.harness.config.REDIS_URL!)),
    ];
    const user = randomUUID();
    const first = await spend(a!, user);
    expect(first.status).toBe(200);
    expect(2 * first.cost).toBeLessThanOrEqual(BUDGET.points);
    expect(3 * first.cost).toBeGreaterThan(BUDGET.points);
    expect(first.remaining).toBe(BUDGET.points - first.cost);
    expect(await spend(b!, user)).toMatchObject({ status: 200, remaining: BUDGET.points - 2 * first.cost });
    for (const gateway of [a!, b!])
      expect(await spend(gateway, user)).toMatchObject({
        status: 429,
        code: 'RATE_LIMITED',
        remaining: BUDGET.points - 2 * first.cost,
      });
    // Another client still has its whole budget.
    expect((await spend(b!, randomUUID())).remaining).toBe(BUDGET.points - first.cost);
  });

  it('a write through one gateway is seen at once through the other, which had the old answer in memory', async () => {
    const { harness } = suite;
    const other = await gatewayOn(await connect(harness.config.REDIS_URL!));
    const product = dataset.products[20]!;
    for (const gateway of [harness.gateway, other])
      expect((await ask(gateway, PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
    harness.sql.reset();
    await ask(other, PRODUCT, { id: product.id });
    expect(harness.sql.counts()).toEqual(none);

    const renamed = await ask(harness.gateway, RENAME, { id: product.id, title: 'Renamed through A' }, writer);
    expect(renamed.errors).toBeUndefined();
    expect((await ask(other, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed through A');

    // A review written through the other changes the product as seen through the first (more tags in one bump).
    const before = (await ask(harness.gateway, PRODUCT, { id: product.id })).data!.product;
    const created = await ask(
      other,
      'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
      { input: { productId: product.id, rating: 4, body: 'Seen at once, on a cluster.' } },
      { as: dataset.users[4]!.id },
    );
    expect(created.errors).toBeUndefined();
    expect((await ask(harness.gateway, PRODUCT, { id: product.id })).data!.product.reviewCount).toBe(
      before.reviewCount + 1,
    );

    // The keys spread over the masters (entities, entries, budgets), but the versions share one slot.
    const namespace = harness.namespace;
    const spread = await main!.keysPerMaster(`${namespace}:*`);
    expect([...spread.values()].filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);
    const versions = await main!.keysPerMaster(`${namespace}:{${namespace}:responses}:*`);
    expect([...versions.values()].filter((count) => count > 0)).toHaveLength(1);
  });

  it('persisted queries, deprecation usage and the entity cache work across slots and masters', async () => {
    const url = suite.harness.config.REDIS_URL!;
    const [redisA, redisB] = [await connect(url), await connect(url)];
    const [a, b] = [await gatewayOn(redisA), await gatewayOn(redisB)];
    // A query registered through one gateway is known to the other.
    const query = `{ __typename }\n# ${randomUUID()}`;
    const persistedQuery = { version: 1, sha256Hash: createHash('sha256').update(query).digest('hex') };
    const post = async (gateway: RunningGateway, body: unknown) => {
      const response = await fetch(gateway.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = { status: response.status, headers: response.headers, ...((await response.json()) as object) };
      answers.push(answer);
      return answer as GraphQLResponse;
    };
    expect((await post(a, { query, extensions: { persistedQuery } })).status).toBe(200);
    await until(async () => (await post(b, { extensions: { persistedQuery } })).data?.__typename === 'Query', 5_000);

    // Uses of several deprecated elements, counted by two gateways: their keys are in different slots.
    const namespace = `usage-${randomUUID()}`;
    const coordinates = ['Query.oldProducts', 'Product.legacyPrice', 'Review.stars', 'User.nickname'];
    await new DeprecationUsage(namespace, redisA).record(coordinates, 'web@1');
    await new DeprecationUsage(namespace, redisB).record(coordinates, 'web@1');
    const usage = await new DeprecationUsage(namespace, redisA).report(coordinates);
    expect(usage.map(({ coordinate, count }) => [coordinate, count])).toEqual(
      [...coordinates].sort().map((coordinate) => [coordinate, 2]),
    );

    // The entity cache's batches (Keyv's MGET and MULTI by slot), its invalidations, and clear() on every master.
    const cacheNamespace = `entities-${randomUUID()}`;
    const cache = new EntityCache({
      namespace: cacheNamespace,
      redisUrl: url,
      timeoutMs: 1_000,
      logger: pino({ level: 'silent' }),
    });
    cleanups.push(() => cache.close());
    expect(await cache.ready(5_000)).toBe(true);
    const products = cache.type<{ id: string }>({ subgraph: 'catalog', name: 'Product', version: 1 });
    const ids = Array.from({ length: 30 }, (_, index) => `product-${index}`);
    const loaded: string[][] = [];
    const load = (missing: string[]) => {
      loaded.push(missing);
      return Promise.resolve(new Map(missing.map((id) => [id, { id }])));
    };
    expect(await products.load(ids, load)).toEqual(ids.map((id) => ({ id })));
    expect(await products.load(ids, load)).toEqual(ids.map((id) => ({ id })));
    await products.invalidate(ids.slice(0, 5));
    await products.load(ids, load);
    expect(loaded).toEqual([ids, ids.slice(0, 5)]);
    expect(cache.counters.errors).toBe(0);
    const spread = await main!.keysPerMaster(`${cacheNamespace}:*`);
    expect([...spread.values()].filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);
    await cache.clear();
    expect([...(await main!.keysPerMaster(`${cacheNamespace}:*`)).values()]).toEqual([0, 0, 0]);
  });

  it('a killed master: every request is answered on local counters without the caches, and all is shared again once it is back', async () => {
    const { harness } = suite;
    const log = capturedLogger();
    const [redisA, redisB] = [
      await connect(harness.config.REDIS_URL!, log.logger),
      await connect(harness.config.REDIS_URL!),
    ];
    const [a, b] = [await gatewayOn(redisA), await gatewayOn(redisB)];
    const product = dataset.products[30]!;
    // Writes to another product move the epoch on, as in any deployment that has seen some.
    for (const title of ['Moved on', 'Moved on again'])
      expect((await ask(a!, RENAME, { id: dataset.products[32]!.id, title }, writer)).errors).toBeUndefined();
    // Both gateways hold the product's answer (in memory, and in the cluster).
    for (const gateway of [a!, b!])
      expect((await ask(gateway, PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
    expect(await storeDegraded(a!)).toBe(false);

    // The master holding the response cache's versions dies, with all it held.
    const port = await main!.masterOf(epochKey(harness.namespace));
    await main!.kill(port);
    await until(() => redisA.degraded && redisB.degraded, 5_000);

    // Budgets: each gateway counts on its own, from a full budget.
    const user = randomUUID();
    const onA = await spend(a!, user);
    expect(onA).toMatchObject({ status: 200, remaining: BUDGET.points - onA.cost });
    expect(await spend(b!, user)).toMatchObject({ status: 200, remaining: BUDGET.points - onA.cost });
    expect(await storeDegraded(a!)).toBe(true);
    // Caches: every read runs (no response cache, no entity cache), and a write goes through.
    for (let i = 0; i < 2; i += 1) {
      harness.sql.reset();
      expect((await ask(b!, PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
      expect(harness.sql.counts().catalog).toBeGreaterThan(0);
    }
    const renamed = await ask(a!, RENAME, { id: product.id, title: 'Renamed during the outage' }, writer);
    expect(renamed.errors).toBeUndefined();
    expect((await ask(b!, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed during the outage');
    expect(log.outages()).toBe(1);

    // The master is back, empty: both gateways use the cluster again, without a restart of their own.
    await main!.restart(port);
    await main!.waitUntilHealthy();
    await until(() => !redisA.degraded && !redisB.degraded, 15_000);
    expect(log.recoveries()).toBe(1);
    expect(await storeDegraded(a!)).toBe(false);
    // Neither serves the answer it held from before the outage (its versions were lost with the master).
    for (const gateway of [b!, a!])
      expect((await ask(gateway, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed during the outage');
    // One budget again.
    const later = randomUUID();
    const again = await spend(a!, later);
    expect(await spend(b!, later)).toMatchObject({ status: 200, remaining: BUDGET.points - 2 * again.cost });
    // The response cache answers again, and a write through one gateway is seen through the other.
    harness.sql.reset();
    await ask(a!, PRODUCT, { id: product.id });
    expect(harness.sql.counts()).toEqual(none);
    await ask(b!, RENAME, { id: product.id, title: 'Renamed after the outage' }, writer);
    expect((await ask(a!, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed after the outage');
  }, 60_000);
});

describeWithCluster('a guarded connection to a Redis Cluster', () => {
  it('falls back at once while no seed node answers, logs it once, and connects when the cluster appears', async () => {
    const seeds = [await freePort(), await freePort()];
    const log = capturedLogger();
    const redis = connectRedis(`redis+cluster://127.0.0.1:${seeds[0]},127.0.0.1:${seeds[1]}`, log.logger);
    cleanups.push(redis.close);
    const guard = redis.guard('unit test', 'the test falls back');
    await until(() => redis.degraded, 2_000);
    const started = Date.now();
    expect(await guard.attempt((client) => client.set('{probe}:a', '1'))).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(50);

    const late = await startRedisCluster({ ports: seeds });
    cleanups.push(late.stop);
    await until(() => !redis.degraded, 10_000);
    expect([log.outages(), log.recoveries()]).toEqual([1, 1]);
    // Keys of every slot, each on its master; the keys of one MULTI share a hash tag.
    const keys = Array.from({ length: 20 }, (_, index) => `key-${index}`);
    expect(await guard.attempt((client) => Promise.all(keys.map((key) => client.set(key, key))))).toHaveLength(20);
    expect(await guard.attempt((client) => client.multi().set('{tx}:a', '1').incr('{tx}:b').exec())).toEqual(['OK', 1]);
    expect([...(await late.keysPerMaster('key-*')).values()].filter((count) => count > 0).length).toBe(3);
  });
});

describeWithCluster('on a Redis Cluster of three masters with a replica each', () => {
  it('a killed master is replaced by its replica: the gateways use the cluster again without it', async () => {
    const replicated = await startRedisCluster({ replicasPerMaster: 1 });
    cleanups.push(replicated.stop);
    const url = `redis+cluster://${replicated.nodes}`;
    const log = capturedLogger();
    const [redisA, redisB] = [await connect(url, log.logger), await connect(url)];
    const [a, b] = [await gatewayOn(redisA), await gatewayOn(redisB)];
    const product = dataset.products[31]!;
    for (const gateway of [a!, b!])
      expect((await ask(gateway, PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);

    const port = await replicated.masterOf(epochKey(suite.harness.namespace));
    await replicated.kill(port);
    await until(() => redisA.degraded && redisB.degraded, 5_000);
    const user = randomUUID();
    const onA = await spend(a!, user);
    expect(await spend(b!, user)).toMatchObject({ status: 200, remaining: BUDGET.points - onA.cost });

    // Its replica takes over (cluster-node-timeout is 1 s here): both connections find it, and are back.
    await until(() => !redisA.degraded && !redisB.degraded, 20_000);
    expect([log.outages(), log.recoveries()]).toEqual([1, 1]);
    for (const redis of [redisA, redisB])
      expect(isCluster(redis.client) && redis.client.masters.map((master) => master.port)).not.toContain(port);
    const later = randomUUID();
    const again = await spend(a!, later);
    expect(await spend(b!, later)).toMatchObject({ status: 200, remaining: BUDGET.points - 2 * again.cost });
    await ask(b!, RENAME, { id: product.id, title: 'Renamed after the failover' }, writer);
    expect((await ask(a!, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed after the failover');
    suite.harness.sql.reset();
    expect((await ask(a!, PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed after the failover');
    expect(suite.harness.sql.counts()).toEqual(none);
  }, 60_000);
});
