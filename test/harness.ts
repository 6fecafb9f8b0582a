import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startSubgraphsAndGateway, type Harness, type HarnessOptions } from '../lib/harness';
import { generateDataset, seed } from '../prisma/seed';
import { adminQuery, withDatabase } from './databases';

export * from '../lib/harness';

/**
 * A private database for one test file: a copy of the seeded fixture, or, given `scale`, a migrated
 * empty copy seeded with `generateDataset(scale)` (e.g. BENCH_SCALE).
 */
export async function createTestDatabase(
  options: { scale?: number } = {},
): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env.TEST_ADMIN_URL;
  const fixture = process.env.TEST_TEMPLATE_DB;
  const empty = process.env.TEST_EMPTY_TEMPLATE_DB;
  if (!adminUrl || !fixture || !empty)
    throw new Error('Run through jest: test/global-setup.ts prepares the template databases.');
  // Named after the fixture template so global teardown drops it with the rest.
  const name = `${fixture}_${randomBytes(4).toString('hex')}`;
  const template = options.scale === undefined ? fixture : empty;
  await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)}`);
  if (options.scale !== undefined) await seed(withDatabase(adminUrl, name), generateDataset(options.scale));
  return {
    url: withDatabase(adminUrl, name),
    drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  };
}

/**
 * For a test file: before its tests, a private database (the fixture, or seeded at `scale`) and the
 * servers on it; after them, both gone. Read `suite.harness` inside tests, not at load time.
 */
export function useHarness(options: { scale?: number } & HarnessOptions = {}): {
  readonly harness: Harness;
  readonly databaseUrl: string;
} {
  let database: { url: string; drop(): Promise<void> } | undefined;
  let harness: Harness | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(options);
    harness = await startSubgraphsAndGateway(database.url, options);
  }, 120_000);
  afterAll(async () => {
    await harness?.stop();
    await database?.drop();
  });
  return {
    get harness() {
      if (!harness) throw new Error('The harness starts in beforeAll; use it inside a test or hook.');
      return harness;
    },
    get databaseUrl() {
      return database!.url;
    },
  };
}
