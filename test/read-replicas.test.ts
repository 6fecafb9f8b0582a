/**
 * Read replicas (DATABASE_REPLICA_URLS) against a real streaming standby this file makes (test/replica.ts):
 * reads go to the standby and writes to the primary, counted per pool; with the standby's replay paused, a
 * caller's own write is visible to them at once while others read the standby's past; a standby that stops
 * sends reads to the primary without an error, and gets them back when it returns.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RunningGateway } from '../gateway/server';
import type { SqlStatement } from '../lib/db';
import { createIdentitySigner, IDENTITY_HEADER } from '../lib/identity';
import { createLogger } from '../lib/logger';
import { createReadAfterSigner, READ_AFTER_HEADER } from '../lib/read-replicas';
import { connectRedis } from '../lib/redis';
import { generateDataset, seed } from '../prisma/seed';
import type { SubgraphName } from '../subgraphs/registry';
import { FIXTURE_SCALE } from './global-setup';
import { requestBody, startSubgraphsAndGateway, TEST_IDENTITY_SECRET, type Harness } from './harness';
import { replicationUnavailable, startReplicatedPostgres, type ReplicatedPostgres } from './replica';

const unavailable = replicationUnavailable();
if (unavailable) console.warn(`Read replica tests skipped: ${unavailable}.`);
const describeWithReplication = unavailable ? describe.skip : describe;
const REDIS_AVAILABLE = process.env.TEST_REDIS_AVAILABLE !== '0';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const dataset = generateDataset(FIXTURE_SCALE);
const product = dataset.products[7]!;
const writer = { as: dataset.users[0]!.id, scopes: ['catalog:write'] };
const reader = { as: dataset.users[1]!.id };

const PRODUCTS = '{ products(first: 50) { edges { node { id title } } } }';
const PRODUCT = 'query ($id: ID!) { product(id: $id) { id title } }';
const RENAME = 'mutation ($id: ID!, $title: String!) { updateProduct(id: $id, input: { title: $title }) { title } }';

/** The title `product` has in a products page. */
const titleIn = (page: { data?: any; errors?: unknown }) => {
  expect(page.errors).toBeUndefined();
  return (page.data.products.edges as Array<{ node: { id: string; title: string } }>).find(
    ({ node }) => node.id === product.id,
  )?.node.title;
};

describeWithReplication('read replicas', () => {
  let cluster: ReplicatedPostgres;
  let harness: Harness;
  /** Statements of one subgraph since the last reset, by where they went. */
  const sent = (name: SubgraphName) => {
    const statements: SqlStatement[] = harness.sql.statements[name];
    return {
      primary: statements.filter((statement) => statement.replica === undefined).length,
      standby: statements.filter((statement) => statement.replica === 0).length,
    };
  };

  /** The catalog's db_read_replica_up for its one replica. */
  const replicaUp = async () => {
    const metrics = await (await fetch(harness.subgraphs.catalog.url.replace('/graphql', '/metrics'))).text();
    return /^db_read_replica_up\{[^}]*replica="0"[^}]*\} (\d)$/m.exec(metrics)?.[1];
  };

  beforeAll(async () => {
    cluster = await startReplicatedPostgres();
    // Its own name: the harness keys Redis by it, so concurrent runs share nothing.
    const database = `storefront_replicas_${randomBytes(4).toString('hex')}`;
    await cluster.onPrimary(`CREATE DATABASE ${database}`);
    // The real command, as `npm run db:migrate` runs it (the engine is an ES module jest cannot load).
    await promisify(execFile)(join(__dirname, '..', 'node_modules', '.bin', 'tsx'), ['prisma/migrate.ts'], {
      cwd: join(__dirname, '..'),
      env: { ...process.env, DATABASE_URL: cluster.primaryUrl(database) },
    });
    await seed(cluster.primaryUrl(database), dataset);
    await cluster.caughtUp();
    harness = await startSubgraphsAndGateway(cluster.primaryUrl(database), {
      env: { DATABASE_REPLICA_URLS: cluster.standbyUrl(database) },
    });
  }, 120_000);

  afterAll(async () => {
    await harness?.stop();
    await cluster?.stop();
  });

  it('reads go to the standby and nothing of them to the primary', async () => {
    harness.sql.reset();
    const page = await harness.query(PRODUCTS);
    expect(titleIn(page)).toBe(product.title);
    const users = await harness.query('{ users(first: 5) { edges { node { id } } } }');
    expect(users.errors).toBeUndefined();
    expect(sent('catalog')).toEqual({ primary: 0, standby: 1 });
    expect(sent('accounts')).toEqual({ primary: 0, standby: 1 });
  });

  it('what fills the entity cache is read from the primary: a standby behind a write would store the old row', async () => {
    harness.sql.reset();
    const first = await harness.query(PRODUCT, { id: product.id });
    expect(first.data?.product.title).toBe(product.title);
    expect(sent('catalog')).toEqual({ primary: 1, standby: 0 });
    harness.sql.reset();
    await harness.query(PRODUCT, { id: product.id });
    expect(sent('catalog')).toEqual({ primary: 0, standby: 0 });
  });

  describe('while the standby lags (its replay paused)', () => {
    beforeEach(async () => {
      await cluster.caughtUp();
      await cluster.pauseReplay();
    });
    afterEach(() => cluster.resumeReplay());

    it('a write goes to the primary; its caller reads it at once, everyone else reads the standby until it replays', async () => {
      harness.sql.reset();
      const renamed = await harness.query(RENAME, { id: product.id, title: 'Renamed while lagging' }, writer);
      expect(renamed.errors).toBeUndefined();
      expect(sent('catalog').standby).toBe(0);
      expect(sent('catalog').primary).toBeGreaterThan(0);

      harness.sql.reset();
      expect(titleIn(await harness.query(PRODUCTS, {}, writer))).toBe('Renamed while lagging');
      expect(sent('catalog')).toEqual({ primary: 1, standby: 0 });

      harness.sql.reset();
      expect(titleIn(await harness.query(PRODUCTS, {}, reader))).toBe(product.title);
      expect(titleIn(await harness.query(PRODUCTS))).toBe(product.title);
      expect(sent('catalog')).toEqual({ primary: 0, standby: 2 });

      await cluster.resumeReplay();
      await cluster.caughtUp();
      harness.sql.reset();
      expect(titleIn(await harness.query(PRODUCTS, {}, reader))).toBe('Renamed while lagging');
      // The standby now has the writer's write: they read it there again.
      expect(titleIn(await harness.query(PRODUCTS, {}, writer))).toBe('Renamed while lagging');
      expect(sent('catalog')).toEqual({ primary: 0, standby: 2 });
    });

    it('a product created a moment ago: its creator reads it, and a review of it (checked in the catalog) is accepted', async () => {
      const created = await harness.query(
        'mutation ($input: CreateProductInput!) { createProduct(input: $input) { id } }',
        {
          input: { sku: 'REPLICA-LAG-1', title: 'Created while lagging', price: { amountCents: 100, currency: 'EUR' } },
        },
        writer,
      );
      expect(created.errors).toBeUndefined();
      const id = created.data!.createProduct.id as string;
      const read = await harness.query(PRODUCT, { id }, writer);
      expect(read.data?.product).toEqual({ id, title: 'Created while lagging' });
      const others = await harness.query(PRODUCTS, {}, reader);
      expect(others.data?.products.edges.map(({ node }: { node: { id: string } }) => node.id)).not.toContain(id);
      // The reviews subgraph asks the catalog whether the product exists before writing: on the catalog's primary.
      const review = await harness.query(
        'mutation ($input: CreateReviewInput!) { createReview(input: $input) { rating } }',
        { input: { productId: id, rating: 5, body: 'Reviewed before the standby has it' } },
        reader,
      );
      expect(review.errors).toBeUndefined();
    });

    (REDIS_AVAILABLE ? it : it.skip)(
      'through two gateways sharing Redis: a write through one is read by its caller through the other',
      async () => {
        const logger = createLogger('test', 'silent');
        const redis = [connectRedis(REDIS_URL, logger), connectRedis(REDIS_URL, logger)];
        const gateways: RunningGateway[] = [];
        try {
          for (const connection of redis) {
            await connection.ready();
            gateways.push(await harness.startGateway({ redis: connection }));
          }
          const [one, other] = gateways as [RunningGateway, RunningGateway];
          const renamed = await harness.query(
            RENAME,
            { id: product.id, title: 'Renamed via one' },
            { ...writer, url: one.url },
          );
          expect(renamed.errors).toBeUndefined();
          expect(titleIn(await harness.query(PRODUCTS, {}, { ...writer, url: other.url }))).toBe('Renamed via one');
          expect(titleIn(await harness.query(PRODUCTS, {}, { ...reader, url: other.url }))).not.toBe('Renamed via one');
        } finally {
          await Promise.all(gateways.map((gateway) => gateway.stop()));
          await Promise.all(redis.map((connection) => connection.close()));
        }
      },
    );

    it('a gateway filling its response cache reads the primary: what it stores is served to everyone', async () => {
      const cached = await harness.startGateway({ responseCache: {} });
      try {
        await harness.query(RENAME, { id: product.id, title: 'Renamed before a fill' }, writer);
        harness.sql.reset();
        expect(titleIn(await harness.query(PRODUCTS, {}, { url: cached.url }))).toBe('Renamed before a fill');
        expect(sent('catalog')).toEqual({ primary: 1, standby: 0 });
        harness.sql.reset();
        expect(titleIn(await harness.query(PRODUCTS, {}, { url: cached.url }))).toBe('Renamed before a fill');
        expect(sent('catalog')).toEqual({ primary: 0, standby: 0 });
      } finally {
        await cached.stop();
      }
    });
  });

  it('only the gateway can send a request to the primary: a forged or replayed read-after header is ignored', async () => {
    await cluster.caughtUp();
    const catalog = harness.subgraphs.catalog.url;
    const signIdentity = createIdentitySigner(TEST_IDENTITY_SECRET);
    const signReadAfter = createReadAfterSigner(TEST_IDENTITY_SECRET);
    const body = requestBody(PRODUCTS);
    const identity = await signIdentity({ callerId: null, scopes: [] }, body);
    const elsewhere = await signIdentity({ callerId: null, scopes: [] }, requestBody('{ __typename }'));
    const send = async (readAfter: string) => {
      harness.sql.reset();
      const response = await fetch(catalog, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [IDENTITY_HEADER]: identity, [READ_AFTER_HEADER]: readAfter },
        body,
      });
      expect(response.status).toBe(200);
      return sent('catalog');
    };
    expect(await send(signReadAfter('primary', identity))).toEqual({ primary: 1, standby: 0 });
    expect(await send('primary~forged')).toEqual({ primary: 0, standby: 1 });
    expect(await send(signReadAfter('primary', elsewhere))).toEqual({ primary: 0, standby: 1 });
    // A client's own header never reaches a subgraph.
    harness.sql.reset();
    await harness.query(PRODUCTS, {}, { headers: { [READ_AFTER_HEADER]: signReadAfter('primary', identity) } });
    expect(sent('catalog')).toEqual({ primary: 0, standby: 1 });
  });

  it('a standby that stops sends reads to the primary without an error, and gets them back when it returns', async () => {
    await cluster.stopStandby();
    try {
      harness.sql.reset();
      for (let round = 0; round < 3; round += 1) {
        expect(titleIn(await harness.query(PRODUCTS, {}, reader))).toBeDefined();
        const users = await harness.query('{ users(first: 5) { edges { node { id } } } }');
        expect(users.errors).toBeUndefined();
      }
      expect(sent('catalog')).toEqual({ primary: 3, standby: 0 });
      expect(sent('accounts')).toEqual({ primary: 3, standby: 0 });
      // What an alert watches (lib/subgraph.ts).
      expect(await replicaUp()).toBe('0');
    } finally {
      await cluster.startStandby();
    }
    // Probed every second in the background: reads return to it once it answers.
    const deadline = Date.now() + 10_000;
    for (;;) {
      harness.sql.reset();
      expect(titleIn(await harness.query(PRODUCTS))).toBeDefined();
      if (sent('catalog').standby === 1) break;
      if (Date.now() > deadline) throw new Error('reads did not return to the standby');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await replicaUp()).toBe('1');
  });
});
