import DataLoader from 'dataloader';

/**
 * A per-request DataLoader whose batch function loads many rows by key in one statement; results
 * come back in key order with null for a key that has no row (DataLoader's contract).
 */
export function keyedLoader<K extends string, V>(
  load: (keys: K[]) => Promise<V[]>,
  keyOf: (row: V) => K,
): DataLoader<K, V | null> {
  return new DataLoader<K, V | null>(async (keys) => {
    const rows = await load([...keys]);
    const byKey = new Map(rows.map((row) => [keyOf(row), row]));
    return keys.map((key) => byKey.get(key) ?? null);
  });
}
