import { jobsDir, type Config } from '../lib/config';
import { createReadAfterSigner } from '../lib/read-replicas';
import type { RedisConnection } from '../lib/redis';
import { createResultLinks } from '../lib/result-links';
import { loadSecrets } from '../lib/secrets';
import { SUBGRAPH_NAMES } from '../subgraphs/registry';
import { gatewaySecurity } from './auth';
import type { GatewayOptions } from './server';

/** Every gateway option as configured (config.subgraphs gives each subgraph's URL and timeout). */
export function gatewaySettings(config: Config, redis?: RedisConnection): Omit<GatewayOptions, 'logger'> {
  const bySubgraph = <T>(pick: (settings: Config['subgraphs'][keyof Config['subgraphs']]) => T) =>
    Object.fromEntries(SUBGRAPH_NAMES.map((name) => [name, pick(config.subgraphs[name])]));
  return {
    ...gatewaySecurity(config),
    port: config.GATEWAY_PORT,
    host: config.HOST,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
    subgraphUrls: bySubgraph((subgraph) => subgraph.url),
    subgraphTimeoutsMs: bySubgraph((subgraph) => subgraph.timeoutMs),
    redis,
    // Subgraphs read from replicas: follow each caller's writes so their reads see them.
    readYourWrites: config.DATABASE_REPLICA_URLS && {
      sign: createReadAfterSigner(loadSecrets(config).identitySecret),
    },
    apiKeys: config.API_KEYS,
    trustProxy: config.TRUST_PROXY,
    metricsToken: config.METRICS_TOKEN,
    deprecationDocsUrl: config.DEPRECATION_DOCS_URL,
    redisNamespace: config.REDIS_NAMESPACE,
    shareSubgraphFetches: config.SHARE_SUBGRAPH_FETCHES === 'on',
    responseCache: config.RESPONSE_CACHE === 'on' && {
      maxBytes: config.RESPONSE_CACHE_MAX_MB * 1024 * 1024,
      maxTtlSeconds: config.RESPONSE_CACHE_MAX_TTL_SECONDS,
    },
    budget: { points: config.BUDGET_POINTS, windowSeconds: config.BUDGET_WINDOW_SECONDS },
    requestLimits: { ipRequests: config.IP_RATE_LIMIT, ipWindowSeconds: config.IP_RATE_WINDOW_SECONDS },
    admission: {
      maxInFlight: config.MAX_IN_FLIGHT,
      maxQueueMs: config.ADMISSION_QUEUE_MS,
      targetLatencyMs: config.ADMISSION_TARGET_MS,
      maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS,
    },
    deadlineMs: config.REQUEST_DEADLINE_MS,
    introspection: config.INTROSPECTION === 'on',
    explorer: config.EXPLORER === 'on',
    readinessSubgraphs: config.READINESS_SUBGRAPHS.split(',')
      .map((name) => name.trim())
      .filter(Boolean),
    breaker: { resetTimeoutMs: config.BREAKER_RESET_MS },
    jobs: {
      dir: jobsDir(config),
      links: createResultLinks(loadSecrets(config).identitySecret, { ttlSeconds: config.JOBS_LINK_TTL_SECONDS }),
    },
    queryLimits: {
      maxCost: config.MAX_QUERY_COST,
      maxDepth: config.MAX_QUERY_DEPTH,
      maxAliases: config.MAX_ALIASES,
      maxDirectives: config.MAX_DIRECTIVES,
      maxTokens: config.MAX_TOKENS,
      maxSelections: config.MAX_SELECTIONS,
    },
  };
}
