import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import type { SubgraphServices } from '../../lib/subgraph';
import { createLoaders, type Loaders } from './loaders';

/** The catalog subgraph sees only the tables it owns. */
export type CatalogDb = Pick<PrismaClient, 'product'>;

export interface Context {
  db: CatalogDb;
  callerId: string | null;
  loaders: Loaders;
}

export function createContext(db: CatalogDb, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: await services.verifyCaller(req.headers),
    loaders: createLoaders(db, services.loaderOptions),
  });
}
