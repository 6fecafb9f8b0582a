import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExpressContextFunctionArgument } from '@as-integrations/express5';
import { ApolloServerPluginCacheControl } from '@apollo/server/plugin/cacheControl';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper';
import { parse } from 'graphql';
import { subgraphAccessRules, useAccessRules, type Caller } from './authorization';
import type { Config, SubgraphName } from './config';
import { subgraphPort } from './config';
import { createDatabaseClient, type DatabaseClient } from './db';
import { Counter, Gauge } from 'prom-client';
import { EntityCache, parseTtls } from './entity-cache';
import { createMetrics, useMetrics, useRequestLog } from './metrics';
import { createIdentitySigner, createIdentityVerifier, type IdentitySigner, type IdentityVerifier } from './identity';
import type { LoaderOptions } from './loaders';
import { loadSecrets } from './secrets';
import { maskUnexpectedErrors } from './errors';
import { startGraphQLHttpServer, type RunningServer } from './http-server';
import { createLogger, type Logger } from './logger';

export const SCHEMA_DIR = join(__dirname, '..', 'schema');

/** A subgraph's parts: its contract, its resolvers and how it builds a request context (with the caller). */
export interface SubgraphDefinition<TContext extends Caller> {
  name: SubgraphName;
  resolvers: unknown;
  createContext(args: ExpressContextFunctionArgument): Promise<TContext>;
}

/** What every subgraph's context needs besides its database. */
export interface SubgraphServices {
  /** Reads the caller from the gateway's signed identity header; throws 401 when it is missing, forged or made for another body. */
  verifyCaller: IdentityVerifier;
  /** Signs an identity for calls this subgraph makes to another one. */
  signIdentity: IdentitySigner;
  loaderOptions: LoaderOptions;
  /** The cross-request entity cache (Keyv: Redis when REDIS_URL is set), or null when ENTITY_CACHE=off. */
  cache: EntityCache | null;
  config: Config;
  /** Releases what the services hold (the cache's Redis connection). */
  close(): Promise<void>;
}

export function createSubgraphServices(config: Config, logger: Logger): SubgraphServices {
  const { identitySecret } = loadSecrets(config);
  const cache =
    config.ENTITY_CACHE === 'on'
      ? new EntityCache({ namespace: config.REDIS_NAMESPACE, redisUrl: config.REDIS_URL, ttlMs: parseTtls(config.CACHE_TTL_SECONDS, config.CACHE_TTLS), timeoutMs: config.CACHE_TIMEOUT_MS, logger })
      : null;
  return {
    verifyCaller: createIdentityVerifier(identitySecret),
    signIdentity: createIdentitySigner(identitySecret),
    loaderOptions: { batching: config.BATCHING === 'on' },
    cache,
    config,
    close: async () => {
      await cache?.close();
    },
  };
}

export interface StartSubgraphOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  host: string;
  database: DatabaseClient;
  logger: Logger;
  shutdownGraceMs?: number;
  /** The subgraph's entity cache, whose hit, miss and error counts /metrics reports. Defaults to none. */
  cache?: EntityCache | null;
  /** Protects /metrics (see METRICS_TOKEN). Defaults to none. */
  metricsToken?: string;
}

/** This subgraph's metrics: the common GraphQL families, database pool use and entity cache counts. */
function subgraphMetrics(name: SubgraphName, options: StartSubgraphOptions) {
  const metrics = createMetrics(name);
  const { pool } = options.database;
  new Gauge({
    name: 'db_pool_connections',
    help: 'Database pool connections by state (total, idle, waiting requests).',
    labelNames: ['state'],
    registers: [metrics.registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });
  const cache = options.cache;
  if (cache) {
    for (const kind of ['hits', 'misses', 'errors'] as const) {
      new Counter({
        name: `entity_cache_${kind}_total`,
        help: `Entity cache ${kind} (errors: the cache failed or was too slow, the database answered).`,
        registers: [metrics.registry],
        collect() {
          this.reset();
          this.inc(cache.counters[kind]);
        },
      });
    }
  }
  return metrics;
}

/** schema/<name>.graphql: the subgraph's contract, the source of truth. */
const contractOf = (name: SubgraphName) => readFileSync(join(SCHEMA_DIR, `${name}.graphql`), 'utf8');

/** Builds the federated schema from schema/<name>.graphql (the contract is the source of truth). */
export function buildSchemaFor(name: SubgraphName, resolvers: unknown) {
  return buildSubgraphSchema([{ typeDefs: parse(contractOf(name)), resolvers: resolvers as GraphQLResolverMap<unknown> }]);
}

export function startSubgraph<TContext extends Caller>(
  definition: SubgraphDefinition<TContext>,
  options: StartSubgraphOptions,
): Promise<RunningServer> {
  const metrics = subgraphMetrics(definition.name, options);
  return startGraphQLHttpServer<TContext>({
    metrics: metrics.registry,
    metricsToken: options.metricsToken,
    apollo: {
      schema: buildSchemaFor(definition.name, definition.resolvers),
      formatError: maskUnexpectedErrors(options.logger),
      introspection: true,
      // Apollo's inline traces (ftv1) are for GraphOS reporting, which this service does not use.
      plugins: [
        ApolloServerPluginInlineTraceDisabled(),
        // Cache-Control on every answer, from the @cacheControl hints in schema/<name>.graphql: the
        // gateway combines the subgraphs' headers into its own. Unhinted object fields are uncacheable.
        ApolloServerPluginCacheControl({ calculateHttpHeaders: true, defaultMaxAge: 0 }),
        useMetrics(metrics),
        useRequestLog(options.logger),
        // @authenticated / @requiresScopes in the contract, checked against the signed caller.
        useAccessRules<TContext>(subgraphAccessRules(definition.name, contractOf(definition.name))),
      ],
    },
    context: (args) => definition.createContext(args),
    ready: () => options.database.ping(),
    host: options.host,
    port: options.port,
    shutdownGraceMs: options.shutdownGraceMs,
    portSetting: `${definition.name.toUpperCase()}_PORT`,
    logger: options.logger,
  });
}

/**
 * The `index.ts` of every subgraph: read config, connect, listen, and on SIGTERM/SIGINT drain and exit.
 */
export async function runSubgraph<TContext extends Caller>(
  name: SubgraphName,
  build: (database: DatabaseClient, services: SubgraphServices) => SubgraphDefinition<TContext>,
  config: Config,
  databaseUrl: string,
): Promise<{ server: RunningServer; stop(): Promise<void> }> {
  const logger = createLogger(name, config.LOG_LEVEL);
  const database = createDatabaseClient(databaseUrl, { poolSize: config.DB_POOL_SIZE });
  const services = createSubgraphServices(config, logger);
  await services.cache?.ready(1_000);
  const server = await startSubgraph(build(database, services), {
    cache: services.cache,
    metricsToken: config.METRICS_TOKEN,
    port: subgraphPort(config, name),
    host: config.HOST,
    database,
    logger,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
  });
  logger.info({ url: server.url }, `${name} subgraph ready`);
  return {
    server,
    stop: async () => {
      await server.stop();
      await services.close();
      await database.close();
    },
  };
}
