import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper';
import type { Caller } from './authorization';
import type { Config } from './config';
import type { DatabaseClient, PrismaClient } from './db';
import type { EntityCache } from './entity-cache';
import type { EntityTags } from './entity-tags';
import type { IdentitySigner } from './identity';
import type { LoaderOptions } from './loaders';
import type { Logger } from './logger';
import type { ReadAfterSigner, ReadSession } from './read-replicas';

/** What a subgraph's loaders are built with, besides its database. */
export interface LoaderDependencies {
  /** DataLoader batching (off only to measure N+1). */
  loaderOptions: LoaderOptions;
  /** The cross-request entity cache (Keyv: Redis when REDIS_URL is set), or null when ENTITY_CACHE=off. */
  cache: EntityCache | null;
  /** Signs an identity for calls this subgraph makes to another one. */
  signIdentity: IdentitySigner;
  /**
   * Signs READ_AFTER_HEADER for such a call (lib/read-replicas.ts): a check before a write asks the other
   * subgraph to read its primary, as the write's own reads do. Defaults to none (the call reads where it may).
   */
  signReadAfter?: ReadAfterSigner;
  /** Where another subgraph is reached (SUBGRAPH_<NAME>_URL, or where the harness started it). */
  subgraphUrl(name: string): string;
  /**
   * This request's entity tags (lib/entity-tags.ts): what its reads hold and its writes change, for the
   * gateway's response cache. keyedLoader records them given `{ type, tags }`; lists and other reads call
   * `tags.hold(type)` themselves. A subgraph that records none has every write of it treated as changing
   * everything it served (gateway/response-cache.ts).
   */
  tags: EntityTags;
  /** What the subgraph's own `open` gave it for the life of its process (undefined without one). */
  resources?: unknown;
}

/** What a subgraph's `open` is given: its process's settings, database and logger. */
export interface OpenOptions {
  config: Config;
  database: DatabaseClient;
  logger: Logger;
}

/** What a subgraph holds for the life of its process, and how to release it. */
export interface SubgraphResources<TResources> {
  resources: TResources;
  close(): Promise<void>;
}

/**
 * What a subgraph folder exports (as the default export of its index.ts): its resolvers, and the
 * loaders each request gets. Its contract is the schema.graphql beside it; everything else (server,
 * caller verification, metrics, cache control) is the same for every subgraph (lib/subgraph.ts).
 */
export interface SubgraphDefinition<TLoaders = unknown, TResources = unknown> {
  resolvers: GraphQLResolverMap<never>;
  /**
   * Opens what the subgraph holds for the life of its process besides its database pool (the jobs
   * subgraph: its queue), when it starts; closed when it stops. Its loaders get it as `resources`.
   * Defaults to none.
   */
  open?(options: OpenOptions): Promise<SubgraphResources<TResources>>;
  /**
   * Per request: the loaders resolvers read with, and the invalidators writes call (as DataLoader's
   * `clear(key)`, they forget a key in this request and in the cross-request cache).
   */
  createLoaders(db: PrismaClient, dependencies: LoaderDependencies & { resources: TResources }): TLoaders;
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
  /** Where this request reads, with read replicas (lib/read-replicas.ts; `db` is its view); none without them. */
  reads?: ReadSession;
}

/** Types a subgraph's definition (its index.ts default export). */
export function defineSubgraph<TLoaders, TResources = undefined>(
  definition: SubgraphDefinition<TLoaders, TResources>,
): SubgraphDefinition<TLoaders, TResources> {
  return definition;
}
