import CircuitBreaker from 'opossum';
import { createClient, createCluster } from 'redis';
import type { Logger } from './logger';
import { parseRedisUrl } from './redis-url';

/** A client of one Redis. */
export type RedisServerClient = ReturnType<typeof createClient>;
/** A client of a Redis Cluster: it sends each command to the master of its first key's slot. */
export type RedisClusterClient = ReturnType<typeof createCluster>;
/**
 * What users of Redis are handed: either client. Their commands are the same, with one rule for a cluster:
 * the keys of one command, transaction (MULTI) or script must share a slot (a `{hash tag}`); commands
 * sent together with Promise.all may name any keys.
 */
export type RedisClient = RedisServerClient | RedisClusterClient;

/** Whether `client` is a Redis Cluster's. */
export const isCluster = (client: RedisClient): client is RedisClusterClient => 'masters' in client;

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

/** Whether a cluster client knows a master for every one of the 16384 slots (so it can route any key). */
function servesEverySlot(client: RedisClusterClient): boolean {
  const { slots } = client;
  if (slots.length !== 16_384) return false;
  // A loop, not every(): the slots are a sparse array until the layout is known, and every() skips holes.
  for (let slot = 0; slot < slots.length; slot += 1) if (!slots[slot]?.master) return false;
  return true;
}

/** Reconnection backoff of every client (each cluster node's too): 100 ms doubling up to 2 s. */
const reconnectDelay = (retries: number) => Math.min(100 * 2 ** retries, 2_000);

/**
 * A node-redis client for shared counters and caches, with the one guard every user of Redis goes
 * through: a bounded wait per operation, then fail-fast. Start-up does not wait for Redis: while it is
 * unreachable, commands fail at once (no offline queue) and users take their local fallback; the
 * client keeps reconnecting with capped backoff.
 *
 * The URL may name a Redis Cluster (`redis+cluster://host:port,host:port`, see lib/redis-url.ts): the
 * client learns the cluster's layout from the first seed node that answers (tried again with the same
 * backoff until one does) and sends each command to its slot's master. The cluster is one Redis to the
 * guard: a master that is lost or refuses (a node's connection error, CLUSTERDOWN, a command that fails)
 * degrades the whole connection, every user falls back, and it is back once the probe finds every master
 * answering with `cluster_state:ok`. A probe that finds a master silent asks a live one for the layout
 * again, so a replica promoted in a failover is used without waiting for the old master to return.
 *
 * The guard is an opossum circuit breaker shared by all users of the connection (one socket: when it
 * is down or hung, it is so for every user). Any failure opens it; while open, attempts return
 * undefined without touching Redis; after `failFastMs` a background probe asks Redis (PING; see probe()
 * for a cluster), so a hung Redis makes no request wait more than once, and an answer, or a
 * reconnection, closes it again. An outage is logged once when it starts and once when it ends, naming
 * the users and what they fall back to.
 */
export class RedisConnection {
  readonly client: RedisClient;
  /** Whether the URL names a Redis Cluster (`redis+cluster://…`). */
  readonly cluster: boolean;
  private readonly timeoutMs: number;
  private readonly breaker: CircuitBreaker<[run: () => Promise<void>, user: string], void>;
  /** Each user's fallback, by user name: the outage log says what happens meanwhile. */
  private readonly users = new Map<string, string>();
  private readonly recoverListeners = new Set<() => void>();
  /** What failed first (and through which user), for the one log line of an outage. */
  private lastFailure: { user: string; message: string } | undefined;
  private down = false;
  private closed = false;
  /** A cluster's layout is known (its connect() resolved): commands can be routed. */
  private clusterConnected = false;
  /** The wait before a cluster's next connection attempt, cleared by close(). */
  private retryTimer: NodeJS.Timeout | undefined;
  /** connectCluster() is running. */
  private connecting = false;

  constructor(
    url: string,
    private readonly logger: Logger,
    options: RedisConnectionOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 100;
    const target = parseRedisUrl(url);
    this.cluster = target.cluster;
    const socket = { connectTimeout: 1_000, reconnectStrategy: reconnectDelay };
    this.client = target.cluster
      ? createCluster({
          rootNodes: target.nodes.map(({ host, port }) => ({ socket: { host, port } })),
          // Every node's client, seeds and discovered ones alike.
          defaults: {
            username: target.username,
            password: target.password,
            disableOfflineQueue: true,
            socket: target.tls ? { ...socket, tls: true } : socket,
          },
        })
      : createClient({ url, disableOfflineQueue: true, socket });
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
    this.breaker.on('halfOpen', () => void this.attempt((client) => this.probe(client), { user: 'health check' }));
    // A lost or refused connection degrades at once (no need to wait for a user to hit it); a
    // (re)connection means Redis answered the handshake, so it is back.
    const lost = (error: Error) => {
      if (this.closed) return;
      this.lastFailure = { user: 'connection', message: error.message };
      this.breaker.open();
    };
    this.client.on('error', lost);
    if (isCluster(this.client)) {
      // Any node's connection, lost or refused. A cluster has no 'ready' of its own: the probe finds it back.
      this.client.on('node-error', lost);
      void this.connectCluster(this.client);
    } else {
      this.client.on('ready', () => {
        if (!this.closed && this.down) this.breaker.close();
      });
      // Errors are handled above; the outage is logged once there.
      this.client.connect().catch(() => undefined);
    }
  }

  /**
   * Connects a cluster client: node-redis gives up when no seed node answers, so this tries again with the
   * reconnection backoff until one does (or the connection is closed). A layout that leaves slots without a
   * master (a cluster still being created, or none) is no connection: node-redis would not ask again by itself.
   */
  private async connectCluster(client: RedisClusterClient): Promise<void> {
    if (this.connecting) return;
    this.connecting = true;
    try {
      for (let retries = 0; !this.closed; retries += 1) {
        try {
          await client.connect();
          if (this.closed) return;
          if (!servesEverySlot(client)) {
            client.destroy();
            throw new Error('Redis Cluster does not serve every slot yet');
          }
          this.clusterConnected = true;
          if (this.down) this.breaker.close();
          return;
        } catch (error) {
          if (this.closed) return;
          // A seed's failure was an 'error' event already; the outage is logged once, whichever comes first.
          this.lastFailure = { user: 'connection', message: (error as Error).message };
          this.breaker.open();
          // Never resolved once close() clears it: the loop then ends with nothing left pending.
          await new Promise((resolve) => (this.retryTimer = setTimeout(resolve, reconnectDelay(retries))));
        }
      }
    } finally {
      this.connecting = false;
    }
  }

  /** Whether commands can be sent: connected to the Redis, or the cluster's layout known. */
  private get isReady(): boolean {
    return isCluster(this.client) ? this.clusterConnected && this.client.isOpen : this.client.isReady;
  }

  /**
   * The health check after a failure: PING for one Redis; for a cluster, a master known for every slot, each
   * answering and saying `cluster_state:ok` (a survivor answers PING while the cluster refuses every key).
   * Otherwise the layout is asked for again (of a live master, else of the seed nodes): a master may have been
   * replaced in a failover, or every node moved, and node-redis only asks again when a node answers MOVED,
   * which a dead one never does.
   */
  private async probe(client: RedisClient): Promise<void> {
    if (!isCluster(client)) {
      await client.ping();
      return;
    }
    const masters = [...client.masters];
    const answers = await Promise.allSettled(
      masters.map(async (master) => {
        const info = await (await client.nodeClient(master)).clusterInfo();
        if (!/^cluster_state:ok\b/m.test(info)) throw new Error(`Redis Cluster not ok, says ${master.address}`);
      }),
    );
    const failure = answers.find((answer): answer is PromiseRejectedResult => answer.status === 'rejected');
    if (!failure && servesEverySlot(client)) return;
    const live = masters.find((master, index) => answers[index]!.status === 'fulfilled' && master.client?.isReady);
    // Given a node that does not answer, node-redis goes on to the seed nodes.
    const askFirst = live?.client ?? masters.find((master) => master.client)?.client;
    if (askFirst) void client._slots.rediscover(askFirst).catch(() => undefined);
    else {
      // No node to ask: from the seed nodes, as at start.
      this.clusterConnected = false;
      client.destroy();
      void this.connectCluster(client);
    }
    throw failure?.reason ?? new Error('Redis Cluster: some slots have no known master');
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
        if (!this.isReady) throw new Error('Redis is not connected');
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
    while (!this.isReady && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return this.isReady;
  };

  /** Graceful when connected (pending replies may arrive for a second); immediate otherwise. Later attempts fall back. */
  readonly close = async (): Promise<void> => {
    const wasReady = this.isReady;
    this.closed = true;
    this.breaker.shutdown();
    clearTimeout(this.retryTimer);
    if (isCluster(this.client)) {
      // The cluster forgets its nodes as it closes them: hold on to them, to destroy any whose close hangs.
      const nodes = [...this.client.nodeByAddress.values()].flatMap((node) => ('client' in node && node.client) || []);
      if (wasReady) await within(this.client.close(), 1_000, 'Redis close').catch(() => undefined);
      else this.client.destroy();
      for (const node of nodes) if (node.isOpen) node.destroy();
      return;
    }
    if (wasReady) await within(this.client.close(), 1_000, 'Redis close').catch(() => undefined);
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

/**
 * Deletes every key matching `pattern` (SCAN's MATCH), on every master of a cluster: for maintenance and
 * benchmarks, not requests. Returns how many it deleted. Not guarded: the caller wants Redis, or an error.
 */
export async function deleteMatching(client: RedisClient, pattern: string): Promise<number> {
  const nodes = isCluster(client)
    ? await Promise.all(client.masters.map((master) => client.nodeClient(master)))
    : [client];
  let deleted = 0;
  for (const node of nodes) {
    const keys: string[] = [];
    for await (const batch of node.scanIterator({ MATCH: pattern, COUNT: 1_000 })) keys.push(...batch);
    for (let start = 0; start < keys.length; start += 1_000) {
      const batch = keys.slice(start, start + 1_000);
      // A cluster node refuses a DEL of keys in different slots: one each there, sent together.
      deleted += isCluster(client)
        ? (await Promise.all(batch.map((key) => node.del(key)))).reduce((sum, count) => sum + count, 0)
        : await node.del(batch);
    }
  }
  return deleted;
}

/** A guarded connection to the Redis at `url` (see RedisConnection); the caller closes it. */
export function connectRedis(url: string, logger: Logger, options?: RedisConnectionOptions): RedisConnection {
  return new RedisConnection(url, logger, options);
}
