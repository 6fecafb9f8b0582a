import { rmSync } from 'node:fs';
import pg from 'pg';
import { loadConfig } from '../lib/config';
import { startEmbeddedPostgres } from '../lib/database';
import { createLogger } from '../lib/logger';
import { migrate } from '../prisma/migrate';
import { generateDataset, seed } from '../prisma/seed';
import { openQueue, queueSettings } from '../subgraphs/jobs/queue';
import {
  adminQuery,
  canConnect,
  redisAnswers,
  embeddedDataDir,
  freePort,
  LOCAL_ADMIN_URL,
  withDatabase,
} from './databases';

/** Seed scale of the fixture every test database starts from (100 users, 50 products, 2,000 reviews). */
export const FIXTURE_SCALE = 1;

/**
 * Once per run: a template database on the local PostgreSQL (or, with none reachable, an embedded one),
 * migrated through the real migration path and seeded with the fixed fixture. Each test file then
 * clones it (CREATE DATABASE ... TEMPLATE), so files never see each other's writes.
 */
export default async function globalSetup(): Promise<void> {
  let adminUrl = LOCAL_ADMIN_URL;
  if (!(await canConnect(adminUrl))) {
    const dataDir = embeddedDataDir();
    const port = await freePort();
    const server = await startEmbeddedPostgres(dataDir, port, () => {});
    adminUrl = `postgresql://postgres:postgres@127.0.0.1:${port}/postgres`;
    (globalThis as Record<string, unknown>).__embeddedPostgres = { server, dataDir };
    console.log(`\nNo PostgreSQL at ${LOCAL_ADMIN_URL}; tests run on an embedded one (port ${port}).`);
  }
  const template = `storefront_test_${Date.now()}_${process.pid}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(template)}`);
  const templateUrl = withDatabase(adminUrl, template);
  await migrate(templateUrl);
  // pg-boss's schema and the service's queues, as the jobs subgraph creates them on first start: copied with
  // the template, so each test database does not create them again.
  const queue = await openQueue({
    databaseUrl: templateUrl,
    settings: queueSettings(loadConfig({})),
    logger: createLogger('setup', 'silent'),
  });
  await queue.stop({ graceful: false, close: true });
  // A migrated but empty copy, for tests that seed their own data (the bench-scale ones).
  const emptyTemplate = `${template}_empty`;
  await adminQuery(
    adminUrl,
    `CREATE DATABASE ${pg.escapeIdentifier(emptyTemplate)} TEMPLATE ${pg.escapeIdentifier(template)}`,
  );
  await seed(templateUrl, generateDataset(FIXTURE_SCALE));
  process.env.TEST_ADMIN_URL = adminUrl;
  // Suites that need a real Redis run only when one answers (CI and this machine have one); with none
  // they are skipped, loudly, so the test command still passes on a machine with nothing installed.
  process.env.TEST_REDIS_AVAILABLE = (await redisAnswers(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'))
    ? '1'
    : '0';
  if (process.env.TEST_REDIS_AVAILABLE === '0')
    console.log('\nNo Redis at 127.0.0.1:6379 (TEST_REDIS_URL): the tests that need one are skipped.');
  process.env.TEST_TEMPLATE_DB = template;
  process.env.TEST_EMPTY_TEMPLATE_DB = emptyTemplate;
}

export async function stopEmbedded(): Promise<void> {
  const embedded = (globalThis as Record<string, unknown>).__embeddedPostgres as
    { server: { stop(): Promise<void> }; dataDir: string } | undefined;
  if (!embedded) return;
  await embedded.server.stop();
  rmSync(embedded.dataDir, { recursive: true, force: true });
}
