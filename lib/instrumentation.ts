/**
 * OpenTelemetry tracing, imported FIRST by every entry point (npm start, the gateway, each subgraph),
 * so its instrumentations patch http, undici, graphql, Prisma, pg and Redis before anything loads them. One trace
 * then shows the gateway request, its query plan and fetches (@apollo/gateway's own spans), each
 * subgraph's request, resolvers and SQL statements, joined by W3C trace context on every subgraph call.
 *
 * Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is registered and tracing costs nothing.
 * Standard OTEL_* variables apply (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*).
 */
import { basename, dirname } from 'node:path';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { GraphQLInstrumentation } from '@opentelemetry/instrumentation-graphql';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { RedisInstrumentation } from '@opentelemetry/instrumentation-redis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { PrismaInstrumentation } from '@prisma/instrumentation';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

/** storefront-gateway, storefront-accounts, …, or storefront for `npm start` (all in one process). */
export function serviceName(entry: string = process.argv[1] ?? ''): string {
  const folder = basename(dirname(entry));
  if (basename(entry).startsWith('index') && ['gateway', 'accounts', 'catalog', 'reviews'].includes(folder)) return `storefront-${folder}`;
  return 'storefront';
}

let provider: NodeTracerProvider | undefined;

if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) {
  provider = new NodeTracerProvider({
    // The SDK's defaults, then OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, then ours where unset.
    resource: defaultResource()
      .merge(resourceFromAttributes({ 'service.name': serviceName(), 'service.namespace': 'storefront-supergraph' }))
      .merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register();
  registerInstrumentations({
    instrumentations: [
      // Health checks and metric scrapes would drown the traces that matter.
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => /^\/(healthz|readyz|metrics)/.test(request.url ?? '') }),
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
