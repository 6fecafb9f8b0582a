import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import type { SubgraphServices } from '../../lib/subgraph';
import type { CatalogClient } from './catalog-client';
import { createLoaders, type Loaders } from './loaders';

/** The reviews subgraph sees only the tables it owns; products and users are known by key only. */
export type ReviewsDb = Pick<PrismaClient, 'review' | '$queryRaw'>;

export interface Context {
  db: ReviewsDb;
  callerId: string | null;
  loaders: Loaders;
  catalog: CatalogClient;
}

export function createContext(db: ReviewsDb, catalog: CatalogClient, services: Pick<SubgraphServices, 'verifyCaller' | 'loaderOptions'>) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: await services.verifyCaller(req.headers),
    loaders: createLoaders(db, services.loaderOptions),
    catalog,
  });
}
