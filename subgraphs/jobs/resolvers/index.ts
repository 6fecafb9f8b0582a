import { randomBytes } from 'node:crypto';
import { DateTimeResolver } from 'graphql-scalars';
import type { Job } from '../../../generated/prisma/client';
import { badInput, isPrismaError } from '../../../lib/errors';
import { isUuid } from '../../../lib/ids';
import { pageRequest, seekQuery, toConnection, type Ordering } from '../../../lib/pagination';
import type { Resolvers } from '../__generated__/resolvers-types';
import { planBulkQuery } from '../bulk-query';
import type { Context } from '../context';
import { finishJob } from '../lifecycle';
import { NEWEST_DELIVERY_FIRST } from '../loaders';
import { fromPrisma, sendBulkQuery } from '../queue';
import { webhookUrlProblem } from '../webhook-urls';

const NEWEST_JOB_FIRST: Ordering<'createdAt'> = {
  key: 'jobs:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};
const NEWEST_SUBSCRIPTION_FIRST: Ordering<'createdAt'> = {
  key: 'webhook_subscriptions:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};

/** The caller's own job with this id, or null (another caller's job is as absent as a missing one). */
async function ownJob(id: string, { callerId, loaders }: Context): Promise<Job | null> {
  if (!isUuid(id)) return null;
  const job = await loaders.jobById.load(id.toLowerCase());
  return job && job.ownerId === callerId ? job : null;
}

/** The signed-in caller (every field here is @authenticated: the gateway and lib/authorization.ts enforce it). */
const ownerOf = ({ callerId }: Context) => callerId!;

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  Query: {
    job: (_root, { id }, context) => ownJob(id, context),
    jobs: async (_root, args, context) => {
      const page = pageRequest(args, NEWEST_JOB_FIRST);
      const query = seekQuery(NEWEST_JOB_FIRST, page);
      const rows = await context.db.job.findMany({ ...query, where: { ...query.where, ownerId: ownerOf(context) } });
      return toConnection(rows, page, NEWEST_JOB_FIRST);
    },
    webhookSubscriptions: async (_root, args, context) => {
      const page = pageRequest(args, NEWEST_SUBSCRIPTION_FIRST);
      const query = seekQuery(NEWEST_SUBSCRIPTION_FIRST, page);
      const rows = await context.db.webhookSubscription.findMany({
        ...query,
        where: { ...query.where, ownerId: ownerOf(context) },
      });
      return toConnection(rows, page, NEWEST_SUBSCRIPTION_FIRST);
    },
  },
  Mutation: {
    runBulkQuery: async (_root, { query, idempotencyKey }, context) => {
      const { db, loaders, scopes } = context;
      const { boss, apiSchema, pageSize } = loaders.resources;
      const ownerId = ownerOf(context);
      if (idempotencyKey != null && (idempotencyKey.length === 0 || idempotencyKey.length > 255))
        throw badInput('idempotencyKey', 'idempotencyKey must be 1 to 255 characters.');
      const seen = async () => {
        if (idempotencyKey == null) return undefined;
        const job = await db.job.findUnique({ where: { ownerId_idempotencyKey: { ownerId, idempotencyKey } } });
        if (!job) return undefined;
        return job.query === query
          ? { job, userErrors: [] }
          : {
              job: null,
              userErrors: [
                {
                  code: 'IDEMPOTENCY_KEY_REUSED' as const,
                  message: 'This idempotency key was used with another query.',
                },
              ],
            };
      };
      const before = await seen();
      if (before) return before;
      const planned = planBulkQuery(apiSchema(), query);
      if ('errors' in planned) return { job: null, userErrors: planned.errors };
      try {
        const job = await db.$transaction(async (tx) => {
          const created = await tx.job.create({
            data: {
              ownerId,
              query,
              document: planned.plan.document,
              field: planned.plan.field,
              scopes: [...scopes],
              idempotencyKey,
              pageSize,
            },
          });
          // Queued in the same transaction: the job exists with its run, or not at all.
          await sendBulkQuery(boss, fromPrisma(tx), { jobId: created.id, ownerId });
          return created;
        });
        return { job, userErrors: [] };
      } catch (error) {
        // The same key sent twice at once: the other request created the job.
        if (isPrismaError(error, 'P2002')) {
          const raced = await seen();
          if (raced) return raced;
        }
        throw error;
      }
    },
    cancelJob: async (_root, { id }, context) => {
      const job = await ownJob(id, context);
      if (!job) return { job: null, userErrors: [{ code: 'NOT_FOUND', message: 'You have no job with this id.' }] };
      const { boss } = context.loaders.resources;
      const canceled = await context.db.$transaction((tx) =>
        finishJob(boss, fromPrisma(tx), job.id, 'CANCELED', { from: ['QUEUED', 'RUNNING'] }),
      );
      const now = await context.db.job.findUniqueOrThrow({ where: { id: job.id } });
      return canceled
        ? { job: now, userErrors: [] }
        : { job: now, userErrors: [{ code: 'ALREADY_FINISHED', message: `The job is already ${now.status}.` }] };
    },
    createWebhookSubscription: async (_root, { url, topics }, context) => {
      const problem = webhookUrlProblem(url, context.loaders.resources.allowedHosts);
      if (problem) return { subscription: null, secret: null, userErrors: [{ code: 'INVALID_URL', message: problem }] };
      if (topics.length === 0)
        return {
          subscription: null,
          secret: null,
          userErrors: [{ code: 'NO_TOPICS', message: 'Give at least one topic.' }],
        };
      // Standard Webhooks' secret format: "whsec_" and the base64 of 32 random bytes.
      const secret = `whsec_${randomBytes(32).toString('base64')}`;
      const subscription = await context.db.webhookSubscription.create({
        data: { ownerId: ownerOf(context), url, topics: [...new Set(topics)], secret },
      });
      return { subscription, secret, userErrors: [] };
    },
    deleteWebhookSubscription: async (_root, { id }, context) => {
      const { count } = isUuid(id)
        ? await context.db.webhookSubscription.deleteMany({
            where: { id: id.toLowerCase(), ownerId: ownerOf(context) },
          })
        : { count: 0 };
      return count === 1
        ? { deletedSubscriptionId: id.toLowerCase(), userErrors: [] }
        : {
            deletedSubscriptionId: null,
            userErrors: [{ code: 'NOT_FOUND', message: 'You have no webhook subscription with this id.' }],
          };
    },
  },
  Job: {
    __resolveReference: (ref, context) => ownJob(ref.id, context),
    fileSize: (job) => Number(job.fileSize),
    url: (job, _args, { loaders }) => (job.status === 'COMPLETED' ? loaders.resources.links.sign(job.id) : null),
  },
  WebhookSubscription: {
    deliveries: (subscription, args, { loaders }) =>
      loaders.deliveries(subscription.id, pageRequest(args, NEWEST_DELIVERY_FIRST)),
  },
};
