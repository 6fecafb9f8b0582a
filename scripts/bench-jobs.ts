import { rm } from 'node:fs/promises';
import os from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { startSubgraphsAndGateway, type Harness } from '../lib/harness';
import type { RunningWorker } from '../subgraphs/jobs/worker';
import { createBenchDatabase, describeEnv, printTable, redisUrlOrNothing } from './bench-kit';
import { probeCapacity } from './load/capacity';
import { LoadGenerator, type Sample } from './load/open-loop';
import { withRedis } from './load/stack';
import { duration, rate as formatRate, summarise, type Summary } from './load/stats';
import { STOREFRONT_PAGE } from './operations';

/**
 * `npm run bench:jobs`: what a bulk export costs the storefront. On a fresh bench-scale database (5,000
 * products, 200,000 reviews, 10,000 users), the whole stack and a jobs worker run in this process (the
 * harness of the integration tests; `npm start` also runs its worker beside the gateway). The storefront
 * page (20 products with price, rating, 5 reviews and their authors, as bench:load sends it) is sent open
 * loop (a fixed arrival rate, latency from each request's scheduled send time; scripts/load/open-loop.ts) as
 * signed-in users in turn: first alone, then while one user's bulk query exports every product with up to
 * 100 reviews each and their authors. Prints the export's wall time, objects, objects/s, pages, the page size
 * it settled on and its file size (its file is downloaded and checked: one line per product, each once), and
 * the storefront's p50/p99/max with and without it. A benchmark that prints figures, never a test.
 */

const log = (line: string) => console.error(`[bench:jobs] ${line}`);

const USAGE = `npm run bench:jobs -- [options]

  --rate R          storefront pages per second, open loop, a whole number (default 50: on a 2-core machine
                    the in-process stack answers it with its event loop about half busy)
  --probe           instead of --rate: half the sustainable rate R that bench:load's capacity probe finds
  --seconds N       length of the phase without the export (default 20; 5 with --quick)
  --quick           smoke run: 5 s without the export (and probe steps of 3 s)
  --users N         signed-in storefront users, round robin (default 200)
  --env KEY=VALUE   extra configuration for the stack (repeatable), e.g. --env RESPONSE_CACHE=on`;

/** The export: every product with its price and newest 100 reviews, each with its author's name. */
const EXPORT_QUERY =
  '{ products { edges { node { id title price { amountCents currency } ' +
  'reviews(first: 100) { edges { node { rating body author { displayName } } } } } } } }';
const EXPECTED_OBJECTS = 5_000;
/**
 * Storefront pages per second by default. On the 2-core machine this was written on, with the whole stack in one
 * process, 40/s kept it about 40 % busy (p99 ~30 ms) and 100/s about 80 % (p99 ~140 ms), so 50/s is well
 * under what it sustains while leaving the export room. bench:load's probe (--probe) puts R/2 near 100/s here.
 */
const DEFAULT_RATE = 50;
/** Requests outstanding in the capacity probe's closed loop (as bench:load). */
const PROBE_CONCURRENCY = 16;
const DEADLINE_MS = 5_000;
const POLL_MS = 250;
const EXPORT_TIMEOUT_MS = 20 * 60_000;

interface Options {
  /** Pages per second; undefined with --probe: half the sustainable rate the probe finds. */
  rate?: number;
  seconds: number;
  quick: boolean;
  users: number;
  env: Record<string, string>;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: 'string' },
      probe: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      users: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  if (values.probe && values.rate !== undefined) throw new Error(`--probe and --rate exclude each other\n\n${USAGE}`);
  const whole = (name: string, value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1 || number > 100_000)
      throw new Error(`--${name} must be a whole number from 1 to 100000, not "${value}"\n\n${USAGE}`);
    return number;
  };
  const env: Record<string, string> = {};
  for (const pair of values.env) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
    if (!match) throw new Error(`--env takes KEY=VALUE, not "${pair}"`);
    env[match[1]!] = match[2]!;
  }
  return {
    // Whole: the phase during the export is sent in 1-s slices until the job ends.
    rate: values.probe ? undefined : whole('rate', values.rate, DEFAULT_RATE),
    seconds: whole('seconds', values.seconds, values.quick ? 5 : 20),
    quick: values.quick,
    users: whole('users', values.users, 200),
    env,
  };
}

/** This process's CPU (share of one core) and event-loop delay over a phase: the whole stack runs here. */
class ProcessMeter {
  private readonly delay = monitorEventLoopDelay({ resolution: 10 });
  private cpu = process.cpuUsage();
  private at = performance.now();

  constructor() {
    this.delay.enable();
  }

  restart(): void {
    this.delay.reset();
    this.cpu = process.cpuUsage();
    this.at = performance.now();
  }

  read(): { cpu: number; delayP99: number; delayMax: number } {
    const used = process.cpuUsage(this.cpu);
    const ms = performance.now() - this.at;
    return {
      cpu: (used.user + used.system) / 1000 / ms,
      delayP99: this.delay.percentile(99) / 1e6,
      delayMax: this.delay.max / 1e6,
    };
  }

  stop(): void {
    this.delay.disable();
  }
}

interface Phase {
  name: string;
  /** Scheduled start and end of the requests it counts (performance.now() ms). */
  start: number;
  end: number;
  samples: Sample[];
  process: ReturnType<ProcessMeter['read']>;
}

interface JobView {
  id: string;
  status: string;
  objectCount: number;
  pageCount: number;
  fileSize: number;
  url: string | null;
  errorCode: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

const JOB_FIELDS = 'id status objectCount pageCount fileSize url errorCode createdAt startedAt finishedAt';

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`Check failed: ${message}`);
}

/** Submits the export as `owner` and polls its job until it ends (progress logged every 5 s). */
async function runExport(harness: Harness, owner: string): Promise<{ job: JobView; seenDoneAt: number }> {
  const submitted = await harness.query<{
    runBulkQuery: { job: JobView | null; userErrors: Array<{ code: string; message: string }> };
  }>(
    `mutation ($query: String!) { runBulkQuery(query: $query) { job { ${JOB_FIELDS} } userErrors { code message } } }`,
    { query: EXPORT_QUERY },
    { as: owner },
  );
  const payload = submitted.data?.runBulkQuery;
  if (submitted.errors || !payload?.job)
    throw new Error(
      `runBulkQuery refused the export: ${JSON.stringify(submitted.errors ?? payload?.userErrors ?? submitted)}`,
    );
  const id = payload.job.id;
  log(`export queued: job ${id}`);
  const deadline = performance.now() + EXPORT_TIMEOUT_MS;
  let lastLog = performance.now();
  for (;;) {
    await sleep(POLL_MS);
    // A poll may be refused or fail under load like any request: the next one asks again.
    const polled = await harness
      .query<{ job: JobView | null }>(`query ($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`, { id }, { as: owner })
      .catch(() => undefined);
    const job = polled?.data?.job;
    if (job) {
      if (job.status === 'COMPLETED') return { job, seenDoneAt: performance.now() };
      if (job.status === 'FAILED' || job.status === 'CANCELED')
        throw new Error(`The export ended ${job.status} (${job.errorCode ?? 'no error code'})`);
      if (performance.now() - lastLog >= 5_000) {
        log(`  ${job.status}: ${job.objectCount} objects, ${job.pageCount} pages, ${job.fileSize} bytes`);
        lastLog = performance.now();
      }
    }
    if (performance.now() > deadline)
      throw new Error(`The export did not complete within ${EXPORT_TIMEOUT_MS / 60_000} min (${JSON.stringify(job)})`);
  }
}

interface FileCheck {
  bytes: number;
  lines: number;
  uniqueIds: number;
  reviews: number;
}

/** Downloads the result through the gateway (its signed link) and checks it line by line. */
async function checkResult(harness: Harness, job: JobView, productIds: Set<string>): Promise<FileCheck> {
  check(job.url !== null, 'a COMPLETED job has a url');
  const response = await fetch(new URL(job.url, harness.gatewayUrl));
  const text = await response.text();
  check(response.status === 200, `the result downloads (HTTP ${response.status}: ${text.slice(0, 200)})`);
  const bytes = Buffer.byteLength(text);
  check(bytes === job.fileSize, `the file holds fileSize bytes (${bytes} against ${job.fileSize})`);
  check(text.endsWith('\n'), 'the file ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  const ids = new Set<string>();
  let reviews = 0;
  for (const [index, line] of lines.entries()) {
    const node = JSON.parse(line) as { id: string; reviews?: { edges: unknown[] } | null };
    check(productIds.has(node.id), `line ${index + 1} is a product of the database (${node.id})`);
    ids.add(node.id);
    reviews += node.reviews?.edges.length ?? 0;
  }
  check(lines.length === EXPECTED_OBJECTS, `the file has ${EXPECTED_OBJECTS} lines (it has ${lines.length})`);
  check(ids.size === EXPECTED_OBJECTS, `the file has ${EXPECTED_OBJECTS} unique ids (it has ${ids.size})`);
  return { bytes, lines: lines.length, uniqueIds: ids.size, reviews };
}

/** Background pages the gateway refused for want of spare capacity, so far (its /metrics). */
async function backgroundRefusals(harness: Harness): Promise<number> {
  const text = await (await fetch(new URL('/metrics', harness.gatewayUrl))).text();
  const line = text
    .split('\n')
    .find((each) => each.startsWith('gateway_refusals_total{') && each.includes('reason="background"'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function main() {
  const defaults = loadConfig({});
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  if (options === 'help') {
    console.log(USAGE);
    return;
  }
  const redisUrl = await redisUrlOrNothing();
  log('creating the bench-scale database');
  const database = await createBenchDatabase('storefront_bench_jobs');
  const namespace = new URL(database.url).pathname.slice(1);
  let harness: Harness | undefined;
  let worker: RunningWorker | undefined;
  let generator: LoadGenerator | undefined;
  const meter = new ProcessMeter();
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      meter.stop();
      await generator?.close().catch(() => undefined);
      await worker?.stop().catch((error: unknown) => log(`stopping the worker: ${String(error)}`));
      await harness?.stop().catch((error: unknown) => log(`stopping the stack: ${String(error)}`));
      if (harness?.config.JOBS_DIR) await rm(harness.config.JOBS_DIR, { recursive: true, force: true });
      await database.drop();
      // Only this run's keys: the namespace is the database's name, random.
      const deleted =
        redisUrl && namespace.startsWith('storefront_bench_jobs_')
          ? await withRedis(redisUrl, async (client) => {
              let count = 0;
              for await (const keys of client.scanIterator({ MATCH: `${namespace}:*`, COUNT: 1_000 }))
                if (keys.length) count += await client.unlink(keys);
              return count;
            }).catch(() => 0)
          : 0;
      log(`stopped the worker and the stack, dropped the database${redisUrl ? `, deleted ${deleted} Redis keys` : ''}`);
    })());
  // lib/cli's runMain exits at once on a signal; here the first one cleans up first, a second exits at once.
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.removeAllListeners(signal);
    process.once(signal, () => {
      log(`${signal}: stopping and dropping the database (again to exit at once)`);
      process.once(signal, () => process.exit(code));
      void cleanup().finally(() => process.exit(code));
    });
  }
  try {
    log('starting the stack and a worker');
    harness = await startSubgraphsAndGateway(database.url, {
      env: {
        ENTITY_CACHE: 'on',
        // Admission as deployed (the harness relaxes it for tests): what decides when background work yields.
        MAX_EVENT_LOOP_DELAY_MS: String(defaults.MAX_EVENT_LOOP_DELAY_MS),
        ADMISSION_TARGET_MS: String(defaults.ADMISSION_TARGET_MS),
        ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
        ...options.env,
      },
    });
    worker = await harness.startWorker();
    const { config } = harness;

    const { rows } = await harness.database.pool.query<{ id: string }>('SELECT id FROM users ORDER BY id LIMIT $1', [
      options.users + 1,
    ]);
    // The export runs as a user of its own: its polls and budget are apart from the storefront's users.
    const owner = rows.pop()!.id;
    const tokens = await Promise.all(rows.map(({ id }) => harness!.tokenFor(id)));
    const productIds = new Set(
      (await harness.database.pool.query<{ id: string }>('SELECT id FROM products')).rows.map(({ id }) => id),
    );
    check(productIds.size === EXPECTED_OBJECTS, `the database has ${EXPECTED_OBJECTS} products`);
    const expectedReviews = Number(
      (
        await harness.database.pool.query<{ n: string }>(
          'SELECT sum(least(n, 100)) AS n FROM (SELECT count(*) AS n FROM reviews GROUP BY product_id) AS counts',
        )
      ).rows[0]!.n,
    );
    const cpus = os.cpus();
    console.log(`npm run bench:jobs${argv.length ? ` -- ${argv.join(' ')}` : ''}\n`);
    console.log(
      `Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown'}), load average at start ${os
        .loadavg()
        .map((load) => load.toFixed(2))
        .join(' ')}; Node ${process.version}.`,
    );
    console.log(`Database: ${database.description}.`);
    console.log(
      `Stack: every subgraph, the gateway, one jobs worker (concurrency ${config.JOBS_CONCURRENCY}) and the load generator ` +
        `in this one process (lib/harness.ts): one event loop, at most one core of ${cpus.length}. ` +
        `Entity cache ${config.ENTITY_CACHE === 'on' ? (redisUrl ? `in Redis (${redisUrl})` : 'in memory (no Redis reachable)') : 'off'}, ` +
        `RESPONSE_CACHE=${config.RESPONSE_CACHE}, MAX_QUERY_COST=${config.MAX_QUERY_COST}, admission as deployed ` +
        `(MAX_EVENT_LOOP_DELAY_MS=${config.MAX_EVENT_LOOP_DELAY_MS}, ADMISSION_TARGET_MS=${config.ADMISSION_TARGET_MS})` +
        `${describeEnv(options.env)}.`,
    );
    console.log(
      `Budget: the harness sets BUDGET_POINTS=${config.BUDGET_POINTS} per ${config.BUDGET_WINDOW_SECONDS} s (the default is ` +
        `${defaults.BUDGET_POINTS}), so the export is never paused for a spent budget: what is measured is the export at full speed.`,
    );
    console.log(
      `Load: the storefront page (products(first: 20) with price, rating, 5 reviews and their authors, as bench:load sends it) ` +
        `as ${tokens.length} signed-in users in turn, open loop (latency from each request's scheduled send time); ` +
        `the export runs as another user.\n`,
    );

    const origin = new URL(harness.gatewayUrl).origin;
    const body = JSON.stringify({ query: STOREFRONT_PAGE, variables: { first: 20 } });
    const first = await harness.query(STOREFRONT_PAGE, { first: 20 }, { as: rows[0]!.id });
    if (first.errors || first.data?.products?.edges?.length !== 20)
      throw new Error(`The storefront page did not come back whole: ${JSON.stringify(first).slice(0, 500)}`);
    generator = new LoadGenerator({ origin, body, tokens, connections: 256, timeoutMs: 30_000 });

    // The rate: --rate (or its default), else R/2 with the sustainable rate R as bench:load finds it (also the warm-up).
    let rate = options.rate;
    if (rate === undefined) {
      log('measuring capacity');
      const capacity = await probeCapacity(
        generator,
        {
          stepSeconds: options.quick ? 3 : 5,
          closedSeconds: options.quick ? 2 : 3,
          concurrency: PROBE_CONCURRENCY,
          p99LimitMs: 1_000,
          deadlineMs: DEADLINE_MS,
        },
        (line) => log(`  ${line}`),
      );
      rate = Math.max(1, Math.round(capacity.rate / 2));
      console.log(
        `Capacity probe (also the warm-up), as bench:load's: closed loop with ${PROBE_CONCURRENCY} requests outstanding for ` +
          `${capacity.closedLoop.seconds} s answered ${capacity.closedLoop.throughput.toFixed(1)} pages/s; open-loop steps of ` +
          `${capacity.stepSeconds} s (passing while every request gets 200 and p99 ≤ 1 s): ${capacity.steps
            .map(
              (step) =>
                `${formatRate(step.rate)} ${step.passed ? 'passed' : 'failed'} (p99 ${duration(step.summary.okP99)})`,
            )
            .join(', ')}. R = ${formatRate(capacity.rate)} pages/s; the storefront runs at R/2 = ${rate} pages/s.\n`,
      );
      // Let whatever the failed step left behind settle.
      await sleep(2_000);
    } else {
      log('warm-up: 5 s at the rate');
      const warmUp: Sample[] = [];
      await generator.openLoop(rate, 5, performance.now() + 20, warmUp);
      await generator.drain();
      console.log(
        `Rate: ${rate} pages/s${options.rate === DEFAULT_RATE ? ' (the default)' : ', given with --rate'}, after 5 s of warm-up ` +
          `at that rate (--probe: R/2 from bench:load's capacity probe instead).\n`,
      );
    }

    // Without the export.
    log(`storefront alone: ${rate} pages/s for ${options.seconds} s`);
    const phases: Phase[] = [];
    const baseline: Sample[] = [];
    const baselineStart = performance.now() + 50;
    meter.restart();
    await generator.openLoop(rate, options.seconds, baselineStart, baseline);
    const baselineEnd = baselineStart + options.seconds * 1000;
    if (baselineEnd > performance.now()) await sleep(baselineEnd - performance.now());
    phases.push({
      name: 'storefront alone',
      start: baselineStart,
      end: baselineEnd,
      samples: baseline,
      process: meter.read(),
    });

    // With the export: the same traffic goes on, in 1-s slices, until the job is seen COMPLETED.
    log(`export submitted; storefront traffic goes on at ${rate} pages/s`);
    const during: Sample[] = [];
    let exporting = true;
    meter.restart();
    const traffic = (async () => {
      let slice = baselineEnd;
      while (exporting) {
        await generator.openLoop(rate, 1, slice, during);
        slice += 1000;
        if (slice > performance.now()) await sleep(slice - performance.now());
      }
    })();
    const refusedBefore = await backgroundRefusals(harness);
    const exportStart = performance.now();
    const outcome = await runExport(harness, owner).finally(() => (exporting = false));
    const processDuring = meter.read();
    await traffic;
    log(`export completed; waiting for ${generator.outstanding} outstanding storefront requests`);
    await generator.drain();
    phases.push({
      name: 'storefront during the export',
      start: exportStart,
      end: outcome.seenDoneAt,
      samples: during.filter((sample) => sample.scheduled >= exportStart && sample.scheduled < outcome.seenDoneAt),
      process: processDuring,
    });

    const { job } = outcome;
    const refused = (await backgroundRefusals(harness)) - refusedBefore;
    const { rows: jobRows } = await harness.database.pool.query<{ page_size: number; document: string }>(
      'SELECT page_size, document FROM jobs WHERE id = $1::uuid',
      [job.id],
    );
    const pageSize = jobRows[0]!.page_size;
    check(job.objectCount === EXPECTED_OBJECTS, `objectCount is ${EXPECTED_OBJECTS} (it is ${job.objectCount})`);
    const file = await checkResult(harness, job, productIds);
    check(
      file.reviews === expectedReviews,
      `the file holds each product's reviews up to 100 (${file.reviews} against ${expectedReviews} in the database)`,
    );
    // What one full page costs the owner's budget (the worker's document, sent once more as its owner).
    const costed = await harness.query(jobRows[0]!.document, { bulkFirst: pageSize, bulkAfter: null }, { as: owner });
    const pageCost = Number(costed.extensions?.cost?.requested ?? NaN);
    const spent = pageCost * job.pageCount;

    const seconds = (from: string | null, to: string | null) =>
      from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : NaN;
    const runSeconds = seconds(job.startedAt, job.finishedAt);
    const wallSeconds = (outcome.seenDoneAt - exportStart) / 1000;
    console.log(`Export: ${EXPORT_QUERY}\n`);
    printTable(
      [
        'wall time',
        'queued',
        'running',
        'objects',
        'objects/s',
        'pages',
        'page size reached',
        'file',
        'reviews in file',
        'cost of a full page',
        'pages refused (no room)',
      ],
      [
        [
          `${wallSeconds.toFixed(1)} s`,
          `${seconds(job.createdAt, job.startedAt).toFixed(1)} s`,
          `${runSeconds.toFixed(1)} s`,
          `${job.objectCount} (${file.lines} lines, ${file.uniqueIds} unique ids)`,
          (job.objectCount / runSeconds).toFixed(0),
          String(job.pageCount),
          `${pageSize} (from 100)`,
          `${(file.bytes / 1_048_576).toFixed(1)} MB`,
          String(file.reviews),
          Number.isFinite(pageCost) ? String(pageCost) : '–',
          String(refused),
        ],
      ],
    );
    console.log(
      `\nWall time: runBulkQuery sent to COMPLETED seen (polled every ${POLL_MS} ms); queued and running from the job's ` +
        `createdAt, startedAt and finishedAt; objects/s over the running time. The page size is cut from 100 to what ` +
        `MAX_QUERY_COST allows. Pages refused: the gateway had no spare capacity for background work and the worker sent ` +
        `them again (gateway_refusals_total{reason="background"}). The export spent about ${Number.isFinite(spent) ? spent.toLocaleString('en') : '–'} ` +
        `budget points (${job.pageCount} pages × ${Number.isFinite(pageCost) ? pageCost : '–'}); with the default budget of ` +
        `${defaults.BUDGET_POINTS.toLocaleString('en')} per ${defaults.BUDGET_WINDOW_SECONDS} s it would pause ` +
        `${Number.isFinite(spent) ? Math.ceil(spent / defaults.BUDGET_POINTS) - 1 : '–'} times and take at least ` +
        `${Number.isFinite(spent) ? `${(((Math.ceil(spent / defaults.BUDGET_POINTS) - 1) * defaults.BUDGET_WINDOW_SECONDS) / 60).toFixed(0)} min` : '–'}.\n`,
    );

    const summaries = phases.map((phase) => ({ phase, summary: summarise(phase.samples, DEADLINE_MS) }));
    printTable(
      [
        'storefront',
        'seconds',
        'rps asked',
        'rps sent',
        '200/s',
        'requests',
        '200',
        'other',
        'p50',
        'p99',
        'max',
        'process CPU',
        'event-loop delay p99 / max',
      ],
      summaries.map(({ phase, summary }) => {
        const windowSeconds = (phase.end - phase.start) / 1000;
        const failed = summary.total - summary.ok;
        return [
          phase.name,
          windowSeconds.toFixed(1),
          String(rate),
          formatRate(summary.total / windowSeconds),
          formatRate(summary.ok / windowSeconds),
          String(summary.total),
          String(summary.ok),
          failed || summary.graphqlErrors ? describeFailures(summary) : '0',
          duration(summary.okP50),
          duration(summary.okP99),
          duration(summary.okMax),
          `${(phase.process.cpu * 100).toFixed(0)} %`,
          `${duration(phase.process.delayP99)} / ${duration(phase.process.delayMax)}`,
        ];
      }),
    );
    const [alone, withExport] = summaries.map(({ summary }) => summary) as [Summary, Summary];
    const ratio = (a?: number, b?: number) => (a !== undefined && b ? `${(a / b).toFixed(1)}×` : '–');
    console.log(
      `\nDuring the export against alone: p50 ${ratio(withExport.okP50, alone.okP50)}, p99 ${ratio(withExport.okP99, alone.okP99)}, ` +
        `max ${ratio(withExport.okMax, alone.okMax)}. Latency of 200s from the scheduled send time; "during" counts requests ` +
        `scheduled from runBulkQuery to COMPLETED. CPU and event-loop delay are this process's, which runs everything. ` +
        `Load average at the end: ${os
          .loadavg()
          .map((load) => load.toFixed(2))
          .join(' ')} (other work on the machine makes these figures noisy).`,
    );
    const failures = [...generator.errors.entries()].map(([code, count]) => `${code} ×${count}`);
    if (failures.length) console.log(`Connection failures: ${failures.join(', ')}.`);
  } finally {
    await cleanup();
  }
}

function describeFailures(summary: Summary): string {
  const parts = [
    summary.tooMany && `429×${summary.tooMany}`,
    summary.overloaded && `503×${summary.overloaded}`,
    summary.otherStatuses,
    summary.timeout && `timeout×${summary.timeout}`,
    summary.error && `error×${summary.error}`,
    summary.graphqlErrors && `200 with errors×${summary.graphqlErrors}`,
  ];
  return parts.filter(Boolean).join(' ');
}

runMain(main);
