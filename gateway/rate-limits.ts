import { createHash } from 'node:crypto';
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import type { Request, RequestHandler, Response } from 'express';
import { GraphQLError } from 'graphql';
import ipaddr from 'ipaddr.js';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { ErrorCode } from '../lib/errors';
import type { RedisConnection } from '../lib/redis';

export const RATE_LIMITED = ErrorCode.RATE_LIMITED;

/** The longest a limiter waits for Redis before deciding on this gateway's local counters. */
const REDIS_TIMEOUT_MS = 100;

/** What the budget and the IP rate need of a limiter: rate-limiter-flexible's consume(). */
interface Limiter {
  /** Resolves with the new state, or rejects with a RateLimiterRes when the points are not there. */
  consume(key: string, points?: number): Promise<RateLimiterRes>;
}

/**
 * rate-limiter-flexible's increment script (`customIncrTtlLuaScript`: KEYS[1] the counter, ARGV the points
 * asked for, the window in seconds, and the limit), charging all or nothing: points that do not fit are not
 * added. It then answers what the count would have been, above the limit, so the library rejects the
 * consume as usual and the caller still learns what was left (that count minus the points asked for).
 * Checking and charging in one script is one round trip, and no concurrent request can slip in between.
 */
const CHARGE_IF_AFFORDABLE_SCRIPT = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX')
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * ARGV[2]
end
local requested = tonumber(ARGV[1])
local consumed = tonumber(redis.call('get', KEYS[1]))
if consumed + requested > tonumber(ARGV[3]) then return {consumed + requested, ttl} end
return {redis.call('incrby', KEYS[1], requested), ttl}`;

/** In-memory counters charging all or nothing, as CHARGE_IF_AFFORDABLE_SCRIPT does in Redis. */
class AffordableMemoryLimiter extends RateLimiterMemory {
  override async consume(key: string | number, points = 1, options?: { [key: string]: unknown }) {
    const state = await this.get(key);
    const consumed = state?.consumedPoints ?? 0;
    if (consumed + points > this.points)
      throw new RateLimiterRes(0, state?.msBeforeNext ?? this.duration * 1000, consumed + points, false);
    return super.consume(key, points, options);
  }
}

/**
 * A fixed-window limiter (rate-limiter-flexible) in Redis when given, so every gateway shares it,
 * insured by local counters, behind the connection's guard: when Redis is not connected, errs, or
 * takes longer than REDIS_TIMEOUT_MS (down, or hung), this gateway decides on its local counters, and
 * for the next second it does so at once, without asking Redis (rate-limiter-flexible's insurance
 * limiter still answers for a command that errs on a connected client). Each consume is one EVAL of
 * one key (so on a Redis Cluster each client's counter lives in its own slot, on any master).
 * With `allOrNothing`, points that do not fit are refused without being counted, here and in Redis.
 */
function sharedLimiter(
  redis: RedisConnection | undefined,
  options: { namespace: string; keyPrefix: string; points: number; duration: number; allOrNothing?: boolean },
): Limiter {
  const { namespace, allOrNothing = false, ...limits } = options;
  const local = allOrNothing ? new AffordableMemoryLimiter(limits) : new RateLimiterMemory(limits);
  if (!redis) return local;
  const shared = new RateLimiterRedis({
    ...limits,
    keyPrefix: `${namespace}:${limits.keyPrefix}`,
    storeClient: redis.client,
    useRedisPackage: true,
    rejectIfRedisNotReady: true,
    insuranceLimiter: local,
    ...(allOrNothing && { customIncrTtlLuaScript: CHARGE_IF_AFFORDABLE_SCRIPT }),
  });
  const guard = redis.guard('rate limits', "rate limits use this gateway's local counters");
  const timeout = { timeoutMs: REDIS_TIMEOUT_MS };
  return {
    async consume(key, points = 1) {
      // A refusal is an answer from Redis too: carried out of the guard, then rejected as usual.
      const answer = await guard.attempt(
        () =>
          shared.consume(key, points).then(
            (state) => ({ state, refused: false }),
            (rejection: unknown) => {
              if (rejection instanceof RateLimiterRes) return { state: rejection, refused: true };
              throw rejection;
            },
          ),
        timeout,
      );
      if (!answer) return local.consume(key, points);
      if (answer.refused) throw answer.state;
      return answer.state;
    },
  };
}

/** Who a request is charged to: the verified user, else a known API key, else the IP address. */
export interface ClientIdentity {
  kind: 'user' | 'apiKey' | 'ip';
  /** Limiter key: never a raw API key. */
  key: string;
}

export function identifyClient(
  callerId: string | null,
  apiKeyName: string | null,
  ip: string | undefined,
): ClientIdentity {
  if (callerId) return { kind: 'user', key: `user:${callerId}` };
  if (apiKeyName) return { kind: 'apiKey', key: `apikey:${apiKeyName}` };
  return { kind: 'ip', key: `ip:${addressBlock(ip)}` };
}

/**
 * The block an address is limited as: an IPv4 address on its own, an IPv6 address by its /64 (one
 * subscriber's network: a single host can take any address in it), an IPv4-mapped IPv6 address as IPv4.
 */
export function addressBlock(ip: string | undefined): string {
  if (!ip || !ipaddr.isValid(ip)) return 'unknown';
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((part) => part.toString(16)).join(':')}::/64`;
}

/** `API_KEYS` ("name=key,name=key") as a lookup from a presented key to its client name. */
export function parseApiKeys(spec: string | undefined): (presented: string | undefined) => string | null {
  const digest = (key: string) => createHash('sha256').update(key).digest('hex');
  const byDigest = new Map<string, string>();
  for (const entry of (spec ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)) {
    // Only the first "=" separates: base64 keys end in "=".
    const separator = entry.indexOf('=');
    if (separator > 0 && separator < entry.length - 1)
      byDigest.set(digest(entry.slice(separator + 1)), entry.slice(0, separator));
  }
  return (presented) => (presented ? (byDigest.get(digest(presented)) ?? null) : null);
}

export interface ClientBudgetOptions {
  /** Cost points one client may spend per window. Defaults to 100000. */
  points?: number;
  /** The budget window, in seconds; the whole budget returns when it ends. Defaults to 60. */
  windowSeconds?: number;
  /**
   * A Redis connection (connectRedis): every gateway sharing that Redis shares each client's budget.
   * When Redis fails or hangs, each gateway falls back to its own in-memory counters at once until it
   * is back. Defaults to in-memory counters only.
   */
  redis?: RedisConnection;
  /** Prefix of the budget keys in Redis (`<namespace>:budget:<client>`). Defaults to storefront. */
  namespace?: string;
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
  /** Set once the operation is charged (or refused); read when the response is sent. */
  budgetCharge?: Charge;
}

function rateLimited(charge: Charge): GraphQLError {
  const retryAfter = Math.max(1, Math.ceil((charge.resetAt.getTime() - Date.now()) / 1000));
  return new GraphQLError(
    `Rate limited: this operation costs ${charge.requested} and ${charge.remaining} of ${charge.limit} points remain until ${charge.resetAt.toISOString()}.`,
    {
      extensions: {
        code: RATE_LIMITED,
        cost: { requested: charge.requested, remaining: charge.remaining, resetAt: charge.resetAt.toISOString() },
        http: { status: 429, headers: new Map([['retry-after', String(retryAfter)]]) },
      },
    },
  );
}

/**
 * Per-client budgets of query-cost points: `points` per `windowSeconds` per client (a fixed window),
 * shared through Redis when given. `charge()` runs before any subgraph is called (the query-cost
 * plugin calls it with the estimate). Every request costs at least 1 point, so free or invalid
 * documents cannot be sent without bound. The plugin writes X-RateLimit-* headers and
 * `extensions.cost` on every GraphQL response.
 */
export function useClientBudget(options: ClientBudgetOptions) {
  const points = options.points ?? 100_000;
  const duration = options.windowSeconds ?? 60;
  // All or nothing: a refused operation costs nothing, checked and charged in one round trip.
  const limiter = sharedLimiter(options.redis, {
    namespace: options.namespace ?? 'storefront',
    keyPrefix: 'budget',
    points,
    duration,
    allOrNothing: true,
  });

  const describe = (requested: number, consumed: number, msBeforeNext: number): Charge => ({
    requested,
    limit: points,
    remaining: Math.max(0, points - consumed),
    resetAt: new Date(Date.now() + (msBeforeNext > 0 ? msBeforeNext : duration * 1000)),
  });

  async function charge(estimated: number, context: BudgetContext): Promise<void> {
    const requested = Math.max(1, Math.ceil(estimated));
    try {
      const result = await limiter.consume(context.client.key, requested);
      context.budgetCharge = describe(requested, result.consumedPoints, result.msBeforeNext);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      // Refused without being counted (all or nothing): what was left is the count before this request.
      context.budgetCharge = describe(requested, rejection.consumedPoints - requested, rejection.msBeforeNext);
      throw rateLimited(context.budgetCharge);
    }
  }

  const plugin: ApolloServerPlugin<BudgetContext> = {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }: GraphQLRequestContext<BudgetContext>) {
          let charge = contextValue.budgetCharge;
          if (!charge) {
            // A document that failed to parse or validate was never scored: it costs the minimum.
            const result = await limiter
              .consume(contextValue.client.key, 1)
              .catch((rejection: unknown) => (rejection instanceof RateLimiterRes ? rejection : null));
            charge = describe(1, result?.consumedPoints ?? 0, result?.msBeforeNext ?? 0);
          }
          response.http.headers.set('x-ratelimit-limit', String(charge.limit));
          response.http.headers.set('x-ratelimit-remaining', String(charge.remaining));
          response.http.headers.set('x-ratelimit-reset', String(Math.ceil(charge.resetAt.getTime() / 1000)));
          const body = response.body;
          if (body?.kind === 'single') {
            const cost = {
              requested: charge.requested,
              remaining: charge.remaining,
              resetAt: charge.resetAt.toISOString(),
            };
            body.singleResult.extensions = { ...body.singleResult.extensions, cost };
          }
        },
      };
    },
  };
  // Nothing to release: the connection is the caller's, and its guard logs outages.
  return { charge, plugin, close: () => {} };
}

export interface RequestLimitsOptions {
  /** Requests one IP address may make per window without valid credentials. Defaults to 1200. */
  ipRequests?: number;
  /** That window, in seconds. Defaults to 60. */
  ipWindowSeconds?: number;
  /** As for useClientBudget: shared counters, with local ones while it is down or hung. Defaults to none. */
  redis?: RedisConnection;
  /** Prefix of the IP-rate keys in Redis (`<namespace>:ip:<address block>`). Defaults to storefront. */
  namespace?: string;
  /** Told of every refusal (metrics). Defaults to none. */
  onRefuse?: (reason: 'ip_rate') => void;
}

const refuse = (res: Response, status: number, code: string, message: string, retryAfterSeconds: number) => {
  res
    .status(status)
    .set('retry-after', String(retryAfterSeconds))
    .json({ errors: [{ message, extensions: { code } }] });
};

/**
 * Express middleware in front of /graphql, before its body is read: a per-IP request rate, 429
 * RATE_LIMITED, for every request without valid credentials (forged ones included). Requests with a verified bearer
 * token or API key skip the IP rate (many users share an IP behind NAT; a storefront backend is one
 * IP): their cost budget bounds them. `verified` checks the credentials before any body is parsed.
 */
export function requestLimits(
  verified: (req: Request, res: Response) => Promise<boolean>,
  options: RequestLimitsOptions = {},
): { middleware: RequestHandler } {
  const points = options.ipRequests ?? 1_200;
  const duration = options.ipWindowSeconds ?? 60;
  const perIp = sharedLimiter(options.redis, {
    namespace: options.namespace ?? 'storefront',
    keyPrefix: 'ip',
    points,
    duration,
  });
  const middleware: RequestHandler = async (req, res, next) => {
    try {
      if (await verified(req, res)) return next();
      await perIp.consume(addressBlock(req.ip));
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) return next(rejection);
      options.onRefuse?.('ip_rate');
      // The limit that refused the request is the one its headers describe.
      res.set({
        'x-ratelimit-limit': String(points),
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(Math.ceil((Date.now() + rejection.msBeforeNext) / 1000)),
      });
      refuse(
        res,
        429,
        RATE_LIMITED,
        'Too many requests from this address.',
        Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)),
      );
      return;
    }
    next();
  };
  return { middleware };
}
