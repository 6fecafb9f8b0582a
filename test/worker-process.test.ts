/**
 * `npm run start:worker` as operators run it: a real process, through npm, in production mode, against the
 * harness's gateway and database. A worker SIGKILLed in the middle of a bulk query has its job taken over by
 * another once its heartbeat stops, and the result has every line exactly once; on SIGTERM a worker finishes
 * the page in hand, hands the job back and exits 0, and the next worker goes on from the committed progress.
 */
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './databases';
import { TEST_IDENTITY_SECRET, TEST_JWT_SECRET, useHarness } from './harness';
import { exitCode, npmStart, until, type Started } from './service';

/**
 * 2,000 products (×50), 40 reviews each on average: the export is ~170 pages of 12 products (the page size the
 * cost limit leaves it), several seconds of work, so a worker can be stopped in the middle of it.
 */
const SCALE = 40;
const EXPORT = '{ products { edges { node { id title reviews(first: 100) { edges { node { rating } } } } } } }';
const RUN = `mutation Run($query: String!) {
  runBulkQuery(query: $query) { job { id status } userErrors { code message } }
}`;
/** The production default (SHUTDOWN_GRACE_MS), which the workers run with. */
const GRACE_MS = 10_000;

interface Worker {
  service: Started;
  /** The node process npm runs (npm itself is `service.child`). */
  pid: number;
  /** Its /healthz, /readyz and /metrics. */
  url: string;
  /** Until its process has exited. */
  running: boolean;
}

interface JobRow {
  status: string;
  objectCount: number;
  pageCount: number;
  fileSize: number;
  errorCode: string | null;
}

const started: Started[] = [];
const workers: Worker[] = [];

// Declared before useHarness's hooks, so it runs first: no worker outlives its database, even after a failure.
afterAll(() => {
  for (const service of started) service.killAll();
});

const suite = useHarness({ scale: SCALE });

/** The processes of one process group: pid, state and command line. */
function processGroup(pgid: number): Array<{ pid: number; state: string; args: string }> {
  return execFileSync('ps', ['-A', '-o', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/))
    .filter((match) => match !== null && Number(match[2]) === pgid)
    .map((match) => ({ pid: Number(match![1]), state: match![3]!, args: match![4]! }));
}

/** Whether `pid` is gone (or a zombie: dead, not yet reaped). */
function gone(pid: number): boolean {
  const state = execFileSync('ps', ['-A', '-o', 'pid=,stat='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find(([p]) => Number(p) === pid)?.[1];
  return state === undefined || state.startsWith('Z');
}

/** `until`, failing with what the workers printed. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  await until(check, timeoutMs).catch(() => {
    throw new Error(
      `${what}: not within ${timeoutMs} ms. The workers printed:\n${started.map((s) => s.output()).join('\n---\n')}`,
    );
  });
}

/** `npm run start:worker` with the harness's configuration; resolves once it says it is ready. */
async function startWorker(): Promise<Worker> {
  const { harness } = suite;
  const service = await npmStart(
    {
      DATABASE_URL: suite.databaseUrl,
      JOBS_GATEWAY_URL: harness.gatewayUrl,
      JOBS_DIR: harness.config.JOBS_DIR,
      IDENTITY_SECRET: TEST_IDENTITY_SECRET,
      JWT_SECRET: TEST_JWT_SECRET,
      // As the harness: a failed run is retried soon (the test waits for it).
      JOBS_RETRY_DELAY_SECONDS: '1',
      WORKER_PORT: String(await freePort()),
      LOG_LEVEL: 'info',
    },
    'start:worker',
  );
  started.push(service);
  let exited: number | null | undefined;
  void service.exited.then((code) => (exited = code));
  const readyLine = /"url":"(http:\/\/[^"]+)","msg":"jobs worker ready"/;
  await until(() => exited !== undefined || readyLine.test(service.output()), 30_000).catch(() => {
    throw new Error(`npm run start:worker was not ready within 30 s:\n${service.output()}`);
  });
  if (exited !== undefined) throw new Error(`npm run start:worker exited (${exited}):\n${service.output()}`);
  // npm runs the script in a shell that execs node: the worker is npm's child, in npm's process group.
  const [node, ...others] = processGroup(service.child.pid!).filter((p) => p.args.includes('scripts/start-worker.ts'));
  expect(others).toEqual([]);
  expect(node!.args).toMatch(/^node /);
  expect(node!.pid).not.toBe(service.child.pid);
  const worker: Worker = { service, pid: node!.pid, url: service.output().match(readyLine)![1]!, running: true };
  void service.exited.then(() => (worker.running = false));
  workers.push(worker);
  return worker;
}

/** SIGTERM to every worker still running (a test's, or one a failed test left): each exits 0 within the grace. */
async function stopWorkers(): Promise<void> {
  for (const worker of workers.filter((w) => w.running)) {
    worker.service.child.kill('SIGTERM');
    expect(await exitCode(worker.service, GRACE_MS)).toBe(0);
  }
}

async function jobRow(id: string): Promise<JobRow> {
  const { rows } = await suite.harness.database.pool.query<JobRow>(
    `SELECT status, object_count AS "objectCount", page_count AS "pageCount", file_size::int AS "fileSize",
        error_code AS "errorCode"
      FROM jobs WHERE id = $1::uuid`,
    [id],
  );
  return rows[0]!;
}

/** The pg-boss jobs (runs) of one bulk query, oldest first. */
async function runsOf(id: string): Promise<Array<{ state: string; retryCount: number }>> {
  const { rows } = await suite.harness.database.pool.query<{ state: string; retryCount: number }>(
    `SELECT state, retry_count AS "retryCount" FROM pgboss.job
      WHERE name = 'bulk-query' AND data->>'jobId' = $1 ORDER BY created_on, id`,
    [id],
  );
  return rows;
}

let owner: string;
let productIds: string[];

beforeAll(async () => {
  const { pool } = suite.harness.database;
  owner = (await pool.query<{ id: string }>('SELECT id FROM users ORDER BY id LIMIT 1')).rows[0]!.id;
  productIds = (await pool.query<{ id: string }>('SELECT id FROM products ORDER BY id')).rows.map((row) => row.id);
  expect(productIds).toHaveLength(SCALE * 50);
});

/** Queues the export as `owner`; its id. */
async function queueExport(): Promise<string> {
  const { data, errors } = await suite.harness.query(RUN, { query: EXPORT }, { as: owner });
  expect(errors).toBeUndefined();
  expect(data!.runBulkQuery.userErrors).toEqual([]);
  return data!.runBulkQuery.job.id as string;
}

/** Waits until the job has committed at least `pages` pages and is still running; its row then. */
async function inProgress(id: string, pages: number): Promise<JobRow> {
  let row: JobRow | undefined;
  await waitFor(
    `job ${id} has ${pages} pages`,
    async () => {
      row = await jobRow(id);
      if (row.status !== 'QUEUED' && row.status !== 'RUNNING')
        throw new Error(`job ${id} ended (${row.status}) before the test could interrupt it: use a larger SCALE`);
      return row.pageCount >= pages;
    },
    30_000,
  );
  return row!;
}

/** The lines of a result file (or a part file's first `bytes`), each a product. */
async function productLines(path: string, bytes?: number): Promise<string[]> {
  const text = (await readFile(path)).subarray(0, bytes).toString('utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => (JSON.parse(line) as { id: string }).id);
}

/** Waits for the job to be COMPLETED; checks its count and that its result has every product exactly once. */
async function completesExactly(id: string, timeoutMs: number): Promise<void> {
  await waitFor(`job ${id} COMPLETED`, async () => (await jobRow(id)).status === 'COMPLETED', timeoutMs);
  const { data, errors } = await suite.harness.query(
    'query Job($id: ID!) { job(id: $id) { status objectCount errorCode } }',
    { id },
    { as: owner },
  );
  expect(errors).toBeUndefined();
  expect(data!.job).toEqual({ status: 'COMPLETED', objectCount: productIds.length, errorCode: null });
  const dir = suite.harness.config.JOBS_DIR!;
  const ids = await productLines(join(dir, `${id}.jsonl`));
  expect(ids).toHaveLength(productIds.length);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(productIds);
  await expect(stat(join(dir, `${id}.jsonl.part`))).rejects.toMatchObject({ code: 'ENOENT' });
}

describe('npm run start:worker', () => {
  it('SIGKILLed in the middle of a bulk query: another worker takes the job over when its heartbeat stops, and writes every product exactly once', async () => {
    const a = await startWorker();
    const id = await queueExport();
    await inProgress(id, 3);

    const killedAt = Date.now();
    process.kill(a.pid, 'SIGKILL');
    await waitFor('worker A gone', () => gone(a.pid), 5_000);
    // npm ends too (its script died); nothing of worker A is left.
    await exitCode(a.service, 5_000);
    await waitFor('worker A process group empty', () => processGroup(a.service.child.pid!).length === 0, 5_000);
    // Interrupted: progress committed, not finished, and nothing runs it now.
    const atKill = await jobRow(id);
    expect(atKill.status).toBe('RUNNING');
    expect(atKill.objectCount).toBeGreaterThan(0);
    expect(atKill.objectCount).toBeLessThan(productIds.length);

    const b = await startWorker();
    await waitFor('worker B resumes the job', async () => (await jobRow(id)).pageCount > atKill.pageCount, 40_000);
    const recoverySeconds = (Date.now() - killedAt) / 1000;
    await completesExactly(id, 40_000);
    const totalSeconds = (Date.now() - killedAt) / 1000;
    console.log(
      `SIGKILL recovery: worker B resumed the job ${recoverySeconds.toFixed(1)} s after worker A was killed ` +
        `(heartbeat ${suite.harness.config.JOBS_HEARTBEAT_SECONDS} s), completed it after ${totalSeconds.toFixed(1)} s`,
    );
    // The lost run was found when its heartbeat stopped (JOBS_HEARTBEAT_SECONDS, pg-boss's monitor every second)
    // and retried once by pg-boss.
    expect(recoverySeconds).toBeLessThan(suite.harness.config.JOBS_HEARTBEAT_SECONDS + 15);
    expect(await runsOf(id)).toEqual([{ state: 'completed', retryCount: 1 }]);
    expect(b.running).toBe(true);
  }, 60_000);

  it('on SIGTERM in the middle of a bulk query: finishes the page in hand, hands the job back and exits 0; the next worker goes on from there', async () => {
    // Only this test's workers run its job: any left by the test before are stopped first.
    await stopWorkers();
    const x = await startWorker();
    const id = await queueExport();
    const atSignal = await inProgress(id, 2);

    const signalledAt = Date.now();
    // To npm, as `docker stop` and systemd send it: npm passes it on to the worker.
    x.service.child.kill('SIGTERM');
    expect(await exitCode(x.service, GRACE_MS + 5_000)).toBe(0);
    const stopSeconds = (Date.now() - signalledAt) / 1000;
    expect(stopSeconds * 1000).toBeLessThan(GRACE_MS);
    expect(x.service.output()).toMatch(/"msg":"bulk query handed back"/);
    expect(gone(x.pid)).toBe(true);

    // Not failed: its progress is kept, every committed line is in the part file and nothing more.
    const atExit = await jobRow(id);
    expect(atExit).toMatchObject({ status: 'RUNNING', errorCode: null });
    // A run is always in a page (fetching, writing or committing it): the one in hand at the signal was committed.
    expect(atExit.pageCount).toBeGreaterThan(atSignal.pageCount);
    expect(atExit.objectCount).toBeGreaterThan(0);
    expect(atExit.objectCount).toBeLessThan(productIds.length);
    const part = join(suite.harness.config.JOBS_DIR!, `${id}.jsonl.part`);
    expect((await stat(part)).size).toBe(atExit.fileSize);
    const committed = await productLines(part);
    expect(committed).toHaveLength(atExit.objectCount);
    expect(new Set(committed).size).toBe(committed.length);
    // Its run ended (no retry used) and a new one waits in the queue.
    expect(await runsOf(id)).toEqual([
      { state: 'completed', retryCount: 0 },
      { state: 'created', retryCount: 0 },
    ]);

    const y = await startWorker();
    const resumedAt = Date.now();
    await completesExactly(id, 40_000);
    console.log(
      `SIGTERM: worker exited 0 after ${stopSeconds.toFixed(1)} s with ${atExit.objectCount} products committed; ` +
        `the next worker completed the job in ${((Date.now() - resumedAt) / 1000).toFixed(1)} s`,
    );
    expect(y.running).toBe(true);
  }, 60_000);

  it('serves /healthz, /readyz and /metrics (jobs by status, pages)', async () => {
    // The worker that completed the last job, when the tests before left one running.
    const reused = workers.find((w) => w.running);
    const worker = reused ?? (await startWorker());
    expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${worker.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true });
    const metrics = await fetch(`${worker.url}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    const { rows } = await suite.harness.database.pool.query<{ status: string; count: number }>(
      'SELECT status::text, count(*)::int AS count FROM jobs GROUP BY status',
    );
    for (const status of ['QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELED']) {
      const count = rows.find((row) => row.status === status)?.count ?? 0;
      expect(text).toMatch(new RegExp(`^jobs\\{status="${status}"[^}]*\\} ${count}$`, 'm'));
    }
    expect(text).toMatch(/^job_pages_total\{[^}]*\} \d+$/m);
    if (reused) expect(Number(text.match(/^job_pages_total\{[^}]*\} (\d+)$/m)![1])).toBeGreaterThan(0);
    await stopWorkers();
  }, 30_000);
});
