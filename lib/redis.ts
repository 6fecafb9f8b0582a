import CircuitBreaker from 'opossum';
import { createClient } from 'redis';
import type { Logger } from './logger';

export type RedisClient = ReturnType<typeof createClient>;

export interface RedisConnectionOptions {
  /** Longest wait for one operation (a user may ask for another per attempt). Defaults to 100 ms. */
  timeoutMs?: number;
  /**
   * After a failure, how long Redis is left alone: every attempt falls back at once, then one
   * background PING probes it. Defaults to 1000 ms.
   */
  failFastMs?: number;
}

export interface AttemptOptions {
  /** Longest wait for this operation before its caller falls back. Defaults to the connection's timeoutMs. */
  timeoutMs?: number;
}

export interface ConnectionAttemptOptions extends AttemptOptions {
  /** Who is asking: named in the outage's log line when this attempt is the one that finds Redis failing. Defaults to 'unnamed'. */
  user?: string;
}

/** One user's view of a RedisConnection: its attempts are named after it in the connection's log lines. */
export interface RedisGuard {
  /** Who uses Redis through this guard, e.g. 'rate limits'. */
  readonly user: string;
  /** The shared node-redis client, for stores that must be handed one (Keyv, rate-limiter-flexible). */
  readonly client: RedisClient;
  /** True from a failure (error, not connected, or no answer in time: a hung Redis) until Redis answers again. */
  readonly degraded: boolean;
  /**
   * Runs `operation` on the client with a bounded wait. Undefined (the caller falls back) when Redis is
   * not connected, the operation fails or takes longer than the timeout, or Redis failed less than the
   * fail-fast period ago (then without waiting at all).
   */
  attempt<T>(operation: (client: RedisClient) => Promise<T>, options?: AttemptOptions): Promise<T | undefined>;
  /** Calls `listener` each time Redis answers again after failing; returns the unsubscribe function. */
  onRecover(listener: () => void): () => void;
}

/** What RedisConnection.guard() returns: the connection, each attempt named after its user. */
class UserGuard implements RedisGuard {
  constructor(
    private readonly connection: RedisConnection,
    readonly user: string,
  ) {}

  get client(): RedisClient {
    return this.connection.client;
  }

  get degraded(): boolean {
    return this.connection.degraded;
  }

  attempt<T>(operation: (client: RedisClient) => Promise<T>, options?: AttemptOptions): Promise<T | undefined> {
    return this.connection.attempt(operation, { ...options, user: this.user });
  }

  onRecover(listener: () => void): () => void {
    return this.connection.onRecover(listener);
  }
}

/** `promise`, or a rejection once `ms` have passed (node-redis cannot cancel a sent command: it runs on). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * A node-redis client for shared counters and caches, with the one guard every user of Redis goes
 * through: a bounded wait per operation, then fail-fast. Start-up does not wait for Redis: while it is
 * unreachable, commands fail at once (no offline queue) and users take their local fallback; the
 * client keeps reconnecting with capped backoff.
 *
 * The guard is an opossum circuit breaker shared by all users of the connection (one socket: when it
 * is down or hung, it is so for every user). Any failure opens it; while open, attempts return
 * undefined without touching Redis; after `failFastMs` a background PING probes it (so a hung Redis
 * makes no request wait more than once), and an answer, or a reconnection, closes it again. An outage
 * is logged once when it starts and once when it ends, naming the users and what they fall back to.
 */
export class RedisConnection {
  readonly client: RedisClient;
  private readonly timeoutMs: number;
  private readonly breaker: CircuitBreaker<[run: () => Promise<void>, user: string], void>;
  /** Each user's fallback, by user name: the outage log says what happens meanwhile. */
  private readonly users = new Map<string, string>();
  private readonly recoverListeners = new Set<() => void>();
  /** What failed first (and through which user), for the one log line of an outage. */
  private lastFailure: { user: string; message: string } | undefined;
  private down = false;
  private closed = false;

  constructor(
    url: string,
    private readonly logger: Logger,
    options: RedisConnectionOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 100;
    this.client = createClient({
      url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 1_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
    });
    // The user rides along as the second argument, only for the 'failure' listener.
    this.breaker = new CircuitBreaker<[run: () => Promise<void>, user: string], void>((run) => run(), {
      name: 'redis',
      // attempt() enforces each operation's own timeout.
      timeout: false,
      // Any failure opens it: one failed or hung call is enough to spare the next ones the wait.
      errorThresholdPercentage: 0,
      volumeThreshold: 0,
      resetTimeout: options.failFastMs ?? 1_000,
    });
    this.breaker.on('failure', (error: Error, _latencyMs: number, [, user]: [() => Promise<void>, string]) => {
      this.lastFailure = { user, message: error.message };
    });
    this.breaker.on('open', () => this.degrade());
    this.breaker.on('close', () => this.recover());
    // Requests never pay for the probe: it runs here, and attempts meanwhile still fall back at once.
    this.breaker.on('halfOpen', () => void this.attempt((client) => client.ping(), { user: 'health check' }));
    // A lost or refused connection degrades at once (no need to wait for a user to hit it); a
    // (re)connection means Redis answered the handshake, so it is back.
    this.client.on('error', (error: Error) => {
      if (this.closed) return;
      this.lastFailure = { user: 'connection', message: error.message };
      this.breaker.open();
    });
    this.client.on('ready', () => {
      if (!this.closed && this.down) this.breaker.close();
    });
    // Errors are handled above; the outage is logged once there.
    this.client.connect().catch(() => undefined);
  }

  /**
   * True from a failure (error, not connected, or no answer in time: a hung Redis) until Redis answers
   * again: what a Prometheus gauge reads (`collect() { this.set(redis.degraded ? 1 : 0); }`).
   */
  get degraded(): boolean {
    return this.down;
  }

  /**
   * The connection as `user` sees it. `fallback` says what it does while Redis is unavailable (e.g.
   * "rate limits use this gateway's local counters"); guards of one user share their log entry.
   */
  guard(user: string, fallback: string): RedisGuard {
    this.users.set(user, fallback);
    return new UserGuard(this, user);
  }

  /**
   * Runs `operation` on the client with a bounded wait. Undefined (the caller falls back) when Redis is
   * not connected, the operation fails or takes longer than the timeout, or Redis failed less than the
   * fail-fast period ago (then without waiting at all). Users normally go through their guard().
   */
  async attempt<T>(
    operation: (client: RedisClient) => Promise<T>,
    options: ConnectionAttemptOptions = {},
  ): Promise<T | undefined> {
    if (this.closed) return undefined;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let result: T | undefined;
    try {
      await this.breaker.fire(async () => {
        // Without this check some stores (Keyv) would try to connect and wait.
        if (!this.client.isReady) throw new Error('Redis is not connected');
        result = await within(operation(this.client), timeoutMs, 'Redis');
      }, options.user ?? 'unnamed');
      return result;
    } catch {
      // Failed, timed out, or skipped while the breaker is open: the caller falls back.
      return undefined;
    }
  }

  /** Calls `listener` each time Redis answers again after failing; returns the unsubscribe function. */
  onRecover(listener: () => void): () => void {
    this.recoverListeners.add(listener);
    return () => void this.recoverListeners.delete(listener);
  }

  /** Waits up to `timeoutMs` (default 2000) for the first connection; false if Redis is not there yet. */
  readonly ready = async (timeoutMs = 2_000): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs;
    while (!this.client.isReady && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return this.client.isReady;
  };

  /** Graceful when connected (pending replies may arrive for a second); immediate otherwise. Later attempts fall back. */
  readonly close = async (): Promise<void> => {
    this.closed = true;
    this.breaker.shutdown();
    if (this.client.isReady) await within(this.client.close(), 1_000, 'Redis close').catch(() => undefined);
    if (this.client.isOpen) this.client.destroy();
  };

  private degrade(): void {
    if (this.down || this.closed) return;
    this.down = true;
    const fallbacks = [...this.users.values()];
    this.logger.warn(
      { users: [...this.users.keys()], noticedBy: this.lastFailure?.user, err: this.lastFailure?.message },
      `Redis unavailable: ${fallbacks.length ? fallbacks.join('; ') : 'its users fall back'} until it returns`,
    );
  }

  private recover(): void {
    if (!this.down || this.closed) return;
    this.down = false;
    this.lastFailure = undefined;
    const users = [...this.users.keys()];
    this.logger.info({ users }, `Redis is back: ${users.length ? users.join(', ') : 'its users'} use it again`);
    for (const listener of this.recoverListeners) {
      // A listener's mistake must not stop the others, nor the breaker that called this.
      try {
        listener();
      } catch (error) {
        this.logger.error({ err: error }, 'Redis recovery listener failed');
      }
    }
  }
}

/** A guarded connection to the Redis at `url` (see RedisConnection); the caller closes it. */
export function connectRedis(url: string, logger: Logger, options?: RedisConnectionOptions): RedisConnection {
  return new RedisConnection(url, logger, options);
}
