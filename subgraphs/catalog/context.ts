import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { Product } from '../../generated/prisma/client';
import type { PrismaClient } from '../../lib/db';
import type { EntityTypeCache } from '../../lib/entity-cache';
import type { SubgraphServices } from '../../lib/subgraph';
import { createLoaders, PRODUCT_CACHE, type Loaders } from './loaders';

/** The catalog subgraph sees only the tables it owns. */
export type CatalogDb = Pick<PrismaClient, 'product'>;

export interface Context {
  db: CatalogDb;
  callerId: string | null;
  loaders: Loaders;
  /** The cross-request cache of Product rows, for writes to invalidate; null when caching is off. */
  productCache: EntityTypeCache<Product> | null;
}

export function createContext(db: CatalogDb, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions' | 'cache'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: await services.verifyCaller(req.headers),
    loaders: createLoaders(db, services.loaderOptions, services.cache),
    productCache: services.cache?.type<Product>(PRODUCT_CACHE) ?? null,
  });
}
