import type { SubgraphContext } from '../../lib/subgraph-definition';
import type { Loaders, ReviewsDb } from './loaders';

/** What reviews' resolvers get: the caller, its tables and this request's loaders (lib/subgraph.ts builds it). */
export type Context = SubgraphContext<ReviewsDb, Loaders>;
