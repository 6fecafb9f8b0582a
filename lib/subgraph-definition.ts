import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper';
import type { Caller } from './authorization';
import type { PrismaClient } from './db';
import type { EntityCache } from './entity-cache';
import type { EntityTags } from './entity-tags';
import type { IdentitySigner } from './identity';
import type { LoaderOptions } from './loaders';

/** What a subgraph's loaders are built with, besides its database. */
export interface LoaderDependencies {
  /** DataLoader batching (off only to measure N+1). */
  loaderOptions: LoaderOptions;
  /** The cross-request entity cache (Keyv: Redis when REDIS_URL is set), or null when ENTITY_CACHE=off. */
  cache: EntityCache | null;
  /** Signs an identity for calls this subgraph makes to another one. */
  signIdentity: IdentitySigner;
  /** Where another subgraph is reached (SUBGRAPH_<NAME>_URL, or where the harness started it). */
  subgraphUrl(name: string): string;
  /**
   * This request's entity tags (lib/entity-tags.ts): what its reads hold and its writes change, for the
   * gateway's response cache. keyedLoader records them given `{ type, tags }`; lists and other reads call
   * `tags.hold(type)` themselves. A subgraph that records none has every write of it treated as changing
   * everything it served (gateway/response-cache.ts).
   */
  tags: EntityTags;
}

/**
 * What a subgraph folder exports (as the default export of its index.ts): its resolvers, and the
 * loaders each request gets. Its contract is the schema.graphql beside it; everything else (server,
 * caller verification, metrics, cache control) is the same for every subgraph (lib/subgraph.ts).
 */
export interface SubgraphDefinition<TLoaders = unknown> {
  resolvers: GraphQLResolverMap<never>;
  /**
   * Per request: the loaders resolvers read with, and the invalidators writes call (as DataLoader's
   * `clear(key)`, they forget a key in this request and in the cross-request cache).
   */
  createLoaders(db: PrismaClient, dependencies: LoaderDependencies): TLoaders;
}

/** The module the registry loads for a subgraph. */
export interface SubgraphModule {
  default: SubgraphDefinition;
}

/** A subgraph's request context: the caller from the gateway's signed identity, its tables and its loaders. */
export interface SubgraphContext<TDb, TLoaders> extends Caller {
  /** The Prisma client narrowed to the tables this subgraph owns. */
  db: TDb;
  loaders: TLoaders;
  /** What this request's answer holds and its writes change (the loaders' tags). */
  tags: EntityTags;
}

/** Types a subgraph's definition (its index.ts default export). */
export function defineSubgraph<TLoaders>(definition: SubgraphDefinition<TLoaders>): SubgraphDefinition<TLoaders> {
  return definition;
}
