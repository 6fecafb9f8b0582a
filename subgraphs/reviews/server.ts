import { subgraphUrl } from '../../lib/config';
import type { DatabaseClient } from '../../lib/db';
import type { SubgraphDefinition, SubgraphServices } from '../../lib/subgraph';
import { createCatalogClient, type CatalogClient } from './catalog-client';
import { createContext, type Context } from './context';
import { resolvers } from './resolvers';

export function reviewsSubgraph(database: DatabaseClient, services: SubgraphServices, catalog?: CatalogClient): SubgraphDefinition<Context> {
  return {
    name: 'reviews',
    resolvers,
    createContext: createContext(database.prisma, catalog ?? createCatalogClient(subgraphUrl(services.config, 'catalog'), services.signIdentity), services),
  };
}
