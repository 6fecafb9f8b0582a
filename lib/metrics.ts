import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { trace } from '@opentelemetry/api';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ErrorCode } from './errors';

/**
 * Prometheus metrics of one process (prom-client), served at /metrics. Label values are bounded:
 * operation names are the client's, but only well-formed ones and at most MAX_OPERATIONS distinct
 * (the rest count as "other"); no ids, no query text.
 */
const MAX_OPERATIONS = 200;
const OPERATION_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export interface Metrics {
  registry: Registry;
  /** GraphQL operations: latency by operation and outcome (ok, error, rejected). */
  requestDuration: Histogram<'operation' | 'outcome'>;
  /** Errors sent to clients, by extensions.code. */
  errors: Counter<'code'>;
  /** Requests being handled now. */
  inFlight: Gauge;
  /**
   * The label value for an operation name. Only a resolved operation (`register`) claims one of the
   * MAX_OPERATIONS slots, so broken requests cannot use them up.
   */
  operationLabel(name: string | null | undefined, register?: boolean): string;
}

export function createMetrics(service: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // Heap, CPU, GC and event-loop delay (nodejs_eventloop_lag_*): the saturation signals of a Node process.
  collectDefaultMetrics({ register: registry });
  const seen = new Set<string>();
  return {
    registry,
    requestDuration: new Histogram({
      name: 'graphql_request_duration_seconds',
      help: 'GraphQL operations by operation name and outcome; the _count series is the request rate.',
      labelNames: ['operation', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    errors: new Counter({
      name: 'graphql_errors_total',
      help: 'Errors sent to clients, by extensions.code.',
      labelNames: ['code'],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'graphql_requests_in_flight',
      help: 'GraphQL requests being handled.',
      registers: [registry],
    }),
    operationLabel(name, register = false) {
      if (!name || !OPERATION_NAME.test(name)) return 'anonymous';
      if (seen.has(name)) return name;
      if (!register) return 'unresolved';
      if (seen.size >= MAX_OPERATIONS) return 'other';
      seen.add(name);
      return name;
    },
  };
}

/** Apollo plugin: per-operation latency and outcome, errors by code, requests in flight. */
export function useMetrics<TContext extends BaseContext>(metrics: Metrics): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart({ request }) {
      const stop = metrics.requestDuration.startTimer();
      metrics.inFlight.inc();
      let operation = metrics.operationLabel(request.operationName);
      return {
        async didResolveOperation({ operationName }) {
          operation = metrics.operationLabel(operationName ?? request.operationName, true);
        },
        async willSendResponse({ response, errors }) {
          metrics.inFlight.dec();
          const codes = (errors ?? []).map((error) =>
            String(error.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR),
          );
          for (const code of codes) metrics.errors.inc({ code });
          stop({ operation, outcome: outcomeOf(response.http.status ?? 200, codes.length) });
        },
      };
    },
    // A request refused while building its context (a bad token: 401) never starts a request.
    async contextCreationDidFail({ error }) {
      metrics.errors.inc({
        code: String(
          (error as { extensions?: { code?: unknown } }).extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR,
        ),
      });
    },
  };
}

/** `ok`, `error` (errors in a 2xx answer, or a 5xx) or `rejected` (a 4xx: the client's request refused). */
function outcomeOf(status: number, errorCount: number): 'ok' | 'error' | 'rejected' {
  if (status >= 500) return 'error';
  if (status >= 400) return 'rejected';
  return errorCount ? 'error' : 'ok';
}

/** Client name and version as Apollo clients send them, cut to a sane length (logs, never labels). */
export function clientOf(headers: { get(name: string): string | undefined | null }): {
  name: string | null;
  version: string | null;
} {
  const cut = (value: string | undefined | null) => (value ? value.slice(0, 64) : null);
  return {
    name: cut(headers.get('apollographql-client-name')),
    version: cut(headers.get('apollographql-client-version')),
  };
}

/**
 * Apollo plugin: one structured log line per request, with operation, client, duration, cost,
 * outcome, error codes and the errorIds of masked errors. Nothing personal: no variables, no ids, no
 * tokens, no query text.
 */
export function useRequestLog<TContext extends BaseContext>(logger: {
  info(obj: object, msg: string): void;
}): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart({ request }) {
      const started = process.hrtime.bigint();
      return {
        async willSendResponse({ response, operationName, contextValue }) {
          const body = response.body?.kind === 'single' ? response.body.singleResult : undefined;
          const errors = body?.errors ?? [];
          const status = response.http.status ?? 200;
          const cost = (contextValue as { cost?: { estimated: number } }).cost?.estimated;
          // The request's trace, when tracing is on: the log line and the trace can be joined.
          const traceId = trace.getActiveSpan()?.spanContext().traceId;
          logger.info(
            {
              ...(traceId ? { traceId } : {}),
              operation: (operationName ?? request.operationName ?? null)?.slice(0, 64) ?? null,
              client: request.http ? clientOf(request.http.headers) : { name: null, version: null },
              durationMs: Number(process.hrtime.bigint() - started) / 1e6,
              ...(cost === undefined ? {} : { cost }),
              status,
              outcome: outcomeOf(status, errors.length),
              ...(errors.length ? { codes: errors.map((error) => error.extensions?.code ?? null) } : {}),
              ...(errors.some((error) => error.extensions?.errorId)
                ? { errorIds: errors.map((error) => error.extensions?.errorId).filter(Boolean) }
                : {}),
            },
            'graphql request',
          );
        },
      };
    },
    async contextCreationDidFail({ error }) {
      const extensions = (error as { extensions?: { code?: unknown; http?: { status?: number } } }).extensions;
      logger.info(
        {
          status: extensions?.http?.status ?? 500,
          outcome: 'rejected',
          codes: [extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR],
        },
        'graphql request',
      );
    },
  };
}
