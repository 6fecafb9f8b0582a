import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import { readCallerId } from '../../lib/identity';
import type { LoaderOptions } from '../../lib/loaders';
import { createLoaders, type Loaders } from './loaders';

/** The catalog subgraph sees only the tables it owns. */
export type CatalogDb = Pick<PrismaClient, 'product'>;

export interface Context {
  db: CatalogDb;
  callerId: string | null;
  loaders: Loaders;
}

export function createContext(db: CatalogDb, loaderOptions: LoaderOptions = {}) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: readCallerId(req.headers),
    loaders: createLoaders(db, loaderOptions),
  });
}
