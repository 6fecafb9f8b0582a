import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { SUBGRAPH_NAMES } from '../../subgraphs/registry';
import { median, printTable } from '../bench-kit';
import { LoadGenerator, type Sample } from './open-loop';
import type { Options } from './options';
import { cpuTicks, startService, stopServices, TICKS_PER_SECOND, waitReady, type Service } from './processes';
import { ResourceSampler } from './resources';
import { cleanRedis, describeEndings, firstPage, redisPid, startStack, stopStack } from './stack';
import { duration, megabytes, rate, summarise, type Summary } from './stats';

/**
 * The speed section of `npm run bench:load`: how fast the service serves the storefront page, as a
 * ratio to a ceiling measured in the same run (scripts/load/ceiling.ts: the same JSON from one SQL
 * statement in a bare node:http server on the same database), so that figures from a noisy, shared
 * machine still compare: drift hits the ceiling and the service alike. The service runs three times,
 * restarted for each configuration: cold (entity and response caches off), entity (entity cache only)
 * and warm (both on). In each, after a warm-up, closed-loop windows (--speed-concurrency requests
 * outstanding, 8 by default: enough to saturate two cores, few enough that the gateway's admission
 * control, which sheds load past a 300 ms latency target, rarely refuses) of the ceiling and the service
 * alternate (ceiling, service, service, ceiling: drift that is linear in time cancels in the medians);
 * then the service runs open loop at half its measured capacity, evenly paced, for its latency when not
 * saturated. Every process's CPU time (/proc, its own ticks: each subgraph,
 * the gateway, the ceiling, the PostgreSQL backends of the bench database, Redis) is read at each
 * window's edges and divided by the pages served, so a change shows where it saved.
 */

/**
 * How long a closed-loop worker waits after a refusal (503 from the gateway's admission control, 429)
 * before its next request: an instant refusal retried at once would turn into a storm of refusals.
 */
const REFUSAL_PAUSE_MS = 100;

interface Timings {
  /** Closed-loop warm-up of the service after it starts, and of the ceiling, per configuration (s). */
  warmup: number;
  ceilingWarmup: number;
  /** One closed-loop window (s). */
  window: number;
  /** Pairs of windows (ceiling and service) per configuration. */
  rounds: number;
  /** The open-loop run at half capacity (s). */
  half: number;
}

const timings = (quick: boolean): Timings =>
  quick
    ? { warmup: 2, ceilingWarmup: 1, window: 5, rounds: 1, half: 5 }
    : { warmup: 5, ceilingWarmup: 2, window: 10, rounds: 2, half: 20 };

/**
 * The configurations compared. cold: every page computed in full (no cache, no fetch shared with a
 * concurrent identical page); shared: the same with identical concurrent subgraph fetches shared, as by
 * default. Settings a checkout predates are ignored by it (RESPONSE_CACHE, SHARE_SUBGRAPH_FETCHES).
 */
export const SPEED_CONFIGS = [
  { key: 'cold', env: { ENTITY_CACHE: 'off', RESPONSE_CACHE: 'off', SHARE_SUBGRAPH_FETCHES: 'off' } },
  { key: 'shared', env: { ENTITY_CACHE: 'off', RESPONSE_CACHE: 'off', SHARE_SUBGRAPH_FETCHES: 'on' } },
  { key: 'entity', env: { ENTITY_CACHE: 'on', RESPONSE_CACHE: 'off' } },
  { key: 'warm', env: { ENTITY_CACHE: 'on', RESPONSE_CACHE: 'on' } },
] as const;

type ConfigKey = (typeof SPEED_CONFIGS)[number]['key'];

/** Goals of the issue, as ratios and limits on this machine. */
const GOALS = {
  coldRatio: 0.12,
  coldCpuMs: 8,
  warmRatio: 0.6,
  coldHalfP99Ms: 30,
  warmHalfP99Ms: 15,
  gatewayRssBytes: 250 * 1_048_576,
};

const SERVICE_PROCESSES = ['gateway', ...SUBGRAPH_NAMES] as const;
/** CPU columns, in the order printed; `postgres` is the bench database's backends, `redis` the Redis server. */
const CPU_COLUMNS = [...SERVICE_PROCESSES, 'postgres', 'redis', 'ceiling'];
/** What "total" sums for the service and for the ceiling (the load generator is shown apart, never in a total). */
const SERVICE_TOTAL = [...SERVICE_PROCESSES, 'postgres', 'redis'];
const CEILING_TOTAL = ['ceiling', 'postgres'];

export interface SpeedSetup {
  options: Options;
  /** The environment of every service process (ports, secrets, DATABASE_URL, REDIS_URL, REDIS_NAMESPACE…). */
  env: Record<string, string>;
  /** A free port for the ceiling server. */
  ceilingPort: number;
  tokens: string[];
  /** The storefront page request (JSON). */
  body: string;
  /** The run's live processes: everything started here is added (so the run's cleanup stops it) and removed once stopped. */
  services: Service[];
  log: (line: string) => void;
  /** Where this repository is (the ceiling always runs from it, whatever --root is). */
  repositoryRoot: string;
}

interface CpuReading {
  at: number;
  /** By process name: CPU ticks so far. */
  ticks: Record<string, number | undefined>;
  /** PostgreSQL backends of the bench database: pid → ticks. */
  backends: Map<number, number>;
  /** This process's CPU (the load generator), µs. */
  bench: number;
}

/** CPU time of the named processes and of the bench database's PostgreSQL backends, read at a window's edges. */
class CpuMeter {
  constructor(
    private readonly processes: () => Array<{ name: string; pid: number | undefined }>,
    private readonly monitor: pg.Client | undefined,
  ) {}

  async read(): Promise<CpuReading> {
    const backends = new Map<number, number>();
    if (this.monitor) {
      const { rows } = await this.monitor.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
      );
      for (const { pid } of rows) {
        const ticks = cpuTicks(pid);
        if (ticks !== undefined) backends.set(pid, ticks);
      }
    }
    const ticks: Record<string, number | undefined> = {};
    for (const { name, pid } of this.processes()) ticks[name] = pid === undefined ? undefined : cpuTicks(pid);
    const cpu = process.cpuUsage();
    return { at: performance.now(), ticks, backends, bench: cpu.user + cpu.system };
  }
}

/**
 * CPU ms used between two readings, by process, `postgres` summed over the backends seen at the end (a
 * backend that started during the window counts whole; one that ended during it is missed: the pools
 * keep theirs open, so there are none in practice), and `load generator` for this process.
 */
function cpuBetween(before: CpuReading, after: CpuReading): Record<string, number | undefined> {
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  const result: Record<string, number | undefined> = {};
  for (const [name, end] of Object.entries(after.ticks)) {
    const start = before.ticks[name];
    result[name] = end === undefined || start === undefined ? undefined : ms(end - start);
  }
  if (after.backends.size) {
    let ticks = 0;
    for (const [pid, end] of after.backends) ticks += end - (before.backends.get(pid) ?? 0);
    result.postgres = ms(ticks);
  }
  result['load generator'] = (after.bench - before.bench) / 1000;
  return result;
}

type Target = 'ceiling' | 'service';

interface Window {
  target: Target;
  summary: Summary;
  /** From the first send to the last answer (s). */
  seconds: number;
  /** CPU ms by process over the window. */
  cpu: Record<string, number | undefined>;
}

/** Windows (or one) of one target, pooled: pages/s as the median of the windows', latency and CPU over all. */
interface Pooled {
  pagesPerSecond: number;
  perWindow: number[];
  summary: Summary;
  /** CPU ms per page by process, and `total` over `totalOf`. */
  cpuPerPage: Record<string, number | undefined>;
  pages: number;
}

function pool(
  windows: Array<{ samples: Sample[]; seconds: number; cpu: Record<string, number | undefined> }>,
  totalOf: string[],
  deadlineMs: number,
): Pooled {
  const samples = windows.flatMap((window) => window.samples);
  const summary = summarise(samples, deadlineMs);
  const pages = summary.ok;
  const cpuPerPage: Record<string, number | undefined> = {};
  for (const name of [...CPU_COLUMNS, 'load generator']) {
    const values = windows.map((window) => window.cpu[name]);
    cpuPerPage[name] =
      values.some((value) => value === undefined) || !pages
        ? undefined
        : values.reduce((sum, value) => sum! + value!, 0)! / pages;
  }
  const parts = totalOf.map((name) => cpuPerPage[name]).filter((value) => value !== undefined);
  cpuPerPage.total = parts.length ? parts.reduce((sum, value) => sum + value, 0) : undefined;
  const perWindow = windows.map((window) => summarise(window.samples, deadlineMs).ok / window.seconds);
  return { pagesPerSecond: median(perWindow), perWindow, summary, cpuPerPage, pages };
}

interface HalfRun {
  rate: number;
  seconds: number;
  summary: Summary;
  cpuPerPage: Record<string, number | undefined>;
}

interface ConfigResult {
  key: ConfigKey;
  env: Record<string, string>;
  check: string;
  checkPassed: boolean;
  windows: Array<Window & { samples: Sample[] }>;
  service: Pooled;
  ceiling: Pooled;
  half: HalfRun;
  ceilingHalf?: HalfRun;
  /** RSS by process: after start (idle), at the end of load, and the most seen. */
  rss: Record<string, { idle?: number; end?: number; peak?: number }>;
}

/** Removes stopped processes from the run's list of live ones. */
function untrack(services: Service[], stopped: Service[]) {
  for (const service of stopped) {
    const index = services.indexOf(service);
    if (index >= 0) services.splice(index, 1);
  }
}

/** Where two parsed JSON values first differ, as a path, for a failed ceiling check. */
function firstDifference(a: unknown, b: unknown, path = '$'): string | undefined {
  if (isDeepStrictEqual(a, b)) return undefined;
  if (
    typeof a !== 'object' ||
    typeof b !== 'object' ||
    a === null ||
    b === null ||
    Array.isArray(a) !== Array.isArray(b)
  )
    return `${path}: ${JSON.stringify(a)?.slice(0, 120)} vs ${JSON.stringify(b)?.slice(0, 120)}`;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.join() !== keysB.join()) return `${path}: keys ${keysA.join(',')} vs ${keysB.join(',')}`;
  for (const key of keysA) {
    const found = firstDifference(
      (a as Record<string, unknown>)[key],
      (b as Record<string, unknown>)[key],
      `${path}.${key}`,
    );
    if (found) return found;
  }
  return path;
}

async function fetchCeiling(origin: string, body: string): Promise<string> {
  const response = await fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`The ceiling answered ${response.status}: ${text.slice(0, 500)}`);
  return text;
}

/**
 * The ceiling's page against the gateway's: their `data` equal once parsed (the check), and whether byte
 * for byte too. The gateway's answer also carries `extensions` (the caller's query cost and budget,
 * different on every request), which is not the page and which the ceiling leaves out.
 */
function comparePages(gateway: string, ceiling: string): { passed: boolean; text: string } {
  const answer = JSON.parse(gateway) as { data?: unknown; errors?: unknown; extensions?: Record<string, unknown> };
  const page = JSON.parse(ceiling) as unknown;
  const extra = answer.extensions
    ? `; the gateway's answer also has extensions (${Object.keys(answer.extensions).join(', ')}: ` +
      `${gateway.length - JSON.stringify({ data: answer.data }).length} bytes more), not part of the page`
    : '';
  const ours = { data: answer.data };
  if (answer.errors) return { passed: false, text: `FAILED: the gateway's page has errors: ${gateway.slice(0, 300)}` };
  if (JSON.stringify(ours) === ceiling)
    return {
      passed: true,
      text: `passed: the ceiling's page equals the gateway's data byte for byte (${ceiling.length} bytes)${extra}`,
    };
  if (isDeepStrictEqual(ours, page))
    return {
      passed: true,
      text: `passed: the ceiling's page equals the gateway's data once parsed (deep-equal), not byte for byte${extra}`,
    };
  return {
    passed: false,
    text: `FAILED: the ceiling's page differs from the gateway's at ${firstDifference(ours, page)}`,
  };
}

/** What was not a 200, by kind: `0`, or e.g. `503×12 timeout×1`. */
function notOk(summary: Summary): string {
  const parts = [
    summary.overloaded ? `503×${summary.overloaded}` : '',
    summary.tooMany ? `429×${summary.tooMany}` : '',
    summary.other ? summary.otherStatuses : '',
    summary.timeout ? `timeout×${summary.timeout}` : '',
    summary.error ? `error×${summary.error}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(' ') : '0';
}

const perPage = (ms: number | undefined) => (ms === undefined ? '–' : ms.toFixed(2));
const ratio = (value: number) => `${value.toFixed(value < 0.1 ? 3 : 2)}x`;

function cpuCells(cpuPerPage: Record<string, number | undefined>, target: Target): string[] {
  const own = target === 'service' ? SERVICE_TOTAL : CEILING_TOTAL;
  return [
    ...CPU_COLUMNS.map((name) => (own.includes(name) ? perPage(cpuPerPage[name]) : '–')),
    perPage(cpuPerPage.total),
    perPage(cpuPerPage['load generator']),
  ];
}

const CPU_HEADERS = [...CPU_COLUMNS.map((name) => `${name} ms/page`), 'total ms/page', 'load generator ms/page'];

function printConfig(result: ConfigResult, timing: Timings, concurrency: number, deadlineMs: number) {
  const label = (target: Target) => (target === 'ceiling' ? 'ceiling' : result.key);
  console.log(
    `\nCapacity, ${result.key}: closed loop with ${concurrency} requests outstanding (a refused one waits ${REFUSAL_PAUSE_MS} ms), ` +
      `${timing.window} s windows after a ` +
      `${timing.warmup} s warm-up (ceiling ${timing.ceilingWarmup} s), ceiling and service alternating; pages/s is the ` +
      `median of the windows', latency (from send) and CPU over all of them. CPU ms/page: the process's own CPU time ` +
      `(/proc ticks) over the window / 200s served.\n`,
  );
  printTable(
    ['window', 'target', 'pages/s', '200', 'not 200', 'p50', 'p99', ...CPU_HEADERS],
    [
      ...result.windows.map((window, index) => {
        const pages = window.summary.ok;
        const cpu: Record<string, number | undefined> = {};
        for (const name of [...CPU_COLUMNS, 'load generator'])
          cpu[name] = window.cpu[name] === undefined || !pages ? undefined : window.cpu[name]! / pages;
        const parts = (window.target === 'service' ? SERVICE_TOTAL : CEILING_TOTAL)
          .map((name) => cpu[name])
          .filter((value) => value !== undefined);
        cpu.total = parts.length ? parts.reduce((sum, value) => sum + value, 0) : undefined;
        return [
          String(index + 1),
          label(window.target),
          rate(pages / window.seconds),
          String(pages),
          notOk(window.summary),
          duration(window.summary.okP50),
          duration(window.summary.okP99),
          ...cpuCells(cpu, window.target),
        ];
      }),
      ...(['ceiling', 'service'] as const).map((target) => {
        const pooled = target === 'ceiling' ? result.ceiling : result.service;
        return [
          'all',
          label(target),
          rate(pooled.pagesPerSecond),
          String(pooled.pages),
          notOk(pooled.summary),
          duration(pooled.summary.okP50),
          duration(pooled.summary.okP99),
          ...cpuCells(pooled.cpuPerPage, target),
        ];
      }),
    ],
  );
  console.log(
    `\n${result.key}: ${rate(result.service.pagesPerSecond)} pages/s = ${ratio(result.service.pagesPerSecond / result.ceiling.pagesPerSecond)} ` +
      `the ceiling's ${rate(result.ceiling.pagesPerSecond)} pages/s in the same configuration's windows.`,
  );
  const halves = [
    ...(result.ceilingHalf ? [{ target: 'ceiling' as const, run: result.ceilingHalf }] : []),
    { target: 'service' as const, run: result.half },
  ];
  console.log(
    `\nHalf capacity, ${result.key}: open loop at half the pages/s above, evenly paced arrivals, latency from each ` +
      `request's scheduled send time (deadline ${deadlineMs / 1000} s).\n`,
  );
  printTable(
    ['target', 'rate', 'seconds', 'requests', '200', 'not 200', 'p50', 'p99', 'max', ...CPU_HEADERS],
    halves.map(({ target, run }) => [
      label(target),
      `${rate(run.rate)} rps`,
      String(run.seconds),
      String(run.summary.total),
      String(run.summary.ok),
      notOk(run.summary),
      duration(run.summary.okP50),
      duration(run.summary.okP99),
      duration(run.summary.anyMax),
      ...cpuCells(run.cpuPerPage, target),
    ]),
  );
  console.log(`\nMemory, ${result.key} (VmRSS):\n`);
  printTable(
    ['process', 'after start', 'end of load', 'peak'],
    Object.entries(result.rss).map(([name, rss]) => [
      name,
      megabytes(rss.idle),
      megabytes(rss.end),
      megabytes(rss.peak),
    ]),
  );
}

function printSummary(
  results: ConfigResult[],
  ceilingHalf: HalfRun | undefined,
  concurrency: number,
  deadlineMs: number,
) {
  const ceiling = pool(
    results.flatMap((result) => result.windows.filter((window) => window.target === 'ceiling')),
    CEILING_TOTAL,
    deadlineMs,
  );
  const ceilingRss = results.map((result) => result.rss.ceiling?.end).at(-1);
  console.log(
    `\nSpeed summary. Ratio: the configuration's pages/s over the ceiling's in its own windows (the ceiling row: all of its ` +
      `windows, pages/s their median). p50/p99: closed loop, ${concurrency} outstanding. Half capacity: open loop, evenly paced. CPU ` +
      `ms/page from the closed-loop windows; "total" is the service's processes with PostgreSQL and Redis (the ceiling's: ` +
      `it and PostgreSQL); the load generator is apart.\n`,
  );
  const rss = (result: ConfigResult) =>
    `${megabytes(result.rss.gateway?.end)} (peak ${megabytes(result.rss.gateway?.peak)})`;
  const half = (run: HalfRun | undefined) =>
    run
      ? [
          `${rate(run.rate)} rps`,
          duration(run.summary.okP50),
          duration(run.summary.okP99),
          duration(run.summary.anyMax),
        ]
      : ['–', '–', '–', '–'];
  printTable(
    [
      'config',
      'pages/s',
      'ratio to ceiling',
      'p50',
      'p99',
      'half capacity',
      'p50 at half',
      'p99 at half',
      'max at half',
      ...CPU_HEADERS.slice(0, -1),
      'total ms/page at half',
      'gateway RSS end of load',
    ],
    [
      [
        'ceiling',
        rate(ceiling.pagesPerSecond),
        '1x',
        duration(ceiling.summary.okP50),
        duration(ceiling.summary.okP99),
        ...half(ceilingHalf),
        ...cpuCells(ceiling.cpuPerPage, 'ceiling').slice(0, -1),
        perPage(ceilingHalf?.cpuPerPage.total),
        `${megabytes(ceilingRss)} (ceiling process)`,
      ],
      ...results.map((result) => [
        result.key,
        rate(result.service.pagesPerSecond),
        ratio(result.service.pagesPerSecond / result.ceiling.pagesPerSecond),
        duration(result.service.summary.okP50),
        duration(result.service.summary.okP99),
        ...half(result.half),
        ...cpuCells(result.service.cpuPerPage, 'service').slice(0, -1),
        perPage(result.half.cpuPerPage.total),
        rss(result),
      ]),
    ],
  );
  const byKey = (key: ConfigKey) => results.find((result) => result.key === key);
  const verdict = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? 'met' : 'MISSED');
  const cold = byKey('cold');
  const warm = byKey('warm');
  const coldRatio = cold && cold.service.pagesPerSecond / cold.ceiling.pagesPerSecond;
  const warmRatio = warm && warm.service.pagesPerSecond / warm.ceiling.pagesPerSecond;
  const peakRss = Math.max(...results.map((result) => result.rss.gateway?.peak ?? 0));
  const lines = [
    `cold ≥ ${GOALS.coldRatio}x the ceiling: ${coldRatio === undefined ? '–' : ratio(coldRatio)}: ${verdict(coldRatio === undefined ? undefined : coldRatio >= GOALS.coldRatio)}`,
    `CPU per cold page ≤ ${GOALS.coldCpuMs} ms in all processes together: ${perPage(cold?.service.cpuPerPage.total)} ms: ` +
      verdict(
        cold?.service.cpuPerPage.total === undefined ? undefined : cold.service.cpuPerPage.total <= GOALS.coldCpuMs,
      ),
    `warm ≥ ${GOALS.warmRatio}x the ceiling: ${warmRatio === undefined ? '–' : ratio(warmRatio)}: ${verdict(warmRatio === undefined ? undefined : warmRatio >= GOALS.warmRatio)}`,
    `p99 at half capacity ≤ ${GOALS.coldHalfP99Ms} ms cold: ${duration(cold?.half.summary.okP99)}: ` +
      verdict(cold?.half.summary.okP99 === undefined ? undefined : cold.half.summary.okP99 <= GOALS.coldHalfP99Ms),
    `p99 at half capacity ≤ ${GOALS.warmHalfP99Ms} ms warm: ${duration(warm?.half.summary.okP99)}: ` +
      verdict(warm?.half.summary.okP99 === undefined ? undefined : warm.half.summary.okP99 <= GOALS.warmHalfP99Ms),
    `gateway RSS under load ≤ ${megabytes(GOALS.gatewayRssBytes)}: peak ${megabytes(peakRss)}: ${verdict(peakRss <= GOALS.gatewayRssBytes)}`,
    `ceiling check (its page equals the gateway's): ${results.map((result) => `${result.key} ${result.checkPassed ? 'passed' : 'FAILED'}`).join(', ')}`,
  ];
  console.log(`\nSpeed goals (from the issue):\n${lines.map((line) => `- ${line}`).join('\n')}`);
}

/** A closed-loop window of `generator`, with every process's CPU read at its edges. */
async function closedWindow(generator: LoadGenerator, meter: CpuMeter, concurrency: number, seconds: number) {
  const samples: Sample[] = [];
  const before = await meter.read();
  const start = performance.now();
  await generator.closedLoop(concurrency, seconds, samples, REFUSAL_PAUSE_MS);
  const elapsed = (performance.now() - start) / 1000;
  const after = await meter.read();
  return { samples, seconds: elapsed, cpu: cpuBetween(before, after) };
}

/** Open loop at `rate` for `seconds`, evenly paced; CPU per page over it (answers awaited). */
async function halfRun(
  generator: LoadGenerator,
  meter: CpuMeter,
  pagesPerSecond: number,
  seconds: number,
  totalOf: string[],
  deadlineMs: number,
): Promise<HalfRun> {
  const half = pagesPerSecond / 2;
  const samples: Sample[] = [];
  const before = await meter.read();
  await generator.openLoop(half, seconds, performance.now() + 20, samples);
  await generator.drain();
  const after = await meter.read();
  const pooled = pool([{ samples, seconds, cpu: cpuBetween(before, after) }], totalOf, deadlineMs);
  return { rate: half, seconds, summary: pooled.summary, cpuPerPage: pooled.cpuPerPage };
}

async function runConfig(
  setup: SpeedSetup,
  config: (typeof SPEED_CONFIGS)[number],
  ceiling: { service: Service; generator: LoadGenerator; origin: string },
  monitor: pg.Client | undefined,
  redis: number | undefined,
  timing: Timings,
  measureCeilingHalf: boolean,
): Promise<ConfigResult> {
  const { options, log } = setup;
  const env: Record<string, string> = {
    ...setup.env,
    ...config.env,
    REDIS_NAMESPACE: `${setup.env.REDIS_NAMESPACE}-${config.key}`,
  };
  log(
    `speed, ${config.key} (${Object.entries(config.env)
      .map(([key, value]) => `${key}=${value}`)
      .join(' ')})`,
  );
  const stack: Service[] = [];
  let generator: LoadGenerator | undefined;
  try {
    const started = await startStack(
      options.root,
      env,
      (service) => {
        stack.push(service);
        setup.services.push(service);
      },
      log,
    );
    const origin = `http://127.0.0.1:${env.GATEWAY_PORT}`;
    const first = await firstPage(origin, setup.body, setup.tokens[0]!);
    if (first.refusals.length)
      log(
        `  the gateway refused ${first.refusals.length} request(s) before its first page (first: ${first.refusals[0]})`,
      );
    const check = comparePages(first.text, await fetchCeiling(ceiling.origin, setup.body));
    log(`  ceiling check: ${check.text}`);
    generator = new LoadGenerator({
      origin,
      body: setup.body,
      tokens: setup.tokens,
      connections: options.connections,
      timeoutMs: options.timeoutMs,
    });
    const sampler = new ResourceSampler([...stack, ceiling.service]);
    const idle = sampler.read();
    sampler.start();
    const meter = new CpuMeter(
      () => [
        ...[...stack, ceiling.service].map((service) => ({ name: service.name, pid: service.child.pid })),
        { name: 'redis', pid: redis },
      ],
      monitor,
    );
    log(`  warm-up: service ${timing.warmup} s, ceiling ${timing.ceilingWarmup} s`);
    await generator.closedLoop(options.speedConcurrency, timing.warmup, [], REFUSAL_PAUSE_MS);
    await ceiling.generator.closedLoop(options.speedConcurrency, timing.ceilingWarmup, [], REFUSAL_PAUSE_MS);

    // Ceiling, service; service, ceiling; …: a drift linear in time weighs on both alike.
    const order: Target[] = Array.from({ length: timing.rounds }, (_, round) =>
      round % 2 === 0 ? (['ceiling', 'service'] as const) : (['service', 'ceiling'] as const),
    ).flat();
    const windows: Array<Window & { samples: Sample[] }> = [];
    for (const target of order) {
      const window = await closedWindow(
        target === 'ceiling' ? ceiling.generator : generator,
        meter,
        options.speedConcurrency,
        timing.window,
      );
      const summary = summarise(window.samples, options.deadlineMs);
      log(
        `  ${target === 'ceiling' ? 'ceiling' : config.key}: ${rate(summary.ok / window.seconds)} pages/s, p99 ${duration(summary.okP99)}`,
      );
      windows.push({ target, summary, ...window });
    }
    const service = pool(
      windows.filter((window) => window.target === 'service'),
      SERVICE_TOTAL,
      options.deadlineMs,
    );
    const ceilingPooled = pool(
      windows.filter((window) => window.target === 'ceiling'),
      CEILING_TOTAL,
      options.deadlineMs,
    );

    let ceilingHalf: HalfRun | undefined;
    if (measureCeilingHalf) {
      await sleep(1_000);
      log(`  ceiling at half capacity: ${rate(ceilingPooled.pagesPerSecond / 2)} rps for ${timing.half} s`);
      ceilingHalf = await halfRun(
        ceiling.generator,
        meter,
        ceilingPooled.pagesPerSecond,
        timing.half,
        CEILING_TOTAL,
        options.deadlineMs,
      );
    }
    await sleep(1_000);
    log(`  ${config.key} at half capacity: ${rate(service.pagesPerSecond / 2)} rps for ${timing.half} s`);
    const half = await halfRun(
      generator,
      meter,
      service.pagesPerSecond,
      timing.half,
      SERVICE_TOTAL,
      options.deadlineMs,
    );
    log(
      `    p50 ${duration(half.summary.okP50)}, p99 ${duration(half.summary.okP99)}, max ${duration(half.summary.anyMax)}`,
    );

    const end = sampler.read();
    sampler.stop();
    const rss: ConfigResult['rss'] = {};
    for (const service of [started.gateway, ...started.subgraphs, ceiling.service]) {
      const seen = [idle, ...sampler.samples, end].map((reading) => reading.rss[service.name] ?? 0);
      rss[service.name] = { idle: idle.rss[service.name], end: end.rss[service.name], peak: Math.max(...seen) };
    }
    return {
      key: config.key,
      env: config.env,
      check: check.text,
      checkPassed: check.passed,
      windows,
      service,
      ceiling: ceilingPooled,
      half,
      ceilingHalf,
      rss,
    };
  } finally {
    await generator?.close().catch(() => undefined);
    const endings = await stopStack(stack);
    untrack(setup.services, stack);
    log(`  stopped: ${describeEndings(endings)}`);
    if (env.REDIS_URL) await cleanRedis(env.REDIS_URL, env.REDIS_NAMESPACE).catch(() => 0);
  }
}

/** Runs the speed section and prints its tables; the processes it starts are stopped before it returns. */
export async function runSpeed(setup: SpeedSetup): Promise<void> {
  const { options, log } = setup;
  const timing = timings(options.quick);
  const started = performance.now();
  console.log(
    `## Speed: the service against a ceiling\n\nThe ceiling: the same storefront JSON from one SQL statement ` +
      `(scripts/load/ceiling.ts) in a bare node:http server on the same database, run from ${setup.repositoryRoot}. ` +
      `Configurations, the processes restarted for each: ${SPEED_CONFIGS.map(
        (config) =>
          `${config.key} (${Object.entries(config.env)
            .map(([key, value]) => `${key}=${value}`)
            .join(' ')})`,
      ).join(', ')}; Redis on for all (REDIS_URL=${setup.env.REDIS_URL || '(none)'}). CPU: /proc ticks ` +
      `(${1000 / TICKS_PER_SECOND} ms) of each process; postgres = the backends connected to the bench database ` +
      `(not the server's background processes); redis = the whole Redis server, which other users of it add to.`,
  );

  const ceilingEnv = {
    NODE_ENV: 'production',
    DATABASE_URL: setup.env.DATABASE_URL!,
    HOST: '127.0.0.1',
    PORT: String(setup.ceilingPort),
  };
  const ceilingService = startService(
    'ceiling',
    [process.execPath, '--import', 'tsx', join(setup.repositoryRoot, 'scripts', 'load', 'ceiling.ts')],
    setup.repositoryRoot,
    ceilingEnv,
    setup.ceilingPort,
  );
  setup.services.push(ceilingService);
  const ceilingOrigin = `http://127.0.0.1:${setup.ceilingPort}`;
  const ceilingGenerator = new LoadGenerator({
    origin: ceilingOrigin,
    body: setup.body,
    tokens: setup.tokens,
    connections: options.connections,
    timeoutMs: options.timeoutMs,
  });
  const monitor = new pg.Client({ connectionString: setup.env.DATABASE_URL });
  let monitoring = false;
  try {
    await waitReady(ceilingService);
    await monitor.connect();
    monitoring = true;
    const redis = setup.env.REDIS_URL ? await redisPid(setup.env.REDIS_URL) : undefined;
    const results: ConfigResult[] = [];
    for (const [index, config] of SPEED_CONFIGS.entries()) {
      const result = await runConfig(
        setup,
        config,
        { service: ceilingService, generator: ceilingGenerator, origin: ceilingOrigin },
        monitor,
        redis,
        timing,
        index === 0,
      );
      results.push(result);
      console.log(
        `\n### ${config.key}: ${Object.entries(config.env)
          .map(([key, value]) => `${key}=${value}`)
          .join(' ')}\n`,
      );
      console.log(`Ceiling check: ${result.check}.`);
      printConfig(result, timing, options.speedConcurrency, options.deadlineMs);
    }
    printSummary(results, results[0]?.ceilingHalf, options.speedConcurrency, options.deadlineMs);
    const failures = [...ceilingGenerator.errors.entries()].map(([code, count]) => `${code} ×${count}`);
    if (failures.length) console.log(`\nCeiling connection failures: ${failures.join(', ')}.`);
    console.log(
      `\nThe speed section took ${((performance.now() - started) / 1000).toFixed(0)} s; load average at its end ` +
        `${os
          .loadavg()
          .map((load) => load.toFixed(2))
          .join(' ')}.\n`,
    );
  } finally {
    if (monitoring) await monitor.end().catch(() => undefined);
    await ceilingGenerator.close().catch(() => undefined);
    const endings = await stopServices([ceilingService], 5_000);
    untrack(setup.services, [ceilingService]);
    log(`ceiling stopped: ${describeEndings(endings)}`);
  }
}
