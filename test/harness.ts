import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig, type SubgraphName } from '../lib/config';
import { createDatabaseClient, type DatabaseClient, type SqlStatement } from '../lib/db';
import type { RunningServer } from '../lib/http-server';
import { createLogger } from '../lib/logger';
import { createSubgraphServices, startSubgraph } from '../lib/subgraph';
import type { Caller } from '../lib/authorization';
import { IDENTITY_HEADER } from '../lib/identity';
import { issueToken } from '../gateway/auth';
import { gatewaySettings } from '../gateway/settings';
import { startGateway, type GatewayOptions, type RunningGateway } from '../gateway/server';
import type { SubgraphDefinition, SubgraphServices } from '../lib/subgraph';
import { accountsSubgraph } from '../subgraphs/accounts/server';
import { catalogSubgraph } from '../subgraphs/catalog/server';
import { createCatalogClient } from '../subgraphs/reviews/catalog-client';
import { reviewsSubgraph } from '../subgraphs/reviews/server';
import { generateDataset, seed } from '../prisma/seed';
import { adminQuery, withDatabase } from './databases';

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  headers: Headers;
  data?: T | null;
  errors?: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, any> }>;
  /** The response's extensions (the caller's budget in `cost`, deprecation notices). */
  extensions?: Record<string, any>;
}

/**
 * A private database for one test file: a copy of the seeded fixture, or, given `scale`, a migrated
 * empty copy seeded with `generateDataset(scale)` (e.g. BENCH_SCALE).
 */
export async function createTestDatabase(options: { scale?: number } = {}): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env.TEST_ADMIN_URL;
  const fixture = process.env.TEST_TEMPLATE_DB;
  const empty = process.env.TEST_EMPTY_TEMPLATE_DB;
  if (!adminUrl || !fixture || !empty) throw new Error('Run through jest: test/global-setup.ts prepares the template databases.');
  // Named after the fixture template so global teardown drops it with the rest.
  const name = `${fixture}_${randomBytes(4).toString('hex')}`;
  const template = options.scale === undefined ? fixture : empty;
  await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)}`);
  if (options.scale !== undefined) await seed(withDatabase(adminUrl, name), generateDataset(options.scale));
  return {
    url: withDatabase(adminUrl, name),
    drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  };
}

/** Every SQL statement each subgraph sent to PostgreSQL, as the pg driver sent it. */
export interface StatementLog {
  readonly statements: Record<SubgraphName, SqlStatement[]>;
  /** Statements per subgraph since the last reset. */
  counts(): Record<SubgraphName, number>;
  reset(): void;
}

function createStatementLog(): StatementLog {
  const statements: Record<SubgraphName, SqlStatement[]> = { accounts: [], catalog: [], reviews: [] };
  return {
    statements,
    counts: () => ({ accounts: statements.accounts.length, catalog: statements.catalog.length, reviews: statements.reviews.length }),
    reset: () => {
      for (const list of Object.values(statements)) list.length = 0;
    },
  };
}

/** Secrets the harness runs with (tests forge tokens with other ones). */
export const TEST_JWT_SECRET = 'test-jwt-secret-of-at-least-32-characters';
export const TEST_IDENTITY_SECRET = 'test-identity-secret-of-at-least-32-chars';

/** Subgraph services configured as the harness configures them (same secrets). */
export function testSubgraphServices(env: NodeJS.ProcessEnv = {}) {
  const config = loadConfig({ ...process.env, JWT_SECRET: TEST_JWT_SECRET, IDENTITY_SECRET: TEST_IDENTITY_SECRET, ENTITY_CACHE: 'off', ...env });
  return createSubgraphServices(config, createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent'));
}

export interface HarnessOptions {
  /** DataLoader batching in every subgraph; false is the naive N+1 mode of `npm run bench:n1`. Defaults to true. */
  batching?: boolean;
  /** Overrides of the gateway's options (limits, budgets, Redis, timeouts). Defaults to none. */
  gateway?: Partial<GatewayOptions>;
  /** Environment overrides for the configuration the harness builds. Defaults to none. */
  env?: NodeJS.ProcessEnv;
}

export interface QueryOptions {
  headers?: Record<string, string>;
  /** Where to send it. Defaults to the harness gateway. */
  url?: string;
  /** Signs in as this user. */
  as?: string;
  /** The scopes the caller holds (with `as`). Defaults to none. */
  scopes?: readonly string[];
  /** `url` is a subgraph the harness did not start: sign the identity as for a subgraph. Defaults to false. */
  subgraph?: boolean;
  /** Sends a subgraph request without the identity header. Defaults to false. */
  unsigned?: boolean;
}

/** The body harness.query sends: what a subgraph identity is signed for. */
export const requestBody = (query: string, variables: Record<string, unknown> = {}) => JSON.stringify({ query, variables });

export interface Harness {
  gatewayUrl: string;
  gateway: RunningGateway;
  /** The running subgraphs (replaced by restartSubgraph). */
  subgraphs: Record<SubgraphName, RunningServer>;
  /** Stops a subgraph as a crash would look to the gateway (its port then refuses connections). */
  stopSubgraph(name: SubgraphName): Promise<void>;
  /** Starts a stopped subgraph again on the same port. */
  restartSubgraph(name: SubgraphName): Promise<void>;
  /** Another instance of a subgraph (its own services and cache client, the same database and Redis); the caller stops it. */
  startReplica(name: SubgraphName): Promise<RunningServer & { services: SubgraphServices }>;
  /** The harness subgraphs' shared services (their entity cache, for tests that look inside it). */
  services: SubgraphServices;
  /** Another gateway over the same subgraphs, with option overrides; the caller stops it. */
  startGateway(overrides?: Partial<GatewayOptions>): Promise<RunningGateway>;
  /** A client of the test database for setting up and checking rows (not counted). */
  database: DatabaseClient;
  sql: StatementLog;
  /** POSTs an operation to the gateway (or `url`) and returns status, headers and the JSON body. */
  /**
   * POSTs an operation to the gateway, or to `url` (a subgraph). `as` signs in as that user: a bearer
   * token for the gateway, a signed identity header for a subgraph (which gets an anonymous signed
   * header otherwise, unless `unsigned`).
   */
  query<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: QueryOptions): Promise<GraphQLResponse<T>>;
  /** A bearer token for `userId` (with `scopes`, none by default), signed as the gateway expects. */
  tokenFor(userId: string, options?: { scopes?: readonly string[]; expiresIn?: string }): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Boots the three subgraphs and the gateway on free ports (port 0) against `databaseUrl`, as real
 * HTTP servers, in the way apollographql/federation's tests do.
 */
export async function startSubgraphsAndGateway(databaseUrl: string, options: HarnessOptions = {}): Promise<Harness> {
  const config = loadConfig({
    ...process.env,
    DATABASE_URL: databaseUrl,
    BATCHING: options.batching === false ? 'off' : 'on',
    // Fixed test secrets: nothing is written to DATA_DIR.
    JWT_SECRET: TEST_JWT_SECRET,
    IDENTITY_SECRET: TEST_IDENTITY_SECRET,
    // Suites send many requests from one address; the tests of limits set their own.
    BUDGET_POINTS: '100000000',
    IP_RATE_LIMIT: '1000000',
    // Tests assert what the cache answers; on a busy CI machine a 50 ms wait could turn a hit into a miss.
    CACHE_TIMEOUT_MS: '1000',
    ...options.env,
  });
  // Every subgraph of the harness shares one services object (one cache, keyed by type); a test of
  // replicas starts more subgraphs with services of their own.
  const serviceEnv = {
    DATABASE_URL: databaseUrl,
    CACHE_TIMEOUT_MS: config.CACHE_TIMEOUT_MS.toString(),
    BATCHING: config.BATCHING,
    ENTITY_CACHE: config.ENTITY_CACHE,
    REDIS_URL: config.REDIS_URL,
    // Cache keys name this database: test runs sharing a Redis never read each other's rows.
    REDIS_NAMESPACE: new URL(databaseUrl).pathname.slice(1),
  };
  const services = testSubgraphServices(serviceEnv);
  await services.cache?.ready(2_000);
  const logger = createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const sql = createStatementLog();
  // Each subgraph has its own pool, as in production, so statements are counted per subgraph.
  const databases = Object.fromEntries(
    (['accounts', 'catalog', 'reviews'] as const).map((name) => [name, createDatabaseClient(databaseUrl, { poolSize: 5, onStatement: (s) => sql.statements[name].push(s) })]),
  ) as Record<SubgraphName, DatabaseClient>;
  const database = createDatabaseClient(databaseUrl, { poolSize: 2 });
  const common = { host: '127.0.0.1', logger, shutdownGraceMs: 1_000 };
  const subgraphs = {} as Record<SubgraphName, RunningServer>;
  const definitions: Record<SubgraphName, () => SubgraphDefinition<Caller>> = {
    accounts: () => accountsSubgraph(databases.accounts, services),
    catalog: () => catalogSubgraph(databases.catalog, services),
    reviews: () => reviewsSubgraph(databases.reviews, services, createCatalogClient(subgraphs.catalog.url, services.signIdentity)),
  };
  const launch = async (name: SubgraphName, port = 0) => {
    subgraphs[name] = await startSubgraph(definitions[name](), { ...common, port, database: databases[name], cache: services.cache });
  };
  for (const name of ['accounts', 'catalog', 'reviews'] as const) await launch(name);
  const stopped = new Set<SubgraphName>();
  const launchGateway = (overrides: Partial<GatewayOptions> = {}) =>
    startGateway({
      port: 0,
      logger,
      shutdownGraceMs: 1_000,
      subgraphUrls: { accounts: subgraphs.accounts.url, catalog: subgraphs.catalog.url, reviews: subgraphs.reviews.url },
      ...gatewaySettings(config),
      ...options.gateway,
      ...overrides,
    });
  const gateway = await launchGateway();
  const tokenFor: Harness['tokenFor'] = (userId, { scopes, expiresIn } = {}) =>
    issueToken({ secret: TEST_JWT_SECRET, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE, userId, scopes, expiresIn });
  return {
    gatewayUrl: gateway.url,
    gateway,
    subgraphs,
    async stopSubgraph(name) {
      await subgraphs[name].stop();
      stopped.add(name);
    },
    async restartSubgraph(name) {
      await launch(name, subgraphs[name].port);
      stopped.delete(name);
    },
    startGateway: launchGateway,
    services,
    async startReplica(name) {
      const replicaServices = testSubgraphServices(serviceEnv);
      await replicaServices.cache?.ready(2_000);
      const builds: Record<SubgraphName, () => SubgraphDefinition<Caller>> = {
        accounts: () => accountsSubgraph(databases.accounts, replicaServices),
        catalog: () => catalogSubgraph(databases.catalog, replicaServices),
        reviews: () => reviewsSubgraph(databases.reviews, replicaServices, createCatalogClient(subgraphs.catalog.url, replicaServices.signIdentity)),
      };
      const server = await startSubgraph(builds[name](), { ...common, port: 0, database: databases[name], cache: replicaServices.cache });
      return {
        ...server,
        services: replicaServices,
        stop: async () => {
          await server.stop();
          await replicaServices.close();
        },
      };
    },
    database,
    sql,
    tokenFor,
    async query(query, variables = {}, options = {}) {
      const url = options.url ?? gateway.url;
      const auth: Record<string, string> = {};
      const body = requestBody(query, variables);
      const toSubgraph = options.subgraph || Object.values(subgraphs).some((subgraph) => subgraph.url === url);
      if (!toSubgraph) {
        if (options.as) auth.authorization = `Bearer ${await tokenFor(options.as, { scopes: options.scopes })}`;
      } else if (!options.unsigned) {
        auth[IDENTITY_HEADER] = await services.signIdentity({ callerId: options.as ?? null, scopes: options.as ? (options.scopes ?? []) : [] }, body);
      }
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...auth, ...options.headers }, body });
      const answer = (await response.json()) as { data?: any; errors?: any[] };
      return { status: response.status, headers: response.headers, ...answer };
    },
    async stop() {
      await gateway.stop();
      await Promise.all((Object.keys(subgraphs) as SubgraphName[]).filter((name) => !stopped.has(name)).map((name) => subgraphs[name].stop()));
      await services.close();
      await Promise.all([database, ...Object.values(databases)].map((client) => client.close()));
    },
  };
}

/**
 * For a test file: before its tests, a private database (the fixture, or seeded at `scale`) and the
 * servers on it; after them, both gone. Read `suite.harness` inside tests, not at load time.
 */
export function useHarness(options: { scale?: number } & HarnessOptions = {}): { readonly harness: Harness; readonly databaseUrl: string } {
  let database: { url: string; drop(): Promise<void> } | undefined;
  let harness: Harness | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(options);
    harness = await startSubgraphsAndGateway(database.url, options);
  }, 120_000);
  afterAll(async () => {
    await harness?.stop();
    await database?.drop();
  });
  return {
    get harness() {
      if (!harness) throw new Error('The harness starts in beforeAll; use it inside a test or hook.');
      return harness;
    },
    get databaseUrl() {
      return database!.url;
    },
  };
}
