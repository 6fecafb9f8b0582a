import { ApolloGateway } from '@apollo/gateway';
import type { BaseContext } from '@apollo/server';
import {
  ApolloServerPluginLandingPageDisabled,
  ApolloServerPluginSchemaReportingDisabled,
  ApolloServerPluginUsageReportingDisabled,
} from '@apollo/server/plugin/disabled';
import type { Express, RequestHandler } from 'express';
import type { Caller } from '../lib/authorization';
import { ENTITY_TAGS_HEADER } from '../lib/entity-tags';
import { maskUnexpectedErrors } from '../lib/errors';
import { startGraphQLHttpServer, type RunningServer } from '../lib/http-server';
import { IDENTITY_HEADER, type IdentitySigner } from '../lib/identity';
import type { Logger } from '../lib/logger';
import { useMetrics, useRequestLog } from '../lib/metrics';
import { READ_AFTER_HEADER, type ReadAfterSigner } from '../lib/read-replicas';
import type { RedisConnection } from '../lib/redis';
import { supergraphForGateway, useAccessControl } from './access-control';
import { useAdmission, type Admission, type AdmissionOptions } from './admission';
import type { BearerAuthenticator } from './auth';
import { credentialsChecker, isIdentified, type Credentials } from './credentials';
import { DeprecationUsage } from './deprecation-usage';
import { useDeprecationNotices } from './deprecations';
import { landingPageWithGraphiQLFallback } from './explorer/landing-page';
import { loadExplorerRoutes } from './explorer/routes';
import { httpCachePlugins, persistedQueries, withPersistedQueryErrorCodes } from './http-cache';
import { jobsRoutes, type JobsRoutesOptions } from './jobs-routes';
import { createGatewayMetrics } from './metrics';
import { useOutageStatus } from './outage-status';
import { useQueryLimits, type QueryCostContext, type QueryLimitsOptions } from './query-limits';
import {
  identifyClient,
  requestLimits,
  useClientBudget,
  type BudgetContext,
  type ClientBudgetOptions,
  type RequestLimitsOptions,
} from './rate-limits';
import {
  CallerWrites,
  collectWriteLsn,
  readAfterOf,
  useReadYourWrites,
  type ReadYourWritesContext,
} from './read-your-writes';
import {
  collectEntityTags,
  ResponseCache,
  stringifyResult,
  useResponseCache,
  type ResponseCacheContext,
  type ResponseCacheOptions,
} from './response-cache';
import { SubgraphDataSource, WriteClock, type SubgraphBreakerOptions } from './subgraph-data-source';
import { SubgraphHealth } from './subgraph-health';
import { SUPERGRAPH_PATH, SupergraphFile } from './supergraph-file';

// Nothing in this service may call out to the internet.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

/** Per request: the caller (verified user id and token scopes, or ANONYMOUS), their budget and the operation's cost. */
export interface GatewayContext
  extends BaseContext, Caller, BudgetContext, QueryCostContext, ResponseCacheContext, ReadYourWritesContext {
  /** When the answer is due (epoch ms): REQUEST_DEADLINE_MS after the request's headers arrived. */
  deadline: number;
}

export interface GatewayOptions {
  /** A fixed supergraph SDL. Defaults to none: the gateway reads `supergraphPath` and follows it (SupergraphFile). */
  supergraphSdl?: string;
  /**
   * The supergraph file to serve and watch: when it changes, the new supergraph is validated and
   * swapped in without a restart (in-flight requests finish on the old one); a broken one is refused
   * and the old one keeps serving. Defaults to the committed schema/supergraph.graphql.
   */
  supergraphPath?: string;
  /**
   * Whether identical concurrent fetches of queries share one subgraph call (SubgraphDataSource's
   * `shareFetches`: public answers with any caller, others with the same caller). Defaults to true.
   */
  shareSubgraphFetches?: boolean;
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
  /**
   * The whole-response cache of public queries, invalidated by entity (response-cache.ts), in Redis when
   * the gateway has a connection. `false` turns it off. Defaults to on, with ResponseCache's defaults.
   */
  responseCache?: false | Pick<ResponseCacheOptions, 'maxBytes' | 'maxTtlSeconds'>;
  /** Per-client query-cost budget. Defaults to 100000 points per 60 s, in memory. */
  budget?: Omit<ClientBudgetOptions, 'redis' | 'logger'>;
  /** Per-IP request rate. Defaults to requestLimits' defaults. */
  requestLimits?: Omit<RequestLimitsOptions, 'redis'>;
  /** The adaptive in-flight limit, its queue and the event-loop check (admission.ts). Defaults to useAdmission's defaults. */
  admission?: Omit<AdmissionOptions, 'onRefuse'>;
  /** How long a request may take from its headers to its answer; subgraph calls get what is left. Defaults to 5000 ms. */
  deadlineMs?: number;
  /** Subgraphs the gateway's /readyz requires ready (subgraph-health.ts). Defaults to none: 503 only while none is ready. */
  readinessSubgraphs?: readonly string[];
  /** Per-operation cost and document limits. Defaults to useQueryLimits' defaults. */
  queryLimits?: Omit<QueryLimitsOptions<GatewayContext>, 'supergraphSdl' | 'onEstimated' | 'authorize'>;
  /**
   * Read-your-writes over the subgraphs' read replicas (gateway/read-your-writes.ts): each caller's last write
   * position, sent signed with their fetches (`sign`, from the identity secret), kept `ttlMs` (in Redis too
   * when the gateway has it). For subgraphs with DATABASE_REPLICA_URLS. Defaults to none (off).
   */
  readYourWrites?: { sign: ReadAfterSigner; ttlMs?: number };
  /** Shares rate-limit counters between gateways. Defaults to none (in memory). */
  redis?: RedisConnection;
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
  /** Whether introspection queries are answered (INTROSPECTION). Defaults to true: Sandbox and GraphiQL need it. */
  introspection?: boolean;
  /** Whether the Sandbox landing page and GraphiQL at /graphiql are served (EXPLORER). Defaults to true. */
  explorer?: boolean;
  /**
   * Serves the jobs' HTTP side (jobs-routes.ts: the 202 bridge and result downloads) from this results folder,
   * verifying signed links with `links`. Defaults to none (no /jobs routes).
   */
  jobs?: Pick<JobsRoutesOptions, 'dir' | 'links'>;
  /** Express "trust proxy" setting for client IPs. Defaults to false. */
  trustProxy?: string;
  logger: Logger;
}

export interface RunningGateway extends RunningServer {
  /** Each subgraph's circuit breaker state. */
  breakerStates(): Record<string, 'closed' | 'open' | 'halfOpen'>;
  /** The admission limit, requests running and waiting (admission.ts). */
  admission: Admission['state'];
}

/**
 * The gateway: one endpoint over the composed supergraph, with the Sandbox landing page on GET (falling
 * back to GraphiQL at /graphiql). Each concern is its own module; this function only puts them in order.
 */
export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { logger } = options;
  const namespace = options.redisNamespace ?? 'storefront';
  // Reads GraphiQL's bundle manifest (builds the bundle only when it is missing or stale); never rejects.
  const explorer = options.explorer ?? true;
  const explorerRoutes = explorer ? loadExplorerRoutes(logger) : undefined;

  // The supergraph: a fixed SDL, or the file, followed live.
  const supergraphFile = options.supergraphSdl
    ? undefined
    : new SupergraphFile({ path: options.supergraphPath ?? SUPERGRAPH_PATH, logger });
  // The gateway enforces the contract's @authenticated/@requiresScopes itself (access-control.ts).
  const supergraphSdl = options.supergraphSdl ? supergraphForGateway(options.supergraphSdl) : supergraphFile!.read();

  // Subgraph calls: one data source per subgraph, with its timeout, breaker and the caller's signed identity.
  const dataSources: SubgraphDataSource<GatewayContext>[] = [];
  // One write counter for all subgraphs: no query shares a fetch sent before a mutation it follows.
  const writes = new WriteClock();
  const breakerStates = () => Object.fromEntries(dataSources.map((source) => [source.subgraph, source.breakerState()]));
  // Every subgraph's /readyz, for the gateway's own and to close a breaker as soon as its subgraph is back.
  const health = new SubgraphHealth(() => dataSources, { required: options.readinessSubgraphs, logger });
  const deadlineMs = options.deadlineMs ?? 5_000;
  const admission = useAdmission({
    ...options.admission,
    // A job's pages (a delegation token, verified before the body is read by the IP rate's check) yield to clients.
    isBackground: (res) => (res.locals.credentials as Credentials | undefined)?.caller.background === true,
    onRefuse: (reason) => metrics.countRefusal(reason),
  });
  const metrics = createGatewayMetrics({
    admission: admission.state,
    readiness: () => health.readiness(),
    breakers: { breakerStates },
    redisDegraded: () => options.redis?.degraded ?? false,
  });
  const responseCache =
    options.responseCache === false
      ? undefined
      : new ResponseCache({ ...options.responseCache, redis: options.redis, namespace });
  const callerWrites =
    options.readYourWrites &&
    new CallerWrites({ redis: options.redis, namespace, ttlMs: options.readYourWrites.ttlMs });
  const signReadAfter = options.readYourWrites?.sign;
  const gateway = new ApolloGateway({
    supergraphSdl: supergraphFile ?? supergraphSdl,
    buildService: ({ name, url }) => {
      const source = new SubgraphDataSource<GatewayContext>({
        name,
        url: options.subgraphUrls?.[name] ?? url!,
        timeoutMs: options.subgraphTimeoutsMs?.[name],
        breaker: options.breaker,
        logger,
        observe: ({ subgraph, outcome, seconds }) => metrics.observeFetch(subgraph, outcome, seconds),
        deadlineOf: (context) => context.deadline,
        writes,
        shareFetches: options.shareSubgraphFetches ?? true,
        onShared: (subgraph) => metrics.countSharedFetch(subgraph),
        // With the response cache, every answer says which entities it holds or changed.
        ...(responseCache && { headers: { [ENTITY_TAGS_HEADER]: '1' } }),
        // What answers report: the response cache's entity tags; with read replicas, a mutation's write position.
        ...((responseCache || callerWrites) && {
          didReceive: (response, { subgraph, operation, context }) => {
            if (responseCache) collectEntityTags(subgraph, operation, response, context);
            if (callerWrites) collectWriteLsn(operation, response, context);
          },
        }),
        // A request that must read the primary (after its caller's write) shares no fetch with others.
        ...(callerWrites && { ownFetchesOnly: (context) => readAfterOf(context) !== undefined }),
        // Every subgraph call carries the caller's identity (anonymous callers too), signed for its exact body,
        // and, with read replicas, where it must read (signed for that identity).
        signRequest: {
          describe: (context) =>
            JSON.stringify({
              callerId: context.callerId ?? null,
              scopes: context.scopes ?? [],
              ...(callerWrites && { readAfter: readAfterOf(context) }),
            } satisfies Caller & { readAfter?: string }),
          sign: async (described, body) => {
            const { readAfter, ...caller } = JSON.parse(described) as Caller & { readAfter?: string };
            const identity = await options.signIdentity(caller, body);
            return {
              [IDENTITY_HEADER]: identity,
              ...(readAfter && signReadAfter && { [READ_AFTER_HEADER]: signReadAfter(readAfter, identity) }),
            };
          },
        },
      });
      dataSources.push(source);
      return source;
    },
    logger,
  });

  // Before GraphQL: the in-flight cap and, for callers without valid credentials, the IP rate.
  if (options.trustProxy === 'true') {
    logger.warn(
      'TRUST_PROXY=true believes any X-Forwarded-For: clients can pick their IP and dodge the IP rate. Give the hop count or the proxy subnets instead.',
    );
  }
  const credentialsOf = credentialsChecker(options.authenticate, options.apiKeys);
  const limits = requestLimits(async (req, res) => isIdentified(await credentialsOf(req, res)), {
    ...options.requestLimits,
    redis: options.redis,
    namespace,
    onRefuse: metrics.countRefusal,
  });
  // The deadline counts from the request's headers: time spent receiving its body is part of it.
  const stampArrival: RequestHandler = (_req, res, next) => {
    res.locals.receivedAt = Date.now();
    next();
  };

  // Who may run it, then how large it is, then whether the client can afford it: all before any
  // subgraph is called. A refusal by access control or a limit costs the client the minimum point.
  const accessControl = useAccessControl();
  const budget = useClientBudget({ ...options.budget, redis: options.redis, namespace });
  const queryLimits = useQueryLimits<GatewayContext>({
    supergraphSdl,
    ...options.queryLimits,
    authorize: accessControl.authorize,
    onEstimated: ({ estimated }, requestContext) => {
      metrics.observeCost(estimated);
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
      formatError: withPersistedQueryErrorCodes(maskUnexpectedErrors(logger)),
      // A response-cache hit's data is sent as the JSON made when it was stored (response-cache.ts).
      stringifyResult,
      // Explicit, never from NODE_ENV (Apollo's default): production mode must not change what clients see.
      introspection: options.introspection ?? true,
      validationRules: queryLimits.validationRules,
      parseOptions: queryLimits.parseOptions,
      // Batched HTTP requests stay off (Apollo's default): one operation per request, one cost each.
      allowBatchedHttpRequests: false,
      // Queries may be sent with GET (mutations may not: 405); a GET must then carry a header a browser
      // would preflight, e.g. `apollo-require-preflight: true` (gateway/http-cache.ts).
      csrfPrevention: true,
      // Automatic persisted queries: in Redis when the gateway has a client, else in memory.
      persistedQueries: persistedQueries(options.redis, namespace),
      plugins: [
        // First, so metrics and the request log record the 503 of an answer left with nothing but outages.
        useOutageStatus(),
        useMetrics(metrics),
        useRequestLog(logger),
        useDeprecationNotices({
          docsUrl: options.deprecationDocsUrl,
          usage: new DeprecationUsage(namespace, options.redis),
          onUse: metrics.countDeprecatedUse,
        }),
        queryLimits.plugin,
        budget.plugin,
        // After access control and the budget's charge (a hit is charged like any request).
        ...(responseCache
          ? [useResponseCache<GatewayContext>(responseCache, { onLookup: metrics.countResponseCacheLookup })]
          : []),
        // Where the request's fetches read (after the response cache decided whether it fills), and a write's position.
        ...(callerWrites ? [useReadYourWrites<GatewayContext>(callerWrites)] : []),
        // Cache-Control from the subgraphs' hints, no caching for mutations, and the ETag.
        ...httpCachePlugins<GatewayContext>(),
        // Apollo's embedded Sandbox (from Apollo's CDN), falling back to GraphiQL at /graphiql when it cannot load.
        explorer
          ? landingPageWithGraphiQLFallback<GatewayContext>({ includeCookies: false })
          : ApolloServerPluginLandingPageDisabled(),
        ApolloServerPluginUsageReportingDisabled(),
        ApolloServerPluginSchemaReportingDisabled(),
      ],
    },
    // A bad token or unknown API key is a 401 before anything runs; none is an anonymous caller.
    context: async ({ req, res }) => {
      const { caller, apiClient, error } = await credentialsOf(req, res);
      if (error) throw error;
      const deadline = ((res.locals.receivedAt as number | undefined) ?? Date.now()) + deadlineMs;
      return { ...caller, client: identifyClient(caller.callerId, apiClient, req.ip), deadline };
    },
    // Before the body is read: the IP rate (cheap, refuses floods of anonymous requests unread). After it:
    // admission, so a client trickling its body never holds a slot.
    middleware: [stampArrival, admission.shedEarly, limits.middleware],
    afterBody: [admission.middleware],
    // GraphiQL 5 with the explorer plugin at /graphiql, bundled from npm and served from here (gateway/explorer).
    routes: combineRoutes(await explorerRoutes, options.jobs && jobsRoutes({ ...options.jobs, credentialsOf })),
    metrics: metrics.registry,
    metricsToken: options.metricsToken,
    trustProxy: options.trustProxy,
    ready: async () => ({ ready: health.ready(), subgraphs: health.readiness() }),
    host: options.host,
    port: options.port,
    shutdownGraceMs: options.shutdownGraceMs,
    portSetting: 'GATEWAY_PORT',
    logger,
  });
  health.start();
  return {
    ...server,
    breakerStates,
    admission: admission.state,
    stop: async () => {
      await server.stop();
      budget.close();
      health.stop();
      admission.close();
      await Promise.all(dataSources.map((source) => source.dispose()));
    },
  };
}

/** Several modules' routes, registered in order. */
const combineRoutes =
  (...routes: Array<((app: Express) => void) | undefined>) =>
  (app: Express) => {
    for (const register of routes) register?.(app);
  };
