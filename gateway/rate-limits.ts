import { createHash } from 'node:crypto';
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import type { RequestHandler } from 'express';
import { GraphQLError } from 'graphql';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RedisClientType } from 'redis';
import { ErrorCode } from '../lib/errors';
import type { Logger } from '../lib/logger';

export const RATE_LIMITED = ErrorCode.RATE_LIMITED;
export const OVERLOADED = ErrorCode.OVERLOADED;

export interface ClientBudgetOptions {
  /** Cost points one client may spend per window. Defaults to 100000. */
  points?: number;
  /** The budget window, in seconds; the whole budget returns when it ends. Defaults to 60. */
  windowSeconds?: number;
  /**
   * A connected node-redis client: every gateway sharing it shares each client's budget. When Redis
   * fails, each gateway falls back to its own in-memory counters until it is back. Defaults to
   * in-memory counters only.
   */
  redis?: RedisClientType<any, any, any, any, any>;
  logger: Logger;
}

/** Who a request is charged to: the verified user, else a known API key, else the IP address. */
export interface ClientIdentity {
  kind: 'user' | 'apiKey' | 'ip';
  /** Limiter key: never a raw API key. */
  key: string;
}

export function identifyClient(callerId: string | null, apiKeyName: string | null, ip: string | undefined): ClientIdentity {
  if (callerId) return { kind: 'user', key: `user:${callerId}` };
  if (apiKeyName) return { kind: 'apiKey', key: `apikey:${apiKeyName}` };
  return { kind: 'ip', key: `ip:${ip ?? 'unknown'}` };
}

/** `API_KEYS` ("name=key,name=key") as a lookup from a presented key to its client name. */
export function parseApiKeys(spec: string | undefined): (presented: string | undefined) => string | null {
  const byDigest = new Map<string, string>();
  for (const entry of (spec ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    const [name, key] = entry.split('=');
    if (name && key) byDigest.set(createHash('sha256').update(key).digest('hex'), name);
  }
  return (presented) => (presented ? (byDigest.get(createHash('sha256').update(presented).digest('hex')) ?? null) : null);
}

interface Charge {
  requested: number;
  limit: number;
  remaining: number;
  resetAt: Date;
}

/** What the budget plugin needs from the request context. */
export interface BudgetContext {
  client: ClientIdentity;
  /** Set once the operation is charged; read when the response is sent. */
  budgetCharge?: Charge;
}

function rateLimited(charge: Charge): GraphQLError {
  const retryAfter = Math.max(1, Math.ceil((charge.resetAt.getTime() - Date.now()) / 1000));
  return new GraphQLError(`Rate limited: this operation costs ${charge.requested} and ${charge.remaining} of ${charge.limit} points remain until ${charge.resetAt.toISOString()}.`, {
    extensions: {
      code: RATE_LIMITED,
      cost: { requested: charge.requested, remaining: charge.remaining, resetAt: charge.resetAt.toISOString() },
      http: { status: 429, headers: new Map([['retry-after', String(retryAfter)]]) },
    },
  });
}

/**
 * Per-client budgets of query-cost points (rate-limiter-flexible): a fixed window of `points` per
 * `windowSeconds` per client, in Redis when given so all gateways share it. `charge()` runs before any
 * subgraph is called (the query-cost plugin calls it with the estimate); the plugin writes
 * X-RateLimit-* headers and `extensions.cost` on every response.
 */
export function useClientBudget(options: ClientBudgetOptions) {
  const points = options.points ?? 100_000;
  const duration = options.windowSeconds ?? 60;
  const local = new RateLimiterMemory({ keyPrefix: 'budget', points, duration });
  const limiter: RateLimiterAbstract = options.redis
    ? new RateLimiterRedis({ storeClient: options.redis, useRedisPackage: true, rejectIfRedisNotReady: true, keyPrefix: 'storefront:budget', points, duration, insuranceLimiter: local })
    : local;
  if (options.redis) watchRedis(options.redis, options.logger);

  const toCharge = (requested: number, result: RateLimiterRes): Charge => ({
    requested,
    limit: points,
    remaining: Math.max(0, result.remainingPoints),
    resetAt: new Date(Date.now() + result.msBeforeNext),
  });

  async function charge(requested: number, context: BudgetContext): Promise<void> {
    try {
      context.budgetCharge = toCharge(requested, await limiter.consume(context.client.key, Math.max(0, Math.ceil(requested))));
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      // A refused operation is not charged: give back what consume() counted against the window.
      await limiter.reward(context.client.key, Math.ceil(requested)).catch(() => undefined);
      const charge = toCharge(requested, rejection);
      charge.remaining = Math.max(0, points - (rejection.consumedPoints - Math.ceil(requested)));
      context.budgetCharge = charge;
      throw rateLimited(charge);
    }
  }

  const plugin: ApolloServerPlugin<BudgetContext> = {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }: GraphQLRequestContext<BudgetContext>) {
          let charge = contextValue.budgetCharge;
          if (!charge) {
            // Not charged (a document that failed to parse or validate): report the budget as it stands.
            const state = await limiter.get(contextValue.client.key).catch(() => null);
            charge = { requested: 0, limit: points, remaining: Math.max(0, points - (state?.consumedPoints ?? 0)), resetAt: new Date(Date.now() + (state?.msBeforeNext ?? duration * 1000)) };
          }
          response.http.headers.set('x-ratelimit-limit', String(charge.limit));
          response.http.headers.set('x-ratelimit-remaining', String(charge.remaining));
          response.http.headers.set('x-ratelimit-reset', String(Math.ceil(charge.resetAt.getTime() / 1000)));
          const body = response.body;
          if (body?.kind === 'single') {
            const cost = { requested: charge.requested, remaining: charge.remaining, resetAt: charge.resetAt.toISOString() };
            body.singleResult.extensions = { ...body.singleResult.extensions, cost };
          }
        },
      };
    },
  };
  return { charge, plugin };
}

/** Logs once when Redis goes away (counters fall back to this process) and once when it returns. */
function watchRedis(redis: NonNullable<ClientBudgetOptions['redis']>, logger: Logger) {
  let degraded = false;
  redis.on('error', (error: Error) => {
    if (degraded) return;
    degraded = true;
    logger.warn({ err: error.message }, 'Redis unavailable: rate limits use this gateway\'s local counters until it returns');
  });
  redis.on('ready', () => {
    if (!degraded) return;
    degraded = false;
    logger.info('Redis is back: rate limits are shared again');
  });
}

export interface RequestLimitsOptions {
  /** Requests one IP address may make per window, whatever they cost. Defaults to 1200. */
  ipRequests?: number;
  /** That window, in seconds. Defaults to 60. */
  ipWindowSeconds?: number;
  /** Requests handled at once; more are refused with 503 rather than queued. Defaults to 512. */
  maxInFlight?: number;
  /** As for useClientBudget: shared counters, with local ones while it is down. Defaults to none. */
  redis?: ClientBudgetOptions['redis'];
}

const refuse = (res: Parameters<RequestHandler>[1], status: number, code: string, message: string, retryAfterSeconds: number) => {
  res.status(status).set('retry-after', String(retryAfterSeconds)).json({ errors: [{ message, extensions: { code } }] });
};

/**
 * Express middleware in front of /graphql: a global in-flight cap that sheds load with 503 OVERLOADED
 * (instead of queueing until everything times out) and a plain per-IP request rate, 429 RATE_LIMITED,
 * for anonymous requests. Requests with credentials (a bearer token or an API key) skip the IP rate:
 * many users share an IP behind NAT, and a storefront backend is one IP; their credentials are then
 * verified (bad ones are 401) and their cost budget applies. Both answer before any GraphQL work.
 */
export function requestLimits(options: RequestLimitsOptions = {}): { middleware: RequestHandler; inFlight(): number } {
  const maxInFlight = options.maxInFlight ?? 512;
  const points = options.ipRequests ?? 1_200;
  const duration = options.ipWindowSeconds ?? 60;
  const local = new RateLimiterMemory({ keyPrefix: 'ip', points, duration });
  const perIp: RateLimiterAbstract = options.redis
    ? new RateLimiterRedis({ storeClient: options.redis, useRedisPackage: true, rejectIfRedisNotReady: true, keyPrefix: 'storefront:ip', points, duration, insuranceLimiter: local })
    : local;
  let inFlight = 0;
  const middleware: RequestHandler = async (req, res, next) => {
    if (inFlight >= maxInFlight) {
      refuse(res, 503, OVERLOADED, 'The service is at capacity; retry shortly.', 1);
      return;
    }
    inFlight += 1;
    let released = false;
    const release = () => {
      if (!released) inFlight -= 1;
      released = true;
    };
    res.once('close', release);
    if (req.headers.authorization || req.headers['x-api-key']) return next();
    try {
      await perIp.consume(req.ip ?? 'unknown');
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) return next(rejection);
      // The limit that refused the request is the one its headers describe.
      res.set({ 'x-ratelimit-limit': String(points), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Math.ceil((Date.now() + rejection.msBeforeNext) / 1000)) });
      refuse(res, 429, RATE_LIMITED, 'Too many requests from this address.', Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)));
      return;
    }
    next();
  };
  return { middleware, inFlight: () => inFlight };
}
