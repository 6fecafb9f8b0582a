import type { Config } from '../../lib/config';
import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition } from '../../lib/subgraph';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function catalogSubgraph(database: DatabaseClient, config: Pick<Config, 'BATCHING'>): SubgraphDefinition<Context> {
  return { name: 'catalog', resolvers, createContext: createContext(database.prisma, { batching: config.BATCHING === 'on' }) };
}
