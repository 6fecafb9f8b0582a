import { randomUUID } from 'node:crypto';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import type { Logger } from './logger';
import { connectRedis, deleteMatching, type RedisConnection, type RedisGuard } from './redis';

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
/**
 * JSON.parse, then Dates back from their tags. Not a JSON.parse reviver: V8 calls a reviver for every value
 * of the entry (and the old one listed each object's keys to test it), where this walks the parsed entry in
 * JavaScript, allocating nothing, and only when the text holds a tag at all.
 */
function deserialize<T>(text: string): T {
  const parsed: unknown = JSON.parse(text);
  return (text.includes(DATE_MARK) ? reviveDates(parsed) : parsed) as T;
}
const DATE_MARK = `"${DATE_TAG}":`;
/** `value` with every `{ "$date": "<ISO>" }` (that key alone) in it replaced by its Date, in place. */
function reviveDates(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) value[index] = reviveDates(value[index]);
    return value;
  }
  const record = value as Record<string, unknown>;
  const tag = record[DATE_TAG];
  if (typeof tag === 'string') {
    let only = true;
    for (const key in record) if (key !== DATE_TAG) only = false;
    if (only) return new Date(tag);
  }
  for (const key in record) {
    const field = record[key];
    // Only objects can hold a tag; assigning back only what changed leaves every other property as parsed.
    if (typeof field === 'object' && field !== null) {
      const revived = reviveDates(field);
      if (revived !== field) record[key] = revived;
    }
  }
  return record;
}

export interface CacheCounters {
  hits: number;
  misses: number;
  /** Cache operations that failed or timed out (the database answered instead). */
  errors: number;
}

/** `CACHE_TTLS` ("Product=30,User=300", seconds) and `CACHE_TTL_SECONDS` as EntityCacheOptions.ttlMs. */
export function parseTtls(
  defaultSeconds: number,
  spec: string | undefined,
): Record<string, number> & { default: number } {
  const ttls: Record<string, number> & { default: number } = { default: defaultSeconds * 1000 };
  for (const entry of (spec ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)) {
    const [type, seconds] = entry.split('=');
    if (!type || !/^[1-9]\d*$/.test(seconds ?? ''))
      throw new Error(`CACHE_TTLS: "${entry}" is not Type=seconds (seconds at least 1)`);
    ttls[type] = Number(seconds) * 1000;
  }
  return ttls;
}

export interface EntityCacheOptions {
  /** The first part of every key (REDIS_NAMESPACE), so deployments or test runs can share one Redis. */
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
 * reads old shapes. A cache that fails or is slow is skipped (bounded wait), never fatal. On a Redis Cluster
 * the keys carry no hash tag, so entities spread over the masters: Keyv splits each batch read (MGET) and
 * write (MULTI) by slot, and nothing here needs two keys changed together (each has its own tombstone).
 */
/** What is cached: a type of a subgraph, and the version of its cached shape. */
export interface CachedType {
  subgraph: string;
  name: string;
  version: number;
}

/**
 * Keyv's in-memory store with a size bound: Keyv's own Map forgets expired entries only when they are
 * read. Setting a key moves it to the back; past `max` entries the oldest goes (LRU on writes).
 */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    super.delete(key);
    super.set(key, value);
    if (this.size > this.max) super.delete(this.keys().next().value as K);
    return this;
  }
}

export class EntityCache {
  readonly counters: CacheCounters = { hits: 0, misses: 0, errors: 0 };
  private readonly keyv: Keyv;
  private readonly redis: RedisConnection | undefined;
  /** Every Redis operation goes through it: bounded wait, fail-fast for a second after a failure, logged once. */
  private readonly guard: RedisGuard | undefined;
  private readonly types = new Map<string, EntityTypeCache<unknown>>();
  /** Invalidations that could not reach the cache: replayed when it is back, read around until then. */
  readonly pendingInvalidations = new Set<string>();

  constructor(private readonly options: EntityCacheOptions) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.redis = options.redisUrl ? connectRedis(options.redisUrl, options.logger, { timeoutMs }) : undefined;
    this.guard = this.redis?.guard('entity cache', 'the entity cache is skipped (subgraphs read from the database)');
    // Keys carry the namespace themselves (see type()); Keyv's own namespace stays unset because
    // Keyv prefixes single keys and key arrays differently, and it overrides the store's.
    // In memory, a bounded LRU: Keyv's default Map only forgets expired entries when they are read.
    const store = this.redis
      ? new KeyvRedis(this.redis.client as never, { throwOnErrors: true })
      : new BoundedMap<string, unknown>(50_000);
    this.keyv = new Keyv({ store: store as never, namespace: undefined, serialize, deserialize, throwOnErrors: true });
    this.keyv.on('error', () => {});
    this.guard?.onRecover(() => void this.replayInvalidations());
  }

  /**
   * The cache of one entity type of one subgraph, the same object on every call (its in-flight loads
   * span requests): `version` changes whenever the cached shape changes.
   */
  type<V>(spec: CachedType): EntityTypeCache<V> {
    const { subgraph, name, version } = spec;
    const prefix = `${this.options.namespace}:${subgraph}:${name}:v${version}`;
    let typeCache = this.types.get(prefix);
    if (!typeCache) {
      typeCache = new EntityTypeCache<unknown>(
        this,
        prefix,
        this.options.ttlMs?.[name] ?? this.options.ttlMs?.default ?? 60_000,
      );
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
    await deleteMatching(this.redis.client, `${this.options.namespace}:*`);
  }

  async close(): Promise<void> {
    await this.redis?.close();
  }

  get store(): Keyv {
    return this.keyv;
  }

  /**
   * Runs a cache operation with a bounded wait; undefined when it failed or took too long (counted in
   * `errors`). After a failure Redis is not asked again for a second, so an outage costs each request nothing.
   */
  async attempt<T>(operation: () => Promise<T>): Promise<T | undefined> {
    // Boxed, so that an operation resolving to undefined is not taken for a failure.
    const outcome = this.guard
      ? await this.guard.attempt(async () => ({ value: await operation() }))
      : await operation().then(
          (value) => ({ value }),
          () => undefined,
        );
    if (!outcome) {
      this.counters.errors += 1;
      return undefined;
    }
    return outcome.value;
  }

  /** Writes tombstones over `keys` (see invalidate()); false when the cache could not be reached. */
  async writeTombstones(keys: readonly string[]): Promise<boolean> {
    // Keyv's setMany resolves to nothing with the Redis store: having run at all is the success.
    const done = await this.attempt(async () => {
      await this.keyv.setMany(keys.map((key) => ({ key, value: tombstone(), ttl: TOMBSTONE_TTL_MS })));
      return true;
    });
    return done === true;
  }

  /** Writes the tombstones of invalidations the cache missed while it was down. */
  private async replayInvalidations(): Promise<void> {
    if (!this.pendingInvalidations.size) return;
    const keys = [...this.pendingInvalidations];
    if (!(await this.writeTombstones(keys))) return;
    for (const key of keys) this.pendingInvalidations.delete(key);
    this.options.logger.info({ keys: keys.length }, 'entity cache: invalidations made during the outage replayed');
  }
}

/**
 * A write replaces an entry with a tombstone rather than deleting it: a read that loaded the old row
 * before the write may only store it back if the entry is still as that read found it, and the
 * tombstone (new, with its own token) says it is not. It lives longer than any load can take.
 */
const TOMBSTONE = '$tombstone';
const TOMBSTONE_TTL_MS = 30_000;
const tombstone = () => ({ [TOMBSTONE]: randomUUID() });
const tombstoneOf = (value: unknown): string | null =>
  value !== null && typeof value === 'object' && !Array.isArray(value) && TOMBSTONE in value
    ? String((value as Record<string, unknown>)[TOMBSTONE])
    : null;

/** What a read saw, for its write-back to check nothing was written in between. */
export interface ReadSnapshot {
  /** Per id: the tombstone token seen, or null for no entry. */
  readonly states: Map<string, string | null>;
  /** Per id: this process's invalidation count when the read began. */
  readonly generations: Map<string, number>;
}

export class EntityTypeCache<V> {
  /** Loads in progress, across requests: concurrent misses for one key load it once. */
  private readonly inflight = new Map<string, Promise<V | null>>();
  /** Invalidations per id in this process (bounded: pruned to ids with recent writes). */
  private readonly generations = new Map<string, number>();

  constructor(
    private readonly cache: EntityCache,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {}

  private key(id: string): string {
    return `${this.prefix}:${id}`;
  }

  /** Cached values by id (undefined for a miss, a tombstone, or an unavailable cache), counting hits and misses. */
  async read(ids: readonly string[]): Promise<{ values: Array<V | undefined>; snapshot: ReadSnapshot }> {
    const snapshot: ReadSnapshot = { states: new Map(), generations: new Map() };
    for (const id of ids) snapshot.generations.set(id, this.generations.get(id) ?? 0);
    const readable = ids.filter((id) => !this.cache.pendingInvalidations.has(this.key(id)));
    const found =
      (await this.cache.attempt(() => this.cache.store.getMany<unknown>(readable.map((id) => this.key(id))))) ?? [];
    const byId = new Map(readable.map((id, index) => [id, found[index]]));
    const values = ids.map((id) => {
      const value = byId.get(id);
      const token = tombstoneOf(value);
      snapshot.states.set(id, token);
      if (value === undefined || value === null || token !== null) {
        this.cache.counters.misses += 1;
        return undefined;
      }
      this.cache.counters.hits += 1;
      return value as V;
    });
    return { values, snapshot };
  }

  /**
   * Stores loaded values with the type's TTL, but only those whose entry nobody changed since `read`
   * (no write in this process, and the same tombstone or none in the cache).
   */
  async writeBack(entries: ReadonlyArray<readonly [string, V]>, snapshot: ReadSnapshot): Promise<void> {
    const unchangedHere = entries.filter(
      ([id]) =>
        (this.generations.get(id) ?? 0) === snapshot.generations.get(id) &&
        !this.cache.pendingInvalidations.has(this.key(id)),
    );
    if (!unchangedHere.length) return;
    const now =
      (await this.cache.attempt(() => this.cache.store.getMany<unknown>(unchangedHere.map(([id]) => this.key(id))))) ??
      null;
    if (!now) return;
    const unchanged = unchangedHere.filter(([id], index) => {
      const current = now[index];
      return (
        (current === undefined || current === null ? null : (tombstoneOf(current) ?? 'value')) ===
        snapshot.states.get(id)
      );
    });
    if (unchanged.length)
      await this.cache.attempt(() =>
        this.cache.store.setMany(unchanged.map(([id, value]) => ({ key: this.key(id), value, ttl: this.ttlMs }))),
      );
  }

  /**
   * Reads ids through the cache: one multi-get, then the misses (those no other request is already
   * loading) in ONE call of `loadMissing`, written back with the type's TTL. Results in id order;
   * null for an id with no row (misses are not cached, so a row created later is seen at once).
   */
  async load(
    ids: readonly string[],
    loadMissing: (ids: string[]) => Promise<Map<string, V>>,
  ): Promise<Array<V | null>> {
    const { values, snapshot } = await this.read(ids);
    const results = new Map<string, V | null>();
    const waiting: Array<Promise<void>> = [];
    const missing: string[] = [];
    ids.forEach((id, index) => {
      const hit = values[index];
      if (hit !== undefined) {
        results.set(id, hit);
        return;
      }
      const pending = this.inflight.get(id);
      if (pending) waiting.push(pending.then((value) => void results.set(id, value)));
      else missing.push(id);
    });
    if (missing.length) {
      const batch = loadMissing(missing);
      for (const id of missing) {
        const one = batch.then((rows) => rows.get(id) ?? null);
        this.inflight.set(id, one);
        const forget = () => {
          if (this.inflight.get(id) === one) this.inflight.delete(id);
        };
        one.then(forget, forget);
        waiting.push(one.then((value) => void results.set(id, value)));
      }
      // Settle every waiter before rethrowing, so a failed load leaves no unhandled rejection behind.
      const settled = await Promise.allSettled([batch, ...waiting]);
      const failure = settled.find((outcome) => outcome.status === 'rejected');
      if (failure) throw (failure as PromiseRejectedResult).reason;
      const rows = await batch;
      await this.writeBack([...rows], snapshot);
      return ids.map((id) => results.get(id) ?? null);
    }
    await Promise.all(waiting);
    return ids.map((id) => results.get(id) ?? null);
  }

  /**
   * After a write, before it returns: entries become tombstones (so no read that began earlier can
   * store the old row back), and loads in flight here are no longer joined. If the cache cannot be
   * reached, the keys are read around until the invalidation is replayed.
   */
  async invalidate(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      this.generations.set(id, (this.generations.get(id) ?? 0) + 1);
      this.inflight.delete(id);
    }
    if (this.generations.size > 100_000) this.generations.clear();
    const keys = ids.map((id) => this.key(id));
    if (!(await this.cache.writeTombstones(keys))) for (const key of keys) this.cache.pendingInvalidations.add(key);
  }
}
