import { defineSubgraph } from '../../lib/subgraph-definition';
import { createLoaders } from './loaders';
import { resolvers } from './resolvers';
import { openJobsResources } from './resources';

/** The jobs subgraph: bulk queries run in the background, and webhooks when they end (README.md, schema.graphql). */
export default defineSubgraph({ resolvers, createLoaders, open: openJobsResources });
