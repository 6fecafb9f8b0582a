import type { SubgraphContext } from '../../lib/subgraph-definition';
import type { JobsDb, Loaders } from './loaders';

/** What jobs' resolvers get: the caller, its tables and this request's loaders (lib/subgraph.ts builds it). */
export type Context = SubgraphContext<JobsDb, Loaders>;
