import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import type { BaseContext } from '@apollo/server';
import type { Request, Response } from 'express';
import { ApolloServerPluginSchemaReportingDisabled, ApolloServerPluginUsageReportingDisabled } from '@apollo/server/plugin/disabled';
import { ApolloGateway } from '@apollo/gateway';
import { clientError, ErrorCode, maskUnexpectedErrors } from '../lib/errors';
import { startGraphQLHttpServer, type RunningServer } from '../lib/http-server';
import { ANONYMOUS, type Caller } from '../lib/authorization';
import { IDENTITY_HEADER, type IdentitySigner } from '../lib/identity';
import { accessRulesOf, supergraphForGateway, useAccessControl } from './access-control';
import type { Logger } from '../lib/logger';
import { createMetrics, useMetrics, useRequestLog } from '../lib/metrics';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { RedisClient } from '../lib/redis';
import type { BearerAuthenticator } from './auth';
import { httpCachePlugins, persistedQueries, withPersistedQueryErrorCodes } from './http-cache';
import { DeprecationUsage } from './deprecation-usage';
import { useDeprecationNotices } from './deprecations';
import { useQueryLimits, type QueryCostContext, type QueryLimitsOptions } from './query-limits';
import { identifyClient, parseApiKeys, requestLimits, useClientBudget, type BudgetContext, type ClientBudgetOptions, type RequestLimitsOptions } from './rate-limits';
import { SubgraphDataSource, type SubgraphBreakerOptions } from './subgraph-data-source';
import { landingPageWithGraphiQLFallback } from './explorer/landing-page';
import { loadExplorerRoutes } from './explorer/routes';

// Nothing in this service may call out to the internet.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

export const SUPERGRAPH_PATH = join(__dirname, '..', 'schema', 'supergraph.graphql');

/** Per request: the caller (verified user id and token scopes, or ANONYMOUS), their budget and the operation's cost. */
export interface GatewayContext extends BaseContext, Caller, BudgetContext, QueryCostContext {}

export interface GatewayOptions {
  /** A fixed supergraph SDL. Defaults to none: the gateway reads `supergraphPath` and follows it. */
  supergraphSdl?: string;
  /**
   * The supergraph file to serve and watch: when it changes, the new supergraph is validated and
   * swapped in without a restart (in-flight requests finish on the old one); a broken one is refused
   * and the old one keeps serving. Defaults to the committed schema/supergraph.graphql.
   */
  supergraphPath?: string;
  /** Subgraph URLs by name, overriding those composed into the supergraph. Defaults to none. */
  subgraphUrls?: Partial<Record<string, string>>;
  /** Timeout of each call to a subgraph, by name. Defaults to 5000 ms for each. */
  subgraphTimeoutsMs?: Partial<Record<string, number>>;
  /** Circuit breaker settings shared by every subgraph. Defaults to SubgraphDataSource's. */
  breaker?: SubgraphBreakerOptions;
  /** Port to listen on; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** Interface to listen on. Defaults to 127.0.0.1. */
  host?: string;
  /** How long SIGTERM lets in-flight requests finish. Defaults to 10000 ms. */
  shutdownGraceMs?: number;
  /** Verifies the client's bearer token (see createBearerAuthenticator). */
  authenticate: BearerAuthenticator;
  /** Signs the caller's identity for subgraphs (see createIdentitySigner). */
  signIdentity: IdentitySigner;
  /** Per-client query-cost budget. Defaults to 100000 points per 60 s, in memory. */
  budget?: Omit<ClientBudgetOptions, 'redis' | 'logger'>;
  /** Per-IP request rate and in-flight cap. Defaults to requestLimits' defaults. */
  requestLimits?: Omit<RequestLimitsOptions, 'redis'>;
  /** Per-operation cost and document limits. Defaults to useQueryLimits' defaults. */
  queryLimits?: Omit<QueryLimitsOptions<GatewayContext>, 'supergraphSdl' | 'onEstimated' | 'authorize'>;
  /** Shares rate-limit counters between gateways. Defaults to none (in memory). */
  redis?: RedisClient;
  /** Known API keys, "name=key,name=key". Defaults to none. */
  apiKeys?: string;
  /** Protects /metrics (see METRICS_TOKEN). Defaults to none. */
  metricsToken?: string;
  /**
   * Prefix of every key the gateway writes in Redis (budgets, the IP rate, persisted queries, deprecation
   * usage), so deployments sharing one Redis share nothing (REDIS_NAMESPACE). Defaults to storefront.
   */
  redisNamespace?: string;
  /** Where deprecation notices' Link header points (see DEPRECATION_DOCS_URL). Defaults to the README. */
  deprecationDocsUrl?: string;
  /** Express "trust proxy" setting for client IPs. Defaults to false. */
  trustProxy?: string;
  logger: Logger;
}

/** The verdict on a request's credentials, made once per request. */
interface Credentials {
  caller: Caller;
  /** The API key's client name, when a known key was sent. */
  apiClient: string | null;
  /** Why the credentials were refused (a 401 for the context to throw). */
  error?: unknown;
}

export interface RunningGateway extends RunningServer {
  /** Each subgraph's circuit breaker state. */
  breakerStates(): Record<string, 'closed' | 'open' | 'halfOpen'>;
}

/** The gateway: one endpoint over the composed supergraph, with the Sandbox landing page on GET (falling back to GraphiQL at /graphiql). */
export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  // Reads GraphiQL's bundle manifest (builds the bundle only when it is missing or stale); never rejects.
  const explorerRoutes = loadExplorerRoutes(options.logger);
  const dataSources: SubgraphDataSource<GatewayContext>[] = [];
  const metrics = createMetrics('gateway');
  const registers = [metrics.registry];
  const fetchDuration = new Histogram({
    name: 'subgraph_fetch_duration_seconds',
    help: 'Calls to subgraphs by subgraph and outcome (ok, timeout, unreachable, bad_status, circuit_open).',
    labelNames: ['subgraph', 'outcome'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  new Gauge({
    name: 'subgraph_circuit_breaker_state',
    help: 'Each subgraph breaker: 0 closed, 1 half-open, 2 open.',
    labelNames: ['subgraph'],
    registers,
    collect() {
      for (const source of dataSources) this.set({ subgraph: source.subgraph }, { closed: 0, halfOpen: 1, open: 2 }[source.breakerState()]);
    },
  });
  const operationCost = new Histogram({
    name: 'graphql_operation_cost',
    help: 'Estimated cost of each scored operation.',
    buckets: [1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000],
    registers,
  });
  const refusals = new Counter({
    name: 'gateway_refusals_total',
    help: 'Requests refused before GraphQL ran: overloaded (in-flight cap) or ip_rate. Budget and cost refusals are in graphql_errors_total by code.',
    labelNames: ['reason'],
    registers,
  });
  const deprecatedUses = new Counter({
    name: 'deprecated_element_uses_total',
    help: 'Uses of deprecated schema elements, by schema coordinate and client (name@version, at most 100 clients, then other).',
    labelNames: ['coordinate', 'client'],
    registers,
  });
  const clients = new Set<string>();
  const boundedClient = (client: string) => {
    if (clients.has(client) || clients.size < 100) {
      clients.add(client);
      return client;
    }
    return 'other';
  };
  const namespace = options.redisNamespace ?? 'storefront';
  const deprecationUsage = new DeprecationUsage(namespace, options.redis);
  new Gauge({
    name: 'rate_limit_store_degraded',
    help: '1 while Redis is unreachable and rate limits use this gateway\'s local counters.',
    registers,
    collect() {
      this.set(options.redis && !options.redis.isReady ? 1 : 0);
    },
  });
  const supergraphPath = options.supergraphPath ?? SUPERGRAPH_PATH;
  // The gateway enforces the contract's @authenticated/@requiresScopes itself (access-control.ts).
  const supergraphSdl = supergraphForGateway(options.supergraphSdl ?? readFileSync(supergraphPath, 'utf8'));
  const accessControl = useAccessControl();
  const gateway = new ApolloGateway({
    // The supergraph comes from disk (no managed federation, no runtime introspection of subgraphs),
    // and a new version of the file is picked up live.
    supergraphSdl: options.supergraphSdl
      ? supergraphSdl
      : async ({ update }) => {
          let current = readFileSync(supergraphPath, 'utf8');
          watchFile(supergraphPath, { interval: 250, persistent: false }, () => {
            let next: string;
            try {
              next = readFileSync(supergraphPath, 'utf8');
            } catch {
              return;
            }
            if (next === current) return;
            try {
              const forGateway = supergraphForGateway(next);
              // Its access rules must read before it may serve: the gateway would swap it in regardless.
              accessRulesOf(forGateway);
              update(forGateway);
              current = next;
              options.logger.info({ path: supergraphPath }, 'supergraph reloaded');
            } catch (error) {
              options.logger.error({ err: error, path: supergraphPath }, 'new supergraph refused: still serving the previous one');
            }
          });
          return { supergraphSdl, cleanup: async () => unwatchFile(supergraphPath) };
        },
    buildService: ({ name, url }) => {
      const source = new SubgraphDataSource<GatewayContext>({
        name,
        url: options.subgraphUrls?.[name] ?? url!,
        timeoutMs: options.subgraphTimeoutsMs?.[name],
        breaker: options.breaker,
        logger: options.logger,
        observe: ({ subgraph, outcome, seconds }) => fetchDuration.observe({ subgraph, outcome }, seconds),
        // Every subgraph call carries the caller's identity (anonymous callers too), signed for its exact body.
        signRequest: {
          describe: (context) => JSON.stringify({ callerId: context.callerId ?? null, scopes: context.scopes ?? [] } satisfies Caller),
          sign: async (caller, body) => ({ [IDENTITY_HEADER]: await options.signIdentity(JSON.parse(caller) as Caller, body) }),
        },
      });
      dataSources.push(source);
      return source;
    },
    logger: options.logger,
  });
  if (options.trustProxy === 'true') {
    options.logger.warn('TRUST_PROXY=true believes any X-Forwarded-For: clients can pick their IP and dodge the IP rate. Give the hop count or the proxy subnets instead.');
  }
  const budget = useClientBudget({ ...options.budget, redis: options.redis, namespace, logger: options.logger });
  const apiKeyName = parseApiKeys(options.apiKeys);
  /**
   * Verifies the request's credentials once, before the body is read: the IP rate applies unless they
   * are valid, and the context reports the verdict (a bad token or unknown key is a 401 there).
   */
  const credentialsOf = async (req: Request, res: Response): Promise<Credentials> => {
    if (res.locals.credentials) return res.locals.credentials as Credentials;
    let credentials: Credentials;
    try {
      const caller = await options.authenticate(req.headers.authorization);
      const apiKey = req.headers['x-api-key'];
      const apiClient = typeof apiKey === 'string' ? apiKeyName(apiKey) : null;
      credentials = apiKey !== undefined && !apiClient
        ? { caller: ANONYMOUS, apiClient: null, error: clientError(ErrorCode.UNAUTHENTICATED, 'Unknown API key.', { http: { status: 401 } }) }
        : { caller, apiClient };
    } catch (error) {
      credentials = { caller: ANONYMOUS, apiClient: null, error };
    }
    res.locals.credentials = credentials;
    return credentials;
  };
  const limits = requestLimits(async (req, res) => {
    const credentials = await credentialsOf(req, res);
    return !credentials.error && (credentials.caller.callerId !== null || credentials.apiClient !== null);
  }, { ...options.requestLimits, redis: options.redis, namespace, onRefuse: (reason) => refusals.inc({ reason }) });
  // Who may run it, then how large it is, then whether the client can afford it: all before any
  // subgraph is called. A refusal by access control or a limit costs the client the minimum point.
  const queryLimits = useQueryLimits<GatewayContext>({
    supergraphSdl,
    ...options.queryLimits,
    authorize: accessControl.authorize,
    onEstimated: ({ estimated }, requestContext) => {
      operationCost.observe(estimated);
      return budget.charge(estimated, requestContext.contextValue);
    },
  });
  // Registered before Apollo Server starts the gateway, so the access rules and costs of a new supergraph
  // are in place before the first request runs on it.
  gateway.onSchemaLoadOrUpdate((schema) => {
    accessControl.onSchemaLoadOrUpdate(schema);
    queryLimits.onSchemaLoadOrUpdate(schema);
  });
  const server = await startGraphQLHttpServer<GatewayContext>({
    apollo: {
      gateway,
      formatError: withPersistedQueryErrorCodes(maskUnexpectedErrors(options.logger)),
      introspection: true,
      validationRules: queryLimits.validationRules,
      parseOptions: queryLimits.parseOptions,
      // Batched HTTP requests stay off (Apollo's default): one operation per request, one cost each.
      allowBatchedHttpRequests: false,
      // Queries may be sent with GET (mutations may not: 405); a GET must then carry a header a browser
      // would preflight, e.g. `apollo-require-preflight: true` (gateway/http-cache.ts).
      csrfPrevention: true,
      // Automatic persisted queries: in Redis when the gateway has a client, else in memory.
      persistedQueries: persistedQueries(options.redis, namespace, options.logger),
      plugins: [
        useMetrics(metrics),
        useRequestLog(options.logger),
        useDeprecationNotices({ docsUrl: options.deprecationDocsUrl, usage: deprecationUsage, onUse: (coordinate, client) => deprecatedUses.inc({ coordinate, client: boundedClient(client) }) }),
        queryLimits.plugin,
        budget.plugin,
        // Cache-Control from the subgraphs' hints, no caching for mutations, and the ETag.
        ...httpCachePlugins<GatewayContext>(),
        // Apollo's embedded Sandbox (from Apollo's CDN), falling back to GraphiQL at /graphiql when it cannot load.
        landingPageWithGraphiQLFallback<GatewayContext>({ includeCookies: false }),
        ApolloServerPluginUsageReportingDisabled(),
        ApolloServerPluginSchemaReportingDisabled(),
      ],
    },
    // A bad token or unknown API key is a 401 before anything runs; none is an anonymous caller.
    context: async ({ req, res }) => {
      const { caller, apiClient, error } = await credentialsOf(req, res);
      if (error) throw error;
      return { ...caller, client: identifyClient(caller.callerId, apiClient, req.ip) };
    },
    middleware: [limits.middleware],
    // GraphiQL 5 with the explorer plugin at /graphiql, bundled from npm and served from here (gateway/explorer).
    routes: await explorerRoutes,
    metrics: metrics.registry,
    metricsToken: options.metricsToken,
    trustProxy: options.trustProxy,
    ready: async () => true,
    host: options.host,
    port: options.port,
    shutdownGraceMs: options.shutdownGraceMs,
    portSetting: 'GATEWAY_PORT',
    logger: options.logger,
  });
  return {
    ...server,
    breakerStates: () => Object.fromEntries(dataSources.map((source) => [source.subgraph, source.breakerState()])),
    stop: async () => {
      await server.stop();
      budget.close();
      await Promise.all(dataSources.map((source) => source.dispose()));
    },
  };
}
