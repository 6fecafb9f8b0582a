import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PgBoss } from 'pg-boss';
import { Counter, Gauge, Histogram } from 'prom-client';
import { jobsDir, type Config } from '../../lib/config';
import { createDatabaseClient, type DatabaseClient } from '../../lib/db';
import { createDelegationSigner } from '../../lib/delegation';
import type { Logger } from '../../lib/logger';
import { createMetrics } from '../../lib/metrics';
import { createResultLinks } from '../../lib/result-links';
import { loadSecrets } from '../../lib/secrets';
import { portInUse } from '../../lib/startup-errors';
import { failExhausted, runBulkQuery, type BulkRunContext } from './bulk-run';
import {
  openQueue,
  QUEUES,
  queueSettings,
  type BulkQueryMessage,
  type QueueSettings,
  type WebhookMessage,
} from './queue';
import { deliverWebhook } from './webhook-delivery';

export interface JobsWorkerOptions {
  databaseUrl: string;
  /** The gateway's /graphql, where pages are sent. */
  gatewayUrl: string;
  /** Where results are written (JOBS_DIR): the folder the gateway serves them from. */
  dir: string;
  /** IDENTITY_SECRET: signs the delegation tokens and result links. */
  identitySecret: string;
  settings: QueueSettings;
  /** Bulk queries this worker runs at once. Defaults to 2. */
  concurrency?: number;
  /** How long a webhook receiver has to answer. Defaults to 10000 ms. */
  webhookTimeoutMs?: number;
  /** How long a signed result link in a webhook message works. Defaults to 3600 s. */
  linkTtlSeconds?: number;
  /** How long one page may take at the gateway. Defaults to 60000 ms. */
  pageTimeoutMs?: number;
  /** How long stop() lets the page in hand finish before giving up on it (its run is then retried). Defaults to 10000 ms. */
  shutdownGraceMs?: number;
  /** Where the worker's /healthz, /readyz and /metrics listen; null for none. Defaults to none. */
  port?: number | null;
  host?: string;
  logger: Logger;
}

export interface RunningWorker {
  /** Where its /healthz, /readyz and /metrics are, when it serves them. */
  url: string | null;
  /** Finishes or hands back the pages in hand, then stops (SIGTERM). */
  stop(): Promise<void>;
}

/** A worker's metrics: the queue by state, jobs' durations and pages, webhook deliveries by outcome. */
function workerMetrics(database: DatabaseClient) {
  const metrics = createMetrics('jobs-worker');
  const registers = [metrics.registry];
  new Gauge({
    name: 'jobs',
    help: 'Jobs by status, over every worker (QUEUED and RUNNING are the queue depth).',
    labelNames: ['status'],
    registers,
    async collect() {
      const { rows } = await database.pool.query<{ status: string; count: string }>(
        'SELECT status, count(*) AS count FROM jobs GROUP BY status',
      );
      this.reset();
      for (const status of ['QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELED'])
        this.set({ status }, Number(rows.find((row) => row.status === status)?.count ?? 0));
    },
  });
  const duration = new Histogram({
    name: 'job_duration_seconds',
    help: 'From a job starting to its end, by final status (jobs this worker ended).',
    labelNames: ['status'],
    buckets: [1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600],
    registers,
  });
  const pagesPerJob = new Histogram({
    name: 'job_pages',
    help: 'Pages fetched per job, by final status (jobs this worker ended).',
    labelNames: ['status'],
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000],
    registers,
  });
  const pages = new Counter({ name: 'job_pages_total', help: 'Pages this worker fetched and wrote.', registers });
  const deliveries = new Counter({
    name: 'webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome (DELIVERED: 2xx; FAILED: retried until the limit).',
    labelNames: ['outcome'],
    registers,
  });
  return { registry: metrics.registry, duration, pagesPerJob, pages, deliveries };
}

/**
 * A jobs worker: runs bulk queries (at most `concurrency` at once here, at most the per-client limit over all
 * workers), fails those out of retries, and delivers webhooks. Any number run, on any machines that reach the
 * database, the gateway and the results folder. pg-boss's supervision in each finds jobs whose worker died.
 */
export async function startJobsWorker(options: JobsWorkerOptions): Promise<RunningWorker> {
  const { logger, settings } = options;
  const concurrency = options.concurrency ?? 2;
  // A connection per running job (its advisory lock) and a few for pages' commits.
  const database = createDatabaseClient(options.databaseUrl, { poolSize: concurrency + 4 });
  const metrics = workerMetrics(database);
  let boss: PgBoss;
  let server: Server | null = null;
  try {
    // First: a port already in use is said at once, before anything else is started.
    if (options.port != null)
      server = await serveHealth(options.port, options.host ?? '127.0.0.1', database, metrics.registry);
    boss = await openQueue({
      databaseUrl: options.databaseUrl,
      settings,
      logger,
      supervise: true,
      poolSize: concurrency + 3,
    });
  } catch (error) {
    server?.close();
    await database.close();
    throw error;
  }
  let stopping = false;
  const signDelegation = createDelegationSigner(options.identitySecret);
  const links = createResultLinks(options.identitySecret, { ttlSeconds: options.linkTtlSeconds });
  const context: BulkRunContext = {
    pool: database.pool,
    boss,
    dir: options.dir,
    gatewayUrl: options.gatewayUrl,
    delegate: ({ callerId, scopes, jobId }) => signDelegation({ callerId, scopes, jobId }),
    maxRunningPerClient: settings.maxRunningPerClient,
    stopping: () => stopping,
    pageTimeoutMs: options.pageTimeoutMs ?? 60_000,
    logger,
    observe: {
      page: () => metrics.pages.inc(),
      finished(status, job) {
        if (job.startedAt) metrics.duration.observe({ status }, (Date.now() - job.startedAt.getTime()) / 1000);
        metrics.pagesPerJob.observe({ status }, job.pageCount);
      },
    },
  };
  await boss.work<BulkQueryMessage>(
    QUEUES.bulkQuery,
    {
      batchSize: 1,
      localConcurrency: concurrency,
      pollingIntervalSeconds: 0.5,
      groupConcurrency: settings.maxRunningPerClient,
    },
    async ([message]) => {
      try {
        await runBulkQuery(context, message!);
      } catch (error) {
        logger.warn(
          { err: error, jobId: message!.data.jobId, attempt: message!.retryCount + 1 },
          'bulk query run failed',
        );
        throw error;
      }
    },
  );
  await boss.work<BulkQueryMessage>(QUEUES.bulkQueryFailed, { pollingIntervalSeconds: 1 }, async ([message]) =>
    failExhausted(context, message!),
  );
  await boss.work<WebhookMessage>(
    QUEUES.webhook,
    { batchSize: 1, localConcurrency: 2, pollingIntervalSeconds: 0.5 },
    async ([message]) =>
      deliverWebhook(
        {
          pool: database.pool,
          links,
          timeoutMs: options.webhookTimeoutMs ?? 10_000,
          observe: (outcome) => metrics.deliveries.inc({ outcome }),
        },
        message!,
      ),
  );
  const url = server ? `http://${options.host ?? '127.0.0.1'}:${(server.address() as AddressInfo).port}` : null;
  logger.info({ concurrency, maxRunningPerClient: settings.maxRunningPerClient, url }, 'jobs worker ready');
  return {
    url,
    async stop() {
      stopping = true;
      // Waits for runs to hand back after their page in hand; past the grace, pg-boss gives up on them (their
      // heartbeat stops, and another worker retries them).
      await boss.stop({ graceful: true, timeout: options.shutdownGraceMs ?? 10_000, close: true });
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await database.close();
    },
  };
}

/** /healthz (alive), /readyz (the database answers) and /metrics of a worker. */
async function serveHealth(
  port: number,
  host: string,
  database: DatabaseClient,
  registry: ReturnType<typeof createMetrics>['registry'],
) {
  const server = createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') =>
      res.writeHead(status, { 'content-type': type }).end(body);
    if (req.url === '/healthz') return void send(200, '{"status":"ok"}');
    if (req.url === '/readyz')
      return void database.ping().then((ready) => send(ready ? 200 : 503, JSON.stringify({ ready })));
    if (req.url === '/metrics')
      return void registry.metrics().then(
        (text) => send(200, text, registry.contentType),
        () => send(500, '{}'),
      );
    send(404, '{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) =>
    server
      .once('error', (error: NodeJS.ErrnoException) =>
        reject(error.code === 'EADDRINUSE' ? portInUse(port, host, 'WORKER_PORT') : error),
      )
      .listen(port, host, resolve),
  );
  return server;
}

/** A worker from configuration, as `npm start` and `npm run start:worker` run it. */
export function startConfiguredWorker(
  config: Config,
  logger: Logger,
  overrides: Partial<JobsWorkerOptions> & { databaseUrl: string },
): Promise<RunningWorker> {
  return startJobsWorker({
    gatewayUrl: config.JOBS_GATEWAY_URL ?? `http://${config.HOST}:${config.GATEWAY_PORT}/graphql`,
    dir: jobsDir(config),
    identitySecret: loadSecrets(config).identitySecret,
    settings: queueSettings(config),
    concurrency: config.JOBS_CONCURRENCY,
    webhookTimeoutMs: config.WEBHOOK_TIMEOUT_MS,
    linkTtlSeconds: config.JOBS_LINK_TTL_SECONDS,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
    port: config.WORKER_PORT,
    host: config.HOST,
    logger,
    ...overrides,
  });
}
