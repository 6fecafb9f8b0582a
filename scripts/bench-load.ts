import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { issueToken } from '../gateway/auth';
import { runMain } from '../lib/cli';
import { SUBGRAPH_NAMES } from '../subgraphs/registry';
import { createBenchDatabase, describeEnv, printTable } from './bench-kit';
import { printCapacity, probeCapacity, type Capacity } from './load/capacity';
import { LoadGenerator, type Sample } from './load/open-loop';
import { parseOptions, USAGE, type Options } from './load/options';
import { freePorts, killServices, PROCESS_COMMANDS, TICKS_PER_SECOND, type Service } from './load/processes';
import { ResourceSampler, type Reading } from './load/resources';
import { runScale } from './load/scale';
import { runSpeed } from './load/speed';
import { cleanRedis, describeEndings, firstPage, startStack, stopStack, withRedis } from './load/stack';
import { duration, megabytes, percent, rate, slope, summarise, windows, type Summary } from './load/stats';
import { STOREFRONT_PAGE } from './operations';

/**
 * `npm run bench:load`: the service as separate processes (each subgraph and the gateway, production
 * mode, Redis for budgets and the entity cache) on a fresh bench-scale database, loaded with the
 * storefront page (20 products) as signed-in users. First the speed section (scripts/load/speed.ts):
 * capacity, latency at half capacity, CPU per page of every process and RSS, cold, with the entity
 * cache only and warm, each as a ratio to a ceiling in the same run (the same JSON from one SQL
 * statement in a bare node:http server); `--speed-only` stops there. Then the overload phases, driven
 * open loop (a fixed arrival rate, latency from each request's scheduled send time; see
 * scripts/load/open-loop.ts) with the default configuration. They measure the sustainable rate R first
 * (scripts/load/capacity.ts; `--rate R` skips that), then runs: warm-up R/2 (not reported), sustained
 * R/2, overload 2R, recovery R/2, spike 10 × R/2 = 5R, after-spike R/2 (time back to normal) and a soak
 * at R/2 (RSS every 10 s). Prints per phase the statuses, the share refused, latency of accepted and
 * refused requests, and every process's RSS and CPU. `--scale 1,2,3` and/or `--subgraph-replicas 1,2` run
 * the scale mode instead (scripts/load/scale.ts): several gateway processes and several processes of every
 * subgraph, capacity and latency at a fixed rate per configuration, pages/s per added process. A
 * benchmark that prints figures, never a test.
 */

const ROOT = join(__dirname, '..');
const log = (line: string) => console.error(`[bench:load] ${line}`);

/** Generous enough that budgets and the IP rate never refuse in the sustained phases: what is measured is load, not quota. */
const UNLIMITED = '1000000000';
/** "Back to normal": a window's accepted p99 within this factor of the sustained R/2 phase's. */
const NORMAL_FACTOR = 1.5;
/** Refusals count as "at once" when their p99 stays under this. */
const AT_ONCE_MS = 100;
/** RSS counts as flat over the soak when it ends within this share of where it started. */
const FLAT_SHARE = 0.1;

interface PhaseSpec {
  key: 'warmup' | 'sustained' | 'double' | 'recovery' | 'spike' | 'after' | 'soak';
  name: string;
  rate: number;
  seconds: number;
}

interface PhaseRun {
  spec: PhaseSpec;
  /** Scheduled start and end (performance.now() ms). */
  start: number;
  end: number;
  /** When its last request was actually sent. */
  lastSend: number;
  samples: Sample[];
  before: Reading;
  after: Reading;
  peakOutstanding: number;
}

function describeCheckout(root: string): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no');
    return `${root} at ${head}${dirty ? ' (with uncommitted changes)' : ''}`;
  } catch {
    return `${root} (not a git checkout)`;
  }
}

const cores = (ticks: number, ms: number) => `${((100 * ticks) / TICKS_PER_SECOND / (ms / 1000)).toFixed(0)} %`;

function phaseSpecs(options: Options, sustainable: number): PhaseSpec[] {
  const seconds = (full: number) => (options.quick ? 5 : full);
  const half = sustainable / 2;
  return [
    { key: 'warmup', name: 'warm-up R/2 (not reported)', rate: half, seconds: seconds(10) },
    { key: 'sustained', name: 'sustained R/2', rate: half, seconds: seconds(30) },
    { key: 'double', name: 'overload 2R', rate: sustainable * 2, seconds: seconds(30) },
    { key: 'recovery', name: 'recovery R/2', rate: half, seconds: seconds(20) },
    { key: 'spike', name: 'spike 10 × R/2', rate: half * 10, seconds: seconds(15) },
    { key: 'after', name: 'after spike R/2', rate: half, seconds: seconds(30) },
    { key: 'soak', name: 'soak R/2', rate: half, seconds: options.soakSeconds },
  ];
}

async function runPhases(
  generator: LoadGenerator,
  sampler: ResourceSampler,
  specs: PhaseSpec[],
  deadlineMs: number,
): Promise<PhaseRun[]> {
  const runs: PhaseRun[] = [];
  let start = performance.now() + 50;
  let before = sampler.read();
  for (const spec of specs) {
    log(`${spec.name}: ${rate(spec.rate)} rps for ${spec.seconds} s`);
    const samples: Sample[] = [];
    generator.resetPeak();
    const lastSend = await generator.openLoop(spec.rate, spec.seconds, start, samples);
    const end = start + spec.seconds * 1000;
    if (end > performance.now()) await sleep(end - performance.now());
    const after = sampler.read();
    runs.push({ spec, start, end, lastSend, samples, before, after, peakOutstanding: generator.peakOutstanding });
    const sofar = summarise(samples, deadlineMs);
    log(
      `  sent ${Math.round(spec.rate * spec.seconds)}, answered so far ${sofar.total} (${sofar.ok} ok), outstanding ${generator.outstanding}`,
    );
    before = after;
    start = end;
  }
  log(`waiting for ${generator.outstanding} outstanding requests`);
  await generator.drain();
  return runs;
}

function printHeader(options: Options, argv: string[], databaseDescription: string, env: Record<string, string>) {
  const cpus = os.cpus();
  console.log(`npm run bench:load${argv.length ? ` -- ${argv.join(' ')}` : ''}\n`);
  console.log(
    `Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GB RAM, ` +
      `load average at start ${os
        .loadavg()
        .map((load) => load.toFixed(2))
        .join(' ')}; Node ${process.version}, ${process.platform} ${process.arch}.`,
  );
  console.log(`Checkout: ${describeCheckout(options.root)}.`);
  console.log(`Database: ${databaseDescription}.`);
  console.log(
    `Processes: ${SUBGRAPH_NAMES.join(', ')} (\`${PROCESS_COMMANDS.subgraph('<name>').slice(1).join(' ')}\`) and the gateway ` +
      `(\`${PROCESS_COMMANDS.gateway().slice(1).join(' ')}\`); NODE_ENV=${env.NODE_ENV}, LOG_LEVEL=${env.LOG_LEVEL}, ` +
      `REDIS_URL=${env.REDIS_URL || '(none: in memory)'}, REDIS_NAMESPACE=${env.REDIS_NAMESPACE}, BUDGET_POINTS=${env.BUDGET_POINTS}, ` +
      `IP_RATE_LIMIT=${env.IP_RATE_LIMIT}${describeEnv(options.env)}.`,
  );
  console.log(
    `Load: the storefront page (products(first: 20), each with price, rating, 5 reviews and their authors) as ${options.users} ` +
      `signed-in users in turn; ${options.speedOnly || options.scale ? '' : `the overload phases open loop (fixed arrival rate, latency from each request's scheduled send time); `}` +
      `${options.connections} client connections; client timeout ${options.timeoutMs / 1000} s; deadline ${options.deadlineMs / 1000} s (--deadline-ms).\n`,
  );
}

function printPhases(runs: PhaseRun[], summaries: Map<PhaseRun, Summary>, deadlineMs: number) {
  printTable(
    [
      'phase',
      'rps asked',
      'rps sent',
      'requests',
      '200',
      '429',
      '503',
      'other',
      'timeout/error',
      'refused',
      'p50 (200)',
      'p99 (200)',
      'max (200)',
      'p99 refused',
      'max (any)',
      `> ${deadlineMs / 1000} s`,
      'GraphQL errors',
      'peak outstanding',
    ],
    runs.map((run) => {
      const summary = summaries.get(run)!;
      const sentSeconds = (run.lastSend - run.start) / 1000 + 1 / run.spec.rate;
      return [
        `${run.spec.name}, ${run.spec.seconds} s`,
        rate(run.spec.rate),
        rate(summary.total / sentSeconds),
        String(summary.total),
        String(summary.ok),
        String(summary.tooMany),
        String(summary.overloaded),
        summary.other ? `${summary.other} (${summary.otherStatuses})` : '0',
        `${summary.timeout}/${summary.error}`,
        percent(summary.refusedShare),
        duration(summary.okP50),
        duration(summary.okP99),
        duration(summary.okMax),
        duration(summary.refusedP99),
        duration(summary.anyMax),
        String(summary.overDeadline),
        String(summary.graphqlErrors),
        String(run.peakOutstanding),
      ];
    }),
  );
}

function printResources(
  runs: PhaseRun[],
  summaries: Map<PhaseRun, Summary>,
  idle: Reading,
  sampler: ResourceSampler,
  names: string[],
) {
  console.log(
    `\nMemory and CPU per phase: RSS (VmRSS) at the phase's end, with the most seen during it; CPU as a share of one ` +
      `core (${os.cpus().length} cores = ${os.cpus().length * 100} %). The generator's lag is how late it sent a request ` +
      `after its scheduled time (large values would mean the load generator, not the service, fell behind).\n`,
  );
  printTable(
    ['phase', ...names.flatMap((name) => [`${name} RSS`, `${name} CPU`]), 'load generator CPU', 'generator lag (max)'],
    [
      ['idle, after start', ...names.flatMap((name) => [megabytes(idle.rss[name]), '–']), '–', '–'],
      ...runs.map((run) => {
        const during = [run.before, ...sampler.between(run.start, run.end), run.after];
        const ms = run.after.at - run.before.at;
        return [
          run.spec.name,
          ...names.flatMap((name) => {
            const max = Math.max(...during.map((reading) => reading.rss[name] ?? 0));
            const ticks = (run.after.ticks[name] ?? 0) - (run.before.ticks[name] ?? 0);
            return [`${megabytes(run.after.rss[name])} (max ${megabytes(max)})`, cores(ticks, ms)];
          }),
          `${((100 * (run.after.benchCpu - run.before.benchCpu)) / 1000 / ms).toFixed(0)} %`,
          duration(summaries.get(run)!.maxSendLag),
        ];
      }),
    ],
  );
}

function printSoak(soak: PhaseRun, sampler: ResourceSampler, names: string[]) {
  // One reading every 10 s of the soak, its first and last edges included.
  const readings = [soak.before];
  for (const reading of sampler.between(soak.start, soak.end))
    if (reading.at - readings.at(-1)!.at >= 9_500) readings.push(reading);
  if (soak.after.at - readings.at(-1)!.at >= 1_000) readings.push(soak.after);
  console.log(`\nSoak (${soak.spec.seconds} s at ${rate(soak.spec.rate)} rps): RSS every 10 s.\n`);
  printTable(
    ['process', 'first', 'last', 'max', 'change', 'trend (least squares)', 'readings (MB)'],
    names.map((name) => {
      const values = readings.map((reading) => reading.rss[name] ?? 0);
      const minutes = readings.map((reading) => (reading.at - soak.start) / 60_000);
      const first = values[0]!;
      const last = values.at(-1)!;
      return [
        name,
        megabytes(first),
        megabytes(last),
        megabytes(Math.max(...values)),
        `${last >= first ? '+' : ''}${((last - first) / 1_048_576).toFixed(1)} MB (${first ? (((last - first) / first) * 100).toFixed(1) : '–'} %)`,
        `${(slope(minutes, values) / 1_048_576).toFixed(2)} MB/min`,
        values.map((value) => (value / 1_048_576).toFixed(0)).join(' '),
      ];
    }),
  );
}

interface Recovery {
  baselineP99?: number;
  /** Seconds after the spike's end by which a window was normal again, or undefined if none was. */
  backToNormal?: number;
  /** How many seconds after the spike were searched. */
  searched: number;
}

/**
 * The spike and what follows it, second by second; "back to normal" is searched for in the after-spike
 * phase and, past its end, in the soak that follows at the same rate.
 */
function printSpike(spike: PhaseRun, following: PhaseRun[], sustained: Summary, deadlineMs: number): Recovery {
  const baseline = sustained.okP99;
  const limit = baseline === undefined ? undefined : baseline * NORMAL_FACTOR;
  const normal = (summary: Summary) =>
    summary.total > 0 && summary.ok === summary.total && limit !== undefined && summary.okP99! <= limit;
  const afterSummaries = following.flatMap((run) =>
    windows(run.samples, run.start, run.spec.seconds).map((samples) => summarise(samples, deadlineMs)),
  );
  const index = afterSummaries.findIndex(normal);
  const backToNormal = index >= 0 ? index + 1 : undefined;
  const afterSeconds = following[0]?.spec.seconds ?? 0;
  const relapses =
    backToNormal === undefined ? 0 : afterSummaries.slice(backToNormal, afterSeconds).filter((w) => !normal(w)).length;
  console.log(
    `\nSpike, second by second (windows by scheduled send time). "Back to normal" is the end of the first 1-s window after ` +
      `the spike in which every request got 200 and their p99 was within ${NORMAL_FACTOR}× the sustained R/2 phase's p99 ` +
      `(${duration(baseline)}, so ≤ ${duration(limit)}); it is looked for in the after-spike phase, then in the soak.\n`,
  );
  const row = (label: string, summary: Summary, mark = '') => [
    label,
    String(summary.total),
    String(summary.ok),
    String(summary.tooMany + summary.overloaded),
    String(summary.timeout + summary.error + summary.other),
    duration(summary.okP50),
    duration(summary.okP99),
    duration(summary.refusedP99),
    duration(summary.anyMax),
    mark,
  ];
  const rows = windows(spike.samples, spike.start, spike.spec.seconds).map((samples, second) =>
    row(`spike ${second}-${second + 1} s`, summarise(samples, deadlineMs)),
  );
  // The after-spike phase, and past it only as far as a few seconds beyond the return to normal.
  const shown = Math.min(
    afterSummaries.length,
    Math.max(afterSeconds, backToNormal === undefined ? 0 : backToNormal + 3),
  );
  afterSummaries
    .slice(0, shown)
    .forEach((summary, second) =>
      rows.push(row(`after ${second}-${second + 1} s`, summary, normal(summary) ? 'yes' : 'no')),
    );
  printTable(
    [
      'window',
      'requests',
      '200',
      'refused',
      'timeout/error/other',
      'p50 (200)',
      'p99 (200)',
      'p99 refused',
      'max (any)',
      'normal',
    ],
    rows,
  );
  console.log(
    backToNormal === undefined
      ? `\nBack to normal: not within the ${afterSummaries.length} s after the spike.`
      : `\nBack to normal: ${backToNormal} s after the spike ended` +
          (backToNormal < afterSeconds
            ? `; ${relapses} of the after-spike phase's ${afterSeconds - backToNormal} later windows were not normal again.`
            : '.'),
  );
  return { baselineP99: baseline, backToNormal, searched: afterSummaries.length };
}

function printGoals(
  spike: Summary,
  recovery: Recovery,
  soak: PhaseRun | undefined,
  names: string[],
  deadlineMs: number,
): void {
  const verdict = (met: boolean) => (met ? 'met' : 'MISSED');
  const refused = spike.tooMany + spike.overloaded;
  const lines = [
    `spike: accepted requests' p99 under 1 s: ${duration(spike.okP99)}: ${verdict((spike.okP99 ?? Infinity) < 1_000)}`,
    `spike: nothing waits longer than the deadline (${deadlineMs / 1000} s, --deadline-ms): ${spike.overDeadline} requests did ` +
      `(slowest ${duration(spike.anyMax)}; ${spike.timeout} client timeouts): ${verdict(spike.overDeadline === 0)}`,
    refused === 0
      ? `spike: the excess gets 503/429 at once: nothing was refused: ${verdict((spike.okP99 ?? Infinity) < 1_000 && spike.overDeadline === 0)} ` +
        `(met only if the service simply kept up)`
      : `spike: the excess gets 503/429 at once: ${refused} refused (${percent(spike.refusedShare)}), their p99 ${duration(spike.refusedP99)} ` +
        `(at once = p99 ≤ ${AT_ONCE_MS} ms): ${verdict((spike.refusedP99 ?? Infinity) <= AT_ONCE_MS)}`,
    `back to normal p99 within 2 s of the spike: ${recovery.backToNormal === undefined ? `not within ${recovery.searched} s` : `${recovery.backToNormal} s`}: ` +
      verdict(recovery.backToNormal !== undefined && recovery.backToNormal <= 2),
  ];
  if (soak) {
    const flat = names.map((name) => {
      const first = soak.before.rss[name] ?? 0;
      const last = soak.after.rss[name] ?? 0;
      return { name, change: first ? (last - first) / first : 0 };
    });
    lines.push(
      `RSS flat over the soak (ends within ${FLAT_SHARE * 100} % of where it started): ${flat
        .map(({ name, change }) => `${name} ${change >= 0 ? '+' : ''}${(change * 100).toFixed(1)} %`)
        .join(', ')}: ${verdict(flat.every(({ change }) => change <= FLAT_SHARE))}`,
    );
  }
  console.log(`\nGoals (from the issue):\n${lines.map((line) => `- ${line}`).join('\n')}`);
}

async function main() {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv, ROOT);
  if (options === 'help') {
    console.log(USAGE);
    return;
  }
  const secrets = { jwt: randomBytes(32).toString('base64url'), identity: randomBytes(32).toString('base64url') };
  // The gateway's, each subgraph's, and the ceiling's (the speed section).
  const ports = await freePorts(SUBGRAPH_NAMES.length + 2);
  const gatewayPort = ports[0]!;
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_NAMESPACE: `bench-load-${randomBytes(4).toString('hex')}`,
    JWT_SECRET: secrets.jwt,
    IDENTITY_SECRET: secrets.identity,
    BUDGET_POINTS: UNLIMITED,
    IP_RATE_LIMIT: UNLIMITED,
    GATEWAY_PORT: String(gatewayPort),
    ...Object.fromEntries(
      SUBGRAPH_NAMES.map((name, i) => [`SUBGRAPH_${name.toUpperCase()}_PORT`, String(ports[i + 1])]),
    ),
    ...options.env,
  };
  if (env.REDIS_URL)
    await withRedis(env.REDIS_URL, (client) => client.ping()).catch((error: unknown) => {
      throw new Error(
        `Redis at ${env.REDIS_URL} does not answer (${String(error)}); start it or pass --env REDIS_URL=`,
      );
    });

  log('creating the bench-scale database');
  const database = await createBenchDatabase('storefront_bench_load');
  env.DATABASE_URL = database.url;
  const services: Service[] = [];
  let generator: LoadGenerator | undefined;
  // Whatever happens, nothing this run started keeps running: SIGKILL on exit for anything still up.
  const killAll = () => killServices(services);
  process.on('exit', killAll);
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await generator?.close().catch(() => undefined);
      // The gateway first (it calls the subgraphs), then the rest; whatever ignores SIGTERM for 20 s is killed.
      const endings = await stopStack(services);
      if (endings.size) log(`stopped: ${describeEndings(endings)}`);
      await database.drop();
      const deleted = env.REDIS_URL ? await cleanRedis(env.REDIS_URL, env.REDIS_NAMESPACE!).catch(() => 0) : 0;
      log(`dropped the database${env.REDIS_URL ? `; deleted ${deleted} Redis keys of ${env.REDIS_NAMESPACE}` : ''}`);
    })());
  // lib/cli's runMain exits at once on SIGINT/SIGTERM; here a first signal stops the processes, drops the
  // database and empties the Redis namespace before exiting, and a second one exits at once.
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.removeAllListeners(signal);
    process.once(signal, () => {
      log(`${signal}: stopping the processes and dropping the database (again to exit at once)`);
      process.once(signal, () => process.exit(code));
      void cleanup().finally(() => process.exit(code));
    });
  }
  try {
    printHeader(options, argv, database.description, env);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const { rows } = await client
      .query<{ id: string }>('SELECT id FROM users ORDER BY id LIMIT $1', [options.users])
      .finally(() => client.end());
    const tokens = await Promise.all(
      rows.map(({ id }) =>
        issueToken({
          secret: env.JWT_SECRET!,
          issuer: env.JWT_ISSUER ?? 'storefront-supergraph',
          audience: env.JWT_AUDIENCE ?? 'storefront',
          userId: id,
          expiresIn: '24h',
        }),
      ),
    );

    const body = JSON.stringify({ query: STOREFRONT_PAGE, variables: { first: 20 } });
    if (options.scale) {
      await runScale({ options, scale: options.scale, env, tokens, body, services, log });
      return;
    }
    await runSpeed({
      options,
      env,
      ceilingPort: ports.at(-1)!,
      tokens,
      body,
      services,
      log,
      repositoryRoot: ROOT,
    });
    if (options.speedOnly) return;

    console.log(`## Overload phases (the default configuration)\n`);
    await startStack(
      options.root,
      env,
      (service) => (service.name === 'gateway' ? services.unshift(service) : services.push(service)),
      log,
    );
    const origin = `http://127.0.0.1:${gatewayPort}`;
    const { refusals } = await firstPage(origin, body, tokens[0]!);
    if (refusals.length)
      console.log(
        `Note: the gateway refused ${refusals.length} single request(s) after /readyz before it served the first page ` +
          `(first: ${refusals[0]}).\n`,
      );
    generator = new LoadGenerator({
      origin,
      body,
      tokens,
      connections: options.connections,
      timeoutMs: options.timeoutMs,
    });
    const sampler = new ResourceSampler(services);
    const idle = sampler.read();
    sampler.start();

    let capacity: Capacity | undefined;
    if (options.rate === undefined) {
      log('measuring capacity');
      capacity = await probeCapacity(
        generator,
        {
          stepSeconds: options.quick ? 5 : 10,
          closedSeconds: options.quick ? 3 : 5,
          concurrency: 16,
          p99LimitMs: 1_000,
          deadlineMs: options.deadlineMs,
        },
        (line) => log(`  ${line}`),
      );
      // Let whatever the failed step left behind settle before the phases.
      await sleep(2_000);
    }
    const sustainable = options.rate ?? capacity!.rate;
    printCapacity(capacity, sustainable);

    const runs = await runPhases(generator, sampler, phaseSpecs(options, sustainable), options.deadlineMs);
    sampler.stop();
    const reported = runs.filter((run) => run.spec.key !== 'warmup');
    const summaries = new Map(reported.map((run) => [run, summarise(run.samples, options.deadlineMs)]));
    const byKey = (key: PhaseSpec['key']) => reported.find((run) => run.spec.key === key)!;
    const names = services.map((service) => service.name);

    console.log(`Phases (R = ${rate(sustainable)} rps; latency from the scheduled send time):\n`);
    printPhases(reported, summaries, options.deadlineMs);
    printResources(reported, summaries, idle, sampler, names);
    printSoak(byKey('soak'), sampler, names);
    const recovery = printSpike(
      byKey('spike'),
      [byKey('after'), byKey('soak')],
      summaries.get(byKey('sustained'))!,
      options.deadlineMs,
    );
    printGoals(summaries.get(byKey('spike'))!, recovery, byKey('soak'), names, options.deadlineMs);

    const failures = [...generator.errors.entries()].map(([code, count]) => `${code} ×${count}`);
    if (failures.length) console.log(`\nConnection failures (error column): ${failures.join(', ')}.`);
    console.log(
      `\nProcess output over the run (LOG_LEVEL=${env.LOG_LEVEL}): ${services
        .map((service) => {
          const top = service.topMessages(2).map(([message, count]) => `"${message}" ×${count}`);
          return `${service.name} ${service.lines()} lines${top.length ? ` (${top.join(', ')})` : ''}`;
        })
        .join('; ')}.`,
    );
    console.log(
      `Load average at the end: ${os
        .loadavg()
        .map((load) => load.toFixed(2))
        .join(' ')}.`,
    );
  } finally {
    await cleanup();
  }
}

runMain(main);
