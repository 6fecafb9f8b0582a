/**
 * OpenTelemetry tracing, imported FIRST by every entry point (npm start, the gateway, each subgraph),
 * so its instrumentations patch http, undici, graphql, Prisma, pg and Redis before anything loads them. One trace
 * then shows the gateway request, its query plan and fetches (@apollo/gateway's own spans), each
 * subgraph's request, resolvers and SQL statements, joined by W3C trace context on every subgraph call.
 *
 * Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is registered and tracing costs nothing.
 * Standard OTEL_* variables apply (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, OTEL_TRACES_SAMPLER
 * and its _ARG, OTEL_EXPORTER_OTLP_*). The exporter reads its own; SDK 3 leaves the rest to whoever sets it
 * up (its TracerProvider reads no environment and has no register()), so batchOptions and samplerFromEnv
 * below do, and this module registers the context manager, W3C propagators and provider itself.
 */
import { basename, dirname } from 'node:path';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  getNumberFromEnv,
  getStringFromEnv,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { GraphQLInstrumentation } from '@opentelemetry/instrumentation-graphql';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { RedisInstrumentation } from '@opentelemetry/instrumentation-redis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type BatchSpanProcessorOptions,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { PrismaInstrumentation } from '@prisma/instrumentation';
import { isSubgraphName } from '../subgraphs/registry';

/**
 * storefront-gateway, storefront-<subgraph> (`npm run start:subgraph -- <subgraph>`, a name in the
 * registry), or storefront for `npm start` (all in one process). Read from the command line: this module
 * loads before anything else (the registry is plain data).
 */
export function serviceName(
  entry: string = process.argv[1] ?? '',
  subgraph: string | undefined = process.argv[2],
): string {
  if (basename(entry).startsWith('index') && basename(dirname(entry)) === 'gateway') return 'storefront-gateway';
  if (basename(entry).startsWith('start-subgraph') && subgraph && isSubgraphName(subgraph))
    return `storefront-${subgraph}`;
  return 'storefront';
}

/** The batch processor's settings from OTEL_BSP_* (unset ones keep the SDK's defaults). */
export function batchOptions(exporter: SpanExporter): BatchSpanProcessorOptions {
  const options: BatchSpanProcessorOptions = { exporter };
  const scheduledDelayMillis = getNumberFromEnv('OTEL_BSP_SCHEDULE_DELAY');
  const exportTimeoutMillis = getNumberFromEnv('OTEL_BSP_EXPORT_TIMEOUT');
  const maxQueueSize = getNumberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE');
  const maxExportBatchSize = getNumberFromEnv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE');
  if (scheduledDelayMillis !== undefined) options.scheduledDelayMillis = scheduledDelayMillis;
  if (exportTimeoutMillis !== undefined) options.exportTimeoutMillis = exportTimeoutMillis;
  if (maxQueueSize !== undefined) options.maxQueueSize = maxQueueSize;
  if (maxExportBatchSize !== undefined) options.maxExportBatchSize = maxExportBatchSize;
  return options;
}

/** The sampler OTEL_TRACES_SAMPLER names (the specification's values; parentbased_always_on when unset or unknown). */
export function samplerFromEnv(): Sampler {
  const ratio = () => {
    const value = getNumberFromEnv('OTEL_TRACES_SAMPLER_ARG');
    return value !== undefined && value >= 0 && value <= 1 ? value : 1;
  };
  switch (getStringFromEnv('OTEL_TRACES_SAMPLER')?.toLowerCase()) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

let provider: TracerProvider | undefined;

if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) {
  provider = new TracerProvider({
    // The SDK's defaults, then OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, then ours where unset.
    resource: defaultResource()
      .merge(resourceFromAttributes({ 'service.name': serviceName(), 'service.namespace': 'storefront-supergraph' }))
      .merge(detectResources({ detectors: [envDetector] })),
    sampler: samplerFromEnv(),
    spanProcessors: [new BatchSpanProcessor(batchOptions(new OTLPTraceExporter()))],
  });
  // What NodeTracerProvider.register() did before SDK 3: context follows async calls (AsyncLocalStorage),
  // W3C trace context and baggage travel on every outgoing request, and the provider becomes the global one.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  trace.setGlobalTracerProvider(provider);
  registerInstrumentations({
    instrumentations: [
      // Health checks and metric scrapes would drown the traces that matter.
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => /^\/(healthz|readyz|metrics)/.test(request.url ?? ''),
      }),
      new UndiciInstrumentation(),
      new GraphQLInstrumentation({ mergeItems: true, ignoreTrivialResolveSpans: true }),
      new PgInstrumentation({ requireParentSpan: true }),
      // Prisma's operation spans sit between a resolver and the pg statements they run.
      new PrismaInstrumentation(),
      new RedisInstrumentation({ requireParentSpan: true }),
    ],
  });
}

/** Sends the spans still buffered (on shutdown, before the process exits). */
export async function shutdownTracing(): Promise<void> {
  await provider?.shutdown();
}
