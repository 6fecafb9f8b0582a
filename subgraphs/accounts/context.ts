import type { SubgraphContext } from '../../lib/subgraph-definition';
import type { AccountsDb, Loaders } from './loaders';

/** What accounts' resolvers get: the caller, its tables and this request's loaders (lib/subgraph.ts builds it). */
export type Context = SubgraphContext<AccountsDb, Loaders>;
