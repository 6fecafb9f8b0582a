/**
 * Bulk queries end to end, on the real PostgreSQL, the whole stack and an in-process worker: a job pages through
 * a whole connection as its caller into a JSON Lines file with every node exactly once; what cannot run is
 * refused before anything is queued; idempotency keys, ownership and signed links hold; at most N of a client's
 * jobs run at once; a cancel, a spent budget and a subgraph outage each end the way the contract says; and the
 * 202 bridge serves non-GraphQL clients.
 */
import { readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createResultLinks } from '../lib/result-links';
import { generateDataset } from '../prisma/seed';
import { queueSettings } from '../subgraphs/jobs/queue';
import type { JobsWorkerOptions, RunningWorker } from '../subgraphs/jobs/worker';
import { FIXTURE_SCALE } from './global-setup';
import { TEST_IDENTITY_SECRET, useHarness, type Harness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const userId = (index: number) => dataset.users[index]!.id;

const ALL_PRODUCTS = '{ products { edges { node { id title } } } }';
// Up to 100 reviews under each product: 100, 50 and 25 products a page are over MAX_QUERY_COST, so the worker
// halves the page down to 12 and a job of it takes five pages (50 products), long enough to watch it run.
const PRODUCTS_WITH_REVIEWS = '{ products { edges { node { id reviews(first: 100) { edges { node { id } } } } } } }';
const JOB_FIELDS = 'id status query objectCount pageCount fileSize url errorCode startedAt finishedAt';
const RUN = `mutation ($query: String!, $key: String) {
  runBulkQuery(query: $query, idempotencyKey: $key) { job { ${JOB_FIELDS} } userErrors { code message } }
}`;
const JOB = `query ($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`;
const JOBS = '{ jobs(first: 100) { edges { node { id } } pageInfo { hasNextPage } } }';
const CANCEL = 'mutation ($id: ID!) { cancelJob(id: $id) { job { id status url } userErrors { code message } } }';

const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELED']);

interface JobView {
  id: string;
  status: string;
  query: string;
  objectCount: number;
  pageCount: number;
  fileSize: number;
  url: string | null;
  errorCode: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns something truthy; fails with `what` after `timeoutMs`. */
async function until<T>(what: string, probe: () => Promise<T>, timeoutMs = 15_000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** The helpers every describe uses, over its own harness. */
function jobsClient(suite: { readonly harness: Harness }) {
  const workers: RunningWorker[] = [];
  const count = async (sql: string, values: unknown[] = []) =>
    Number((await suite.harness.database.pool.query<{ n: string }>(sql, values)).rows[0]!.n);

  const api = {
    count,
    async startWorker(overrides: Partial<JobsWorkerOptions> = {}) {
      const worker = await suite.harness.startWorker(overrides);
      workers.push(worker);
      return worker;
    },
    async stopWorkers() {
      await Promise.all(workers.splice(0).map((worker) => worker.stop()));
    },
    async run(as: string, query: string, key?: string) {
      const answer = await suite.harness.query(RUN, { query, key }, { as });
      expect(answer.errors).toBeUndefined();
      return answer.data!.runBulkQuery as {
        job: JobView | null;
        userErrors: Array<{ code: string; message: string }>;
      };
    },
    async queue(as: string, query: string, key?: string): Promise<JobView> {
      const { job, userErrors } = await api.run(as, query, key);
      expect(userErrors).toEqual([]);
      expect(job).toMatchObject({ status: 'QUEUED', query, objectCount: 0, pageCount: 0, fileSize: 0, url: null });
      return job!;
    },
    async job(as: string, id: string): Promise<JobView | null> {
      const answer = await suite.harness.query(JOB, { id }, { as });
      expect(answer.errors).toBeUndefined();
      return answer.data!.job as JobView | null;
    },
    /** Polls job(id) as its owner until the job has ended. */
    finished: (as: string, id: string, timeoutMs = 15_000) =>
      until(
        `job ${id} to end`,
        async () => {
          const job = await api.job(as, id);
          return job && FINAL.has(job.status) ? job : null;
        },
        timeoutMs,
      ),
    /** The row of a job, as the worker left it. */
    async row(id: string) {
      const { rows } = await suite.harness.database.pool.query<{
        status: string;
        objectCount: number;
        pageCount: number;
        pageSize: number;
        errorCode: string | null;
      }>(
        `SELECT status, object_count AS "objectCount", page_count AS "pageCount", page_size AS "pageSize",
            error_code AS "errorCode"
          FROM jobs WHERE id = $1::uuid`,
        [id],
      );
      return rows[0];
    },
    /** Runs of a job in pg-boss's bulk-query queue (one per run: a paused job is sent again). */
    runs: (id: string) =>
      count(`SELECT count(*) AS n FROM pgboss.job WHERE name = 'bulk-query' AND data->>'jobId' = $1`, [id]),
    /** Downloads a result from the gateway: a signed `url`, or a path with headers (a bearer). */
    async download(path: string, headers: Record<string, string> = {}) {
      const response = await fetch(new URL(path, suite.harness.gatewayUrl), { headers });
      return { status: response.status, type: response.headers.get('content-type'), body: await response.text() };
    },
    /** Every product as the table has it: what an export of `ALL_PRODUCTS` must hold, once each. */
    async products() {
      const { rows } = await suite.harness.database.pool.query<{ id: string; title: string }>(
        'SELECT id::text AS id, title FROM products ORDER BY id',
      );
      return rows;
    },
    /** Ends the jobs a test left queued, as their owners would, so no later worker runs them. */
    async cancelLeftovers() {
      const { rows } = await suite.harness.database.pool.query<{ id: string; ownerId: string }>(
        `SELECT id::text AS id, owner_id::text AS "ownerId" FROM jobs WHERE status IN ('QUEUED', 'RUNNING')`,
      );
      for (const { id, ownerId } of rows) await suite.harness.query(CANCEL, { id }, { as: ownerId });
    },
  };
  return api;
}

/** The lines of a JSON Lines body, each parsed: every line ends with a newline, the last one too. */
function jsonLines(body: string): Array<Record<string, unknown>> {
  expect(body.endsWith('\n')).toBe(true);
  return body
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The lines sorted by id: compared with the table's rows (sorted by id), no duplicate or missing one passes. */
const byId = (lines: Array<Record<string, unknown>>) =>
  [...lines].sort((a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0));

describe('bulk queries', () => {
  const suite = useHarness();
  const jobs = jobsClient(suite);
  const base = () => new URL(suite.harness.gatewayUrl).origin;
  const bearer = async (user: string) => ({ authorization: `Bearer ${await suite.harness.tokenFor(user)}` });

  afterEach(async () => {
    await jobs.stopWorkers();
    await jobs.cancelLeftovers();
  });

  it('exports every product exactly once to a JSON Lines file, served by the signed link and to the owner', async () => {
    const alice = userId(1);
    const products = await jobs.products();
    expect(products).toHaveLength(await jobs.count('SELECT count(*) AS n FROM products'));
    await jobs.startWorker();
    const queued = await jobs.queue(alice, ALL_PRODUCTS);
    const done = await jobs.finished(alice, queued.id);
    expect(done).toMatchObject({ status: 'COMPLETED', objectCount: products.length, errorCode: null });
    expect(done.url).toMatch(new RegExp(`^/jobs/${done.id}/result\\?expires=\\d+&signature=[\\w-]+$`));

    const signed = await jobs.download(done.url!);
    expect(signed.status).toBe(200);
    expect(signed.type).toBe('application/jsonl');
    expect(Buffer.byteLength(signed.body)).toBe(done.fileSize);
    const lines = jsonLines(signed.body);
    expect(lines).toHaveLength(products.length);
    expect(new Set(lines.map((line) => line.id)).size).toBe(products.length);
    expect(byId(lines)).toEqual(products);

    const owned = await jobs.download(`/jobs/${done.id}/result`, await bearer(alice));
    expect(owned.status).toBe(200);
    expect(owned.type).toBe('application/jsonl');
    expect(owned.body).toBe(signed.body);
    // The result is the published file, with no partial one left beside it.
    expect(readdirSync(suite.harness.config.JOBS_DIR!).filter((name) => name.startsWith(done.id))).toEqual([
      `${done.id}.jsonl`,
    ]);
  });

  it('waits while the gateway has no room for background work, then goes on: no retry spent, nothing lost', async () => {
    const dave = userId(4);
    // In front of the gateway: its first three answers to the worker are what a gateway with no spare capacity
    // answers background work (503 OVERLOADED, Retry-After: 1); then every page goes through.
    let refused = 0;
    const gateway = new URL(suite.harness.gatewayUrl);
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (refused < 3) {
          refused += 1;
          res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
          res.end(JSON.stringify({ errors: [{ message: 'At capacity.', extensions: { code: 'OVERLOADED' } }] }));
          return;
        }
        void fetch(gateway, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: req.headers.authorization! },
          body: Buffer.concat(chunks),
        }).then(async (answer) =>
          res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text()),
        );
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      await jobs.startWorker({ gatewayUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/graphql` });
      const queued = await jobs.queue(dave, ALL_PRODUCTS);
      const done = await jobs.finished(dave, queued.id);
      expect(refused).toBe(3);
      expect(done).toMatchObject({ status: 'COMPLETED', objectCount: dataset.products.length, errorCode: null });
      // The same run waited and sent the page again: no retry of the run was spent, and no other run was sent.
      // pg-boss settles its job just after the handler returns, a moment after the row says COMPLETED.
      const runs = await until('the run to be settled', async () => {
        const { rows } = await suite.harness.database.pool.query<{ state: string; retryCount: number }>(
          `SELECT state, retry_count AS "retryCount" FROM pgboss.job WHERE name = 'bulk-query' AND data->>'jobId' = $1`,
          [queued.id],
        );
        return rows.every((row) => row.state !== 'active') ? rows : null;
      });
      expect(runs).toEqual([{ state: 'completed', retryCount: 0 }]);
      expect(byId(jsonLines((await jobs.download(done.url!)).body))).toEqual(await jobs.products());
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('refuses what it cannot run with userErrors and queues nothing; an anonymous caller is UNAUTHENTICATED', async () => {
    const alice = userId(2);
    const before = {
      jobs: await jobs.count('SELECT count(*) AS n FROM jobs'),
      queue: await jobs.count('SELECT count(*) AS n FROM pgboss.job'),
    };
    const refusals: Array<[string, string]> = [
      ['mutation { cancelJob(id: "00000000-0000-0000-0000-000000000000") { job { id } } }', 'NOT_A_QUERY'],
      ['{ products { edges { node { id } }', 'INVALID_QUERY'],
      ['{ products { edges { node { nope } } } }', 'INVALID_QUERY'],
      ['{ products { edges { node { id } } } jobs { edges { node { id } } } }', 'ONE_CONNECTION_REQUIRED'],
      [`{ product(id: "${dataset.products[0]!.id}") { id title } }`, 'ONE_CONNECTION_REQUIRED'],
      ['query ($n: Int) { products(first: $n) { edges { node { id } } } }', 'VARIABLES_NOT_ALLOWED'],
      ['{ products { pageInfo { hasNextPage } } }', 'NODES_REQUIRED'],
    ];
    for (const [query, code] of refusals) {
      const { job, userErrors } = await jobs.run(alice, query);
      expect({ query, job, codes: userErrors.map((error) => error.code) }).toEqual({ query, job: null, codes: [code] });
      expect(userErrors[0]!.message).not.toBe('');
    }

    const anonymous = await suite.harness.query(RUN, { query: ALL_PRODUCTS });
    expect(anonymous.status).toBe(401);
    expect(anonymous.data ?? null).toBeNull();
    expect(anonymous.errors?.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);

    expect({
      jobs: await jobs.count('SELECT count(*) AS n FROM jobs'),
      queue: await jobs.count('SELECT count(*) AS n FROM pgboss.job'),
    }).toEqual(before);
  });

  it('returns the same job for the same idempotency key, refuses the key with another query, and races to one job', async () => {
    const alice = userId(3);
    const first = await jobs.queue(alice, ALL_PRODUCTS, 'export-1');
    const again = await jobs.run(alice, ALL_PRODUCTS, 'export-1');
    expect(again).toEqual({ job: first, userErrors: [] });
    const withKey = `SELECT count(*) AS n FROM jobs WHERE owner_id = $1::uuid AND idempotency_key = $2`;
    expect(await jobs.count(withKey, [alice, 'export-1'])).toBe(1);
    expect(await jobs.runs(first.id)).toBe(1);

    const other = await jobs.run(alice, PRODUCTS_WITH_REVIEWS, 'export-1');
    expect(other.job).toBeNull();
    expect(other.userErrors.map((error) => error.code)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
    expect(await jobs.count(withKey, [alice, 'export-1'])).toBe(1);

    // Another caller's key is their own.
    const bob = userId(4);
    const bobs = await jobs.queue(bob, PRODUCTS_WITH_REVIEWS, 'export-1');
    expect(bobs.id).not.toBe(first.id);

    // Two requests with a new key at once: one job, one run, both answered with it.
    const raced = await Promise.all([1, 2, 3].map(() => jobs.run(alice, ALL_PRODUCTS, 'export-2')));
    expect(raced.map((answer) => answer.userErrors)).toEqual([[], [], []]);
    const ids = new Set(raced.map((answer) => answer.job?.id));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toEqual(expect.any(String));
    expect(await jobs.count(withKey, [alice, 'export-2'])).toBe(1);
    expect(await jobs.runs([...ids][0]!)).toBe(1);
  });

  it('keeps a job to its owner: another caller sees nothing, cannot cancel or download it; bad links are 403', async () => {
    const [alice, bob] = [userId(5), userId(6)];
    await jobs.startWorker();
    const alices = await jobs.queue(alice, ALL_PRODUCTS);
    const bobs = await jobs.queue(bob, ALL_PRODUCTS);
    const done = await jobs.finished(alice, alices.id);
    expect(done.status).toBe('COMPLETED');
    await jobs.finished(bob, bobs.id);

    expect(await jobs.job(bob, alices.id)).toBeNull();
    const listed = async (user: string) => {
      const answer = await suite.harness.query(JOBS, {}, { as: user });
      expect(answer.errors).toBeUndefined();
      expect(answer.data!.jobs.pageInfo.hasNextPage).toBe(false);
      return answer.data!.jobs.edges.map((edge: { node: { id: string } }) => edge.node.id) as string[];
    };
    const own = async (user: string) =>
      (
        await suite.harness.database.pool.query<{ id: string }>(
          'SELECT id::text AS id FROM jobs WHERE owner_id = $1::uuid ORDER BY created_at DESC, id DESC',
          [user],
        )
      ).rows.map((row) => row.id);
    expect(await listed(alice)).toEqual(await own(alice));
    expect(await listed(alice)).toContain(alices.id);
    expect(await listed(bob)).toEqual(await own(bob));
    expect(await listed(bob)).toEqual([bobs.id]);

    const cancel = await suite.harness.query(CANCEL, { id: alices.id }, { as: bob });
    expect(cancel.errors).toBeUndefined();
    expect(cancel.data!.cancelJob).toEqual({
      job: null,
      userErrors: [{ code: 'NOT_FOUND', message: expect.any(String) }],
    });
    expect((await jobs.row(alices.id))!.status).toBe('COMPLETED');

    const asBob = await bearer(bob);
    const read = await fetch(`${base()}/jobs/${alices.id}`, { headers: asBob });
    expect(read.status).toBe(404);
    expect(((await read.json()) as any).errors[0].extensions.code).toBe('NOT_FOUND');
    const result = await jobs.download(`/jobs/${alices.id}/result`, asBob);
    expect(result.status).toBe(404);
    expect(result.body).not.toContain(dataset.products[0]!.id);

    // A link for another job, a changed signature, a changed expiry, an expired link: 403, never the file.
    const url = new URL(done.url!, base());
    const signature = url.searchParams.get('signature')!;
    const tampered = new URL(url);
    tampered.searchParams.set('signature', `${signature.slice(0, -1)}${signature.endsWith('A') ? 'B' : 'A'}`);
    const later = new URL(url);
    later.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 3_600));
    const links = createResultLinks(TEST_IDENTITY_SECRET);
    const expired = links.sign(alices.id, Date.now() - 2 * 3_600_000);
    const forBobs = new URL(url);
    forBobs.pathname = `/jobs/${bobs.id}/result`;
    for (const bad of [tampered.toString(), later.toString(), expired, forBobs.toString()]) {
      const answer = await jobs.download(bad);
      expect({ bad, status: answer.status }).toEqual({ bad, status: 403 });
      expect(JSON.parse(answer.body).errors[0].extensions.code).toBe('FORBIDDEN');
    }
    // The same key with a fresh expiry is good: the 403s were the signature's and the expiry's doing.
    expect((await jobs.download(links.sign(alices.id))).status).toBe(200);
  });

  it("runs at most one of a client's jobs at once with maxRunningPerClient 1, while other clients' jobs run beside them", async () => {
    const [carol, dave] = [userId(7), userId(8)];
    // Dave's first: the worker's first fetches take it and Carol's oldest, whatever else they race for.
    const daves = await jobs.queue(dave, PRODUCTS_WITH_REVIEWS);
    const carols = [
      await jobs.queue(carol, PRODUCTS_WITH_REVIEWS),
      await jobs.queue(carol, PRODUCTS_WITH_REVIEWS),
      await jobs.queue(carol, PRODUCTS_WITH_REVIEWS),
    ];
    const ids = carols.map((job) => job.id);
    // Queued before the worker starts: it finds all four at once.
    await jobs.startWorker({
      concurrency: 3,
      settings: { ...queueSettings(suite.harness.config), maxRunningPerClient: 1 },
    });
    const samples: Array<Record<string, string>> = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await suite.harness.database.pool.query<{ id: string; status: string }>(
        'SELECT id::text AS id, status FROM jobs WHERE id = ANY($1::uuid[])',
        [[...ids, daves.id]],
      );
      const sample = Object.fromEntries(rows.map((row) => [row.id, row.status]));
      samples.push(sample);
      if (ids.every((id) => FINAL.has(sample[id]!)) && FINAL.has(sample[daves.id]!)) break;
      if (Date.now() > deadline) throw new Error(`Still running: ${JSON.stringify(sample)}`);
      await sleep(10);
    }
    const carolRunning = samples.map((sample) => ids.filter((id) => sample[id] === 'RUNNING').length);
    expect(Math.max(...carolRunning)).toBe(1);
    // While one ran, the others waited QUEUED (not yet started): seen in some sample.
    expect(
      samples.some((sample) => {
        const statuses = ids.map((id) => sample[id]);
        return (
          statuses.filter((s) => s === 'RUNNING').length === 1 && statuses.filter((s) => s === 'QUEUED').length === 2
        );
      }),
    ).toBe(true);

    const ended = await Promise.all(ids.map((id) => jobs.job(carol, id)));
    for (const job of ended) {
      // Each in pages of the size its cost allows (the same for all three), every product once.
      const { pageSize } = (await jobs.row(job!.id))!;
      expect(job).toMatchObject({
        status: 'COMPLETED',
        objectCount: dataset.products.length,
        pageCount: Math.ceil(dataset.products.length / pageSize),
      });
    }
    // One after the other: each started after the one before it ended.
    const spans = ended
      .map((job) => [Date.parse(job!.startedAt!), Date.parse(job!.finishedAt!)] as const)
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i += 1) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
    // Dave's job did not wait for Carol's: the limit is per client, not per worker.
    const davesJob = await jobs.job(dave, daves.id);
    expect(davesJob).toMatchObject({ status: 'COMPLETED', objectCount: dataset.products.length });
    expect(Date.parse(davesJob!.startedAt!)).toBeLessThan(spans[0]![1]);
  });

  it('cancels a queued job: it stays CANCELED once a worker picks its run up, and no result is written', async () => {
    const erin = userId(9);
    const queued = await jobs.queue(erin, ALL_PRODUCTS);
    const cancel = await suite.harness.query(CANCEL, { id: queued.id }, { as: erin });
    expect(cancel.errors).toBeUndefined();
    expect(cancel.data!.cancelJob).toEqual({ job: { id: queued.id, status: 'CANCELED', url: null }, userErrors: [] });

    await jobs.startWorker();
    // The worker took the run and ended it without running anything.
    await until(
      'the canceled run to be taken',
      async () =>
        (await jobs.count(
          `SELECT count(*) AS n FROM pgboss.job WHERE name = 'bulk-query' AND data->>'jobId' = $1 AND state = 'completed'`,
          [queued.id],
        )) === 1,
    );
    expect(await jobs.job(erin, queued.id)).toMatchObject({
      status: 'CANCELED',
      objectCount: 0,
      pageCount: 0,
      fileSize: 0,
      url: null,
      startedAt: null,
    });
    const dir = suite.harness.config.JOBS_DIR!;
    expect(readdirSync(dir).filter((name) => name.startsWith(queued.id))).toEqual([]);
    expect((await jobs.download(`/jobs/${queued.id}/result`, await bearer(erin))).status).toBe(404);

    const twice = await suite.harness.query(CANCEL, { id: queued.id }, { as: erin });
    expect(twice.data!.cancelJob).toEqual({
      job: { id: queued.id, status: 'CANCELED', url: null },
      userErrors: [{ code: 'ALREADY_FINISHED', message: 'The job is already CANCELED.' }],
    });
  });

  describe('a subgraph outage', () => {
    it('fails the job with SUBGRAPH_UNAVAILABLE once its retries run out, never leaving it RUNNING', async () => {
      const frank = userId(10);
      // The worker brings the queue to its settings before the job is sent: a run takes its retries from them.
      await jobs.startWorker({
        settings: { ...queueSettings(suite.harness.config), retryLimit: 1, retryDelaySeconds: 1 },
      });
      await suite.harness.stopSubgraph('catalog');
      try {
        const queued = await jobs.queue(frank, ALL_PRODUCTS);
        const started = Date.now();
        const failed = await jobs.finished(frank, queued.id, 20_000);
        expect(Date.now() - started).toBeLessThan(20_000);
        expect(failed).toMatchObject({
          status: 'FAILED',
          errorCode: 'SUBGRAPH_UNAVAILABLE',
          objectCount: 0,
          pageCount: 0,
          url: null,
        });
        expect(failed.finishedAt).not.toBeNull();
        // Two attempts (the first and one retry), then the dead-letter queue failed the job.
        const { rows } = await suite.harness.database.pool.query<{ state: string; retryCount: number }>(
          `SELECT state, retry_count AS "retryCount" FROM pgboss.job WHERE name = 'bulk-query' AND data->>'jobId' = $1`,
          [queued.id],
        );
        expect(rows).toEqual([{ state: 'failed', retryCount: 1 }]);
        expect(readdirSync(suite.harness.config.JOBS_DIR!).filter((name) => name.startsWith(queued.id))).toEqual([]);
      } finally {
        await suite.harness.restartSubgraph('catalog');
      }
    });

    it('completes the job with every product when the subgraph is back before its retries run out', async () => {
      const grace = userId(11);
      await jobs.startWorker({
        settings: { ...queueSettings(suite.harness.config), retryLimit: 5, retryDelaySeconds: 1 },
      });
      await suite.harness.stopSubgraph('catalog');
      let queued: JobView;
      try {
        queued = await jobs.queue(grace, ALL_PRODUCTS);
        // The first attempt failed and recorded why; the job waits for its retry, still not FAILED.
        await until(
          'the first attempt to fail',
          async () => (await jobs.row(queued.id))?.errorCode === 'SUBGRAPH_UNAVAILABLE',
        );
        expect((await jobs.row(queued.id))!.status).toBe('RUNNING');
      } finally {
        await suite.harness.restartSubgraph('catalog');
      }
      const done = await jobs.finished(grace, queued.id, 20_000);
      expect(done).toMatchObject({
        status: 'COMPLETED',
        objectCount: dataset.products.length,
        errorCode: null,
      });
      const lines = jsonLines((await jobs.download(done.url!)).body);
      expect(byId(lines)).toEqual(await jobs.products());
    });
  });

  it('serves the 202 bridge: POST queues (202, Location, Retry-After), GET polls, the link downloads', async () => {
    const heidi = userId(12);
    const headers = { 'content-type': 'application/json', ...(await bearer(heidi)) };
    const post = (body: unknown, extra: Record<string, string> = {}) =>
      fetch(`${base()}/jobs/bulk-query`, {
        method: 'POST',
        headers: { ...headers, ...extra },
        body: JSON.stringify(body),
      });

    await jobs.startWorker();
    const accepted = await post({ query: ALL_PRODUCTS });
    expect(accepted.status).toBe(202);
    const location = accepted.headers.get('location')!;
    expect(location).toMatch(/^\/jobs\/[0-9a-f-]{36}$/);
    expect(accepted.headers.get('retry-after')).toBe('2');
    const queued = (await accepted.json()) as JobView;
    expect(queued).toMatchObject({ id: location.slice('/jobs/'.length), status: 'QUEUED', url: null });

    const done = await until('the job to complete', async () => {
      const response = await fetch(`${base()}${location}`, { headers });
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const job = (await response.json()) as JobView;
      if (job.status === 'QUEUED' || job.status === 'RUNNING') expect(response.headers.get('retry-after')).toBe('2');
      return job.status === 'COMPLETED' ? job : null;
    });
    expect(done).toMatchObject({ id: queued.id, objectCount: dataset.products.length });
    const result = await jobs.download(done.url!);
    expect(result.status).toBe(200);
    expect(result.type).toBe('application/jsonl');
    expect(byId(jsonLines(result.body))).toEqual(await jobs.products());

    const anonymous = await fetch(`${base()}/jobs/bulk-query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: ALL_PRODUCTS }),
    });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as any).errors[0].extensions.code).toBe('UNAUTHENTICATED');

    const refused = await post({ query: 'mutation { cancelJob(id: "x") { job { id } } }' });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toEqual({ userErrors: [{ code: 'NOT_A_QUERY', message: expect.any(String) }] });
    const broken = await post({ query: '{ products {' });
    expect(broken.status).toBe(422);
    expect(((await broken.json()) as any).userErrors.map((error: { code: string }) => error.code)).toEqual([
      'INVALID_QUERY',
    ]);

    const keyed = await post({ query: ALL_PRODUCTS }, { 'idempotency-key': 'bridge-1' });
    const keyedAgain = await post({ query: ALL_PRODUCTS }, { 'idempotency-key': 'bridge-1' });
    expect([keyed.status, keyedAgain.status]).toEqual([202, 202]);
    expect(keyed.headers.get('location')).toMatch(/^\/jobs\/[0-9a-f-]{36}$/);
    expect(keyedAgain.headers.get('location')).toBe(keyed.headers.get('location'));
    expect(keyed.headers.get('location')).not.toBe(location);
    expect(
      await jobs.count('SELECT count(*) AS n FROM jobs WHERE owner_id = $1::uuid AND idempotency_key = $2', [
        heidi,
        'bridge-1',
      ]),
    ).toBe(1);
  });
});

describe('a spent budget', () => {
  // A page of n products costs 2n + 2: 29 a page fits the budget once a window, so a job of 50 products pauses mid-way.
  const suite = useHarness({ env: { BUDGET_POINTS: '60', MAX_QUERY_COST: '60', BUDGET_WINDOW_SECONDS: '2' } });
  const jobs = jobsClient(suite);
  afterEach(() => jobs.stopWorkers());

  it('pauses the job until the budget resets, then completes it with every product, never FAILED', async () => {
    const ivan = userId(13);
    await jobs.startWorker();
    const queued = await jobs.queue(ivan, ALL_PRODUCTS);
    // Watched in the database: the owner's own polling would spend the budget it waits for.
    const statuses = new Set<string>();
    await until(
      'the job to end',
      async () => {
        const row = await jobs.row(queued.id);
        statuses.add(row!.status);
        return FINAL.has(row!.status);
      },
      20_000,
    );
    expect([...statuses].filter((status) => FINAL.has(status))).toEqual(['COMPLETED']);
    // 100 a page was over MAX_QUERY_COST (an estimate of 202); the size in proportion, 29, fits (60), in two pages.
    expect(await jobs.row(queued.id)).toEqual({
      status: 'COMPLETED',
      objectCount: dataset.products.length,
      pageCount: 2,
      pageSize: 29,
      errorCode: null,
    });
    // Paused: its run ended and the job was sent again to start at the budget's reset.
    expect(await jobs.runs(queued.id)).toBeGreaterThan(1);
    // Read as the owner once their budget is back (the last page spent it).
    const done = await until(
      "the owner's budget to reset",
      async () => {
        const answer = await suite.harness.query(JOB, { id: queued.id }, { as: ivan });
        return answer.errors ? null : (answer.data!.job as JobView);
      },
      5_000,
      200,
    );
    expect(done).toMatchObject({ status: 'COMPLETED', objectCount: dataset.products.length, errorCode: null });
    const lines = jsonLines((await jobs.download(done.url!)).body);
    expect(byId(lines)).toEqual(await jobs.products());
    expect(Buffer.byteLength(lines.map((line) => `${JSON.stringify(line)}\n`).join(''))).toBe(done.fileSize);
  });
});
