import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import type { Caller } from '../../lib/authorization';
import type { SubgraphServices } from '../../lib/subgraph';
import { createLoaders, type Loaders } from './loaders';

/** The accounts subgraph sees only the tables it owns. */
export type AccountsDb = Pick<PrismaClient, 'user'>;

/** The caller (user id and scopes) from the gateway's signed identity, then what this subgraph reads with. */
export interface Context extends Caller {
  db: AccountsDb;
  loaders: Loaders;
}

export function createContext(db: AccountsDb, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions' | 'cache'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    ...(await services.verifyCaller(req)),
    loaders: createLoaders(db, services.loaderOptions, services.cache),
  });
}
