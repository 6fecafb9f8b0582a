import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getNamedType, getNullableType, isEnumType, isListType, isObjectType, type GraphQLSchema } from 'graphql';
import pg from 'pg';
import { SUPERGRAPH_PATH } from '../gateway/supergraph-file';
import { ConfigError, loadConfig } from '../lib/config';
import { generateDataset } from '../prisma/seed';
import { composeApiSchema, composeSupergraph, CompositionError } from '../scripts/compose';
import { createTestDatabase } from './harness';
import { editedSchema } from './schema-edits';

const ROOT = join(__dirname, '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');

describe("the contract (every subgraph's schema.graphql, composed into schema/supergraph.graphql)", () => {
  it('commits the supergraph that the subgraph SDLs compose to (run `npm run compose` after an SDL change)', () => {
    expect(readFileSync(SUPERGRAPH_PATH, 'utf8').trimEnd()).toBe(composeSupergraph().trimEnd());
  });

  it('prints every composition error in full', () => {
    // Two incompatible definitions of the same shared field.
    const sdls = editedSchema('reviews', (sdl) => sdl.replace('hasNextPage: Boolean!', 'hasNextPage: String!'));
    expect(() => composeSupergraph(sdls)).toThrow(CompositionError);
    expect(() => composeSupergraph(sdls)).toThrow(/\[FIELD_TYPE_MISMATCH\] .*PageInfo\.hasNextPage/);
  });
});

/**
 * Every field of the API schema that could return an unbounded list: a list anywhere but a
 * connection's `edges`, or a connection field that does not take all four Relay arguments (the
 * resolvers bound `first`/`last` to 100).
 */
function unboundedLists(schema: GraphQLSchema): string[] {
  const offenders: string[] = [];
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue;
    for (const field of Object.values(type.getFields())) {
      const name = `${type.name}.${field.name}`;
      if (isListType(getNullableType(field.type)) && !(type.name.endsWith('Connection') && field.name === 'edges')) {
        // Bounded by construction: a list of an enum's values (at most one of each), and a mutation payload's
        // userErrors (what was wrong with one input; bulk-query.ts reports at most 10).
        const item = getNamedType(field.type);
        const bounded =
          isEnumType(item) ||
          (field.name === 'userErrors' && type.name.endsWith('Payload') && item.name.endsWith('UserError'));
        if (!bounded) offenders.push(name);
      }
      if (getNamedType(field.type).name.endsWith('Connection')) {
        const args = new Set(field.args.map((arg) => arg.name));
        if (!['first', 'after', 'last', 'before'].every((arg) => args.has(arg)))
          offenders.push(`${name} (connection without first/after/last/before)`);
      }
    }
  }
  return offenders;
}

describe('the API schema', () => {
  it('has no unbounded list: every list is a Relay connection', () => {
    const schema = composeApiSchema();
    expect(
      Object.keys(schema.getTypeMap())
        .filter((name) => name.endsWith('Connection'))
        .sort(),
    ).toEqual([
      'JobConnection',
      'ProductConnection',
      'ReviewConnection',
      'UserConnection',
      'WebhookDeliveryConnection',
      'WebhookSubscriptionConnection',
    ]);
    expect(unboundedLists(schema)).toEqual([]);
  });

  it('catches a plain list or a connection missing its arguments in any subgraph', () => {
    const sdls = editedSchema('catalog', (sdl) =>
      sdl.replace(
        'type Query {',
        'type Query {\n  allProducts: [Product!]!\n  someProducts(first: Int): ProductConnection!',
      ),
    );
    expect(unboundedLists(composeApiSchema(sdls))).toEqual([
      'Query.allProducts',
      'Query.someProducts (connection without first/after/last/before)',
    ]);
  });
});

describe('migrations', () => {
  it('apply through the WebAssembly engine, are recorded like `prisma migrate deploy`, and re-applying is a no-op', async () => {
    const database = await createTestDatabase();
    const url = new URL(database.url);
    const empty = `${url.pathname.slice(1)}_empty`;
    const admin = new pg.Client({ connectionString: process.env.TEST_ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(empty)}`);
      url.pathname = `/${empty}`;
      // The real command, as `npm run db:migrate` runs it (the engine is an ES module jest cannot load).
      const run = () =>
        execFileSync(TSX, ['prisma/migrate.ts'], {
          cwd: ROOT,
          env: { ...process.env, DATABASE_URL: url.toString() },
          encoding: 'utf8',
        });
      const firstRun = run();
      // Every migration folder, in order, from the first (init) on.
      const folders = readdirSync(join(ROOT, 'prisma', 'migrations'))
        .filter((name) => /^\d{14}_/.test(name))
        .sort();
      expect(folders[0]).toMatch(/^\d{14}_init$/);
      expect(firstRun).toContain(`Applied ${folders.join(', ')}`);
      expect(run()).toMatch(/up to date; nothing applied/);
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      const { rows } = await client.query(
        'SELECT migration_name, finished_at IS NOT NULL AS finished, rolled_back_at, applied_steps_count FROM _prisma_migrations',
      );
      const tables = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
      await client.end();
      expect(rows.sort((a, b) => a.migration_name.localeCompare(b.migration_name))).toEqual(
        folders.map((folder) => ({
          migration_name: folder,
          finished: true,
          rolled_back_at: null,
          applied_steps_count: 1,
        })),
      );
      expect(tables.rows.map((r) => r.tablename)).toEqual([
        '_prisma_migrations',
        'jobs',
        'products',
        'reviews',
        'users',
        'webhook_deliveries',
        'webhook_subscriptions',
      ]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(empty)} WITH (FORCE)`);
      await admin.end();
      await database.drop();
    }
  });

  it('enforce the rating range in the database as a last line of defence', async () => {
    const database = await createTestDatabase();
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await expect(
        client.query(
          "INSERT INTO reviews (id, rating, body, author_id, product_id) VALUES (gen_random_uuid(), 6, 'x', gen_random_uuid(), gen_random_uuid())",
        ),
      ).rejects.toThrow(/reviews_rating_range/);
    } finally {
      await client.end();
      await database.drop();
    }
  });
});

describe('seed data', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    expect(generateDataset(1)).toEqual(generateDataset(1));
    expect(generateDataset(1, 7).users[0]!.id).not.toBe(generateDataset(1).users[0]!.id);
    const { users, products, reviews } = generateDataset(2);
    expect([users.length, products.length, reviews.length]).toEqual([200, 100, 4000]);
    expect(new Set(products.map((p) => p.sku)).size).toBe(products.length);
    expect(new Set(users.map((u) => u.email)).size).toBe(users.length);
  });
});

describe('configuration', () => {
  it('applies defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ GATEWAY_PORT: 4000, HOST: '127.0.0.1', SEED_SCALE: 10 });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.subgraphs).toEqual({
      accounts: { port: 4001, url: 'http://127.0.0.1:4001/graphql', timeoutMs: 5000 },
      catalog: { port: 4002, url: 'http://127.0.0.1:4002/graphql', timeoutMs: 5000 },
      reviews: { port: 4003, url: 'http://127.0.0.1:4003/graphql', timeoutMs: 5000 },
      jobs: { port: 4004, url: 'http://127.0.0.1:4004/graphql', timeoutMs: 5000 },
    });
  });

  it("reads each subgraph's settings as SUBGRAPH_<NAME>_PORT, _URL and _TIMEOUT_MS", () => {
    const config = loadConfig({
      HOST: '0.0.0.0',
      SUBGRAPH_TIMEOUT_MS: '900',
      SUBGRAPH_CATALOG_PORT: '5002',
      SUBGRAPH_REVIEWS_URL: 'http://reviews.internal/graphql',
      SUBGRAPH_ACCOUNTS_TIMEOUT_MS: '250',
    });
    expect(config.subgraphs).toEqual({
      accounts: { port: 4001, url: 'http://0.0.0.0:4001/graphql', timeoutMs: 250 },
      catalog: { port: 5002, url: 'http://0.0.0.0:5002/graphql', timeoutMs: 900 },
      reviews: { port: 4003, url: 'http://reviews.internal/graphql', timeoutMs: 900 },
      jobs: { port: 4004, url: 'http://0.0.0.0:4004/graphql', timeoutMs: 900 },
    });
    expect(() => loadConfig({ SUBGRAPH_CATALOG_PORT: 'ninety', SUBGRAPH_REVIEWS_URL: 'nowhere' })).toThrow(
      /SUBGRAPH_CATALOG_PORT[\s\S]*SUBGRAPH_REVIEWS_URL/,
    );
  });

  it('stops start-up with a message naming each bad variable', () => {
    expect(() => loadConfig({ GATEWAY_PORT: 'eighty', DATABASE_URL: 'not a url' })).toThrow(ConfigError);
    expect(() => loadConfig({ GATEWAY_PORT: 'eighty', DATABASE_URL: 'not a url' })).toThrow(
      /GATEWAY_PORT[\s\S]*DATABASE_URL|DATABASE_URL[\s\S]*GATEWAY_PORT/,
    );
    expect(() => loadConfig({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL/);
  });
});
