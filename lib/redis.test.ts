import { Writable } from 'node:stream';
import pino from 'pino';
import { freePort } from '../test/databases';
import { describeWithRedis } from '../test/redis-available';
import { pausableRedis, silentRedis, type FakeRedis } from '../test/redis-fakes';
import { connectRedis, type RedisConnection } from './redis';

const REDIS_PORT = Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379);

/** A logger whose lines the test reads back. */
function capturedLogger() {
  const lines: Array<{ level: number; msg: string; users?: string[]; noticedBy?: string; err?: string }> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (chunk, _encoding, done) => done(void lines.push(JSON.parse(String(chunk)))) }),
  );
  return {
    logger,
    lines,
    degradeLines: () => lines.filter((line) => line.msg.startsWith('Redis unavailable')),
    recoverLines: () => lines.filter((line) => line.msg.startsWith('Redis is back')),
  };
}

/** Resolves once `condition` holds; fails the test after `ms`. */
async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How long `run` takes, in ms, and what it returned. */
async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await run();
  return { ms: performance.now() - started, value };
}

const opened: RedisConnection[] = [];
const fakes: FakeRedis[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((connection) => connection.close()));
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});
function connect(url: string, logger: pino.Logger, options?: Parameters<typeof connectRedis>[2]): RedisConnection {
  const connection = connectRedis(url, logger, options);
  opened.push(connection);
  return connection;
}

describeWithRedis('a guarded Redis connection to a working Redis', () => {
  it('runs operations and returns their results, without logging anything', async () => {
    const log = capturedLogger();
    // What is tested here is the results passing through; the timeout has tests of its own, and on a busy
    // CI machine a first command can take longer than the 100 ms default.
    const redis = connect(`redis://127.0.0.1:${REDIS_PORT}`, log.logger, { timeoutMs: 2_000 });
    expect(await redis.ready()).toBe(true);
    const guard = redis.guard('unit test', 'the test falls back');
    const key = `guarded-redis-test:${Math.random()}`;
    expect(await guard.attempt((client) => client.set(key, 'value', { PX: 5_000 }))).toBe('OK');
    expect(await guard.attempt((client) => client.get(key))).toBe('value');
    // An operation that resolves to nothing is not a failure.
    expect(await guard.attempt(async () => undefined)).toBeUndefined();
    expect([guard.degraded, redis.degraded]).toEqual([false, false]);
    expect(log.lines).toEqual([]);
  });

  it('treats a failing operation as Redis failing: undefined, degraded, then fail-fast', async () => {
    const log = capturedLogger();
    // A roomy timeout: the recovery probe must not miss on a busy CI machine (timeouts are tested below).
    const redis = connect(`redis://127.0.0.1:${REDIS_PORT}`, log.logger, { timeoutMs: 2_000 });
    expect(await redis.ready()).toBe(true);
    const guard = redis.guard('unit test', 'the test falls back');
    const calledBack: string[] = [];
    guard.onRecover(() => {
      throw new Error('a broken listener');
    });
    const unsubscribe = guard.onRecover(() => calledBack.push('unsubscribed'));
    guard.onRecover(() => calledBack.push('subscribed'));
    unsubscribe();
    expect(await guard.attempt(() => Promise.reject(new Error('WRONGTYPE')))).toBeUndefined();
    expect(guard.degraded).toBe(true);
    expect(log.degradeLines()).toMatchObject([{ noticedBy: 'unit test', err: 'WRONGTYPE', users: ['unit test'] }]);
    let calls = 0;
    expect(await guard.attempt(async () => ++calls)).toBeUndefined();
    expect(calls).toBe(0);
    // The background probe finds Redis answering: back, logged once.
    await until(() => !redis.degraded, 3_000);
    expect(log.recoverLines()).toHaveLength(1);
    // A listener that throws is logged and does not keep the others from being told.
    expect(calledBack).toEqual(['subscribed']);
    expect(log.lines.filter((line) => line.msg === 'Redis recovery listener failed')).toHaveLength(1);
    expect(await guard.attempt(async () => ++calls)).toBe(1);
  });
});

describeWithRedis('a guarded Redis connection to a Redis that hangs', () => {
  it('waits at most the timeout, then fails fast, logs once, and recovers when Redis answers again', async () => {
    const proxy = await pausableRedis(REDIS_PORT);
    fakes.push(proxy);
    const log = capturedLogger();
    const redis = connect(proxy.url, log.logger, { timeoutMs: 150 });
    expect(await redis.ready()).toBe(true);
    const limits = redis.guard('rate limits', "rate limits use this gateway's local counters");
    const cache = redis.guard('persisted queries', 'persisted queries are misses');
    const recoveries: string[] = [];
    redis.onRecover(() => recoveries.push('connection'));
    limits.onRecover(() => recoveries.push('rate limits'));
    expect(await limits.attempt((client) => client.ping())).toBe('PONG');

    proxy.hang();
    // The first attempt waits for the timeout, no longer.
    const first = await timed(() => limits.attempt((client) => client.ping()));
    expect(first.value).toBeUndefined();
    expect(first.ms).toBeGreaterThanOrEqual(140);
    expect(first.ms).toBeLessThan(600);
    expect([redis.degraded, limits.degraded, cache.degraded]).toEqual([true, true, true]);
    const [warning] = log.degradeLines();
    expect(log.degradeLines()).toHaveLength(1);
    expect(warning).toMatchObject({
      level: 40,
      noticedBy: 'rate limits',
      users: ['rate limits', 'persisted queries'],
      err: 'Redis did not answer within 150 ms',
    });
    expect(warning!.msg).toBe(
      "Redis unavailable: rate limits use this gateway's local counters; persisted queries are misses until it returns",
    );

    // Fail-fast: the next attempts, whoever makes them, do not touch Redis nor wait.
    let calls = 0;
    const next = await timed(async () => {
      const results: Array<string | undefined> = [];
      for (let i = 0; i < 20; i += 1) {
        const guard = i % 2 ? limits : cache;
        results.push(
          await guard.attempt(async (client) => {
            calls += 1;
            return client.ping();
          }),
        );
      }
      return results;
    });
    expect(next.value).toEqual(Array(20).fill(undefined));
    expect(calls).toBe(0);
    expect(next.ms).toBeLessThan(100);

    // Past the fail-fast period a background probe asks Redis, not a request: still hung, still immediate.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const later = await timed(() => cache.attempt((client) => client.ping()));
    expect(later.value).toBeUndefined();
    expect(later.ms).toBeLessThan(50);
    expect(redis.degraded).toBe(true);
    expect(log.degradeLines()).toHaveLength(1);
    expect(log.recoverLines()).toHaveLength(0);

    proxy.resume();
    await until(() => !redis.degraded, 3_000);
    expect(log.recoverLines()).toMatchObject([
      {
        level: 30,
        users: ['rate limits', 'persisted queries'],
        msg: 'Redis is back: rate limits, persisted queries use it again',
      },
    ]);
    expect(recoveries).toEqual(['connection', 'rate limits']);
    expect(await cache.attempt((client) => client.ping())).toBe('PONG');
    expect([limits.degraded, cache.degraded]).toEqual([false, false]);
    expect(log.degradeLines()).toHaveLength(1);
    expect(log.recoverLines()).toHaveLength(1);
  });

  it('takes a per-attempt timeout over the connection default', async () => {
    const proxy = await pausableRedis(REDIS_PORT);
    fakes.push(proxy);
    const redis = connect(proxy.url, capturedLogger().logger, { timeoutMs: 2_000 });
    expect(await redis.ready()).toBe(true);
    proxy.hang();
    const attempt = await timed(() =>
      redis.guard('unit test', 'none').attempt((client) => client.ping(), { timeoutMs: 50 }),
    );
    expect(attempt.value).toBeUndefined();
    expect(attempt.ms).toBeLessThan(500);
    proxy.resume();
  });
});

describe('a guarded Redis connection to a Redis that never answers, or to nothing', () => {
  it('falls back at once when the server accepts connections but never answers (the client never gets ready)', async () => {
    const silent = await silentRedis();
    fakes.push(silent);
    const log = capturedLogger();
    const redis = connect(silent.url, log.logger);
    expect(await redis.ready(300)).toBe(false);
    const guard = redis.guard('entity cache', 'the entity cache is skipped');
    let calls = 0;
    const results = await timed(async () => [
      await guard.attempt(async () => ++calls),
      await guard.attempt(async () => ++calls),
    ]);
    expect(results.value).toEqual([undefined, undefined]);
    expect(results.ms).toBeLessThan(50);
    expect(calls).toBe(0);
    expect(guard.degraded).toBe(true);
    expect(log.degradeLines()).toMatchObject([{ noticedBy: 'entity cache', err: 'Redis is not connected' }]);
  });

  it('degrades as soon as the connection is refused, logs it once however often it retries, and recovers on reconnection', async () => {
    const port = await freePort();
    const log = capturedLogger();
    const redis = connect(`redis://127.0.0.1:${port}`, log.logger);
    const guard = redis.guard('deprecation usage', 'uses are counted in this process only');
    const recovered = jest.fn();
    guard.onRecover(recovered);
    // No attempt needed: the refused connection is enough.
    await until(() => redis.degraded, 2_000);
    expect(log.degradeLines()).toMatchObject([{ noticedBy: 'connection', users: ['deprecation usage'] }]);
    const attempt = await timed(() => guard.attempt((client) => client.ping()));
    expect(attempt.value).toBeUndefined();
    expect(attempt.ms).toBeLessThan(50);
    // Several reconnection attempts later, still one line.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(log.degradeLines()).toHaveLength(1);
    expect(recovered).not.toHaveBeenCalled();

    if (process.env.TEST_REDIS_AVAILABLE === '0') return;
    // Redis appears on that port: the client reconnects, and the connection is back without a request.
    fakes.push(await pausableRedis(REDIS_PORT, port));
    await until(() => !redis.degraded, 5_000);
    expect(recovered).toHaveBeenCalledTimes(1);
    expect(log.recoverLines()).toHaveLength(1);
    expect(await guard.attempt((client) => client.ping())).toBe('PONG');
  });

  it('after close, attempts fall back and nothing more is logged; close does not wait on a silent server', async () => {
    const silent = await silentRedis();
    fakes.push(silent);
    const log = capturedLogger();
    const redis = connectRedis(silent.url, log.logger);
    const closing = await timed(() => redis.close());
    expect(closing.ms).toBeLessThan(1_500);
    expect(await redis.guard('unit test', 'none').attempt(async () => 'ran')).toBeUndefined();
    expect(log.lines).toEqual([]);
  });
});
