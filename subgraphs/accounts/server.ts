import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition } from '../../lib/subgraph';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function accountsSubgraph(database: DatabaseClient): SubgraphDefinition<Context> {
  return { name: 'accounts', resolvers, createContext: createContext(database.prisma) };
}
