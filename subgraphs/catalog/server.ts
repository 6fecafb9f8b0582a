import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition, SubgraphServices } from '../../lib/subgraph';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function catalogSubgraph(database: DatabaseClient, services: SubgraphServices): SubgraphDefinition<Context> {
  return { name: 'catalog', resolvers, createContext: createContext(database.prisma, services) };
}
