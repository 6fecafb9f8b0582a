import { createDatabaseClient, type DatabaseClient, type SqlStatement } from '../lib/db';
import { EntityCache } from '../lib/entity-cache';
import { createLogger } from '../lib/logger';
import { createTestDatabase } from './harness';

/**
 * For a subgraph's loader tests: a private copy of the fixture database whose statements are counted,
 * and a fresh in-memory entity cache (and an empty count) before each test.
 */
export function useCountedDatabase(): {
  readonly client: DatabaseClient;
  readonly statements: SqlStatement[];
  readonly cache: EntityCache;
} {
  let database: { url: string; drop(): Promise<void> } | undefined;
  let client: DatabaseClient | undefined;
  let cache: EntityCache | undefined;
  const statements: SqlStatement[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
    client = createDatabaseClient(database.url, {
      poolSize: 4,
      onStatement: (statement) => statements.push(statement),
    });
  });
  afterAll(async () => {
    await client?.close();
    await database?.drop();
  });
  beforeEach(() => {
    cache = new EntityCache({ namespace: `loaders-${Date.now()}`, logger: createLogger('test', 'silent') });
    statements.length = 0;
  });
  return {
    get client() {
      return client!;
    },
    statements,
    get cache() {
      return cache!;
    },
  };
}
