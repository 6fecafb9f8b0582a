import { startConfiguredGateway } from '../gateway/bootstrap';
import type { GatewayOptions, RunningGateway } from '../gateway/server';
import { SUBGRAPHS, type SubgraphName } from '../subgraphs/registry';
import type { Config } from './config';
import { createDatabaseClient, type DatabaseClient } from './db';
import type { RunningServer } from './http-server';
import { createLogger, type Logger } from './logger';
import { createSubgraphServices, startSubgraph, type SubgraphServices } from './subgraph';
import type { SubgraphDefinition } from './subgraph-definition';

export interface StackOptions {
  config: Config;
  databaseUrl: string;
  /** Each subgraph's database client (tests count statements with theirs). Defaults to a pool of DB_POOL_SIZE (and one per DATABASE_REPLICA_URLS). */
  databaseFor?: (name: SubgraphName) => DatabaseClient;
  /** Logger of every part. Defaults to one per part, named after it, at LOG_LEVEL. */
  logger?: Logger;
  /** Overrides of the gateway's configured options. Defaults to none. */
  gateway?: Partial<GatewayOptions>;
}

/** A subgraph started by the stack, with the services it was started with. */
export interface StackSubgraph extends RunningServer {
  services: SubgraphServices;
}

export interface RunningStack {
  gateway: RunningGateway;
  /** The running subgraphs, by name (replaced by restartSubgraph). */
  subgraphs: Record<SubgraphName, RunningServer>;
  /** Each subgraph's services: caller verification, its entity cache (and Redis connection), loader options. */
  services: Record<SubgraphName, SubgraphServices>;
  /** Stops a subgraph as a crash would look to the gateway (its port then refuses connections). */
  stopSubgraph(name: SubgraphName): Promise<void>;
  /** Starts a stopped subgraph again on the same port. */
  restartSubgraph(name: SubgraphName): Promise<void>;
  /** Another instance of a subgraph (its own services and cache client, the same database and Redis); the caller stops it. */
  startReplica(name: SubgraphName): Promise<StackSubgraph>;
  /** Another gateway over the same subgraphs, with option overrides; the caller stops it. */
  startGateway(overrides?: Partial<GatewayOptions>): Promise<RunningGateway>;
  stop(): Promise<void>;
}

/**
 * Every subgraph in the registry and the gateway in front of them, in this process, as `npm start`, the
 * test harness and the benchmarks run them (the registry's order; a subgraph reaches another at the URL
 * it was really started on, so port 0 works).
 */
export async function startStack(options: StackOptions): Promise<RunningStack> {
  const { config } = options;
  const loggerFor = (name: string) => options.logger ?? createLogger(name, config.LOG_LEVEL);
  const subgraphs = {} as Record<SubgraphName, RunningServer>;
  const urlOf = (name: string) => subgraphs[name as SubgraphName]?.url ?? config.subgraphs[name as SubgraphName].url;
  const newServices = async (name: SubgraphName) => {
    const created = { ...createSubgraphServices(config, loggerFor(name)), subgraphUrl: urlOf };
    await created.cache?.ready(2_000);
    return created;
  };
  const services = {} as Record<SubgraphName, SubgraphServices>;
  const definitions = {} as Record<SubgraphName, SubgraphDefinition>;
  const databases = {} as Record<SubgraphName, DatabaseClient>;
  for (const entry of SUBGRAPHS) {
    definitions[entry.name] = entry.load().default;
    databases[entry.name] =
      options.databaseFor?.(entry.name) ??
      createDatabaseClient(options.databaseUrl, {
        poolSize: config.DB_POOL_SIZE,
        replicaUrls: config.DATABASE_REPLICA_URLS,
      });
  }
  // Each subgraph has its own services, as it has in a process of its own: its cache counters are its own.
  for (const entry of SUBGRAPHS) services[entry.name] = await newServices(entry.name);
  const launch = async (name: SubgraphName, port: number, withServices: SubgraphServices) => {
    const logger = loggerFor(name);
    const server = await startSubgraph(name, definitions[name], {
      config,
      port,
      host: config.HOST,
      database: databases[name],
      services: withServices,
      logger,
      shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
      metricsToken: config.METRICS_TOKEN,
    });
    logger.info({ url: server.url }, `${name} subgraph ready`);
    return server;
  };
  const stopped = new Set<SubgraphName>();
  const stopSubgraphs = () =>
    Promise.all(
      SUBGRAPHS.filter(({ name }) => !stopped.has(name) && subgraphs[name]).map(({ name }) => subgraphs[name].stop()),
    );
  const release = async () => {
    await Promise.all(Object.values(services).map((owned) => owned.close()));
    await Promise.all(Object.values(databases).map((database) => database.close()));
  };
  let gateway: RunningGateway;
  try {
    for (const entry of SUBGRAPHS)
      subgraphs[entry.name] = await launch(entry.name, config.subgraphs[entry.name].port, services[entry.name]);
    gateway = await startConfiguredGateway(config, loggerFor('gateway'), {
      subgraphUrls: Object.fromEntries(SUBGRAPHS.map(({ name }) => [name, subgraphs[name].url])),
      ...options.gateway,
    });
  } catch (error) {
    await stopSubgraphs();
    await release();
    throw error;
  }
  const startGateway = (overrides: Partial<GatewayOptions> = {}) =>
    startConfiguredGateway(config, loggerFor('gateway'), {
      subgraphUrls: Object.fromEntries(SUBGRAPHS.map(({ name }) => [name, subgraphs[name].url])),
      port: 0,
      ...options.gateway,
      ...overrides,
    });
  return {
    gateway,
    subgraphs,
    services,
    async stopSubgraph(name) {
      await subgraphs[name].stop();
      stopped.add(name);
    },
    async restartSubgraph(name) {
      subgraphs[name] = await launch(name, subgraphs[name].port, services[name]);
      stopped.delete(name);
    },
    async startReplica(name) {
      const replicaServices = await newServices(name);
      const server = await launch(name, 0, replicaServices);
      return {
        ...server,
        services: replicaServices,
        stop: async () => {
          await server.stop();
          await replicaServices.close();
        },
      };
    },
    startGateway,
    async stop() {
      await gateway.stop();
      await stopSubgraphs();
      await release();
    },
  };
}
