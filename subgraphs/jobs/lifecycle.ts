import { randomUUID } from 'node:crypto';
import type { Db, PgBoss } from 'pg-boss';
import { QUEUES, type WebhookMessage } from './queue';

/** A job's end: COMPLETED, FAILED or CANCELED. */
export type FinalStatus = 'COMPLETED' | 'FAILED' | 'CANCELED';

export interface FinishOptions {
  /** Only from these statuses (a job already ended stays as it is). */
  from: readonly ('QUEUED' | 'RUNNING')[];
  errorCode?: string | null;
  errorMessage?: string | null;
}

/**
 * Ends a job and, in the same transaction (`db`), queues a JOB_FINISHED message to each of its owner's
 * subscriptions: the message is sent if and only if the job really ended. Returns false when the job was not
 * in one of `from` (ended already, e.g. canceled while its worker was finishing it): nothing is changed or sent.
 */
export async function finishJob(
  boss: PgBoss,
  db: Db,
  jobId: string,
  status: FinalStatus,
  options: FinishOptions,
): Promise<boolean> {
  const { rows } = await db.executeSql(
    `UPDATE jobs SET status = $2::job_status, finished_at = now(),
        error_code = CASE WHEN $2 = 'FAILED' THEN coalesce($4, error_code, 'INTERNAL_SERVER_ERROR') END,
        error_message = CASE WHEN $2 = 'FAILED' THEN coalesce($5, error_message) END
      WHERE id = $1::uuid AND status = ANY($3::job_status[])
      RETURNING owner_id AS "ownerId"`,
    [jobId, status, options.from, options.errorCode ?? null, options.errorMessage ?? null],
  );
  const ownerId = (rows[0] as { ownerId: string } | undefined)?.ownerId;
  if (!ownerId) return false;
  const { rows: subscriptions } = await db.executeSql(
    `SELECT id FROM webhook_subscriptions WHERE owner_id = $1::uuid AND 'JOB_FINISHED'::webhook_topic = ANY(topics)`,
    [ownerId],
  );
  for (const { id } of subscriptions as { id: string }[]) {
    // One message id per message, kept on every retry: receivers drop duplicates by it (Standard Webhooks).
    const message: WebhookMessage = {
      messageId: `msg_${randomUUID()}`,
      subscriptionId: id,
      jobId,
      topic: 'JOB_FINISHED',
    };
    await boss.send(QUEUES.webhook, message, { db });
  }
  return true;
}
