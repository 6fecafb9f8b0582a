import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
} from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper';
import { parse } from 'graphql';
import { Counter, Gauge } from 'prom-client';
import { subgraphEntry, type SubgraphName } from '../subgraphs/registry';
import { subgraphAccessRules, useAccessRules } from './authorization';
import { subgraphPortSetting, urlList, type Config } from './config';
import { createDatabaseClient, type DatabaseClient } from './db';
import { databaseOutageAsError, logDatabaseOutages } from './dependency-outage';
import { EntityCache, parseTtls } from './entity-cache';
import { ENTITY_TAGS_HEADER, EntityTags, useEntityTags } from './entity-tags';
import { maskUnexpectedErrors } from './errors';
import { startGraphQLHttpServer, type RunningServer } from './http-server';
import { createIdentitySigner, createIdentityVerifier, type IdentityVerifier } from './identity';
import { createLogger, type Logger } from './logger';
import { createMetrics, useMetrics, useRequestLog } from './metrics';
import {
  createReadAfterSigner,
  createReadAfterVerifier,
  ReadRouter,
  useReadReplicas,
  type ReadAfterVerifier,
} from './read-replicas';
import { loadSecrets } from './secrets';
import { useStaticCacheControl } from './static-cache-control';
import type { LoaderDependencies, SubgraphContext, SubgraphDefinition } from './subgraph-definition';

export const SUBGRAPHS_DIR = join(__dirname, '..', 'subgraphs');

/** subgraphs/<name>/schema.graphql: the subgraph's contract, the source of truth. */
export const contractOf = (name: string) => readFileSync(join(SUBGRAPHS_DIR, name, 'schema.graphql'), 'utf8');

/** What every subgraph of a process is served with: caller verification and what its loaders need. */
export interface SubgraphServices extends Omit<LoaderDependencies, 'tags' | 'resources'> {
  /** Reads the caller from the gateway's signed identity header; throws 401 when it is missing, forged or made for another body. */
  verifyCaller: IdentityVerifier;
  /** Reads the signed read-after header (lib/read-replicas.ts): where a request must read when there are read replicas. */
  verifyReadAfter: ReadAfterVerifier;
  /** Releases what the services hold (the cache's Redis connection). */
  close(): Promise<void>;
}

export function createSubgraphServices(config: Config, logger: Logger): SubgraphServices {
  const { identitySecret } = loadSecrets(config);
  const turns = new Map<string, number>();
  const cache =
    config.ENTITY_CACHE === 'on'
      ? new EntityCache({
          namespace: config.REDIS_NAMESPACE,
          redisUrl: config.REDIS_URL,
          ttlMs: parseTtls(config.CACHE_TTL_SECONDS, config.CACHE_TTLS),
          timeoutMs: config.CACHE_TIMEOUT_MS,
          logger,
        })
      : null;
  return {
    verifyCaller: createIdentityVerifier(identitySecret),
    verifyReadAfter: createReadAfterVerifier(identitySecret),
    signIdentity: createIdentitySigner(identitySecret),
    signReadAfter: createReadAfterSigner(identitySecret),
    loaderOptions: { batching: config.BATCHING === 'on' },
    cache,
    // SUBGRAPH_<NAME>_URL may list several replicas: each call takes the next one in turn.
    subgraphUrl: (name) => {
      const urls = urlList(config.subgraphs[subgraphEntry(name).name].url);
      const turn = (turns.get(name) ?? 0) % urls.length;
      turns.set(name, turn + 1);
      return urls[turn]!;
    },
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
  services: SubgraphServices;
  logger: Logger;
  /** How long SIGTERM lets in-flight requests finish. Defaults to 10000 ms. */
  shutdownGraceMs?: number;
  /** Protects /metrics (see METRICS_TOKEN). Defaults to none. */
  metricsToken?: string;
  /** The process's settings, for a subgraph with its own `open` (which needs them). Defaults to none. */
  config?: Config;
}

/** This subgraph's metrics: the common GraphQL families, database pool use, read replicas and entity cache counts. */
function subgraphMetrics(name: string, database: DatabaseClient, cache: EntityCache | null, reads?: ReadRouter) {
  const metrics = createMetrics(name);
  const { pool } = database;
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
  if (reads) {
    new Gauge({
      name: 'db_read_replica_up',
      help: 'Whether each read replica (by its index in DATABASE_REPLICA_URLS) answers: 0 while its reads go to the primary.',
      labelNames: ['replica'],
      registers: [metrics.registry],
      collect() {
        reads.availability().forEach((up, index) => this.set({ replica: String(index) }, up ? 1 : 0));
      },
    });
  }
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

/** The federated schema of a subgraph: its schema.graphql with its resolvers. */
export function buildSchemaFor(name: string, resolvers: SubgraphDefinition['resolvers']) {
  return buildSubgraphSchema([
    { typeDefs: parse(contractOf(name)), resolvers: resolvers as GraphQLResolverMap<unknown> },
  ]);
}

/**
 * Every subgraph's request context, built the same way: the caller from the gateway's signed identity
 * (401 without a valid one), the subgraph's tables, and a fresh set of its loaders for this request. With
 * read replicas (`reads`), the tables are the request's ReadSession's view (lib/read-replicas.ts).
 */
export function createContext(
  definition: SubgraphDefinition,
  database: DatabaseClient,
  services: SubgraphServices,
  resources?: unknown,
  reads?: ReadRouter,
) {
  return async ({ req }: { req: IncomingMessage }): Promise<SubgraphContext<unknown, unknown>> => {
    const caller = await services.verifyCaller(req);
    const tags = new EntityTags(req.headers[ENTITY_TAGS_HEADER] === '1');
    if (!reads)
      return {
        ...caller,
        db: database.prisma,
        tags,
        loaders: definition.createLoaders(database.prisma, { ...services, tags, resources }),
      };
    const session = await reads.session(services.verifyReadAfter(req.headers));
    return {
      ...caller,
      db: session.db,
      tags,
      reads: session,
      loaders: definition.createLoaders(session.db, {
        ...services,
        cache: session.cache(services.cache),
        tags,
        resources,
      }),
    };
  };
}

/**
 * Serves one subgraph over HTTP: its contract and resolvers, a context of caller, tables and fresh loaders per request.
 * A database it cannot reach is an outage, not a bug: requests answer DEPENDENCY_UNAVAILABLE (retryable)
 * and the outage is logged once when it starts and once when it ends (lib/dependency-outage.ts).
 */
export async function startSubgraph(
  name: string,
  definition: SubgraphDefinition,
  options: StartSubgraphOptions,
): Promise<RunningServer> {
  const { database, services } = options;
  // Read replicas: where each request reads (lib/read-replicas.ts). Without them, nothing of it runs.
  const reads = database.replicas.length ? new ReadRouter(database, { logger: options.logger }) : undefined;
  const metrics = subgraphMetrics(name, database, services.cache, reads);
  if (definition.open && !options.config) throw new Error(`The ${name} subgraph opens resources: give it its config`);
  const opened = await definition.open?.({ config: options.config!, database, logger: options.logger });
  const stopLoggingOutages = logDatabaseOutages(name, database, options.logger);
  try {
    const server = await startGraphQLHttpServer<SubgraphContext<unknown, unknown>>({
      metrics: metrics.registry,
      metricsToken: options.metricsToken,
      apollo: {
        schema: buildSchemaFor(name, definition.resolvers),
        formatError: maskUnexpectedErrors(options.logger, { expected: databaseOutageAsError(name) }),
        introspection: true,
        plugins: [
          // Apollo's inline traces (ftv1) are for GraphOS reporting, which this service does not use.
          ApolloServerPluginInlineTraceDisabled(),
          // Cache-Control on every answer, from the @cacheControl hints in its schema.graphql: the gateway
          // combines the subgraphs' headers into its own. Unhinted object fields are uncacheable. Computed
          // once per document, not in a hook around every resolver; Apollo's own plugin is kept out.
          useStaticCacheControl({ defaultMaxAge: 0 }),
          ApolloServerPluginCacheControlDisabled(),
          useMetrics(metrics),
          useRequestLog(options.logger),
          // @authenticated / @requiresScopes in the contract, checked against the signed caller.
          useAccessRules(subgraphAccessRules(name, contractOf(name))),
          // The entities the answer holds (when the gateway asks) and its writes changed: the response cache's invalidation.
          useEntityTags(),
          // A mutation reads the primary, and its answer says where the primary's WAL was after it.
          ...(reads ? [useReadReplicas(reads)] : []),
        ],
      },
      context: createContext(definition, database, services, opened?.resources, reads),
      ready: () => database.ping(),
      host: options.host,
      port: options.port,
      shutdownGraceMs: options.shutdownGraceMs,
      portSetting: subgraphPortSetting(name),
      logger: options.logger,
    });
    return {
      ...server,
      stop: async () => {
        await server.stop();
        stopLoggingOutages();
        reads?.close();
        await opened?.close();
      },
    };
  } catch (error) {
    stopLoggingOutages();
    reads?.close();
    await opened?.close();
    throw error;
  }
}

/** A subgraph running in this process, and how to stop it with what it holds. */
export interface RunningSubgraph {
  server: RunningServer;
  stop(): Promise<void>;
}

/**
 * One subgraph from the registry as `npm start` and `npm run start:subgraph` run it: its own logger,
 * database pool and services, listening on SUBGRAPH_<NAME>_PORT.
 */
export async function runSubgraph(name: SubgraphName, config: Config, databaseUrl: string): Promise<RunningSubgraph> {
  const logger = createLogger(name, config.LOG_LEVEL);
  const { default: definition } = subgraphEntry(name).load();
  const database = createDatabaseClient(databaseUrl, {
    poolSize: config.DB_POOL_SIZE,
    replicaUrls: config.DATABASE_REPLICA_URLS,
  });
  const services = createSubgraphServices(config, logger);
  await services.cache?.ready(1_000);
  const server = await startSubgraph(name, definition, {
    config,
    services,
    metricsToken: config.METRICS_TOKEN,
    port: config.subgraphs[name].port,
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
