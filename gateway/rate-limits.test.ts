import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { GraphQLError } from 'graphql';
import pino from 'pino';
import { createClient } from 'redis';
import { connectRedis, type RedisConnection } from '../lib/redis';
import { freePort } from '../test/databases';
import { describeWithRedis } from '../test/redis-available';
import { pausableRedis, type PausableRedis } from '../test/redis-fakes';
import { addressBlock, identifyClient, requestLimits, useClientBudget, type BudgetContext } from './rate-limits';

describe('addressBlock', () => {
  it('limits an IPv6 address by its /64, an IPv4 (also IPv4-mapped) address by itself', () => {
    expect(addressBlock('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:0db8:0001:0002:ffff::1')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(addressBlock('::1')).toBe('0:0:0:0::/64');
    expect(addressBlock('203.0.113.7')).toBe('203.0.113.7');
    expect(addressBlock('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect([addressBlock(undefined), addressBlock('not an address')]).toEqual(['unknown', 'unknown']);
  });

  it('is the key an anonymous client is charged to', () => {
    expect(identifyClient(null, null, '2001:db8:1:2::99')).toEqual({ kind: 'ip', key: 'ip:2001:db8:1:2::/64' });
  });
});

const silent = pino({ level: 'silent' });
const REDIS_PORT = Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379);
/** The limiters' wait for Redis (REDIS_TIMEOUT_MS in rate-limits.ts). */
const TIMEOUT_MS = 100;

/** Milliseconds each call of `run` took, called `times` times one after the other. */
async function durations(times: number, run: (index: number) => Promise<void>): Promise<number[]> {
  const taken: number[] = [];
  for (let index = 0; index < times; index += 1) {
    const started = performance.now();
    await run(index);
    taken.push(performance.now() - started);
  }
  return taken;
}
const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

describe('client budgets on this gateway’s counters', () => {
  it('refuse what does not fit without counting it, and what is left can still be spent', async () => {
    const budget = useClientBudget({ points: 50, windowSeconds: 60 });
    const client = identifyClient(randomUUID(), null, undefined);
    const charges: BudgetContext[] = [{ client }, { client }, { client }];
    await budget.charge(45, charges[0]!);
    await expect(budget.charge(10, charges[1]!)).rejects.toMatchObject({
      extensions: { code: 'RATE_LIMITED', cost: { requested: 10, remaining: 5 } },
    });
    await budget.charge(5, charges[2]!);
    expect(charges.map((context) => context.budgetCharge?.remaining)).toEqual([5, 5, 0]);
  });
});

describeWithRedis('rate limits in Redis', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A guarded connection, and the commands any client sends Redis for keys under `namespace` (MONITOR). */
  async function watched(namespace: string): Promise<{ redis: RedisConnection; commands: () => Promise<string[]> }> {
    const redis = connectRedis(`redis://127.0.0.1:${REDIS_PORT}`, silent);
    cleanups.push(redis.close);
    const monitor = createClient({ url: `redis://127.0.0.1:${REDIS_PORT}` });
    await monitor.connect();
    cleanups.push(() => monitor.close());
    const seen: string[] = [];
    // What a script runs shows up as from "lua": only what a client sent is a round trip.
    await monitor.monitor((line) => {
      if (line.includes(namespace) && !line.includes(' lua]')) seen.push(line.replace(/^.*?\] /, ''));
    });
    expect(await redis.ready()).toBe(true);
    return {
      redis,
      // MONITOR lines trail the replies: an ECHO through the monitored server flushes what came before.
      commands: async () => {
        await redis.client.echo(`flush ${namespace}`);
        for (let i = 0; i < 50 && !seen.some((line) => line.includes(`flush ${namespace}`)); i += 1)
          await new Promise((resolve) => setTimeout(resolve, 10));
        return seen.splice(0).filter((line) => !line.includes(`flush ${namespace}`));
      },
    };
  }

  it('charges a budget in one command (one EVAL), refusals too, and a refusal is not counted', async () => {
    const namespace = `rl-test-${randomUUID()}`;
    const { redis, commands } = await watched(namespace);
    const budget = useClientBudget({ points: 100, windowSeconds: 60, redis, namespace });
    const client = identifyClient(randomUUID(), null, undefined);
    const charged: BudgetContext = { client };
    await budget.charge(30, charged);
    expect(charged.budgetCharge).toMatchObject({ requested: 30, limit: 100, remaining: 70 });
    expect((await commands()).map((line) => line.split(' ')[0])).toEqual(['"EVAL"']);

    const refused: BudgetContext = { client };
    const error = await budget.charge(80, refused).catch((rejection: unknown) => rejection);
    expect(error).toBeInstanceOf(GraphQLError);
    expect((error as GraphQLError).extensions).toMatchObject({
      code: 'RATE_LIMITED',
      cost: { requested: 80, remaining: 70 },
      http: { status: 429 },
    });
    expect((await commands()).map((line) => line.split(' ')[0])).toEqual(['"EVAL"']);
    expect(await redis.client.get(`${namespace}:budget:${client.key}`)).toBe('30');
    await commands();

    // What is left can still be spent, to the last point.
    const rest: BudgetContext = { client };
    await budget.charge(70, rest);
    expect(rest.budgetCharge).toMatchObject({ requested: 70, remaining: 0 });
    expect(await commands()).toHaveLength(1);
  });

  it('limits anonymous requests per IP in one command', async () => {
    const namespace = `rl-test-${randomUUID()}`;
    const { redis, commands } = await watched(namespace);
    const limits = requestLimits(async () => false, { ipRequests: 1, ipWindowSeconds: 60, redis, namespace });
    // The middleware alone, with the little of Express's response a refusal uses.
    const pass = (ip: string) =>
      new Promise<number>((resolve, reject) => {
        let status = 200;
        const res = {
          set: () => res,
          status: (code: number) => ((status = code), res),
          json: () => resolve(status),
        };
        void limits.middleware({ ip } as never, res as never, (error?: unknown) =>
          error ? reject(error) : resolve(status),
        );
      });
    expect([await pass('203.0.113.9'), await pass('203.0.113.9')]).toEqual([200, 429]);
    expect((await commands()).map((line) => line.split(' ')[0])).toEqual(['"EVAL"', '"EVAL"']);
  });
});

describe('rate limits with Redis unavailable', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const connect = (url: string): RedisConnection => {
    const redis = connectRedis(url, silent);
    cleanups.push(redis.close);
    return redis;
  };
  const hungRedis = async (): Promise<{ proxy: PausableRedis; redis: RedisConnection }> => {
    const proxy = await pausableRedis(REDIS_PORT);
    cleanups.push(proxy.close);
    const redis = connect(proxy.url);
    expect(await redis.ready()).toBe(true);
    return { proxy, redis };
  };

  describeWithRedis('hung (connected, never answering)', () => {
    it('charges budgets on local counters, waiting on Redis once and not on every request', async () => {
      const { proxy, redis } = await hungRedis();
      const budget = useClientBudget({ points: 1_000, windowSeconds: 60, redis, namespace: `rl-test-${randomUUID()}` });
      const client = identifyClient(randomUUID(), null, undefined);
      await budget.charge(10, { client });
      expect(redis.degraded).toBe(false);

      proxy.hang();
      const charges: BudgetContext[] = [];
      const taken = await durations(20, async () => {
        const context: BudgetContext = { client };
        await budget.charge(10, context);
        charges.push(context);
      });
      // The first request waits for the timeout (and no more); the rest do not wait at all.
      expect(taken[0]).toBeGreaterThanOrEqual(TIMEOUT_MS - 10);
      expect(taken[0]).toBeLessThan(6 * TIMEOUT_MS);
      expect(sum(taken.slice(1))).toBeLessThan(3 * TIMEOUT_MS);
      expect(sum(taken)).toBeLessThan((20 * TIMEOUT_MS) / 2);
      expect(redis.degraded).toBe(true);
      // Counted here meanwhile: each charge took its points off this gateway's counters.
      expect(charges.map((context) => context.budgetCharge?.remaining)).toEqual(
        Array.from({ length: 20 }, (_, index) => 1_000 - 10 * (index + 1)),
      );
      proxy.resume();
    });

    it('limits anonymous requests per IP on local counters, waiting on Redis once and not on every request', async () => {
      const { proxy, redis } = await hungRedis();
      const limits = requestLimits(async () => false, {
        ipRequests: 15,
        ipWindowSeconds: 60,
        redis,
        namespace: `rl-test-${randomUUID()}`,
      });
      const app = express();
      app.use(limits.middleware);
      app.get('/', (_req, res) => void res.send('ok'));
      const server = await new Promise<Server>((resolve) => {
        const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
      });
      cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      // Warm the HTTP connection so that the timings below are the limiter's.
      const statuses: number[] = [(await fetch(url)).status];

      proxy.hang();
      const taken = await durations(20, async () => {
        const response = await fetch(url);
        await response.text();
        statuses.push(response.status);
      });
      expect(taken[0]).toBeGreaterThanOrEqual(TIMEOUT_MS - 10);
      expect(sum(taken)).toBeLessThan((20 * TIMEOUT_MS) / 2);
      // 15 per window: the first one went to Redis; then this gateway counts from zero on its own.
      expect(statuses.filter((status) => status === 200)).toHaveLength(16);
      expect(statuses.slice(16)).toEqual([429, 429, 429, 429, 429]);
      proxy.resume();
    });
  });

  it('when Redis is not there at all, decides at once on local counters, refusals included', async () => {
    const redis = connect(`redis://127.0.0.1:${await freePort()}`);
    const budget = useClientBudget({ points: 50, windowSeconds: 60, redis });
    const client = identifyClient(randomUUID(), null, undefined);
    const outcomes: string[] = [];
    const taken = await durations(6, async () => {
      try {
        await budget.charge(10, { client });
        outcomes.push('charged');
      } catch (error) {
        outcomes.push(error instanceof GraphQLError ? String(error.extensions.code) : 'unexpected');
      }
    });
    expect(outcomes).toEqual(['charged', 'charged', 'charged', 'charged', 'charged', 'RATE_LIMITED']);
    expect(Math.max(...taken)).toBeLessThan(TIMEOUT_MS / 2);
    expect(redis.degraded).toBe(true);
  });
});
