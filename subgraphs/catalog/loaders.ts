import type { EntityCache } from '../../lib/entity-cache';
import { keyedLoader, type LoaderOptions } from '../../lib/loaders';
import type { CatalogDb } from './context';

/** Cached Product rows; bump the version whenever the cached shape (the model's columns) changes. */
export const PRODUCT_CACHE = { subgraph: 'catalog', name: 'Product', version: 1 } as const;

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(db: CatalogDb, options: LoaderOptions = {}, cache: EntityCache | null = null) {
  return {
    productById: keyedLoader((ids: string[]) => db.product.findMany({ where: { id: { in: ids } } }), (product) => product.id, options, cache?.type(PRODUCT_CACHE)),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
