import { Counter, Gauge, Histogram } from 'prom-client';
import { createMetrics } from '../lib/metrics';

/** Clients named in metric labels before the rest are counted as `other` (label cardinality stays bounded). */
const MAX_LABELLED_CLIENTS = 100;

/** What the gateway's breaker gauge reads. */
export interface BreakerStates {
  breakerStates(): Record<string, 'closed' | 'open' | 'halfOpen'>;
}

/**
 * The gateway's metric families on top of the common GraphQL ones (lib/metrics.ts): subgraph calls,
 * breakers, operation cost, refusals, deprecated uses and the Redis fallback.
 */
export function createGatewayMetrics(options: {
  breakers: BreakerStates;
  redisDegraded: () => boolean;
  admission: () => { limit: number; inFlight: number; queued: number; eventLoopDelayMs: number };
  readiness: () => Record<string, string>;
}) {
  const metrics = createMetrics('gateway');
  const registers = [metrics.registry];
  const fetchDuration = new Histogram({
    name: 'subgraph_fetch_duration_seconds',
    help: 'Calls to subgraphs by subgraph and outcome (ok, timeout, unreachable, bad_status, circuit_open).',
    labelNames: ['subgraph', 'outcome'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const sharedFetches = new Counter({
    name: 'subgraph_fetches_shared_total',
    help: 'Subgraph fetches answered by an identical concurrent call another request made (no call of their own), by subgraph.',
    labelNames: ['subgraph'],
    registers,
  });
  const responseCacheLookups = new Counter({
    name: 'response_cache_lookups_total',
    help: 'Whole-response cache lookups of queries: hit, miss, stale (an entity it held changed) or bypass (Redis could not answer).',
    labelNames: ['result'],
    registers,
  });
  new Gauge({
    name: 'subgraph_circuit_breaker_state',
    help: 'Each subgraph breaker: 0 closed, 1 half-open, 2 open.',
    labelNames: ['subgraph'],
    registers,
    collect() {
      for (const [subgraph, state] of Object.entries(options.breakers.breakerStates()))
        this.set({ subgraph }, { closed: 0, halfOpen: 1, open: 2 }[state]);
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
    help: 'Requests refused before GraphQL ran: overloaded (no admission slot in time), event_loop (the gateway lags) or ip_rate. Budget and cost refusals are in graphql_errors_total by code.',
    labelNames: ['reason'],
    registers,
  });
  const deprecatedUses = new Counter({
    name: 'deprecated_element_uses_total',
    help: `Uses of deprecated schema elements, by schema coordinate and client (name@version, at most ${MAX_LABELLED_CLIENTS} clients, then other).`,
    labelNames: ['coordinate', 'client'],
    registers,
  });
  new Gauge({
    name: 'rate_limit_store_degraded',
    help: "1 while Redis is down, failing or hung: rate limits use this gateway's local counters (and persisted queries miss) until it answers again.",
    registers,
    collect() {
      this.set(options.redisDegraded() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'gateway_admission',
    help: 'Admission control: the adaptive in-flight limit, requests running (in_flight) and waiting for a slot (queued).',
    labelNames: ['state'],
    registers,
    collect() {
      const { limit, inFlight, queued } = options.admission();
      this.set({ state: 'limit' }, limit);
      this.set({ state: 'in_flight' }, inFlight);
      this.set({ state: 'queued' }, queued);
    },
  });
  new Gauge({
    name: 'subgraph_ready',
    help: "Each subgraph's /readyz as the gateway last saw it: 1 ready, 0 not (not ready or unreachable).",
    labelNames: ['subgraph'],
    registers,
    collect() {
      for (const [subgraph, readiness] of Object.entries(options.readiness()))
        this.set({ subgraph }, readiness === 'ready' ? 1 : 0);
    },
  });
  const clients = new Set<string>();
  const boundedClient = (client: string) => {
    if (clients.has(client) || clients.size < MAX_LABELLED_CLIENTS) {
      clients.add(client);
      return client;
    }
    return 'other';
  };
  return {
    ...metrics,
    observeFetch: (subgraph: string, outcome: string, seconds: number) =>
      fetchDuration.observe({ subgraph, outcome }, seconds),
    countSharedFetch: (subgraph: string) => sharedFetches.inc({ subgraph }),
    countResponseCacheLookup: (result: string) => responseCacheLookups.inc({ result }),
    observeCost: (estimated: number) => operationCost.observe(estimated),
    countRefusal: (reason: string) => refusals.inc({ reason }),
    countDeprecatedUse: (coordinate: string, client: string) =>
      deprecatedUses.inc({ coordinate, client: boundedClient(client) }),
  };
}
