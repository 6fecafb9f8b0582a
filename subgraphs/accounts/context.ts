import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import type { SubgraphServices } from '../../lib/subgraph';
import { createLoaders, type Loaders } from './loaders';

/** The accounts subgraph sees only the tables it owns. */
export type AccountsDb = Pick<PrismaClient, 'user'>;

export interface Context {
  db: AccountsDb;
  /** The signed-in user's id, or null. */
  callerId: string | null;
  loaders: Loaders;
}

export function createContext(db: AccountsDb, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions' | 'cache'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: await services.verifyCaller(req.headers),
    loaders: createLoaders(db, services.loaderOptions, services.cache),
  });
}
