import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  InMemorySpanExporter,
} from '@opentelemetry/sdk-trace';
import { batchOptions, samplerFromEnv, serviceName } from './instrumentation';

describe('service names', () => {
  it('name each process after its entry point, and npm start (all in one) storefront', () => {
    expect(serviceName('/srv/app/gateway/index.ts')).toBe('storefront-gateway');
    expect(serviceName('/srv/app/scripts/start-subgraph.ts', 'reviews')).toBe('storefront-reviews');
    expect(serviceName('/srv/app/scripts/start-subgraph.ts', undefined)).toBe('storefront');
    expect(serviceName('/srv/app/scripts/start-subgraph.ts', 'nosuch')).toBe('storefront');
    expect(serviceName('/srv/app/scripts/start.ts', undefined)).toBe('storefront');
    expect(serviceName('')).toBe('storefront');
  });
});

describe('settings from OTEL_* (SDK 3 reads none of them itself)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of Object.keys(process.env)) if (key.startsWith('OTEL_') && !(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });

  it('batch processor: OTEL_BSP_* where set, the SDK defaults otherwise', () => {
    const exporter = new InMemorySpanExporter();
    expect(batchOptions(exporter)).toEqual({ exporter });
    Object.assign(process.env, {
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_EXPORT_TIMEOUT: '2000',
      OTEL_BSP_MAX_QUEUE_SIZE: '4096',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '256',
    });
    expect(batchOptions(exporter)).toEqual({
      exporter,
      scheduledDelayMillis: 100,
      exportTimeoutMillis: 2000,
      maxQueueSize: 4096,
      maxExportBatchSize: 256,
    });
  });

  it('sampler: the specification’s OTEL_TRACES_SAMPLER values, parent-based always-on by default', () => {
    const sampler = (value?: string, arg?: string) => {
      if (value === undefined) delete process.env.OTEL_TRACES_SAMPLER;
      else process.env.OTEL_TRACES_SAMPLER = value;
      if (arg === undefined) delete process.env.OTEL_TRACES_SAMPLER_ARG;
      else process.env.OTEL_TRACES_SAMPLER_ARG = arg;
      return samplerFromEnv();
    };
    expect(sampler()).toBeInstanceOf(ParentBasedSampler);
    expect(sampler().toString()).toMatch(/root=AlwaysOnSampler/);
    expect(sampler('always_on')).toBeInstanceOf(AlwaysOnSampler);
    expect(sampler('always_off')).toBeInstanceOf(AlwaysOffSampler);
    expect(sampler('traceidratio', '0.25')).toBeInstanceOf(TraceIdRatioBasedSampler);
    expect(sampler('traceidratio', '0.25').toString()).toBe('TraceIdRatioBased{0.25}');
    // An argument out of [0, 1] (or none) samples everything.
    expect(sampler('traceidratio', '7').toString()).toBe('TraceIdRatioBased{1}');
    expect(sampler('traceidratio').toString()).toBe('TraceIdRatioBased{1}');
    expect(sampler('parentbased_always_off').toString()).toMatch(/root=AlwaysOffSampler/);
    expect(sampler('parentbased_traceidratio', '0.5').toString()).toMatch(/root=TraceIdRatioBased\{0\.5\}/);
    expect(sampler('no_such_sampler').toString()).toMatch(/root=AlwaysOnSampler/);
  });
});
