import { readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { SUBGRAPH_NAMES } from '../../subgraphs/registry';
import { printTable } from '../bench-kit';
import { printCapacity, probeCapacity, type Capacity } from './capacity';
import { LoadGenerator, type Sample } from './open-loop';
import type { Options, Scale, ScaleConfig } from './options';
import {
  cpuTicks,
  freePorts,
  PROCESS_COMMANDS,
  rssBytes,
  startService,
  TICKS_PER_SECOND,
  waitReady,
  type Service,
} from './processes';
import { SPEED_CONFIGS } from './speed';
import { cleanRedis, describeEndings, firstPage, isGateway, redisPid, stopStack } from './stack';
import { duration, megabytes, rate, summarise, type Summary } from './stats';

/**
 * The scale mode of `npm run bench:load` (`--scale`, `--subgraph-replicas`): how throughput grows with
 * processes on this machine. Each configuration is N gateway processes and M processes of every subgraph,
 * started afresh: each subgraph replica on its own port, every process given SUBGRAPH_<NAME>_URL listing
 * every replica of each subgraph (the gateway takes them in turn, one per subgraph call:
 * gateway/subgraph-data-source.ts), each gateway on its own port, and the load generator taking the
 * gateways in turn, one per request. In each: a closed-loop warm-up (not reported), a closed-loop window at
 * saturation (pages/s and where the machine's CPU went), the capacity probe (scripts/load/capacity.ts: the
 * sustainable rate R), and an open-loop run at one fixed rate, the same in every configuration (latency at
 * equal load, and CPU per page). Printed: each configuration as it ends, then a summary with pages/s per
 * added process.
 */

/** Requests outstanding in the closed-loop warm-up and saturation window (and the probe's closed loop). */
const CONCURRENCY = 16;
/** How long a closed-loop worker waits after a refusal before its next request (as in the speed section). */
const REFUSAL_PAUSE_MS = 100;

/** Before each configuration: wait up to QUIET_WAIT_MS for the machine to be less than QUIET_BUSY of one core busy. */
const QUIET_WAIT_MS = 300_000;
const QUIET_BUSY = 0.3;
/**
 * A run during which other work on the machine (not this benchmark) took more than OTHER_LIMIT of one core
 * on average is run again, up to ATTEMPTS runs in all; the least disturbed one is kept.
 */
const OTHER_LIMIT = 0.25;
const ATTEMPTS = 4;

const timings = (quick: boolean) =>
  quick
    ? { warmup: 2, saturated: 5, stepSeconds: 5, closedSeconds: 3, fixed: 5 }
    : { warmup: 5, saturated: 10, stepSeconds: 10, closedSeconds: 5, fixed: 20 };

/** The environment of a scale configuration (a speed configuration's, or none for the service's defaults). */
function configEnv(config: ScaleConfig): Record<string, string> {
  if (config === 'default') return {};
  return { ...SPEED_CONFIGS.find((candidate) => candidate.key === config)!.env };
}

export interface ScaleSetup {
  options: Options;
  scale: Scale;
  /** The environment of every process (secrets, DATABASE_URL, REDIS_URL, REDIS_NAMESPACE, --env…); ports are set here. */
  env: Record<string, string>;
  tokens: string[];
  /** The storefront page request (JSON). */
  body: string;
  /** The run's live processes: everything started here is added (so the run's cleanup stops it) and removed once stopped. */
  services: Service[];
  log: (line: string) => void;
}

interface Layout {
  gateways: number;
  replicas: number;
}

/** CPU ms by role over a window, and the window's length. */
interface CpuUse {
  seconds: number;
  gateways: number;
  subgraphs: number;
  generator: number;
  /** The PostgreSQL backends connected to the bench database, and the Redis server. */
  database: number;
  /** Everything the machine ran (all cores), from /proc/stat. */
  machine: number;
}

interface CpuReading {
  at: number;
  ticks: Map<Service, number | undefined>;
  /** PostgreSQL backends of the bench database, and Redis (key `redis`): ticks by pid. */
  database: Map<number | 'redis', number>;
  /** /proc/stat: ticks of all cores, busy (not idle or waiting for I/O). */
  machineBusy: number;
  /** This process's CPU (the load generator), µs. */
  bench: number;
}

interface ScaleResult {
  layout: Layout;
  /** 1-based. */
  round: number;
  /** 1-based: runs of this layout in this round (a run that other work on the machine disturbed is run again). */
  attempt: number;
  /** CPU from the warm-up to the end of the fixed-rate run. */
  whole: CpuUse;
  processes: number;
  loadAverage: number[];
  /** The machine's busy CPU (share of one core) just before the configuration started. */
  busyBefore: number;
  saturated: { summary: Summary; seconds: number; pagesPerSecond: number; cpu: CpuUse };
  capacity: Capacity;
  fixed: { rate: number; seconds: number; samples: Sample[]; summary: Summary; cpu: CpuUse };
  /** RSS at the end of load, summed by role, and the largest gateway's. */
  rss: { gateways: number; subgraphs: number; largestGateway: number };
}

/** Busy ticks of all cores so far (/proc/stat's first line: everything but idle and iowait). */
function machineBusyTicks(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return user + nice + system + irq + softirq + steal;
}

/**
 * Waits (up to `limitMs`) until the machine is nearly idle, so one configuration does not start while
 * other work (another benchmark, a test run) holds the cores. Returns the busy share of one core seen last.
 */
async function quietMachine(
  log: (line: string) => void,
  limitMs = QUIET_WAIT_MS,
  busyLimit = QUIET_BUSY,
): Promise<number> {
  const deadline = Date.now() + limitMs;
  let told = false;
  for (;;) {
    const before = machineBusyTicks();
    await sleep(2_000);
    const busy = (machineBusyTicks() - before) / TICKS_PER_SECOND / 2;
    if (busy < busyLimit) return busy;
    if (Date.now() > deadline) {
      log(`  the machine is still ${(busy * 100).toFixed(0)} % busy after ${limitMs / 1000} s: starting anyway`);
      return busy;
    }
    if (!told) log(`  waiting for the machine to quiet down (${(busy * 100).toFixed(0)} % of a core busy)`);
    told = true;
  }
}

/** Reads the CPU time of the service's processes, the bench database's backends, Redis, this process and the machine. */
class CpuMeter {
  constructor(
    private readonly monitor: pg.Client,
    private readonly redis: number | undefined,
  ) {}

  async read(services: Service[]): Promise<CpuReading> {
    const database = new Map<number | 'redis', number>();
    const { rows } = await this.monitor.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    for (const { pid } of rows) {
      const ticks = cpuTicks(pid);
      if (ticks !== undefined) database.set(pid, ticks);
    }
    const redis = this.redis === undefined ? undefined : cpuTicks(this.redis);
    if (redis !== undefined) database.set('redis', redis);
    const ticks = new Map<Service, number | undefined>();
    for (const service of services)
      ticks.set(service, service.child.pid === undefined ? undefined : cpuTicks(service.child.pid));
    const cpu = process.cpuUsage();
    return { at: performance.now(), ticks, database, machineBusy: machineBusyTicks(), bench: cpu.user + cpu.system };
  }
}

function cpuBetween(before: CpuReading, after: CpuReading): CpuUse {
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  const sum = (keep: (service: Service) => boolean) => {
    let total = 0;
    for (const [service, end] of after.ticks)
      if (keep(service) && end !== undefined) total += end - (before.ticks.get(service) ?? end);
    return ms(total);
  };
  // A backend that connected during the window counts whole (the pools keep theirs open: a few at most).
  let database = 0;
  for (const [pid, end] of after.database) database += end - (before.database.get(pid) ?? 0);
  return {
    seconds: (after.at - before.at) / 1000,
    gateways: sum(isGateway),
    subgraphs: sum((service) => !isGateway(service)),
    generator: (after.bench - before.bench) / 1000,
    database: ms(database),
    machine: ms(after.machineBusy - before.machineBusy),
  };
}

/** CPU the machine spent on anything but this benchmark: its processes, database backends, Redis and load generator. */
const otherOf = (cpu: CpuUse) => Math.max(0, cpu.machine - cpu.gateways - cpu.subgraphs - cpu.generator - cpu.database);

/** CPU as a share of one core (2 cores = 200 %). */
const share = (ms: number, seconds: number) => `${((ms / 1000 / seconds) * 100).toFixed(0)} %`;

const describeLayout = ({ gateways, replicas }: Layout) =>
  `${gateways} gateway${gateways === 1 ? '' : 's'} × ${replicas} process${replicas === 1 ? '' : 'es'} per subgraph`;

const processCount = ({ gateways, replicas }: Layout) => gateways + replicas * SUBGRAPH_NAMES.length;

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

/** Removes stopped processes from the run's list of live ones. */
function untrack(services: Service[], stopped: Service[]) {
  for (const service of stopped) {
    const index = services.indexOf(service);
    if (index >= 0) services.splice(index, 1);
  }
}

/**
 * Starts `layout`: every subgraph's replicas (each on its own port), waits until all are ready, then the
 * gateways. Every process gets SUBGRAPH_<NAME>_URL listing each subgraph's replicas (a single URL with one,
 * as any checkout takes), and its own SUBGRAPH_<NAME>_PORT or GATEWAY_PORT.
 */
async function startLayout(
  setup: ScaleSetup,
  layout: Layout,
  env: Record<string, string>,
  track: (service: Service) => void,
): Promise<{ gateways: Service[]; subgraphs: Service[] }> {
  const root = setup.options.root;
  const ports = await freePorts(processCount(layout));
  const replicaPorts = new Map(
    SUBGRAPH_NAMES.map((name, index) => [
      name,
      ports.slice(layout.gateways + index * layout.replicas, layout.gateways + (index + 1) * layout.replicas),
    ]),
  );
  const common: Record<string, string> = { ...env };
  for (const name of SUBGRAPH_NAMES) {
    const upper = name.toUpperCase();
    delete common[`SUBGRAPH_${upper}_PORT`];
    common[`SUBGRAPH_${upper}_URL`] = replicaPorts
      .get(name)!
      .map((port) => `http://127.0.0.1:${port}/graphql`)
      .join(',');
  }
  delete common.GATEWAY_PORT;
  setup.log(
    `starting ${layout.replicas} process(es) of each of ${SUBGRAPH_NAMES.join(', ')}, then ${layout.gateways} gateway(s)`,
  );
  const subgraphs: Service[] = [];
  for (const name of SUBGRAPH_NAMES)
    for (const [index, port] of replicaPorts.get(name)!.entries()) {
      const service = startService(
        `${name} ${index + 1}`,
        PROCESS_COMMANDS.subgraph(name, root),
        root,
        { ...common, [`SUBGRAPH_${name.toUpperCase()}_PORT`]: String(port) },
        port,
      );
      track(service);
      subgraphs.push(service);
    }
  await Promise.all(subgraphs.map((service) => waitReady(service)));
  const gateways = ports.slice(0, layout.gateways).map((port, index) => {
    const service = startService(
      `gateway ${index + 1}`,
      PROCESS_COMMANDS.gateway(root),
      root,
      { ...common, GATEWAY_PORT: String(port) },
      port,
    );
    track(service);
    return service;
  });
  await Promise.all(gateways.map((service) => waitReady(service)));
  return { gateways, subgraphs };
}

async function runLayout(
  setup: ScaleSetup,
  meter: CpuMeter,
  layout: Layout,
  round: number,
  attempt: number,
  fixedRate: (capacity: Capacity) => number,
): Promise<ScaleResult> {
  const { options, log } = setup;
  const timing = timings(options.quick);
  const busyBefore = await quietMachine(log);
  const loadAverage = os.loadavg();
  const env: Record<string, string> = {
    ...setup.env,
    ...configEnv(setup.scale.config),
    ...options.env,
    REDIS_NAMESPACE: `${setup.env.REDIS_NAMESPACE}-scale-${round}-${attempt}-${layout.gateways}-${layout.replicas}`,
  };
  log(
    `scale, round ${round}${attempt > 1 ? ` (attempt ${attempt})` : ''}: ${describeLayout(layout)} (${processCount(layout)} processes)`,
  );
  const stack: Service[] = [];
  let generator: LoadGenerator | undefined;
  try {
    const started = await startLayout(setup, layout, env, (service) => {
      stack.push(service);
      setup.services.push(service);
    });
    const origins = started.gateways.map((gateway) => `http://127.0.0.1:${gateway.port}`);
    for (const origin of origins) {
      const first = await firstPage(origin, setup.body, setup.tokens[0]!);
      if (first.refusals.length)
        log(`  ${origin} refused ${first.refusals.length} request(s) before its first page (${first.refusals[0]})`);
    }
    generator = new LoadGenerator({
      origin: origins,
      body: setup.body,
      tokens: setup.tokens,
      connections: options.connections,
      timeoutMs: options.timeoutMs,
    });

    const start = await meter.read(stack);
    await generator.closedLoop(CONCURRENCY, timing.warmup, [], REFUSAL_PAUSE_MS);
    const saturatedSamples: Sample[] = [];
    const before = await meter.read(stack);
    await generator.closedLoop(CONCURRENCY, timing.saturated, saturatedSamples, REFUSAL_PAUSE_MS);
    const saturatedCpu = cpuBetween(before, await meter.read(stack));
    const saturatedSummary = summarise(saturatedSamples, options.deadlineMs);
    const saturated = {
      summary: saturatedSummary,
      seconds: saturatedCpu.seconds,
      pagesPerSecond: saturatedSummary.ok / saturatedCpu.seconds,
      cpu: saturatedCpu,
    };
    log(
      `  closed loop, ${CONCURRENCY} outstanding: ${rate(saturated.pagesPerSecond)} pages/s, machine CPU ` +
        `${share(saturatedCpu.machine, saturatedCpu.seconds)}`,
    );
    await sleep(1_000);

    const capacity = await probeCapacity(
      generator,
      {
        stepSeconds: timing.stepSeconds,
        closedSeconds: timing.closedSeconds,
        concurrency: CONCURRENCY,
        p99LimitMs: 1_000,
        deadlineMs: options.deadlineMs,
      },
      (line) => log(`  ${line}`),
    );
    await sleep(2_000);

    const fixed = fixedRate(capacity);
    log(`  fixed rate ${rate(fixed)} rps for ${timing.fixed} s`);
    const fixedSamples: Sample[] = [];
    const fixedBefore = await meter.read(stack);
    await generator.openLoop(fixed, timing.fixed, performance.now() + 20, fixedSamples);
    await generator.drain();
    const end = await meter.read(stack);
    const fixedCpu = cpuBetween(fixedBefore, end);
    const whole = cpuBetween(start, end);
    const fixedSummary = summarise(fixedSamples, options.deadlineMs);
    log(
      `    p50 ${duration(fixedSummary.okP50)}, p99 ${duration(fixedSummary.okP99)}, max ${duration(fixedSummary.anyMax)}`,
    );

    const rssOf = (service: Service) => (service.child.pid === undefined ? 0 : (rssBytes(service.child.pid) ?? 0));
    const gatewayRss = started.gateways.map(rssOf);
    return {
      layout,
      round,
      attempt,
      whole,
      processes: processCount(layout),
      loadAverage,
      busyBefore,
      saturated,
      capacity,
      fixed: { rate: fixed, seconds: timing.fixed, samples: fixedSamples, summary: fixedSummary, cpu: fixedCpu },
      rss: {
        gateways: gatewayRss.reduce((sum, value) => sum + value, 0),
        subgraphs: started.subgraphs.map(rssOf).reduce((sum, value) => sum + value, 0),
        largestGateway: Math.max(...gatewayRss),
      },
    };
  } finally {
    const failures = generator ? [...generator.errors.entries()].map(([code, count]) => `${code} ×${count}`) : [];
    if (failures.length) log(`  connection failures: ${failures.join(', ')}`);
    await generator?.close().catch(() => undefined);
    const endings = await stopStack(stack);
    untrack(setup.services, stack);
    log(`  stopped: ${describeEndings(endings)}`);
    if (env.REDIS_URL) await cleanRedis(env.REDIS_URL, env.REDIS_NAMESPACE!).catch(() => 0);
  }
}

function printLayout(result: ScaleResult, deadlineMs: number) {
  const { saturated, fixed } = result;
  console.log(
    `\n### Round ${result.round}${result.attempt > 1 ? ` (attempt ${result.attempt})` : ''}: ` +
      `${describeLayout(result.layout)} (${result.processes} processes)\n\n` +
      `Load average at its start: ${result.loadAverage.map((load) => load.toFixed(2)).join(' ')}; the machine ` +
      `${(result.busyBefore * 100).toFixed(0)} % of a core busy just before; other work on the machine over the run ` +
      `${share(otherOf(result.whole), result.whole.seconds)}. ` +
      `Closed loop, ${CONCURRENCY} requests outstanding for ${saturated.seconds.toFixed(1)} s: ` +
      `${rate(saturated.pagesPerSecond)} pages/s (p50 ${duration(saturated.summary.okP50)}, p99 ` +
      `${duration(saturated.summary.okP99)}; not 200: ${notOk(saturated.summary)}); CPU, as a share of one core ` +
      `(${os.cpus().length} cores = ${os.cpus().length * 100} %): machine ${share(saturated.cpu.machine, saturated.seconds)}, ` +
      `gateways ${share(saturated.cpu.gateways, saturated.seconds)}, subgraphs ${share(saturated.cpu.subgraphs, saturated.seconds)}, ` +
      `load generator ${share(saturated.cpu.generator, saturated.seconds)}, PostgreSQL and Redis ` +
      `${share(saturated.cpu.database, saturated.seconds)}, other ${share(otherOf(saturated.cpu), saturated.seconds)}.\n`,
  );
  printCapacity(result.capacity, result.capacity.rate);
  console.log(
    `Fixed rate: ${rate(fixed.rate)} rps for ${fixed.seconds} s, open loop: ${fixed.summary.ok}/${fixed.summary.total} ` +
      `200 (not 200: ${notOk(fixed.summary)}), p50 ${duration(fixed.summary.okP50)}, p99 ${duration(fixed.summary.okP99)}, ` +
      `max ${duration(fixed.summary.anyMax)} (${fixed.summary.overDeadline} over the ${deadlineMs / 1000} s deadline); ` +
      `RSS at the end: gateways ${megabytes(result.rss.gateways)} (largest ${megabytes(result.rss.largestGateway)}), ` +
      `subgraphs ${megabytes(result.rss.subgraphs)}.`,
  );
}

/**
 * One configuration over every round: the best round's throughputs (other work on a shared machine only
 * ever lowers them), its latency and CPU pooled.
 */
interface Pooled {
  layout: Layout;
  processes: number;
  runs: ScaleResult[];
  /** The best round's. */
  saturated: number;
  capacity: number;
  fixed: Summary;
  /** Summed over rounds. */
  saturatedCpu: CpuUse;
  fixedCpu: CpuUse;
  fixedPages: number;
}

const addCpu = (a: CpuUse, b: CpuUse): CpuUse => ({
  seconds: a.seconds + b.seconds,
  gateways: a.gateways + b.gateways,
  subgraphs: a.subgraphs + b.subgraphs,
  generator: a.generator + b.generator,
  database: a.database + b.database,
  machine: a.machine + b.machine,
});

function pool(layout: Layout, runs: ScaleResult[], deadlineMs: number): Pooled {
  const saturatedCpu = runs.map((run) => run.saturated.cpu).reduce(addCpu);
  const fixed = summarise(
    runs.flatMap((run) => run.fixed.samples),
    deadlineMs,
  );
  return {
    layout,
    processes: processCount(layout),
    runs,
    saturated: Math.max(...runs.map((run) => run.saturated.pagesPerSecond)),
    capacity: Math.max(...runs.map((run) => run.capacity.rate)),
    fixed,
    saturatedCpu,
    fixedCpu: runs.map((run) => run.fixed.cpu).reduce(addCpu),
    fixedPages: fixed.ok,
  };
}

/**
 * The configuration one is compared with for its marginal gain: one gateway count fewer with the same
 * replicas, else one replica count fewer with the same gateways; undefined for the first.
 */
function previousOf(entry: Pooled, pooled: Pooled[], scale: Scale): Pooled | undefined {
  const find = (gateways: number | undefined, replicas: number | undefined) =>
    pooled.find((other) => other.layout.gateways === gateways && other.layout.replicas === replicas);
  const gatewayStep = scale.gateways[scale.gateways.indexOf(entry.layout.gateways) - 1];
  const replicaStep = scale.replicas[scale.replicas.indexOf(entry.layout.replicas) - 1];
  return find(gatewayStep, entry.layout.replicas) ?? find(entry.layout.gateways, replicaStep);
}

function printSummary(pooled: Pooled[], scale: Scale, fixedRate: number) {
  const first = pooled[0]!;
  const perProcess = (entry: Pooled, reference: Pooled | undefined, pick: (p: Pooled) => number) => {
    if (!reference || reference === entry) return '–';
    const gain = pick(entry) - pick(reference);
    return `${gain >= 0 ? '+' : ''}${rate(gain / (entry.processes - reference.processes))}`;
  };
  const relative = (value: number, reference: number) => `${((value / reference) * 100).toFixed(0)} %`;
  const rounds = (values: number[]) => (values.length > 1 ? ` (${values.map(rate).join(', ')})` : '');
  console.log(
    `\nScale summary (${scale.config}; ${scale.rounds} round${scale.rounds === 1 ? '' : 's'}). Closed loop: ` +
      `${CONCURRENCY} requests outstanding, pages/s answered 200${scale.rounds > 1 ? ', the best round (each round in brackets)' : ''}. ` +
      `R: the capacity probe's sustainable rate (the fastest open-loop step with every request 200 and p99 ≤ 1 s)` +
      `${scale.rounds > 1 ? ', the best round' : ''}. Per added process: the gain in pages/s over the first ` +
      `configuration (${describeLayout(first.layout)}) divided by the processes added; marginal: the same against the ` +
      `configuration with one step fewer gateways (else processes per subgraph). Latency at the fixed rate ` +
      `(${rate(fixedRate)} rps in every configuration, open loop) from each request's scheduled send time, over every ` +
      `round. CPU at saturation as a share of one core (${os.cpus().length} cores = ${os.cpus().length * 100} %); ` +
      `"database": the bench database's PostgreSQL backends and Redis; "other": whatever else the machine ran ` +
      `(a run with more than ${OTHER_LIMIT * 100} % of a core of it, over the run or its saturation window, was run again, up to ${ATTEMPTS} runs, the least disturbed kept). The ${SUBGRAPH_NAMES.length} subgraphs' processes all ` +
      `count as processes, although the storefront page never calls jobs.\n`,
  );
  printTable(
    [
      'gateways',
      'processes per subgraph',
      'processes',
      'closed loop pages/s',
      'vs first',
      'per added process',
      'marginal',
      'R (pages/s)',
      'R vs first',
      'R per added process',
      'R marginal',
      `p50 at ${rate(fixedRate)} rps`,
      'p99',
      'max',
      'not 200',
      'CPU at saturation: machine',
      'gateways',
      'subgraphs',
      'load generator',
      'database',
      'other',
      'service CPU ms/page at the fixed rate',
    ],
    pooled.map((entry) => {
      const previous = previousOf(entry, pooled, scale);
      const cpu = entry.saturatedCpu;
      const marginal = (pick: (p: Pooled) => number) =>
        previous
          ? `${perProcess(entry, previous, pick)} (vs ${previous.layout.gateways}×${previous.layout.replicas})`
          : '–';
      return [
        String(entry.layout.gateways),
        String(entry.layout.replicas),
        String(entry.processes),
        rate(entry.saturated) + rounds(entry.runs.map((run) => run.saturated.pagesPerSecond)),
        relative(entry.saturated, first.saturated),
        perProcess(entry, first, (p) => p.saturated),
        marginal((p) => p.saturated),
        rate(entry.capacity) + rounds(entry.runs.map((run) => run.capacity.rate)),
        relative(entry.capacity, first.capacity),
        perProcess(entry, first, (p) => p.capacity),
        marginal((p) => p.capacity),
        duration(entry.fixed.okP50),
        duration(entry.fixed.okP99),
        duration(entry.fixed.anyMax),
        notOk(entry.fixed),
        share(cpu.machine, cpu.seconds),
        share(cpu.gateways, cpu.seconds),
        share(cpu.subgraphs, cpu.seconds),
        share(cpu.generator, cpu.seconds),
        share(cpu.database, cpu.seconds),
        share(otherOf(cpu), cpu.seconds),
        entry.fixedPages ? ((entry.fixedCpu.gateways + entry.fixedCpu.subgraphs) / entry.fixedPages).toFixed(2) : '–',
      ];
    }),
  );
}

/** Runs the scale mode and prints its tables; the processes it starts are stopped before it returns. */
export async function runScale(setup: ScaleSetup): Promise<void> {
  const { scale, options } = setup;
  const started = performance.now();
  const timing = timings(options.quick);
  const layouts = scale.replicas.flatMap((replicas) => scale.gateways.map((gateways) => ({ gateways, replicas })));
  const settings = Object.entries({ ...configEnv(scale.config), ...options.env })
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
  console.log(
    `## Scaling with processes\n\nConfigurations, each started afresh: ${layouts.map(describeLayout).join('; ')}` +
      `${scale.rounds > 1 ? `; ${scale.rounds} rounds, every other one in reverse order` : ''}. Subgraphs: ` +
      `${SUBGRAPH_NAMES.join(', ')}, each replica on its own port; every process's SUBGRAPH_<NAME>_URL lists every ` +
      `replica of each subgraph, and each gateway takes them in turn, one per subgraph call. Each gateway on its own ` +
      `port; the load generator takes the gateways in turn, one per request. Served: ${scale.config} ` +
      `(${settings || "the service's defaults"}), a fresh Redis namespace per run. Each run waits (up to ` +
      `${QUIET_WAIT_MS / 1000} s) for the machine to be under ${QUIET_BUSY * 100} % of a core busy, then: ${timing.warmup} s of ` +
      `closed-loop warm-up (not reported), a ${timing.saturated} s closed-loop window at saturation, the capacity ` +
      `probe, then ${timing.fixed} s open loop at a fixed rate (` +
      `${options.rate === undefined ? "half the first configuration's R in the first round" : `--rate ${options.rate}`}, ` +
      `the same in every configuration).`,
  );
  const results: ScaleResult[] = [];
  let fixed = options.rate;
  const monitor = new pg.Client({ connectionString: setup.env.DATABASE_URL });
  await monitor.connect();
  try {
    const meter = new CpuMeter(monitor, setup.env.REDIS_URL ? await redisPid(setup.env.REDIS_URL) : undefined);
    for (let round = 1; round <= scale.rounds; round += 1)
      for (const layout of round % 2 === 1 ? layouts : [...layouts].reverse()) {
        // Run again while other work disturbs it; keep the least disturbed run.
        const tried: Array<{ result: ScaleResult; other: number; rate: number }> = [];
        for (let attempt = 1; attempt <= ATTEMPTS; attempt += 1) {
          let proposed = 0;
          const result = await runLayout(setup, meter, layout, round, attempt, (capacity) => {
            proposed = fixed ?? capacity.rate / 2;
            return proposed;
          });
          // Other work over the whole run, or during the saturation window alone, whichever was more.
          const other = Math.max(
            otherOf(result.whole) / 1000 / result.whole.seconds,
            otherOf(result.saturated.cpu) / 1000 / result.saturated.seconds,
          );
          printLayout(result, options.deadlineMs);
          tried.push({ result, other, rate: proposed });
          if (other <= OTHER_LIMIT) break;
          console.log(
            `\nOther work on the machine took ${(other * 100).toFixed(0)} % of a core during this run` +
              (attempt < ATTEMPTS ? ': run again.' : `: the least disturbed of the ${ATTEMPTS} runs is kept.`),
          );
        }
        const kept = tried.reduce((best, candidate) => (candidate.other < best.other ? candidate : best));
        if (tried.length > 1) console.log(`\nKept: attempt ${kept.result.attempt}.`);
        // The fixed rate is set by the first configuration's kept run.
        fixed ??= kept.rate;
        results.push(kept.result);
      }
  } finally {
    await monitor.end().catch(() => undefined);
  }
  const pooled = layouts.map((layout) =>
    pool(
      layout,
      results.filter((result) => result.layout === layout),
      options.deadlineMs,
    ),
  );
  printSummary(pooled, scale, fixed!);
  console.log(
    `\nThe scale mode took ${((performance.now() - started) / 1000).toFixed(0)} s; load average at its end ` +
      `${os
        .loadavg()
        .map((load) => load.toFixed(2))
        .join(' ')}.`,
  );
}
