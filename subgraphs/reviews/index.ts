import { defineSubgraph } from '../../lib/subgraph-definition';
import { createLoaders } from './loaders';
import { resolvers } from './resolvers';

/** The reviews subgraph: reviews of products by users (schema.graphql, schema.prisma). */
export default defineSubgraph({ resolvers, createLoaders });
