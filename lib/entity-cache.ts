import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import type { Logger } from './logger';
import { connectRedis } from './redis';

/** Cache reads and writes wait at most this long; past it the subgraph goes to the database. */
const DEFAULT_TIMEOUT_MS = 50;

/**
 * JSON that keeps Dates as Dates: rows go in and come out exactly as Prisma returned them
 * (DateTime stays a Date, integer cents stay integers).
 */
const DATE_TAG = '$date';
function serialize(data: unknown): string {
  return JSON.stringify(data, function replace(this: Record<string, unknown>, key, value) {
    const raw = this[key];
    return raw instanceof Date ? { [DATE_TAG]: raw.toISOString() } : value;
  });
}
function deserialize<T>(text: string): T {
  return JSON.parse(text, (_key, value) =>
    value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1 && typeof value[DATE_TAG] === 'string' ? new Date(value[DATE_TAG]) : value,
  ) as T;
}

export interface CacheCounters {
  hits: number;
  misses: number;
  /** Cache operations that failed or timed out (the database answered instead). */
  errors: number;
}

/** `CACHE_TTLS` ("Product=30,User=300", seconds) and `CACHE_TTL_SECONDS` as EntityCacheOptions.ttlMs. */
export function parseTtls(defaultSeconds: number, spec: string | undefined): Record<string, number> & { default: number } {
  const ttls: Record<string, number> & { default: number } = { default: defaultSeconds * 1000 };
  for (const entry of (spec ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    const [type, seconds] = entry.split('=');
    if (!type || !/^\d+$/.test(seconds ?? '')) throw new Error(`CACHE_TTLS: "${entry}" is not Type=seconds`);
    ttls[type] = Number(seconds) * 1000;
  }
  return ttls;
}

export interface EntityCacheOptions {
  /** The first part of every key (CACHE_NAMESPACE), so deployments or test runs can share one Redis. */
  namespace: string;
  /** Redis URL: every replica of the subgraph shares one cache. Defaults to an in-process memory cache. */
  redisUrl?: string;
  /** How long an entry lives, in ms, by type name; `default` for the rest. Defaults to 60000 for all. */
  ttlMs?: Record<string, number> & { default?: number };
  /** Longest wait for the cache before going to the database. Defaults to 50 ms. */
  timeoutMs?: number;
  logger: Logger;
}

/**
 * A cross-request read-through cache of entities in Keyv (Redis when configured, memory otherwise).
 * Keys are `<namespace>:<subgraph>:<Type>:v<shape version>:<id>`, so a deploy that changes a type's shape never
 * reads old shapes. A cache that fails or is slow is skipped (bounded wait), never fatal.
 */
/** What is cached: a type of a subgraph, and the version of its cached shape. */
export interface CachedType {
  subgraph: string;
  name: string;
  version: number;
}

export class EntityCache {
  readonly counters: CacheCounters = { hits: 0, misses: 0, errors: 0 };
  private readonly keyv: Keyv;
  private readonly redis: ReturnType<typeof connectRedis> | undefined;
  private readonly timeoutMs: number;
  private degraded = false;

  constructor(private readonly options: EntityCacheOptions) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.redis = options.redisUrl ? connectRedis(options.redisUrl, options.logger) : undefined;
    // Keys carry the namespace themselves (see type()); Keyv's own namespace stays unset because
    // Keyv prefixes single keys and key arrays differently, and it overrides the store's.
    const store = this.redis ? new KeyvRedis(this.redis.client as never, { throwOnErrors: true }) : undefined;
    // An explicit `store: undefined` would replace Keyv's own in-memory Map: pass a store only for Redis.
    this.keyv = new Keyv({ ...(store ? { store } : {}), namespace: undefined, serialize, deserialize });
    this.keyv.on('error', () => {});
  }

  private readonly types = new Map<string, EntityTypeCache<unknown>>();

  /**
   * The cache of one entity type of one subgraph, the same object on every call (its in-flight loads
   * span requests): `version` changes whenever the cached shape changes.
   */
  type<V>(spec: CachedType): EntityTypeCache<V> {
    const { subgraph, name, version } = spec;
    const prefix = `${this.options.namespace}:${subgraph}:${name}:v${version}`;
    let typeCache = this.types.get(prefix);
    if (!typeCache) {
      typeCache = new EntityTypeCache<unknown>(this, prefix, this.options.ttlMs?.[name] ?? this.options.ttlMs?.default ?? 60_000);
      this.types.set(prefix, typeCache);
    }
    return typeCache as EntityTypeCache<V>;
  }

  /** Waits for Redis to be connected (start-up and tests); true when there is no Redis. */
  ready(timeoutMs?: number): Promise<boolean> {
    return this.redis ? this.redis.ready(timeoutMs) : Promise.resolve(true);
  }

  /** Empties this namespace of the cache (benchmarks measure cold reads with it). */
  async clear(): Promise<void> {
    if (!this.redis) {
      await this.keyv.clear();
      return;
    }
    const keys: string[] = [];
    for await (const batch of this.redis.client.scanIterator({ MATCH: `${this.options.namespace}:*`, COUNT: 1_000 })) keys.push(...(batch as unknown as string[]));
    for (let start = 0; start < keys.length; start += 1_000) await this.redis.client.del(keys.slice(start, start + 1_000));
  }

  async close(): Promise<void> {
    await this.redis?.close();
  }

  /** Runs a cache operation with a bounded wait; undefined when it failed or took too long. */
  async attempt<T>(operation: () => Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        operation(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`cache did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
      if (this.degraded) {
        this.degraded = false;
        this.options.logger.info('entity cache is back');
      }
      return result;
    } catch (error) {
      this.counters.errors += 1;
      if (!this.degraded) {
        this.degraded = true;
        this.options.logger.warn({ err: (error as Error).message }, 'entity cache unavailable: serving from the database until it returns');
      }
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  get store(): Keyv {
    return this.keyv;
  }
}

export class EntityTypeCache<V> {
  /** Loads in progress, across requests: concurrent misses for one key load it once. */
  private readonly inflight = new Map<string, Promise<V | null>>();

  constructor(
    private readonly cache: EntityCache,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {}

  private key(id: string): string {
    return `${this.prefix}:${id}`;
  }

  /**
   * Reads ids through the cache: one multi-get, then the misses (those no other request is already
   * loading) in ONE call of `loadMissing`, written back with the type's TTL. Results in id order;
   * null for an id with no row (misses are not cached, so a row created later is seen at once).
   */
  async load(ids: readonly string[], loadMissing: (ids: string[]) => Promise<Map<string, V>>): Promise<Array<V | null>> {
    const cached = (await this.cache.attempt(() => this.cache.store.getMany<V>(ids.map((id) => this.key(id))))) ?? [];
    const results = new Map<string, V | null>();
    const waiting: Array<Promise<void>> = [];
    const missing: string[] = [];
    ids.forEach((id, index) => {
      const hit = cached[index];
      if (hit !== undefined && hit !== null) {
        this.cache.counters.hits += 1;
        results.set(id, hit);
        return;
      }
      this.cache.counters.misses += 1;
      const pending = this.inflight.get(id);
      if (pending) waiting.push(pending.then((value) => void results.set(id, value)));
      else missing.push(id);
    });
    if (missing.length) {
      const batch = loadMissing(missing);
      for (const id of missing) {
        const one = batch.then((rows) => rows.get(id) ?? null);
        this.inflight.set(id, one);
        // A failed load is not cached; whoever waits on it sees the error.
        one.catch(() => undefined).finally(() => this.inflight.delete(id));
        waiting.push(one.then((value) => void results.set(id, value)));
      }
      const rows = await batch;
      const entries = [...rows].map(([id, value]) => ({ key: this.key(id), value, ttl: this.ttlMs }));
      if (entries.length) await this.cache.attempt(() => this.cache.store.setMany(entries));
    }
    await Promise.all(waiting);
    return ids.map((id) => results.get(id) ?? null);
  }

  /** Cached values by id (undefined for a miss or when the cache is unavailable), counting hits and misses. */
  async getMany(ids: readonly string[]): Promise<Array<V | undefined>> {
    const cached = (await this.cache.attempt(() => this.cache.store.getMany<V>(ids.map((id) => this.key(id))))) ?? [];
    return ids.map((_id, index) => {
      const hit = cached[index];
      if (hit === undefined || hit === null) {
        this.cache.counters.misses += 1;
        return undefined;
      }
      this.cache.counters.hits += 1;
      return hit;
    });
  }

  /** Stores values by id with the type's TTL (skipped when the cache is unavailable). */
  async setMany(entries: ReadonlyArray<readonly [string, V]>): Promise<void> {
    if (!entries.length) return;
    await this.cache.attempt(() => this.cache.store.setMany(entries.map(([id, value]) => ({ key: this.key(id), value, ttl: this.ttlMs }))));
  }

  /**
   * Drops entries after a write, before the write returns; and once more a moment later, in case a
   * read that loaded the old row before the write stored it back just after.
   */
  async invalidate(ids: readonly string[]): Promise<void> {
    const keys = ids.map((id) => this.key(id));
    await this.cache.attempt(() => this.cache.store.deleteMany(keys));
    setTimeout(() => void this.cache.attempt(() => this.cache.store.deleteMany(keys)), 1_000).unref();
  }
}
