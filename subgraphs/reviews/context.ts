import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import type { PrismaClient } from '../../lib/db';
import { readCallerId } from '../../lib/identity';
import type { LoaderOptions } from '../../lib/loaders';
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

export function createContext(db: ReviewsDb, catalog: CatalogClient, loaderOptions: LoaderOptions = {}) {
  return async ({ req }: ExpressContextFunctionArgument): Promise<Context> => ({
    db,
    callerId: readCallerId(req.headers),
    loaders: createLoaders(db, loaderOptions),
    catalog,
  });
}
