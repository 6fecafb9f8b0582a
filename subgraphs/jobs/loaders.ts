import type { Job, WebhookDelivery } from '../../generated/prisma/client';
import type { PrismaClient } from '../../lib/db';
import { keyedLoader } from '../../lib/loaders';
import { seekQuery, toConnection, type Connection, type Ordering, type PageRequest } from '../../lib/pagination';
import type { LoaderDependencies } from '../../lib/subgraph-definition';
import type { JobsResources } from './resources';

/** The jobs subgraph sees only the tables it owns (and transactions over them: a job is queued in one). */
export type JobsDb = Pick<PrismaClient, 'job' | 'webhookSubscription' | 'webhookDelivery' | '$transaction'>;

export const NEWEST_DELIVERY_FIRST: Ordering<'createdAt'> = {
  key: 'webhook_deliveries:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};

/** Created once per request. Jobs are the caller's own: resolvers check the owner of what a loader returns. */
export function createLoaders(
  db: JobsDb,
  { loaderOptions: options, resources }: Pick<LoaderDependencies, 'loaderOptions'> & { resources: JobsResources },
) {
  return {
    jobById: keyedLoader(
      (ids: string[]) => db.job.findMany({ where: { id: { in: ids } } }),
      (job: Job) => job.id,
      options,
    ),
    /**
     * A page of a subscription's deliveries, newest first: one statement per subscription listed (a caller has a
     * few subscriptions, and lists them to inspect deliveries, not on a hot path).
     */
    async deliveries(subscriptionId: string, page: PageRequest): Promise<Connection<WebhookDelivery>> {
      const query = seekQuery(NEWEST_DELIVERY_FIRST, page);
      const rows = await db.webhookDelivery.findMany({ ...query, where: { ...query.where, subscriptionId } });
      return toConnection(rows, page, NEWEST_DELIVERY_FIRST);
    },
    /** The queue, result links and API schema of this process. */
    resources,
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
