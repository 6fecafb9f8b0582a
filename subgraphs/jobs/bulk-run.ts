import type pg from 'pg';
import type { Job as QueueJob, PgBoss } from 'pg-boss';
import { request } from 'undici';
import { ErrorCode } from '../../lib/errors';
import type { Logger } from '../../lib/logger';
import { readPage } from './bulk-query';
import { finishJob, type FinalStatus } from './lifecycle';
import { fromPgClient, sendBulkQuery, type BulkQueryMessage } from './queue';
import { discardResult, PartFile, publishedSize, removeResult } from './result-file';

/** What a run of a bulk query needs from its worker. */
export interface BulkRunContext {
  pool: pg.Pool;
  boss: PgBoss;
  /** Where results are written (JOBS_DIR). */
  dir: string;
  /** The gateway's /graphql. */
  gatewayUrl: string;
  /** A bearer token with which the page runs as the job's owner (lib/delegation.ts). */
  delegate(job: { callerId: string; scopes: string[]; jobId: string }): Promise<string>;
  /** Runs of one owner's jobs at once, over every worker (JOBS_MAX_RUNNING_PER_CLIENT). */
  maxRunningPerClient: number;
  /** True once the worker is asked to stop: the run hands its job back after the page in hand. */
  stopping(): boolean;
  /** How long one page may take. */
  pageTimeoutMs: number;
  logger: Logger;
  /** Told of each page written and each run's end. */
  observe: {
    page(): void;
    finished(status: FinalStatus, job: { startedAt: Date | null; pageCount: number }): void;
  };
}

interface JobRow {
  id: string;
  ownerId: string;
  status: string;
  document: string;
  field: string;
  scopes: string[];
  pageSize: number;
  cursor: string | null;
  fileSize: string;
  pageCount: number;
  startedAt: Date | null;
}

/** A job whose run must be tried again (with backoff): the gateway, a subgraph or the database failed it. */
export class RetryableJobError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What became of one page. */
type PageOutcome =
  | { kind: 'page'; nodes: unknown[]; hasNextPage: boolean; endCursor: string | null }
  /** Over the caller's cost limit: `fits` is the page size whose estimate is within it (null: no size fits). */
  | { kind: 'too-costly'; fits: number | null }
  /** The gateway had no spare capacity for background work (or none at all): wait and send the page again. */
  | { kind: 'busy'; retryAfterMs: number }
  | { kind: 'budget-spent'; resumeAt: Date }
  | { kind: 'retry'; code: string; message: string }
  | { kind: 'fail'; code: string; message: string };

/** How long a run keeps sending a page the gateway has no room for, before the run counts as failed. */
const BUSY_LIMIT_MS = 5 * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Codes of failures that may pass: the run is retried. Any other code fails the job (it would fail again). */
const PASSING = new Set<string>([
  ErrorCode.SUBGRAPH_UNAVAILABLE,
  ErrorCode.DEPENDENCY_UNAVAILABLE,
  ErrorCode.REQUEST_TIMEOUT,
  ErrorCode.INTERNAL_SERVER_ERROR,
]);

/** Sends one page to the gateway, as the job's owner, and sorts out the answer. */
async function fetchPage(
  context: BulkRunContext,
  job: JobRow,
  pageSize: number,
  cursor: string | null,
): Promise<PageOutcome> {
  const token = await context.delegate({ callerId: job.ownerId, scopes: job.scopes, jobId: job.id });
  let status: number;
  let retryAfter: string | string[] | undefined;
  let body: {
    data?: Record<string, unknown> | null;
    errors?: Array<{ message: string; extensions?: { code?: string; cost?: Record<string, unknown> } }>;
  };
  try {
    const response = await request(context.gatewayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: job.document, variables: { bulkFirst: pageSize, bulkAfter: cursor } }),
      headersTimeout: context.pageTimeoutMs,
      bodyTimeout: context.pageTimeoutMs,
    });
    status = response.statusCode;
    retryAfter = response.headers['retry-after'];
    body = (await response.body.json()) as typeof body;
  } catch (error) {
    return {
      kind: 'retry',
      code: ErrorCode.DEPENDENCY_UNAVAILABLE,
      message: `The gateway did not answer: ${String(error)}`,
    };
  }
  const error = body.errors?.[0];
  if (!error && body.data) {
    try {
      return { kind: 'page', ...readPage({ field: job.field }, body.data) };
    } catch (shape) {
      return { kind: 'fail', code: ErrorCode.INTERNAL_SERVER_ERROR, message: String(shape) };
    }
  }
  const code = error?.extensions?.code ?? (status >= 500 ? ErrorCode.DEPENDENCY_UNAVAILABLE : ErrorCode.BAD_REQUEST);
  const message = error?.message ?? `The gateway answered HTTP ${status}`;
  if (code === ErrorCode.RATE_LIMITED) {
    const resetAt = error?.extensions?.cost?.resetAt as string | undefined;
    return { kind: 'budget-spent', resumeAt: resetAt ? new Date(resetAt) : new Date(Date.now() + 60_000) };
  }
  if (code === ErrorCode.QUERY_TOO_COMPLEX) {
    // The estimate grows with the page size: the size that fits is in proportion. A selection count over the
    // limit (`{ selections, maxSelections }`) does not depend on it: no page size fits.
    const { estimated, max } = (error?.extensions?.cost ?? {}) as { estimated?: number | null; max?: number };
    return {
      kind: 'too-costly',
      fits: estimated && max ? Math.min(pageSize - 1, Math.floor((pageSize * max) / estimated)) : null,
    };
  }
  if (code === ErrorCode.OVERLOADED) {
    const seconds = Number(retryAfter);
    return { kind: 'busy', retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1_000 : 1_000 };
  }
  return PASSING.has(code) ? { kind: 'retry', code, message } : { kind: 'fail', code, message };
}

const SELECT_JOB = `SELECT id, owner_id AS "ownerId", status, document, field, scopes, page_size AS "pageSize", cursor,
    file_size AS "fileSize", page_count AS "pageCount", started_at AS "startedAt"
  FROM jobs WHERE id = $1::uuid`;

/**
 * One run of a bulk query: pages from the committed cursor to the end, each page written to the part file and
 * then committed (cursor, counts and size in one UPDATE), so a run that dies anywhere is resumed exactly. Only
 * one run works on a job at a time: it holds a session advisory lock on the job, which PostgreSQL releases when
 * the worker's connection dies. A run that cannot take it is a duplicate (a hand-back sent just before its
 * worker died) and ends at once: the holder finishes the job, or its own run is retried when it is lost.
 */
export async function runBulkQuery(context: BulkRunContext, message: QueueJob<BulkQueryMessage>): Promise<void> {
  const { pool, dir } = context;
  const jobId = message.data.jobId;
  const lock = await pool.connect();
  let locked = false;
  let slot: string | null = null;
  try {
    locked = (await lock.query('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [jobId])).rows[0]
      .locked as boolean;
    if (!locked) return;
    const job = (await pool.query<JobRow>(SELECT_JOB, [jobId])).rows[0];
    if (!job || !['QUEUED', 'RUNNING'].includes(job.status)) {
      if (job?.status === 'CANCELED') await discardResult(dir, jobId);
      return;
    }
    // Published before a crash took the worker before it could say so.
    if ((await publishedSize(dir, jobId)) === Number(job.fileSize) && job.cursor !== null) {
      await finish(context, job, 'COMPLETED');
      return;
    }
    // pg-boss's groupConcurrency alone lets fetches that run at once (a worker's localConcurrency, or several
    // workers) claim two runs of one owner: each sees no active run of the group, SKIP LOCKED hands them
    // different rows. One of the owner's slots, a session advisory lock, makes the limit hold; a run that finds
    // them all taken is sent again, for when one is free, and the job stays as it is.
    slot = await takeSlot(lock, job.ownerId, context.maxRunningPerClient);
    if (!slot) {
      await sendBulkQuery(
        context.boss,
        fromPgClient(pool),
        { jobId, ownerId: job.ownerId },
        new Date(Date.now() + SLOT_WAIT_MS),
      );
      return;
    }
    const started = await pool.query(
      `UPDATE jobs SET status = 'RUNNING', started_at = coalesce(started_at, now())
        WHERE id = $1::uuid AND status IN ('QUEUED', 'RUNNING') RETURNING started_at AS "startedAt"`,
      [jobId],
    );
    if (started.rowCount === 0) return;
    job.startedAt = started.rows[0].startedAt as Date;
    await work(context, job, message);
  } finally {
    // A connection back in the pool must hold no lock: one that could not be unlocked is closed instead.
    let stuck = false;
    for (const key of [slot, locked ? jobId : null]) {
      if (key === null) continue;
      await lock.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]).catch(() => {
        stuck = true;
      });
    }
    lock.release(stuck);
  }
}

/** How long a run that found all its owner's slots taken waits before it is tried again. */
const SLOT_WAIT_MS = 1_000;

/** Takes one of the owner's `slots` on the connection's session: its lock key, or null when all are taken. */
async function takeSlot(client: pg.PoolClient, ownerId: string, slots: number): Promise<string | null> {
  for (let slot = 0; slot < slots; slot += 1) {
    const key = `bulk-query-slot:${ownerId}:${slot}`;
    const { rows } = await client.query('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [key]);
    if (rows[0].locked) return key;
  }
  return null;
}

async function work(context: BulkRunContext, job: JobRow, message: QueueJob<BulkQueryMessage>): Promise<void> {
  const { pool, dir } = context;
  const file = await PartFile.open(dir, job.id, Number(job.fileSize));
  let { pageSize, cursor } = job;
  let busySince: number | null = null;
  try {
    for (;;) {
      if (context.stopping() || message.signal.aborted) {
        // Asked to stop: the page in hand is committed; the rest is another run's, now.
        await sendBulkQuery(context.boss, fromPgClient(pool), { jobId: job.id, ownerId: job.ownerId });
        context.logger.info({ jobId: job.id }, 'bulk query handed back');
        return;
      }
      const outcome = await fetchPage(context, job, pageSize, cursor);
      if (outcome.kind !== 'busy') busySince = null;
      switch (outcome.kind) {
        case 'page': {
          const lines = outcome.nodes.map((node) => `${JSON.stringify(node)}\n`).join('');
          const size = await file.write(lines);
          const committed = await pool.query(
            `UPDATE jobs SET cursor = $3, object_count = object_count + $4, page_count = page_count + 1,
                file_size = $5, error_code = NULL, error_message = NULL
              WHERE id = $1::uuid AND file_size = $2 AND status = 'RUNNING'`,
            [job.id, file.size, outcome.endCursor ?? cursor ?? '', outcome.nodes.length, size],
          );
          // Canceled meanwhile (the only other writer of a running job).
          if (committed.rowCount === 0) {
            await file.close();
            await discardResult(dir, job.id);
            return;
          }
          file.committed(size);
          job.pageCount += 1;
          context.observe.page();
          if (!outcome.hasNextPage) {
            await file.publish();
            if (!(await finish(context, job, 'COMPLETED'))) await removeResult(dir, job.id);
            return;
          }
          cursor = outcome.endCursor;
          break;
        }
        case 'too-costly': {
          // The caller's query limits refuse a page this large: take the size that fits (kept for later runs).
          if (outcome.fits === null || outcome.fits < 1) {
            await fail(context, job, file, ErrorCode.QUERY_TOO_COMPLEX, 'Even one node per page is too costly.');
            return;
          }
          pageSize = outcome.fits;
          await pool.query('UPDATE jobs SET page_size = $2 WHERE id = $1::uuid', [job.id, pageSize]);
          break;
        }
        case 'busy': {
          // Background work yields to clients: the page is sent again once the gateway has room. Only a gateway
          // busy for longer than BUSY_LIMIT_MS makes it a failed run (retried with backoff, as an outage is).
          busySince ??= Date.now();
          if (Date.now() - busySince > BUSY_LIMIT_MS)
            throw new RetryableJobError(ErrorCode.OVERLOADED, 'The gateway had no room for background work.');
          await sleep(outcome.retryAfterMs * (0.5 + Math.random()));
          break;
        }
        case 'budget-spent': {
          // Paused, not failed: a run of its own starts when the caller's budget is back.
          await sendBulkQuery(
            context.boss,
            fromPgClient(pool),
            { jobId: job.id, ownerId: job.ownerId },
            outcome.resumeAt,
          );
          context.logger.info({ jobId: job.id, resumeAt: outcome.resumeAt }, 'bulk query paused: budget spent');
          return;
        }
        case 'retry': {
          // Recorded for the job's errorCode if the retries run out (the dead-letter queue then fails it).
          await pool.query('UPDATE jobs SET error_code = $2, error_message = $3 WHERE id = $1::uuid', [
            job.id,
            outcome.code,
            outcome.message,
          ]);
          throw new RetryableJobError(outcome.code, outcome.message);
        }
        case 'fail':
          await fail(context, job, file, outcome.code, outcome.message);
          return;
      }
    }
  } finally {
    await file.close();
  }
}

async function fail(context: BulkRunContext, job: JobRow, file: PartFile, code: string, message: string) {
  await file.close();
  await discardResult(context.dir, job.id);
  await finish(context, job, 'FAILED', code, message);
}

/** Ends the job (and queues its webhooks) in one transaction. */
async function finish(
  context: BulkRunContext,
  job: JobRow,
  status: FinalStatus,
  errorCode?: string,
  errorMessage?: string,
): Promise<boolean> {
  const client = await context.pool.connect();
  try {
    await client.query('BEGIN');
    const ended = await finishJob(context.boss, fromPgClient(client), job.id, status, {
      from: ['QUEUED', 'RUNNING'],
      errorCode,
      errorMessage,
    });
    await client.query('COMMIT');
    if (ended) context.observe.finished(status, job);
    return ended;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** The dead-letter queue's handler: a run out of retries fails its job with the last error recorded. */
export async function failExhausted(context: BulkRunContext, message: QueueJob<BulkQueryMessage>): Promise<void> {
  const job = (await context.pool.query<JobRow>(SELECT_JOB, [message.data.jobId])).rows[0];
  if (!job) return;
  await discardResult(context.dir, job.id);
  await finish(context, job, 'FAILED');
}
