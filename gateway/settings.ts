import { subgraphTimeoutMs, type Config } from '../lib/config';
import type { RedisClient } from '../lib/redis';
import { gatewaySecurity } from './auth';
import type { GatewayOptions } from './server';

/** The gateway's defences as configured: identity, limits, budgets, subgraph timeouts and breakers. */
export function gatewaySettings(config: Config, redis?: RedisClient): Omit<GatewayOptions, 'logger' | 'port' | 'host' | 'shutdownGraceMs' | 'subgraphUrls'> {
  return {
    ...gatewaySecurity(config),
    redis,
    apiKeys: config.API_KEYS,
    trustProxy: config.TRUST_PROXY,
    metricsToken: config.METRICS_TOKEN,
    deprecationDocsUrl: config.DEPRECATION_DOCS_URL,
    redisNamespace: config.REDIS_NAMESPACE,
    budget: { points: config.BUDGET_POINTS, windowSeconds: config.BUDGET_WINDOW_SECONDS },
    requestLimits: { ipRequests: config.IP_RATE_LIMIT, ipWindowSeconds: config.IP_RATE_WINDOW_SECONDS, maxInFlight: config.MAX_IN_FLIGHT },
    subgraphTimeoutsMs: {
      accounts: subgraphTimeoutMs(config, 'accounts'),
      catalog: subgraphTimeoutMs(config, 'catalog'),
      reviews: subgraphTimeoutMs(config, 'reviews'),
    },
    breaker: { resetTimeoutMs: config.BREAKER_RESET_MS },
    queryLimits: { maxCost: config.MAX_QUERY_COST, maxDepth: config.MAX_QUERY_DEPTH, maxAliases: config.MAX_ALIASES, maxDirectives: config.MAX_DIRECTIVES, maxTokens: config.MAX_TOKENS, maxSelections: config.MAX_SELECTIONS },
  };
}
