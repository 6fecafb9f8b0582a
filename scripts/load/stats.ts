import type { Sample } from './open-loop';

/** Figures of `npm run bench:load`: percentiles from sorted arrays (nearest rank), summaries, formatting. */

/** Nearest-rank percentile `q` (0-1) of ascending `sorted`; undefined when empty. */
export function percentile(sorted: number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

const ascending = (values: number[]) => values.sort((a, b) => a - b);

export interface Summary {
  total: number;
  ok: number;
  tooMany: number;
  overloaded: number;
  /** Any other HTTP status. */
  other: number;
  /** Client timeouts. */
  timeout: number;
  /** Connection failures. */
  error: number;
  /** 429 and 503 over all requests. */
  refusedShare: number;
  /** Latency (from schedule) of accepted (200) requests. */
  okP50?: number;
  okP99?: number;
  okMax?: number;
  /** Latency of refusals (429, 503): "at once" means these stay small. */
  refusedP99?: number;
  /** Slowest of anything, failures included. */
  anyMax?: number;
  /** Requests that ended (any outcome, client timeouts included) more than the deadline after their scheduled time. */
  overDeadline: number;
  /** 200s with a top-level `errors`. */
  graphqlErrors: number;
  /** Other statuses seen, `status×count`. */
  otherStatuses: string;
  /** The generator's largest lag behind schedule (ms): large values mean the load generator, not the service, fell behind. */
  maxSendLag?: number;
}

export function summarise(samples: Sample[], deadlineMs: number): Summary {
  const ok: number[] = [];
  const refused: number[] = [];
  const others = new Map<number, number>();
  let tooMany = 0;
  let overloaded = 0;
  let timeout = 0;
  let error = 0;
  let graphqlErrors = 0;
  let overDeadline = 0;
  let maxSendLag: number | undefined;
  let anyMax: number | undefined;
  for (const sample of samples) {
    if (anyMax === undefined || sample.latency > anyMax) anyMax = sample.latency;
    if (maxSendLag === undefined || sample.sendLag > maxSendLag) maxSendLag = sample.sendLag;
    if (sample.latency > deadlineMs) overDeadline += 1;
    if (sample.outcome === 200) {
      ok.push(sample.latency);
      if (sample.graphqlErrors) graphqlErrors += 1;
    } else if (sample.outcome === 429 || sample.outcome === 503) {
      refused.push(sample.latency);
      if (sample.outcome === 429) tooMany += 1;
      else overloaded += 1;
    } else if (sample.outcome === 'timeout') timeout += 1;
    else if (sample.outcome === 'error') error += 1;
    else others.set(sample.outcome, (others.get(sample.outcome) ?? 0) + 1);
  }
  ascending(ok);
  ascending(refused);
  const other = [...others.values()].reduce((sum, count) => sum + count, 0);
  return {
    total: samples.length,
    ok: ok.length,
    tooMany,
    overloaded,
    other,
    timeout,
    error,
    refusedShare: samples.length ? (tooMany + overloaded) / samples.length : 0,
    okP50: percentile(ok, 0.5),
    okP99: percentile(ok, 0.99),
    okMax: ok.at(-1),
    refusedP99: percentile(refused, 0.99),
    anyMax,
    overDeadline,
    graphqlErrors,
    otherStatuses: [...others.entries()].map(([status, count]) => `${status}×${count}`).join(' '),
    maxSendLag,
  };
}

/** `samples` split into consecutive windows of `windowMs` by scheduled time, from `start` for `seconds`. */
export function windows(samples: Sample[], start: number, seconds: number, windowMs = 1000): Sample[][] {
  const buckets: Sample[][] = Array.from({ length: Math.ceil((seconds * 1000) / windowMs) }, () => []);
  for (const sample of samples) {
    const index = Math.floor((sample.scheduled - start) / windowMs);
    if (index >= 0 && index < buckets.length) buckets[index]!.push(sample);
  }
  return buckets;
}

/** A latency: `12.3 ms` below a second, `1.23 s` from there; `–` when there is none. */
export const duration = (ms: number | undefined) =>
  ms === undefined ? '–' : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;

export const megabytes = (bytes: number | undefined) =>
  bytes === undefined ? '–' : `${(bytes / 1_048_576).toFixed(0)} MB`;

export const percent = (share: number) => `${(share * 100).toFixed(share > 0 && share < 0.001 ? 2 : 1)} %`;

export const rate = (perSecond: number) => perSecond.toFixed(perSecond < 10 ? 1 : 0);

/** Least-squares slope of `values` over `times` (same units per unit of time); 0 with fewer than two points. */
export function slope(times: number[], values: number[]): number {
  const n = times.length;
  if (n < 2) return 0;
  const meanT = times.reduce((a, b) => a + b, 0) / n;
  const meanV = values.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i += 1) {
    num += (times[i]! - meanT) * (values[i]! - meanV);
    den += (times[i]! - meanT) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
