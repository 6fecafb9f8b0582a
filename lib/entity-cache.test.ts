import { spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { itWithRedis } from '../test/redis-available';
import { pausableRedis, type PausableRedis } from '../test/redis-fakes';
import { EntityCache } from './entity-cache';

const silent = pino({ level: 'silent' });
const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });

describe('EntityCache', () => {
  const caches: EntityCache[] = [];
  afterEach(async () => {
    await Promise.all(caches.splice(0).map((cache) => cache.close()));
  });
  const memoryCache = () => {
    const cache = new EntityCache({ namespace: `unit-${Math.random()}`, logger: silent });
    caches.push(cache);
    return cache;
  };

  it('reads through: one load for the misses, then hits; values round-trip exactly; misses are not cached', async () => {
    const cache = memoryCache();
    const rows = cache.type<{ id: string; at: Date; cents: number; tags: Array<{ when: Date }> }>({
      subgraph: 'unit',
      name: 'Thing',
      version: 1,
    });
    const at = new Date('2026-01-02T03:04:05.678Z');
    const loads: string[][] = [];
    const load = async (ids: string[]) => {
      loads.push(ids);
      return new Map(
        ids.filter((id) => id !== 'none').map((id) => [id, { id, at, cents: 1999, tags: [{ when: at }] }]),
      );
    };
    const first = await rows.load(['a', 'b', 'none'], load);
    const second = await rows.load(['b', 'a', 'none'], load);
    expect(loads).toEqual([['a', 'b', 'none'], ['none']]);
    expect(second).toEqual([first[1], first[0], null]);
    expect(second[0]!.at).toBeInstanceOf(Date);
    expect(second[0]!.tags[0]!.when.getTime()).toBe(at.getTime());
    expect(cache.counters).toEqual({ hits: 2, misses: 4, errors: 0 });
  });

  it('loads a key once for concurrent misses, across callers', async () => {
    const rows = memoryCache().type<{ id: string }>({ subgraph: 'unit', name: 'Thing', version: 1 });
    let calls = 0;
    const slowLoad = async (ids: string[]) => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return new Map(ids.map((id) => [id, { id }]));
    };
    const results = await Promise.all([
      rows.load(['x'], slowLoad),
      rows.load(['x'], slowLoad),
      rows.load(['x', 'y'], slowLoad),
    ]);
    expect(results).toEqual([[{ id: 'x' }], [{ id: 'x' }], [{ id: 'x' }, { id: 'y' }]]);
    expect(calls).toBe(2); // x once, then y alone
  });

  it('passes a failed load to every caller waiting on it, caches nothing, and leaves no unhandled rejection', async () => {
    const rows = memoryCache().type<{ id: string }>({ subgraph: 'unit', name: 'Thing', version: 1 });
    const failing = async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new Error('database down');
    };
    const outcomes = await Promise.allSettled([rows.load(['a', 'b'], failing), rows.load(['a'], failing)]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    expect(await rows.load(['a'], async (ids) => new Map(ids.map((id) => [id, { id }])))).toEqual([{ id: 'a' }]);
  });

  itWithRedis(
    'never stores back a row loaded before a write: not in this process, nor in another sharing Redis',
    async () => {
      const namespace = `race-${Math.random()}`;
      const [here, there] = [0, 1].map(
        () => new EntityCache({ namespace, redisUrl: 'redis://127.0.0.1:6379', timeoutMs: 1_000, logger: silent }),
      );
      caches.push(here!, there!);
      expect(await here!.ready(2_000)).toBe(true);
      expect(await there!.ready(2_000)).toBe(true);
      const spec = { subgraph: 'unit', name: 'Thing', version: 1 };
      let row = { id: 'a', title: 'old' };
      // A read on `here` loads the old row slowly; meanwhile the row changes and is invalidated.
      const slowOldRead = here!.type<typeof row>(spec).load(['a'], async () => {
        const seen = row;
        await new Promise((resolve) => setTimeout(resolve, 100));
        return new Map([['a', seen]]);
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      row = { id: 'a', title: 'new' };
      await there!.type<typeof row>(spec).invalidate(['a']);
      expect(await slowOldRead).toEqual([{ id: 'a', title: 'old' }]); // that read itself began before the write
      // Whoever reads next, on either instance, gets the new row: the old one was not stored back.
      const fresh = async () => new Map([['a', row]]);
      expect(await here!.type<typeof row>(spec).load(['a'], fresh)).toEqual([{ id: 'a', title: 'new' }]);
      expect(await there!.type<typeof row>(spec).load(['a'], fresh)).toEqual([{ id: 'a', title: 'new' }]);

      // The same within one process, with the write on the instance that is loading.
      const spec2 = { ...spec, name: 'Other' };
      row = { id: 'a', title: 'old' };
      const slow = here!.type<typeof row>(spec2).load(['a'], async () => {
        const seen = row;
        await new Promise((resolve) => setTimeout(resolve, 100));
        return new Map([['a', seen]]);
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      row = { id: 'a', title: 'new' };
      await here!.type<typeof row>(spec2).invalidate(['a']);
      await slow;
      expect(await here!.type<typeof row>(spec2).load(['a'], fresh)).toEqual([{ id: 'a', title: 'new' }]);
    },
  );

  it('keeps shapes apart by version, and invalidation drops an entry', async () => {
    const cache = memoryCache();
    const v1 = cache.type<{ id: string; n: number }>({ subgraph: 'unit', name: 'Thing', version: 1 });
    const v2 = cache.type<{ id: string; n: number }>({ subgraph: 'unit', name: 'Thing', version: 2 });
    await v1.load(['a'], async () => new Map([['a', { id: 'a', n: 1 }]]));
    expect(await v2.load(['a'], async () => new Map([['a', { id: 'a', n: 2 }]]))).toEqual([{ id: 'a', n: 2 }]);
    await v1.invalidate(['a']);
    expect(await v1.load(['a'], async () => new Map([['a', { id: 'a', n: 3 }]]))).toEqual([{ id: 'a', n: 3 }]);
  });

  itWithRedis(
    'serves from the loader within a bounded wait while Redis hangs, says so, and uses Redis again when it answers',
    async () => {
      const port = await freePort();
      const server = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { stdio: 'ignore' },
      );
      try {
        const lines: string[] = [];
        const logger = pino(
          { level: 'info' },
          new Writable({ write: (chunk, _encoding, done) => done(void lines.push(String(chunk))) }),
        );
        const cache = new EntityCache({
          namespace: 'unit',
          redisUrl: `redis://127.0.0.1:${port}`,
          timeoutMs: 200,
          logger,
        });
        caches.push(cache);
        expect(await cache.ready(5_000)).toBe(true);
        const rows = cache.type<{ id: string }>({ subgraph: 'unit', name: 'Thing', version: 1 });
        let loads = 0;
        const load = async (ids: string[]) => {
          loads += 1;
          return new Map(ids.map((id) => [id, { id }]));
        };
        await rows.load(['a'], load);
        await rows.load(['a'], load);
        expect(loads).toBe(1);

        server.kill('SIGSTOP');
        const startedAt = Date.now();
        expect(await rows.load(['a'], load)).toEqual([{ id: 'a' }]);
        expect(Date.now() - startedAt).toBeLessThan(1_000);
        expect(loads).toBe(2);
        expect(cache.counters.errors).toBeGreaterThan(0);
        expect(
          lines.filter((line) => line.includes('Redis unavailable') && line.includes('entity cache')),
        ).toHaveLength(1);

        server.kill('SIGCONT');
        // After a failure the cache is left alone for a second, then tried again.
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        await rows.load(['b'], load);
        const before = loads;
        expect(await rows.load(['b'], load)).toEqual([{ id: 'b' }]);
        expect(loads).toBe(before);
        expect(lines.filter((line) => line.includes('Redis is back') && line.includes('entity cache'))).toHaveLength(1);
      } finally {
        server.kill('SIGKILL');
      }
    },
  );
  itWithRedis(
    'counts skipped and failed reads as errors, reads around an invalidation Redis missed, and replays it when Redis is back',
    async () => {
      const proxy: PausableRedis = await pausableRedis(
        Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379),
      );
      try {
        const namespace = `replay-${Math.random()}`;
        // The timeout is what "skipped" is measured against: long enough that a busy machine's round trip through
        // the proxy is not taken for a hung Redis.
        const timeoutMs = 400;
        const cache = new EntityCache({ namespace, redisUrl: proxy.url, timeoutMs, logger: silent });
        const other = new EntityCache({
          namespace,
          redisUrl: 'redis://127.0.0.1:6379',
          timeoutMs: 1_000,
          logger: silent,
        });
        caches.push(cache, other);
        expect(await cache.ready(2_000)).toBe(true);
        expect(await other.ready(2_000)).toBe(true);
        const spec = { subgraph: 'unit', name: 'Thing', version: 1 };
        let title = 'old';
        let loads = 0;
        const load = async (ids: string[]) => {
          loads += 1;
          return new Map(ids.map((id) => [id, { id, title }]));
        };
        await cache.type<{ id: string; title: string }>(spec).load(['a'], load);
        expect(await other.type<{ id: string; title: string }>(spec).load(['a'], load)).toEqual([
          { id: 'a', title: 'old' },
        ]);
        expect(loads).toBe(1);
        // An invalidation Redis took leaves nothing to replay.
        await cache.type(spec).invalidate(['b']);
        expect(cache.pendingInvalidations.size).toBe(0);

        proxy.hang();
        title = 'new';
        const startedAt = Date.now();
        await cache.type(spec).invalidate(['a']); // waits for the timeout once, then Redis is skipped
        expect(Date.now() - startedAt).toBeLessThan(2 * timeoutMs);
        expect([...cache.pendingInvalidations]).toEqual([`${namespace}:unit:Thing:v1:a`]);
        const errorsBefore = cache.counters.errors;
        // Read around the missed invalidation: the loader answers, at once (the cache is skipped).
        const read = Date.now();
        expect(await cache.type<{ id: string; title: string }>(spec).load(['a'], load)).toEqual([
          { id: 'a', title: 'new' },
        ]);
        // Less than one timeout: it did not wait on Redis.
        expect(Date.now() - read).toBeLessThan(timeoutMs);
        expect(cache.counters.errors).toBeGreaterThan(errorsBefore);

        proxy.resume();
        const deadline = Date.now() + 5_000;
        while (cache.pendingInvalidations.size && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 20));
        expect(cache.pendingInvalidations.size).toBe(0);
        // The replayed tombstone reached the shared Redis: the other instance no longer reads the old row.
        expect(await other.type<{ id: string; title: string }>(spec).load(['a'], load)).toEqual([
          { id: 'a', title: 'new' },
        ]);
      } finally {
        await proxy.close();
      }
    },
  );
});
