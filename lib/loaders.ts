import DataLoader from 'dataloader';
import type { EntityTypeCache } from './entity-cache';

export interface LoaderOptions {
  /**
   * Batch and de-duplicate loads within a request. Turned off only to measure what N+1 costs
   * (`BATCHING=off`, `npm run bench:n1`): every load is then its own statement. Defaults to true.
   */
  batching?: boolean;
}

/** DataLoader options for a per-request loader, honouring `batching`. */
export function dataLoaderOptions<K, C = K>(options: LoaderOptions, cacheKeyFn?: (key: K) => C): DataLoader.Options<K, any, C> {
  return options.batching === false ? { batch: false, cache: false } : { cacheKeyFn };
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
): DataLoader<K, V | null> {
  const loadByKey = async (keys: K[]) => new Map((await load(keys)).map((row) => [keyOf(row), row] as [string, V]));
  return new DataLoader<K, V | null>(async (keys) => {
    if (cache) return cache.load(keys, (missing) => loadByKey(missing as K[]));
    const byKey = await loadByKey([...keys]);
    return keys.map((key) => byKey.get(key) ?? null);
  }, dataLoaderOptions(options));
}
