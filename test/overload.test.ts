/**
 * Under overload and faults the gateway refuses fast and never waits long: admission (a trickled body
 * holds no slot; a full gateway answers 503 at once), the request deadline carried into subgraph calls,
 * a breaker closed as soon as its subgraph is back, a /readyz that says what the gateway can serve, and a
 * hung Redis that costs one bounded wait and then nothing.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { RunningGateway } from '../gateway/server';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { useHarness } from './harness';
import { describeWithRedis } from './redis-available';
import { pausableRedis } from './redis-fakes';
import { slowProxy, until } from './service';

const suite = useHarness();
const SHOWCASE = '{ products(first: 3) { edges { node { id title averageRating } } } }';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});
async function gatewayWith(overrides: Parameters<typeof suite.harness.startGateway>[0]): Promise<RunningGateway> {
  const gateway = await suite.harness.startGateway(overrides);
  cleanups.push(() => gateway.stop());
  return gateway;
}
const urls = () => ({
  accounts: suite.harness.subgraphs.accounts.url,
  catalog: suite.harness.subgraphs.catalog.url,
  reviews: suite.harness.subgraphs.reviews.url,
});
async function post(url: string, query: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as { data?: any; errors?: Array<{ extensions?: any }> },
  };
}

describe('admission', () => {
  it('gives no slot to a request still sending its body, and refuses at once with 503 when every slot is busy', async () => {
    const proxy = await slowProxy(() => suite.harness.subgraphs.reviews.url, 800);
    cleanups.push(proxy.close);
    const gateway = await gatewayWith({
      admission: { maxInFlight: 1, maxQueueMs: 50, targetLatencyMs: 60_000, maxEventLoopDelayMs: 10_000 },
      subgraphUrls: { ...urls(), reviews: proxy.url },
    });
    const { port } = new URL(gateway.url);
    // Twenty connections that send their headers and then trickle nothing more of their bodies.
    const stalled = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const socket = net.connect(Number(port), '127.0.0.1');
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(
          'POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
        );
        return socket;
      }),
    );
    cleanups.push(async () => stalled.forEach((socket) => socket.destroy()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(gateway.admission()).toMatchObject({ inFlight: 0, queued: 0 });
    expect((await post(gateway.url, '{ __typename }')).status).toBe(200);

    // The only slot held by a page waiting on slow reviews: another request waits 50 ms, then 503.
    const held = post(gateway.url, SHOWCASE);
    await until(() => gateway.admission().inFlight === 1);
    const started = Date.now();
    const shed = await post(gateway.url, '{ __typename }');
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toBe('1');
    expect(shed.body.errors?.[0]?.extensions).toEqual({ code: 'OVERLOADED' });
    expect(Date.now() - started).toBeLessThan(700);
    expect((await held).status).toBe(200);
    expect((await post(gateway.url, '{ __typename }')).status).toBe(200);
  });
});

describe('the request deadline', () => {
  it('gives each subgraph call what is left of it, answers by it with partial data, and does not open the breaker', async () => {
    const proxy = await slowProxy(() => suite.harness.subgraphs.reviews.url, 1_500);
    cleanups.push(proxy.close);
    const gateway = await gatewayWith({
      deadlineMs: 600,
      breaker: { volumeThreshold: 3 },
      subgraphUrls: { ...urls(), reviews: proxy.url },
    });
    for (let i = 0; i < 4; i += 1) {
      const started = Date.now();
      const { status, body } = await post(gateway.url, SHOWCASE);
      // Reviews (1.5 s late, 5 s timeout) got what was left of 600 ms; the answer did not wait for it.
      expect(Date.now() - started).toBeLessThan(1_400);
      expect(status).toBe(200);
      expect(body.data.products.edges).toHaveLength(3);
      expect(body.errors?.map((error) => error.extensions)).toEqual([
        { code: 'SUBGRAPH_UNAVAILABLE', subgraph: 'reviews', reason: 'deadline' },
      ]);
    }
    // Calls cut short by the caller's deadline say nothing about the subgraph: its breaker stays closed.
    expect(gateway.breakerStates().reviews).toBe('closed');
  });
});

describe('recovery and readiness', () => {
  it('closes a breaker within about a second of its subgraph being back, not after the reset timeout', async () => {
    const gateway = await gatewayWith({ breaker: { volumeThreshold: 3, resetTimeoutMs: 30_000 } });
    await suite.harness.stopSubgraph('reviews');
    try {
      for (let i = 0; i < 3; i += 1) await post(gateway.url, SHOWCASE);
      expect(gateway.breakerStates().reviews).toBe('open');
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      await suite.harness.restartSubgraph('reviews');
    }
    const back = Date.now();
    await until(() => gateway.breakerStates().reviews === 'closed', 5_000);
    expect(Date.now() - back).toBeLessThan(1_500);
    const { body } = await post(gateway.url, SHOWCASE);
    expect(body.errors).toBeUndefined();
  });

  it('is ready while it can serve its pages: 503 without catalog, 200 (naming it) without reviews', async () => {
    const gateway = await gatewayWith({ readinessSubgraphs: ['catalog'] });
    const readyz = async () => {
      const response = await fetch(gateway.url.replace('/graphql', '/readyz'));
      return {
        status: response.status,
        body: (await response.json()) as { status: string; subgraphs: Record<string, string> },
      };
    };
    // The first round of checks (each subgraph is 'unknown' until its first answer).
    await until(async () => !Object.values((await readyz()).body.subgraphs).includes('unknown'));
    expect((await readyz()).body).toEqual({
      status: 'ready',
      subgraphs: { accounts: 'ready', catalog: 'ready', reviews: 'ready', jobs: 'ready' },
    });

    await suite.harness.stopSubgraph('reviews');
    try {
      await until(async () => (await readyz()).body.subgraphs.reviews === 'unreachable', 3_000);
      expect((await readyz()).status).toBe(200);
    } finally {
      await suite.harness.restartSubgraph('reviews');
    }
    await suite.harness.stopSubgraph('catalog');
    try {
      await until(async () => (await readyz()).status === 503, 3_000);
      expect((await readyz()).body).toMatchObject({
        status: 'unavailable',
        subgraphs: { catalog: 'unreachable', reviews: 'ready' },
      });
    } finally {
      await suite.harness.restartSubgraph('catalog');
    }
    await until(async () => (await readyz()).status === 200, 3_000);
  });
});

describeWithRedis('a hung Redis', () => {
  it('costs a request at most one bounded wait, then none, serves on local counters and flips the degraded gauge', async () => {
    const proxy = await pausableRedis(
      Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379),
    );
    cleanups.push(proxy.close);
    const redis = connectRedis(proxy.url, createLogger('test', 'silent'));
    cleanups.push(redis.close);
    expect(await redis.ready()).toBe(true);
    const gateway = await gatewayWith({
      redis,
      redisNamespace: `hung-${randomUUID()}`,
      budget: { points: 1_000, windowSeconds: 60 },
    });
    const authorization = `Bearer ${await suite.harness.tokenFor(randomUUID())}`;
    const timed = async () => {
      const started = performance.now();
      const response = await fetch(gateway.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      await response.arrayBuffer();
      return {
        status: response.status,
        ms: performance.now() - started,
        remaining: Number(response.headers.get('x-ratelimit-remaining')),
      };
    };
    const degraded = async () => {
      const text = await (await fetch(gateway.url.replace('/graphql', '/metrics'))).text();
      return /^rate_limit_store_degraded\{[^}]*\} 1$/m.test(text);
    };
    expect((await timed()).status).toBe(200);
    expect(await degraded()).toBe(false);

    proxy.hang();
    const first = await timed();
    const next = [];
    for (let i = 0; i < 10; i += 1) next.push(await timed());
    expect([first, ...next].map((answer) => answer.status)).toEqual(Array(11).fill(200));
    // One wait of about the guard's timeout (100 ms) for the first, none after it: the budget goes on,
    // counted locally, one point a request.
    expect(next.reduce((total, answer) => total + answer.ms, 0)).toBeLessThan(10 * 100);
    expect(next.at(-1)!.remaining).toBe(next[0]!.remaining - 9);
    expect(await degraded()).toBe(true);

    proxy.resume();
    await until(async () => !(await degraded()), 5_000);
  });
});
