/**
 * The entity cache through the whole service: reads stop reaching PostgreSQL, and a write is visible
 * at once, also through other replicas that share the real Redis.
 */
import { createClient } from 'redis';
import type { RunningGateway } from '../gateway/server';
import type { RunningServer } from '../lib/http-server';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';
import { describeWithRedis } from './redis-available';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const dataset = generateDataset(FIXTURE_SCALE);
const suite = useHarness({ env: process.env.TEST_REDIS_AVAILABLE === '0' ? {} : { REDIS_URL } });

const PRODUCT =
  'query ($id: ID!) { product(id: $id) { id title price { amountCents currency } status createdAt updatedAt } }';
const RATINGS =
  'query ($id: ID!) { product(id: $id) { id reviewCount averageRating reviews(first: 5) { edges { node { id } } } } }';

describeWithRedis('reads', () => {
  it('a second identical storefront page sends no SQL for cached entities (only the product list runs)', async () => {
    suite.harness.sql.reset();
    const cold = await suite.harness.query(STOREFRONT_PAGE, { first: 20 });
    expect(cold.errors).toBeUndefined();
    expect(suite.harness.sql.counts()).toEqual({ catalog: 1, reviews: 1, accounts: 1, jobs: 0 });
    suite.harness.sql.reset();
    const warm = await suite.harness.query(STOREFRONT_PAGE, { first: 20 });
    expect(suite.harness.sql.counts()).toEqual({ catalog: 1, reviews: 0, accounts: 0, jobs: 0 });
    expect(warm.data).toEqual(cold.data);
  });

  it('serves a product from the cache exactly as the database gave it', async () => {
    const product = dataset.products[7]!;
    suite.harness.sql.reset();
    const first = await suite.harness.query(PRODUCT, { id: product.id });
    const second = await suite.harness.query(PRODUCT, { id: product.id });
    expect(suite.harness.sql.counts().catalog).toBe(1);
    expect(second.data).toEqual(first.data);
    expect(second.data!.product).toEqual({
      id: product.id,
      title: product.title,
      price: { amountCents: product.priceCents, currency: 'USD' },
      status: product.status,
      createdAt: product.createdAt.toISOString(),
      updatedAt: product.updatedAt.toISOString(),
    });
  });

  it('never caches a user’s email or `me`', async () => {
    // A user who is no author on the storefront page read above, so nothing else cached their row.
    const newest = <T extends { createdAt: Date; id: string }>(rows: T[]) =>
      [...rows].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
    const pageProducts = new Set(
      newest(dataset.products)
        .slice(0, 20)
        .map((p) => p.id),
    );
    const shown = new Set(
      [...pageProducts].flatMap((productId) =>
        newest(dataset.reviews.filter((r) => r.productId === productId))
          .slice(0, 5)
          .map((r) => r.authorId),
      ),
    );
    const user = dataset.users.find((u) => !shown.has(u.id))!;
    const { data } = await suite.harness.query('{ me { id displayName email } }', {}, { as: user.id });
    expect(data!.me).toEqual({ id: user.id, displayName: user.displayName, email: user.email });
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    try {
      const namespace = new URL(suite.databaseUrl).pathname.slice(1);
      const keys = await redis.keys(`*${namespace}*`);
      expect(keys.length).toBeGreaterThan(0);
      const values = await Promise.all(keys.map((key) => redis.get(key)));
      expect(values.filter((value) => value?.includes('@example.com'))).toEqual([]);
      // Other users' public rows are cached (the storefront's authors); `me` read past the cache.
      expect(keys.some((key) => key.includes('accounts:User:v1:'))).toBe(true);
      expect(keys.some((key) => key.includes(`accounts:User:v1:${user.id}`))).toBe(false);
    } finally {
      await redis.close();
    }
  });
});

describeWithRedis('writes, with a second replica of each subgraph sharing Redis', () => {
  let replicas: Array<RunningServer>;
  let viaReplicas: RunningGateway;

  beforeAll(async () => {
    const [accounts, catalog, reviews] = await Promise.all([
      suite.harness.startReplica('accounts'),
      suite.harness.startReplica('catalog'),
      suite.harness.startReplica('reviews'),
    ]);
    replicas = [accounts, catalog, reviews];
    viaReplicas = await suite.harness.startGateway({
      subgraphUrls: { accounts: accounts.url, catalog: catalog.url, reviews: reviews.url },
    });
  });
  afterAll(async () => {
    await viaReplicas?.stop();
    await Promise.all(replicas?.map((replica) => replica.stop()) ?? []);
  });
  const viaReplica = (query: string, variables: Record<string, unknown>, as?: string) =>
    suite.harness.query(query, variables, { url: viaReplicas.url, as });

  it('updateProduct on one replica is seen at once through the other', async () => {
    const product = dataset.products[11]!;
    // Both paths read the product; after the first read it comes from the shared cache.
    expect((await suite.harness.query(PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
    suite.harness.sql.reset();
    expect((await viaReplica(PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
    expect((await suite.harness.query(PRODUCT, { id: product.id })).data!.product.title).toBe(product.title);
    expect(suite.harness.sql.counts().catalog).toBe(0);
    const updated = await suite.harness.query(
      'mutation ($id: ID!) { updateProduct(id: $id, input: { title: "Renamed kettle", price: { amountCents: 1234 } }) { title } }',
      { id: product.id },
      { as: dataset.users[0]!.id, scopes: ['catalog:write'] },
    );
    expect(updated.errors).toBeUndefined();
    for (const read of [
      await viaReplica(PRODUCT, { id: product.id }),
      await suite.harness.query(PRODUCT, { id: product.id }),
    ]) {
      expect(read.data!.product).toMatchObject({
        title: 'Renamed kettle',
        price: { amountCents: 1234, currency: 'USD' },
      });
    }
  });

  it('createReview and deleteReview change the rating and first page at once, on every replica', async () => {
    const product = dataset.products[12]!;
    const author = dataset.users[5]!;
    const before = await viaReplica(RATINGS, { id: product.id });
    await suite.harness.query(RATINGS, { id: product.id });
    const { reviewCount, averageRating } = before.data!.product;

    const created = await suite.harness.query(
      'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
      { input: { productId: product.id, rating: 5, body: 'Cached nowhere.' } },
      { as: author.id },
    );
    const reviewId = created.data!.createReview.id;
    for (const read of [
      await viaReplica(RATINGS, { id: product.id }),
      await suite.harness.query(RATINGS, { id: product.id }),
    ]) {
      expect(read.data!.product.reviewCount).toBe(reviewCount + 1);
      expect(read.data!.product.averageRating).toBeCloseTo((averageRating * reviewCount + 5) / (reviewCount + 1), 10);
      expect(read.data!.product.reviews.edges[0].node.id).toBe(reviewId);
    }
    // The review itself, once read (and cached), disappears with it.
    expect((await viaReplica('query ($id: ID!) { review(id: $id) { id } }', { id: reviewId })).data!.review).toEqual({
      id: reviewId,
    });

    const deleted = await viaReplica(
      'mutation ($id: ID!) { deleteReview(id: $id) { deletedReviewId } }',
      { id: reviewId },
      author.id,
    );
    expect(deleted.errors).toBeUndefined();
    for (const read of [
      await suite.harness.query(RATINGS, { id: product.id }),
      await viaReplica(RATINGS, { id: product.id }),
    ]) {
      expect(read.data!.product).toEqual(before.data!.product);
    }
    expect(
      (await suite.harness.query('query ($id: ID!) { review(id: $id) { id } }', { id: reviewId })).data!.review,
    ).toBeNull();
  });
});
