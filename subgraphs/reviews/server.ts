import type { Config } from '../../lib/config';
import { subgraphUrl } from '../../lib/config';
import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition } from '../../lib/subgraph';
import { createCatalogClient, type CatalogClient } from './catalog-client';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function reviewsSubgraph(database: DatabaseClient, config: Config, catalog?: CatalogClient): SubgraphDefinition<Context> {
  return {
    name: 'reviews',
    resolvers,
    createContext: createContext(database.prisma, catalog ?? createCatalogClient(subgraphUrl(config, 'catalog')), { batching: config.BATCHING === 'on' }),
  };
}
