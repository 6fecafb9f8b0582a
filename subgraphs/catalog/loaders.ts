import { keyedLoader, type LoaderOptions } from '../../lib/loaders';
import type { CatalogDb } from './context';

/** Created once per request: batching within a request, never a cache across requests. */
export function createLoaders(db: CatalogDb, options: LoaderOptions = {}) {
  return {
    productById: keyedLoader((ids: string[]) => db.product.findMany({ where: { id: { in: ids } } }), (product) => product.id, options),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
