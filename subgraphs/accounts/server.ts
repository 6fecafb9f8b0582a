import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition, SubgraphServices } from '../../lib/subgraph';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function accountsSubgraph(database: DatabaseClient, services: SubgraphServices): SubgraphDefinition<Context> {
  return { name: 'accounts', resolvers, createContext: createContext(database.prisma, services) };
}
