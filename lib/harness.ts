/**
 * The whole stack (lib/stack.ts) on free ports over one database, with every SQL statement counted per
 * subgraph and a client that signs in as anyone: what the integration tests and `npm run bench:*` run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueToken } from '../gateway/auth';
import type { GatewayOptions } from '../gateway/server';
import { startConfiguredWorker, type JobsWorkerOptions, type RunningWorker } from '../subgraphs/jobs/worker';
import { SUBGRAPH_NAMES, type SubgraphName } from '../subgraphs/registry';
import { loadConfig, type Config } from './config';
import { createDatabaseClient, type DatabaseClient, type SqlStatement } from './db';
import { createIdentitySigner, IDENTITY_HEADER } from './identity';
import { createLogger } from './logger';
import { startStack, type RunningStack } from './stack';
import { createSubgraphServices } from './subgraph';

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  headers: Headers;
  data?: T | null;
  errors?: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, any> }>;
  /** The response's extensions (the caller's budget in `cost`, deprecation notices). */
  extensions?: Record<string, any>;
}

/** Every SQL statement each subgraph sent to PostgreSQL, as the pg driver sent it. */
export interface StatementLog {
  readonly statements: Record<SubgraphName, SqlStatement[]>;
  /** Statements per subgraph since the last reset. */
  counts(): Record<SubgraphName, number>;
  reset(): void;
}

function createStatementLog(): StatementLog {
  const statements = Object.fromEntries(SUBGRAPH_NAMES.map((name) => [name, []])) as unknown as Record<
    SubgraphName,
    SqlStatement[]
  >;
  return {
    statements,
    counts: () =>
      Object.fromEntries(SUBGRAPH_NAMES.map((name) => [name, statements[name].length])) as Record<SubgraphName, number>,
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
  const config = loadConfig({
    ...process.env,
    JWT_SECRET: TEST_JWT_SECRET,
    IDENTITY_SECRET: TEST_IDENTITY_SECRET,
    ENTITY_CACHE: 'off',
    ...env,
  });
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
export const requestBody = (query: string, variables: Record<string, unknown> = {}) =>
  JSON.stringify({ query, variables });

/** The running stack (lib/stack.ts), plus what tests need around it. */
export interface Harness extends RunningStack {
  gatewayUrl: string;
  /** The Redis namespace of this harness (its database's name): keys of concurrent runs never meet. */
  namespace: string;
  /** A client of the test database for setting up and checking rows (not counted). */
  database: DatabaseClient;
  sql: StatementLog;
  /**
   * POSTs an operation to the gateway, or to `url` (a subgraph). `as` signs in as that user: a bearer
   * token for the gateway, a signed identity header for a subgraph (which gets an anonymous signed
   * header otherwise, unless `unsigned`).
   */
  query<T = Record<string, any>>(
    query: string,
    variables?: Record<string, unknown>,
    options?: QueryOptions,
  ): Promise<GraphQLResponse<T>>;
  /** The configuration every part was started with. */
  config: Config;
  /**
   * Starts a jobs worker in this process against this stack's gateway and database (the caller stops it), with
   * option overrides (concurrency, settings, gatewayUrl…). Results go to the harness's own JOBS_DIR (a temporary folder).
   */
  startWorker(overrides?: Partial<JobsWorkerOptions>): Promise<RunningWorker>;
  /** A bearer token for `userId` (with `scopes`, none by default), signed as the gateway expects. */
  tokenFor(userId: string, options?: { scopes?: readonly string[]; expiresIn?: string }): Promise<string>;
}

/**
 * Boots every subgraph of the registry and the gateway on free ports (port 0) against `databaseUrl`,
 * as real HTTP servers (lib/stack.ts, as `npm start` does), in the way apollographql/federation's tests do.
 */
export async function startSubgraphsAndGateway(databaseUrl: string, options: HarnessOptions = {}): Promise<Harness> {
  const namespace = new URL(databaseUrl).pathname.slice(1);
  const config = loadConfig({
    ...process.env,
    DATABASE_URL: databaseUrl,
    HOST: '127.0.0.1',
    GATEWAY_PORT: '0',
    ...Object.fromEntries(SUBGRAPH_NAMES.map((name) => [`SUBGRAPH_${name.toUpperCase()}_PORT`, '0'])),
    SHUTDOWN_GRACE_MS: '1000',
    BATCHING: options.batching === false ? 'off' : 'on',
    // Fixed test secrets: nothing is written to DATA_DIR.
    JWT_SECRET: TEST_JWT_SECRET,
    IDENTITY_SECRET: TEST_IDENTITY_SECRET,
    // Suites send many requests from one address; the tests of limits set their own.
    BUDGET_POINTS: '100000000',
    IP_RATE_LIMIT: '1000000',
    // Tests assert what the cache answers; on a busy CI machine a 50 ms wait could turn a hit into a miss.
    CACHE_TIMEOUT_MS: '1000',
    // Every part runs in this one process, beside jest's other workers on the same cores: its event loop
    // and answer times say more about the test machine than about overload. Admission is tested with its
    // own settings (gateway/admission.test.ts, test/overload.test.ts).
    MAX_EVENT_LOOP_DELAY_MS: '10000',
    ADMISSION_TARGET_MS: '60000',
    // The whole-response cache would answer repeated queries before any subgraph runs: the tests of the
    // layers below it (statements per operation, the entity cache, outages) need every request to run.
    // test/response-cache.test.ts turns it on, and `npm start` (test/start.test.ts, README) runs it as users do.
    RESPONSE_CACHE: 'off',
    // Keys name this database: test runs sharing a Redis never read each other's rows or budgets.
    REDIS_NAMESPACE: namespace,
    // Results of this stack's jobs: a folder of its own.
    JOBS_DIR: mkdtempSync(join(tmpdir(), 'storefront-jobs-')),
    // Failed runs are tried again soon: tests wait for them.
    JOBS_RETRY_DELAY_SECONDS: '1',
    WEBHOOK_RETRY_DELAY_SECONDS: '1',
    ...options.env,
  });
  const sql = createStatementLog();
  const stack = await startStack({
    config,
    databaseUrl,
    // Each subgraph has its own pool, as in production, so statements are counted per subgraph (and each
    // read replica's statement says which: SqlStatement.replica).
    databaseFor: (name) =>
      createDatabaseClient(databaseUrl, {
        poolSize: 5,
        replicaUrls: config.DATABASE_REPLICA_URLS,
        onStatement: (statement) => sql.statements[name].push(statement),
      }),
    logger: createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    gateway: options.gateway,
  });
  const database = createDatabaseClient(databaseUrl, { poolSize: 2 });
  const signIdentity = createIdentitySigner(TEST_IDENTITY_SECRET);
  const tokenFor: Harness['tokenFor'] = (userId, { scopes, expiresIn } = {}) =>
    issueToken({
      secret: TEST_JWT_SECRET,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      userId,
      scopes,
      expiresIn,
    });
  return {
    ...stack,
    gatewayUrl: stack.gateway.url,
    namespace,
    database,
    sql,
    config,
    startWorker: (overrides = {}) =>
      startConfiguredWorker(config, createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent'), {
        databaseUrl,
        gatewayUrl: stack.gateway.url,
        port: null,
        ...overrides,
      }),
    tokenFor,
    async query(query, variables = {}, options = {}) {
      const url = options.url ?? stack.gateway.url;
      const auth: Record<string, string> = {};
      const body = requestBody(query, variables);
      const toSubgraph = options.subgraph || Object.values(stack.subgraphs).some((subgraph) => subgraph.url === url);
      if (!toSubgraph) {
        if (options.as) auth.authorization = `Bearer ${await tokenFor(options.as, { scopes: options.scopes })}`;
      } else if (!options.unsigned) {
        auth[IDENTITY_HEADER] = await signIdentity(
          { callerId: options.as ?? null, scopes: options.as ? (options.scopes ?? []) : [] },
          body,
        );
      }
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth, ...options.headers },
        body,
      });
      const answer = (await response.json()) as { data?: any; errors?: any[] };
      return { status: response.status, headers: response.headers, ...answer };
    },
    async stop() {
      await stack.stop();
      await database.close();
      rmSync(config.JOBS_DIR!, { recursive: true, force: true });
    },
  };
}
