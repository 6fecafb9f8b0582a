import { resolve } from 'node:path';
import { z } from 'zod';
import { SUBGRAPHS, type SubgraphName } from '../subgraphs/registry';
import { clusterUrl, isRedisNodeList, isRedisUrl } from './redis-url';

const port = z.coerce.number().int().min(0).max(65535);
const url = z.string().url();

/**
 * Everything the service reads from the environment, validated once at start-up.
 * A bad value stops the process with a message naming the variable.
 */
const schema = z.object({
  /** PostgreSQL connection string. Defaults to an embedded PostgreSQL started from Node. */
  DATABASE_URL: url.optional(),
  /**
   * Read replicas of DATABASE_URL (streaming standbys), comma-separated connection strings: every subgraph reads
   * from them and writes to DATABASE_URL, and a caller's reads after their own write go to whichever has it
   * (lib/read-replicas.md). Set it on the gateway too: it turns on the gateway's side of read-your-writes.
   * Defaults to none.
   */
  DATABASE_REPLICA_URLS: z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((part) => part.trim())
        .filter(Boolean),
    )
    .pipe(z.array(url).min(1, 'must name at least one connection string'))
    .optional(),
  /**
   * Redis connection string (`redis://`, `rediss://` for TLS), or a Redis Cluster's seed nodes as
   * `redis+cluster://[user:password@]host:port,host:port` (what REDIS_CLUSTER_NODES is turned into). Defaults to in-memory stores.
   */
  REDIS_URL: z.string().refine(isRedisUrl, 'must be a redis:// URL, or redis+cluster://host:port,host:port').optional(),
  /**
   * Seed nodes of a Redis Cluster, `host:port` comma-separated (a few masters: the client learns the rest from
   * the first that answers). When set, budgets, the IP rate, the entity and response caches, persisted queries
   * and deprecation usage all live in that cluster, and REDIS_URL, if also set, gives only the user, password
   * and TLS (`rediss://`) of its nodes. Defaults to none.
   */
  REDIS_CLUSTER_NODES: z
    .string()
    .refine(isRedisNodeList, 'must be host:port, comma-separated ([IPv6]:port for an IPv6 address)')
    .optional(),
  /** Interface the gateway and subgraphs listen on. Defaults to 127.0.0.1. */
  HOST: z.string().min(1).default('127.0.0.1'),
  /** Gateway port. Defaults to 4000. */
  GATEWAY_PORT: port.default(4000),
  /** Where the embedded PostgreSQL keeps its data. Defaults to .data/postgres in the repository. */
  DATA_DIR: z
    .string()
    .min(1)
    .default(resolve(__dirname, '..', '.data')),
  /** Port of the embedded PostgreSQL. Defaults to 54329 (clear of a local server on 5432). */
  EMBEDDED_PG_PORT: port.default(54329),
  /** Seed scale used by `npm start` when the database is empty (N × 100 users, 50 products, 2,000 reviews). Defaults to 10. */
  SEED_SCALE: z.coerce.number().int().min(0).max(1000).default(10),
  /** Connections per subgraph pool. Defaults to 10. */
  DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  /**
   * `off` turns DataLoader batching off so every lookup is its own statement, as a naive first
   * implementation would be. Only for measuring N+1 (`npm run bench:n1`). Defaults to on.
   */
  BATCHING: z.enum(['on', 'off']).default('on'),
  /** HS256 secret (32+ characters) that client bearer tokens are signed with. Defaults to one generated into DATA_DIR/secrets.json. */
  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** A JWKS JSON file of public keys to verify client tokens with (RS256/ES256/EdDSA) instead of JWT_SECRET. Defaults to none. */
  JWT_JWKS_FILE: z.string().min(1).optional(),
  /** Required `iss` of client tokens. Defaults to storefront-supergraph. */
  JWT_ISSUER: z.string().min(1).default('storefront-supergraph'),
  /** Required `aud` of client tokens. Defaults to storefront. */
  JWT_AUDIENCE: z.string().min(1).default('storefront'),
  /** Secret the gateway signs the caller's identity for subgraphs with; every process must share it. Defaults to one generated into DATA_DIR/secrets.json. */
  IDENTITY_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Query-cost points each client (user, API key, else IP) may spend per window. Defaults to 100000. */
  BUDGET_POINTS: z.coerce.number().int().min(1).default(100_000),
  /** Length of the budget window in seconds. Defaults to 60. */
  BUDGET_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Requests one IP address may make per IP_RATE_WINDOW_SECONDS without credentials, whatever they cost. Defaults to 1200. */
  IP_RATE_LIMIT: z.coerce.number().int().min(1).default(1_200),
  /** Window of IP_RATE_LIMIT in seconds. Defaults to 60. */
  IP_RATE_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** The most requests the gateway runs at once: the ceiling of its adaptive admission limit. Defaults to 512. */
  MAX_IN_FLIGHT: z.coerce.number().int().min(1).default(512),
  /** How long a request may take, from its headers to its answer; subgraph calls get what is left of it. Defaults to 5000 ms. */
  REQUEST_DEADLINE_MS: z.coerce.number().int().min(100).max(120_000).default(5_000),
  /** The longest a request waits for an admission slot before 503 OVERLOADED. Defaults to 100 ms. */
  ADMISSION_QUEUE_MS: z.coerce.number().int().min(0).max(10_000).default(100),
  /** Answers slower than this (from admission) shrink the admission limit; faster ones let it grow. Defaults to 300 ms. */
  ADMISSION_TARGET_MS: z.coerce.number().int().min(10).max(60_000).default(300),
  /** How late the gateway's event loop may run, summed over the last second, before it refuses new requests at once. Defaults to 250 ms. */
  MAX_EVENT_LOOP_DELAY_MS: z.coerce.number().int().min(10).max(10_000).default(250),
  /**
   * Subgraphs the gateway's /readyz requires ready (comma-separated); with none, it is 503 only while no
   * subgraph is ready. Defaults to catalog, where every storefront page starts (the product list).
   */
  READINESS_SUBGRAPHS: z
    .string()
    .regex(/^\s*([a-z][a-z0-9-]*\s*(,\s*[a-z][a-z0-9-]*\s*)*)?$/, 'must be subgraph names, comma-separated')
    .default('catalog'),
  /** Highest estimated cost of one operation. Defaults to 5000. */
  MAX_QUERY_COST: z.coerce.number().int().min(1).default(5_000),
  /** Deepest selection nesting a document may have. Defaults to 12. */
  MAX_QUERY_DEPTH: z.coerce.number().int().min(1).default(12),
  /** Most aliases in one document. Defaults to 30. */
  MAX_ALIASES: z.coerce.number().int().min(0).default(30),
  /** Most directives in one document. Defaults to 50. */
  MAX_DIRECTIVES: z.coerce.number().int().min(0).default(50),
  /** Most field selections one operation may make once its fragments are expanded (scalars and __typename included). Defaults to 500. */
  MAX_SELECTIONS: z.coerce.number().int().min(1).default(500),
  /** Most tokens in one document. Defaults to 5000. */
  MAX_TOKENS: z.coerce.number().int().min(100).default(5_000),
  /** Timeout of each gateway call to a subgraph, in ms (SUBGRAPH_<NAME>_TIMEOUT_MS overrides it for one). Defaults to 5000. */
  SUBGRAPH_TIMEOUT_MS: z.coerce.number().int().min(1).default(5_000),
  /** How long a subgraph's open circuit breaker waits before letting a probe through, in ms. Defaults to 10000. */
  BREAKER_RESET_MS: z.coerce.number().int().min(10).default(10_000),
  /** Known API keys as "name=key,name=key": requests with `x-api-key` are charged to that name. Defaults to none. */
  API_KEYS: z.string().optional(),
  /** Express "trust proxy" setting, so client IPs come from X-Forwarded-For behind a proxy: false, true, a hop count or a subnet list. Defaults to false. */
  TRUST_PROXY: z.string().default('false'),
  /**
   * Prefix of every key the service writes in Redis (entity cache, budgets, IP rate, persisted queries,
   * deprecation usage), so several deployments (or test runs) can share one Redis and nothing else.
   * CACHE_NAMESPACE, its former name, is still read when it is unset. Defaults to storefront.
   */
  REDIS_NAMESPACE: z
    .string()
    .regex(/^[\w.-]+$/)
    .default('storefront'),
  /**
   * `off` turns the gateway's whole-response cache off: public queries then always run. It stores answers
   * whose cache policy is public, until their max-age or until a mutation changes an entity they hold.
   * Defaults to on.
   */
  RESPONSE_CACHE: z.enum(['on', 'off']).default('on'),
  /** MiB of answers each gateway keeps in memory in front of Redis. Defaults to 32. */
  RESPONSE_CACHE_MAX_MB: z.coerce.number().int().min(1).max(4_096).default(32),
  /** The longest an answer is cached, whatever its max-age, in seconds. Defaults to 300. */
  RESPONSE_CACHE_MAX_TTL_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  /**
   * `off` stops the gateway sharing one subgraph call among identical concurrent fetches of queries
   * (to measure what sharing saves; nothing is cached by it). Defaults to on.
   */
  SHARE_SUBGRAPH_FETCHES: z.enum(['on', 'off']).default('on'),
  /** `off` bypasses the entity cache (every lookup goes to the database). Defaults to on. */
  ENTITY_CACHE: z.enum(['on', 'off']).default('on'),
  /** How long cached entities live, in seconds. Defaults to 60. */
  CACHE_TTL_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Per-type TTLs, "Type=seconds,Type=seconds" (Product, User, Review, ProductReviews). Defaults to none. */
  CACHE_TTLS: z
    .string()
    .regex(/^(\s*\w+=\d+\s*)(,\s*\w+=\d+\s*)*$/, 'must look like Product=30,User=300')
    .optional(),
  /** Longest a subgraph waits for the entity cache before using the database, in ms. Defaults to 50. */
  CACHE_TIMEOUT_MS: z.coerce.number().int().min(1).max(5_000).default(50),
  /** When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. Defaults to none (open, for a private network). */
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Where the migration notes are published (the `Link` header of deprecation notices); anchors are appended. Defaults to this repository's README. */
  DEPRECATION_DOCS_URL: url.default(
    'https://github.com/storefront-supergraph/storefront-supergraph/blob/main/README.md',
  ),
  /** `off` refuses introspection queries at the gateway (Sandbox and GraphiQL then need a schema file). Defaults to on. */
  INTROSPECTION: z.enum(['on', 'off']).default('on'),
  /** `off` serves no explorer: no Sandbox landing page on GET / and no GraphiQL at /graphiql. Defaults to on. */
  EXPLORER: z.enum(['on', 'off']).default('on'),
  /**
   * Where jobs write their results (`<id>.jsonl`): every worker and gateway must reach the same folder (a shared
   * volume when they run on several machines). Defaults to DATA_DIR/jobs.
   */
  JOBS_DIR: z.string().min(1).optional(),
  /** `off`: `npm start` runs no jobs worker in its process (run `npm run start:worker` instead). Defaults to on. */
  JOBS_WORKER: z.enum(['on', 'off']).default('on'),
  /** Bulk queries one worker process runs at once. Defaults to 2. */
  JOBS_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  /** Bulk queries one client may have running at once, over all workers; the rest wait QUEUED. Defaults to 2. */
  JOBS_MAX_RUNNING_PER_CLIENT: z.coerce.number().int().min(1).max(1_000).default(2),
  /** Where workers send a bulk query's pages (the gateway's /graphql). Defaults to http://HOST:GATEWAY_PORT/graphql. */
  JOBS_GATEWAY_URL: url.optional(),
  /** Times a job that failed (gateway or subgraph down, a worker lost) is tried again before it is FAILED. Defaults to 5. */
  JOBS_RETRY_LIMIT: z.coerce.number().int().min(0).max(100).default(5),
  /** First delay before a job is tried again, doubled each time (with jitter). Defaults to 2 s. */
  JOBS_RETRY_DELAY_SECONDS: z.coerce.number().int().min(1).max(3_600).default(2),
  /** A running job's worker proves it is alive this often; one silent for this long is given to another worker (10 at least). Defaults to 10 s. */
  JOBS_HEARTBEAT_SECONDS: z.coerce.number().int().min(10).max(3_600).default(10),
  /** How long a job's signed result link works. Defaults to 3600 s. */
  JOBS_LINK_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(7 * 86_400)
    .default(3_600),
  /** Port of a worker's /healthz, /readyz and /metrics (`npm run start:worker`, and the worker inside `npm start`). Defaults to 4010. */
  WORKER_PORT: port.default(4010),
  /** Times a webhook message is sent again after its receiver failed it. Defaults to 6. */
  WEBHOOK_RETRY_LIMIT: z.coerce.number().int().min(0).max(50).default(6),
  /** First delay before a webhook message is sent again, doubled each time (with jitter). Defaults to 5 s. */
  WEBHOOK_RETRY_DELAY_SECONDS: z.coerce.number().int().min(1).max(3_600).default(5),
  /** How long a webhook receiver has to answer. Defaults to 10000 ms. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  /**
   * Hosts webhook subscriptions may point at, comma-separated (`hooks.example.com`, or `.example.com` for its
   * subdomains). Defaults to any host: restrict it in production (see the README's "Webhooks").
   */
  WEBHOOK_ALLOWED_HOSTS: z
    .string()
    .regex(/^\s*\.?[a-z0-9.-]+(\s*,\s*\.?[a-z0-9.-]+)*\s*$/i, 'must be host names, comma-separated')
    .optional(),
  /** pino log level. Defaults to info. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** How long SIGTERM waits for in-flight requests before closing. Defaults to 10000 ms. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(10_000),
});

/** One subgraph's settings: SUBGRAPH_<NAME>_PORT, SUBGRAPH_<NAME>_URL and SUBGRAPH_<NAME>_TIMEOUT_MS. */
export interface SubgraphSettings {
  /** Where it listens. Defaults to its port in subgraphs/registry.ts. */
  port: number;
  /**
   * Where the gateway (and other subgraphs) reach it: one URL, or several comma-separated (replicas of the
   * subgraph; see urlList). Defaults to http://HOST:<port>/graphql.
   */
  url: string;
  /** Timeout of each gateway call to it. Defaults to SUBGRAPH_TIMEOUT_MS. */
  timeoutMs: number;
}

/**
 * The URLs of a comma-separated list (SUBGRAPH_<NAME>_URL may name every replica of a subgraph; the gateway
 * spreads its calls over them, gateway/subgraph-data-source.ts), trimmed, empty entries dropped.
 */
export const urlList = (value: string): string[] =>
  value
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);

const subgraphSchema = (defaultPort: number) =>
  z.object({
    PORT: port.default(defaultPort),
    URL: z
      .string()
      .refine(
        (value) => urlList(value).length > 0 && urlList(value).every((entry) => url.safeParse(entry).success),
        'must be a URL, or several comma-separated',
      )
      .transform((value) => urlList(value).join(','))
      .optional(),
    TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  });

export type Config = z.infer<typeof schema> & {
  /** Every subgraph in the registry, by name, from its SUBGRAPH_<NAME>_* variables. */
  subgraphs: Record<SubgraphName, SubgraphSettings>;
};

export class ConfigError extends Error {}

/** Parses and validates configuration; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset", as in most .env tooling.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  cleaned.REDIS_NAMESPACE ??= cleaned.CACHE_NAMESPACE;
  const parsed = schema
    .refine((config) => config.BUDGET_POINTS >= config.MAX_QUERY_COST, {
      path: ['BUDGET_POINTS'],
      message: 'must be at least MAX_QUERY_COST, or an allowed operation could never be afforded',
    })
    .safeParse(cleaned);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
  const subgraphs = {} as Record<SubgraphName, SubgraphSettings>;
  for (const entry of SUBGRAPHS) {
    const prefix = `SUBGRAPH_${entry.name.toUpperCase()}_`;
    const own = Object.fromEntries(
      Object.entries(cleaned)
        .filter(([key]) => key.startsWith(prefix))
        .map(([key, value]) => [key.slice(prefix.length), value]),
    );
    const settings = subgraphSchema(entry.port).safeParse(own);
    if (!settings.success) {
      problems.push(...settings.error.issues.map((issue) => `  ${prefix}${issue.path.join('.')}: ${issue.message}`));
    } else if (parsed.success) {
      subgraphs[entry.name] = {
        port: settings.data.PORT,
        url: settings.data.URL ?? `http://${parsed.data.HOST}:${settings.data.PORT}/graphql`,
        timeoutMs: settings.data.TIMEOUT_MS ?? parsed.data.SUBGRAPH_TIMEOUT_MS,
      };
    }
  }
  if (!parsed.success || problems.length) throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  const { REDIS_CLUSTER_NODES, REDIS_URL } = parsed.data;
  // One string names the Redis for every user of it (lib/redis.ts reads the cluster form).
  if (REDIS_CLUSTER_NODES) parsed.data.REDIS_URL = clusterUrl(REDIS_CLUSTER_NODES, REDIS_URL);
  return { ...parsed.data, subgraphs };
}

/** Where jobs' results are: JOBS_DIR, or DATA_DIR/jobs. */
export const jobsDir = (config: Pick<Config, 'JOBS_DIR' | 'DATA_DIR'>) =>
  config.JOBS_DIR ?? resolve(config.DATA_DIR, 'jobs');

/** The setting that names a subgraph's port (in messages such as "port in use: set …"). */
export const subgraphPortSetting = (name: string) => `SUBGRAPH_${name.toUpperCase()}_PORT`;
