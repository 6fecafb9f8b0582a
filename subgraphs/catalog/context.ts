import type { SubgraphContext } from '../../lib/subgraph-definition';
import type { CatalogDb, Loaders } from './loaders';

/** What catalog's resolvers get: the caller, its tables and this request's loaders (lib/subgraph.ts builds it). */
export type Context = SubgraphContext<CatalogDb, Loaders>;
