import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { Product } from '../../generated/prisma/client';
import type { PrismaClient } from '../../lib/db';
import type { EntityTypeCache } from '../../lib/entity-cache';
import type { Caller } from '../../lib/authorization';
import type { SubgraphServices } from '../../lib/subgraph';
import { createLoaders, PRODUCT_CACHE, type Loaders } from './loaders';

/** The catalog subgraph sees only the tables it owns. */
export type CatalogDb = Pick<PrismaClient, 'product'>;

/** The caller (user id and scopes) from the gateway's signed identity, then what this subgraph reads with. */
export interface Context extends Caller {
  db: CatalogDb;
  loaders: Loaders;
  /** The cross-request cache of Product rows, for writes to invalidate; null when caching is off. */
  productCache: EntityTypeCache<Product> | null;
}

export function createContext(db: CatalogDb, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions' | 'cache'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    ...(await services.verifyCaller(req)),
    loaders: createLoaders(db, services.loaderOptions, services.cache),
    productCache: services.cache?.type<Product>(PRODUCT_CACHE) ?? null,
  });
}
