import { fromPrisma, PgBoss, type Db } from 'pg-boss';
import type { Config } from '../../lib/config';
import type { Logger } from '../../lib/logger';

/**
 * The queue under the jobs: pg-boss, in the same PostgreSQL as everything else (its own `pgboss` schema). A job
 * is queued in the same transaction that records it, so none is lost or queued twice; workers on any number of
 * machines claim jobs with SKIP LOCKED; a worker that stops proving it is alive (heartbeat) has its job given to
 * another; retries back off exponentially; what exhausts its retries goes to a dead-letter queue. Why pg-boss
 * rather than BullMQ or graphile-worker is in subgraphs/jobs/README.md.
 */
export const QUEUES = {
  /** `{ jobId }`: run (or resume) a bulk query. One pg-boss job per run: a paused job is sent again. */
  bulkQuery: 'bulk-query',
  /** Bulk-query runs that exhausted their retries: their job is FAILED. */
  bulkQueryFailed: 'bulk-query-failed',
  /** `{ messageId, subscriptionId, jobId, topic }`: one webhook message to one subscription. */
  webhook: 'webhook-delivery',
} as const;

export interface BulkQueryMessage {
  jobId: string;
}

export interface WebhookMessage {
  messageId: string;
  subscriptionId: string;
  jobId: string;
  topic: 'JOB_FINISHED';
}

/** The queue's settings, from configuration. */
export interface QueueSettings {
  /** Retries of a bulk-query run that failed or whose worker was lost. */
  retryLimit: number;
  retryDelaySeconds: number;
  /** A running job's worker heartbeats this often (pg-boss: at least 10). */
  heartbeatSeconds: number;
  webhookRetryLimit: number;
  webhookRetryDelaySeconds: number;
  /** Running bulk queries per client, over every worker. */
  maxRunningPerClient: number;
}

export function queueSettings(config: Config): QueueSettings {
  return {
    retryLimit: config.JOBS_RETRY_LIMIT,
    retryDelaySeconds: config.JOBS_RETRY_DELAY_SECONDS,
    heartbeatSeconds: config.JOBS_HEARTBEAT_SECONDS,
    webhookRetryLimit: config.WEBHOOK_RETRY_LIMIT,
    webhookRetryDelaySeconds: config.WEBHOOK_RETRY_DELAY_SECONDS,
    maxRunningPerClient: config.JOBS_MAX_RUNNING_PER_CLIENT,
  };
}

export interface OpenQueueOptions {
  databaseUrl: string;
  settings: QueueSettings;
  logger: Logger;
  /**
   * Whether this instance also runs pg-boss's supervision: finding jobs whose heartbeat stopped, expiring and
   * retrying them, dead-lettering, deleting old ones. Workers do; the subgraph only sends. Defaults to false.
   */
  supervise?: boolean;
  /** Connections of pg-boss's own pool. Defaults to 2. */
  poolSize?: number;
}

/**
 * A started pg-boss (its schema created or migrated, under an advisory lock, by whoever starts first) with
 * this service's queues created or updated to the configured settings.
 */
export async function openQueue(options: OpenQueueOptions): Promise<PgBoss> {
  const { settings, logger } = options;
  const boss = new PgBoss({
    connectionString: options.databaseUrl,
    max: options.poolSize ?? 2,
    supervise: options.supervise ?? false,
    schedule: false,
    // How soon a lost worker's job is found: the monitor checks heartbeats this often.
    monitorIntervalSeconds: 1,
    superviseIntervalSeconds: 5,
    // A worker's spans continue the trace of the request that queued its job.
    openTelemetry: { propagateContext: true },
  });
  boss.on('error', (error) => logger.error({ err: error }, 'job queue error'));
  await boss.start();
  await boss.createQueue(QUEUES.bulkQueryFailed, { retryLimit: 5, retryBackoff: true });
  const bulkQuery = {
    retryLimit: settings.retryLimit,
    retryDelay: settings.retryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: 300,
    heartbeatSeconds: settings.heartbeatSeconds,
    // A run ends long before this: it pauses (and is sent again) when the caller's budget is spent.
    expireInSeconds: 6 * 3_600,
    deadLetter: QUEUES.bulkQueryFailed,
  };
  await ensureQueue(boss, QUEUES.bulkQuery, bulkQuery);
  await ensureQueue(boss, QUEUES.webhook, {
    retryLimit: settings.webhookRetryLimit,
    retryDelay: settings.webhookRetryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: 3_600,
    expireInSeconds: 120,
  });
  return boss;
}

type QueueOptions = Parameters<PgBoss['createQueue']>[1];

/** Creates the queue, or brings an existing one to these settings (configuration may have changed). */
async function ensureQueue(boss: PgBoss, name: string, options: QueueOptions): Promise<void> {
  if (await boss.getQueue(name)) {
    const { deadLetter: _fixed, heartbeatSeconds: _alsoFixed, ...changeable } = options ?? {};
    await boss.updateQueue(name, changeable);
  } else {
    await boss.createQueue(name, options);
  }
}

/**
 * Queues a run of a bulk query through `db`, the transaction that records or changes the job: the run exists if
 * and only if it commits.
 */
export function sendBulkQuery(
  boss: PgBoss,
  db: Db,
  message: BulkQueryMessage & { ownerId: string },
  startAfter?: Date,
): Promise<string | null> {
  return boss.send(
    QUEUES.bulkQuery,
    { jobId: message.jobId } satisfies BulkQueryMessage,
    // The group is the client: pg-boss runs at most maxRunningPerClient of one group at once, over all workers.
    { db, group: { id: message.ownerId }, ...(startAfter && { startAfter }) },
  );
}

/** A transaction of node-postgres (the worker's) as pg-boss's Db. */
export const fromPgClient = (client: {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}): Db => ({
  executeSql: (text, values) => client.query(text, values),
});

export { fromPrisma };
