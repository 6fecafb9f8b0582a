import { defineSubgraph } from '../../lib/subgraph-definition';
import { createLoaders } from './loaders';
import { resolvers } from './resolvers';

/** The catalog subgraph: products (schema.graphql, schema.prisma). */
export default defineSubgraph({ resolvers, createLoaders });
