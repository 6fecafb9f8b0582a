import { readFileSync, statSync } from 'node:fs';
import type { GraphQLSchema } from 'graphql';
import type { PgBoss } from 'pg-boss';
import { SUPERGRAPH_PATH } from '../../gateway/supergraph-file';
import { createResultLinks, type ResultLinks } from '../../lib/result-links';
import { loadSecrets } from '../../lib/secrets';
import type { OpenOptions, SubgraphResources } from '../../lib/subgraph-definition';
import { apiSchemaOf } from './bulk-query';
import { openQueue, queueSettings } from './queue';
import { parseAllowedHosts, type AllowedHosts } from './webhook-urls';

/** What the jobs subgraph holds for the life of its process. */
export interface JobsResources {
  /** pg-boss, started without supervision: the subgraph only queues (workers run jobs). */
  boss: PgBoss;
  links: ResultLinks;
  /** The API schema clients see, from the supergraph the gateway serves (read again when the file changes). */
  apiSchema(): GraphQLSchema;
  /** The first page size a bulk query's job tries (halved while the gateway finds a page too costly). */
  pageSize: number;
  /** WEBHOOK_ALLOWED_HOSTS: where subscriptions may point. */
  allowedHosts: AllowedHosts;
}

/** Opens the queue (creating pg-boss's schema and this service's queues if this process is first). */
export async function openJobsResources({
  config,
  database,
  logger,
}: OpenOptions): Promise<SubgraphResources<JobsResources>> {
  const boss = await openQueue({ databaseUrl: database.url, settings: queueSettings(config), logger });
  let cached: { mtimeMs: number; schema: GraphQLSchema } | undefined;
  return {
    resources: {
      boss,
      links: createResultLinks(loadSecrets(config).identitySecret, { ttlSeconds: config.JOBS_LINK_TTL_SECONDS }),
      apiSchema() {
        const { mtimeMs } = statSync(SUPERGRAPH_PATH);
        if (cached?.mtimeMs !== mtimeMs)
          cached = { mtimeMs, schema: apiSchemaOf(readFileSync(SUPERGRAPH_PATH, 'utf8')) };
        return cached.schema;
      },
      pageSize: 100,
      allowedHosts: parseAllowedHosts(config.WEBHOOK_ALLOWED_HOSTS),
    },
    close: () => boss.stop({ graceful: false, close: true }),
  };
}
