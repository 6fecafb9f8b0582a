import DataLoader from 'dataloader';
import type { EntityTypeCache } from './entity-cache';
import type { EntityTags } from './entity-tags';

export interface LoaderOptions {
  /**
   * Batch and de-duplicate loads within a request. Turned off only to measure what N+1 costs
   * (`BATCHING=off`, `npm run bench:n1`): every load is then its own statement. Defaults to true.
   */
  batching?: boolean;
}

/** DataLoader options for a per-request loader, honouring `batching`. */
export function dataLoaderOptions<K, V, C = K>(
  options: LoaderOptions,
  cacheKeyFn?: (key: K) => C,
): DataLoader.Options<K, V, C> {
  return options.batching === false ? { batch: false, cache: false } : { cacheKeyFn };
}

/** A per-request loader of rows by key that also forgets keys after a write (DataLoader's `clear`, across requests too). */
export interface KeyedLoader<K, V> extends DataLoader<K, V | null> {
  /**
   * After a write of these keys, before it returns: forgets them in this request and in the
   * cross-request cache, so no later read (here or in another process) serves the old row, and reports
   * them changed (with the lists of their type) to the gateway's response cache.
   */
  invalidate(keys: readonly K[]): Promise<void>;
}

/**
 * A per-request DataLoader whose batch function loads many rows by key in one statement; results
 * come back in key order with null for a key that has no row (DataLoader's contract).
 */
export function keyedLoader<K extends string, V>(
  load: (keys: K[]) => Promise<V[]>,
  keyOf: (row: V) => K,
  options: LoaderOptions = {},
  /** Reads through this cross-request cache first: only its misses reach `load`. Defaults to none. */
  cache?: EntityTypeCache<V> | null,
  /** The entity type the keys are ids of, and the request's tags: loads hold them, invalidations change them. Defaults to none. */
  entity?: { type: string; tags: EntityTags },
): KeyedLoader<K, V> {
  // Rows by key, filled in one pass (no [key, row] pair per row on the way to the Map).
  const loadByKey = async (keys: K[]) => {
    const byKey = new Map<string, V>();
    for (const row of await load(keys)) byKey.set(keyOf(row), row);
    return byKey;
  };
  const loader = new DataLoader<K, V | null>(async (keys) => {
    entity?.tags.hold(entity.type, keys);
    if (cache) return cache.load(keys, (missing) => loadByKey(missing as K[]));
    const byKey = await loadByKey([...keys]);
    return keys.map((key) => byKey.get(key) ?? null);
  }, dataLoaderOptions(options));
  return Object.assign(loader, {
    async invalidate(keys: readonly K[]) {
      for (const key of keys) loader.clear(key);
      entity?.tags.change(entity.type, keys);
      await cache?.invalidate(keys);
    },
  });
}
