import type pg from 'pg';
import type { Job as QueueJob } from 'pg-boss';
import { Webhook } from 'standardwebhooks';
import { request } from 'undici';
import type { ResultLinks } from '../../lib/result-links';
import type { WebhookMessage } from './queue';

export interface WebhookDeliveryContext {
  pool: pg.Pool;
  links: ResultLinks;
  /** How long a receiver has to answer. */
  timeoutMs: number;
  /** Told of each attempt's outcome. */
  observe(outcome: 'DELIVERED' | 'FAILED'): void;
}

/** A receiver failed an attempt: pg-boss sends the message again, with exponential backoff, up to its limit. */
export class WebhookAttemptFailed extends Error {}

/**
 * One attempt to deliver one message: a POST of `{ type, timestamp, data }` signed per Standard Webhooks
 * (webhook-id, webhook-timestamp and webhook-signature headers, HMAC-SHA256 with the subscription's secret),
 * the same webhook-id on every attempt. Each attempt is recorded; a 2xx delivers the message, anything else is
 * retried. The message says what the job is when it is sent (a link to its result that works for an hour).
 */
export async function deliverWebhook(
  context: WebhookDeliveryContext,
  message: QueueJob<WebhookMessage>,
): Promise<void> {
  const { pool } = context;
  const { messageId, subscriptionId, jobId, topic } = message.data;
  const subscription = (
    await pool.query<{ url: string; secret: string }>(
      'SELECT url, secret FROM webhook_subscriptions WHERE id = $1::uuid',
      [subscriptionId],
    )
  ).rows[0];
  // Deleted since: nobody is listening.
  if (!subscription) return;
  const job = (
    await pool.query(
      `SELECT id, kind, status, object_count AS "objectCount", file_size AS "fileSize", error_code AS "errorCode",
          finished_at AS "finishedAt"
        FROM jobs WHERE id = $1::uuid`,
      [jobId],
    )
  ).rows[0] as { id: string; status: string; fileSize: string } | undefined;
  if (!job) return;
  const timestamp = new Date();
  const body = JSON.stringify({
    type: 'job.finished',
    timestamp: timestamp.toISOString(),
    data: {
      ...job,
      fileSize: Number(job.fileSize),
      url: job.status === 'COMPLETED' ? context.links.sign(job.id) : null,
    },
  });
  const signature = new Webhook(subscription.secret).sign(messageId, timestamp, body);
  const started = performance.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  try {
    const response = await request(subscription.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'storefront-supergraph-webhooks',
        'webhook-id': messageId,
        'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
        'webhook-signature': signature,
      },
      body,
      headersTimeout: context.timeoutMs,
      bodyTimeout: context.timeoutMs,
      // undici's request follows no redirect: a receiver cannot send the message somewhere it was not subscribed to.
    });
    statusCode = response.statusCode;
    await response.body.dump();
    if (statusCode < 200 || statusCode >= 300) error = `The receiver answered HTTP ${statusCode}`;
  } catch (cause) {
    error = `No answer: ${cause instanceof Error ? cause.message : String(cause)}`;
  }
  const outcome = error ? 'FAILED' : 'DELIVERED';
  await pool.query(
    `INSERT INTO webhook_deliveries (id, subscription_id, message_id, topic, job_id, attempt, outcome, status_code, error, duration_ms)
      VALUES (gen_random_uuid(), $1::uuid, $2, $3::webhook_topic, $4::uuid, $5, $6::webhook_delivery_outcome, $7, $8, $9)`,
    [
      subscriptionId,
      messageId,
      topic,
      jobId,
      message.retryCount + 1,
      outcome,
      statusCode,
      error,
      Math.round(performance.now() - started),
    ],
  );
  context.observe(outcome);
  if (error) throw new WebhookAttemptFailed(error);
}
