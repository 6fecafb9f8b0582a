/**
 * ResponseCache's rules on their own: in memory (one gateway), what is served, what is dropped, what is
 * never stored; with the real Redis, a write whose bump Redis could not take.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { connectRedis, type RedisConnection } from '../lib/redis';
import { describeWithRedis } from '../test/redis-available';
import { pausableRedis, type PausableRedis } from '../test/redis-fakes';
import { ResponseCache, stringifyResult } from './response-cache';

const REDIS_PORT = Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379);

const answer = (tags: string[], data: Record<string, unknown> = { product: { id: '1' } }, maxAgeSeconds = 60) => ({
  data,
  tags,
  maxAgeSeconds,
});

async function missEpoch(cache: ResponseCache, key: string): Promise<number> {
  const found = await cache.lookup(key);
  if (found === 'bypass' || 'hit' in found) throw new Error(`expected a miss for ${key}`);
  return found.miss;
}

describe('ResponseCache', () => {
  it('serves a stored answer until a write changes an entity it holds, and only then', async () => {
    const cache = new ResponseCache();
    await cache.fill('page', answer(['Product:1', 'Product']), await missEpoch(cache, 'page'));
    const hit = await cache.lookup('page');
    expect(hit).toMatchObject({ hit: { data: { product: { id: '1' } } } });
    // Served frozen: no request can change what the next one gets.
    expect(Object.isFrozen((hit as unknown as { hit: { data: { product: object } } }).hit.data.product)).toBe(true);

    await cache.bump(['Product:2', 'User:9']);
    expect(await cache.lookup('page')).toHaveProperty('hit');
    await cache.bump(['Product:1']);
    expect(await cache.lookup('page')).toEqual({ miss: expect.any(Number), stale: true });
    expect(await cache.lookup('page')).toEqual({ miss: expect.any(Number), stale: false });
  });

  it('does not store an answer computed while a write changed what it holds (a racing fill)', async () => {
    const cache = new ResponseCache();
    const epoch = await missEpoch(cache, 'page');
    // The write lands while the page is being computed from the old rows.
    await cache.bump(['Product:1']);
    expect(await cache.fill('page', answer(['Product:1']), epoch)).toBeUndefined();
    expect(await cache.lookup('page')).toEqual({ miss: expect.any(Number), stale: false });
    // A write to something else meanwhile does not stop it.
    const again = await missEpoch(cache, 'page');
    await cache.bump(['Product:2']);
    expect(await cache.fill('page', answer(['Product:1']), again)).toBeDefined();
    expect(await cache.lookup('page')).toHaveProperty('hit');
  });

  it('keeps an answer no longer than its max-age (capped by maxTtlSeconds), and a max-age of 0 not at all', async () => {
    jest.useFakeTimers({ now: Date.parse('2026-11-24T00:00:00Z') });
    try {
      const cache = new ResponseCache({ maxTtlSeconds: 20 });
      await cache.fill('short', answer(['A'], {}, 30), await missEpoch(cache, 'short'));
      expect(await cache.fill('never', answer(['A'], {}, 0), await missEpoch(cache, 'never'))).toBeUndefined();
      jest.advanceTimersByTime(19_000);
      expect(await cache.lookup('short')).toHaveProperty('hit');
      jest.advanceTimersByTime(2_000);
      expect(await cache.lookup('short')).toEqual({ miss: expect.any(Number), stale: false });
    } finally {
      jest.useRealTimers();
    }
  });

  it('holds at most maxBytes in memory, dropping the least recently used', async () => {
    const big = { text: 'x'.repeat(10_000) };
    const cache = new ResponseCache({ maxBytes: 50_000 });
    for (const key of ['a', 'b']) await cache.fill(key, answer(['T'], big), await missEpoch(cache, key));
    await cache.lookup('a');
    await cache.fill('c', answer(['T'], big), await missEpoch(cache, 'c'));
    expect(await cache.lookup('a')).toHaveProperty('hit');
    expect(await cache.lookup('c')).toHaveProperty('hit');
    expect(await cache.lookup('b')).toEqual({ miss: expect.any(Number), stale: false });
  });
});

describe('stringifyResult', () => {
  it("sends a hit's data as the JSON made when it was stored: the same text as Apollo's, without serialising it again", async () => {
    const cache = new ResponseCache();
    const data = { products: [{ id: '1', title: 'Kettle "Mk II"', price: 1999, tags: ['a', null] }] };
    await cache.fill('page', answer(['Product:1'], data), await missEpoch(cache, 'page'));
    const found = await cache.lookup('page');
    const hit = (found as { hit: { data: Record<string, unknown> } }).hit.data;
    const extensions = { cost: { requested: 7, remaining: 93 } };
    const stringify = jest.spyOn(JSON, 'stringify');
    const text = stringifyResult({ errors: undefined, data: hit, extensions });
    expect(stringify.mock.calls.some(([value]) => value === hit || (value as { data?: unknown })?.data === hit)).toBe(
      false,
    );
    stringify.mockRestore();
    expect(text).toBe(`${JSON.stringify({ data, extensions })}\n`);
    // Anything else is Apollo's default, byte for byte.
    const other = { errors: [{ message: 'x' }], data: { a: 1 }, extensions: undefined };
    expect(stringifyResult(other)).toBe(`${JSON.stringify(other)}\n`);
  });
});

describeWithRedis('ResponseCache on Redis', () => {
  const opened: RedisConnection[] = [];
  const proxies: PausableRedis[] = [];
  afterAll(async () => {
    for (const connection of opened) await connection.close();
    for (const proxy of proxies) await proxy.close();
  });
  const connect = async (url: string) => {
    const connection = connectRedis(url, pino({ level: 'silent' }), { timeoutMs: 500 });
    opened.push(connection);
    expect(await connection.ready()).toBe(true);
    return connection;
  };

  it('a bump Redis could not take: that gateway serves nothing until Redis is back, then every answer stored before is stale', async () => {
    const namespace = `response-cache-test-${randomUUID()}`;
    let proxy = await pausableRedis(REDIS_PORT);
    proxies.push(proxy);
    const writer = new ResponseCache({ redis: await connect(proxy.url), namespace });
    const reader = new ResponseCache({ redis: await connect(`redis://127.0.0.1:${REDIS_PORT}`), namespace });
    await reader.fill('page', answer(['Product:1']), await missEpoch(reader, 'page'));
    expect(await writer.lookup('page')).toHaveProperty('hit');

    // The writer loses Redis: its write's bump is lost, and it answers from no cache meanwhile.
    const port = proxy.port;
    await proxy.close();
    expect(await writer.bump(['Product:1'])).toBe(false);
    expect(await writer.lookup('page')).toBe('bypass');

    // Redis is back (the same address): the writer's first act is to make everything stored before stale.
    proxy = await pausableRedis(REDIS_PORT, port);
    proxies.push(proxy);
    const deadline = Date.now() + 10_000;
    let found = await reader.lookup('page');
    while ('hit' in (found as object) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      found = await reader.lookup('page');
    }
    expect(found).toEqual({ miss: expect.any(Number), stale: true });
    // And the cache works again for both, from then on.
    await reader.fill('page', answer(['Product:1']), await missEpoch(reader, 'page'));
    expect(await writer.lookup('page')).toHaveProperty('hit');
    // Every key it wrote is under the namespace: the entry, the epoch and the floor (the lost bump set no tag).
    const keys = await opened[1]!.client.keys(`*${namespace}*`);
    expect(keys.sort()).toEqual(
      [
        `${namespace}:response:page`,
        `${namespace}:{${namespace}:responses}:epoch`,
        `${namespace}:{${namespace}:responses}:floor`,
      ].sort(),
    );
  }, 20_000);
});
