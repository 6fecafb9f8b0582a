/**
 * The gateway's whole-response cache through the whole service, on the real PostgreSQL and Redis: public
 * pages are answered without any subgraph, private ones never are; per-caller parts stay per caller; a
 * write is seen at once through every gateway sharing Redis; a write racing a fill keeps the old answer out.
 */
import type { RunningGateway } from '../gateway/server';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';
import { describeWithRedis } from './redis-available';
import { slowProxy } from './service';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const dataset = generateDataset(FIXTURE_SCALE);
const suite = useHarness({ env: { REDIS_URL, RESPONSE_CACHE: 'on' } });
const none = { accounts: 0, catalog: 0, reviews: 0, jobs: 0 };

const PRODUCT =
  'query ($id: ID!) { product(id: $id) { id title reviewCount reviews(first: 3) { edges { node { id } } } } }';
const RENAME = 'mutation ($id: ID!, $title: String!) { updateProduct(id: $id, input: { title: $title }) { title } }';
const writer = { as: dataset.users[0]!.id, scopes: ['catalog:write'] };

describeWithRedis('response cache', () => {
  let other: RunningGateway;
  beforeAll(async () => {
    // A second gateway over the same subgraphs and Redis, as a second replica would be.
    other = await suite.harness.startGateway();
  });
  afterAll(() => other?.stop());
  const viaOther = (query: string, variables: Record<string, unknown>, options: { as?: string } = {}) =>
    suite.harness.query(query, variables, { ...options, url: other.url });

  it('answers a repeated public page from the cache: no subgraph runs, the caller is still charged and told its own budget', async () => {
    const { harness } = suite;
    const [alice, bob] = [dataset.users[1]!.id, dataset.users[2]!.id];
    harness.sql.reset();
    const cold = await harness.query(STOREFRONT_PAGE, { first: 20 }, { as: alice });
    expect(cold.errors).toBeUndefined();
    expect(harness.sql.counts()).toEqual({ accounts: 1, catalog: 1, reviews: 1, jobs: 0 });
    harness.sql.reset();
    const again = await harness.query(STOREFRONT_PAGE, { first: 20 }, { as: alice });
    const forBob = await viaOther(STOREFRONT_PAGE, { first: 20 }, { as: bob });
    // The other gateway found it in Redis: still no statement anywhere.
    expect(harness.sql.counts()).toEqual(none);
    expect(again.data).toEqual(cold.data);
    expect(forBob.data).toEqual(cold.data);
    // Per caller: each is charged what the page costs, from their own budget.
    expect(again.extensions!.cost.requested).toBe(cold.extensions!.cost.requested);
    expect(again.extensions!.cost.remaining).toBe(cold.extensions!.cost.remaining - cold.extensions!.cost.requested);
    expect(forBob.extensions!.cost.remaining).toBe(cold.extensions!.cost.remaining);
    expect(again.headers.get('x-ratelimit-remaining')).toBe(String(again.extensions!.cost.remaining));
    // Still public and cacheable downstream, as a shared cache says it: the same Cache-Control, and its Age.
    expect(again.headers.get('cache-control')).toBe(cold.headers.get('cache-control'));
    expect(cold.headers.get('cache-control')).toMatch(/^max-age=\d+, public$/);
    expect(Number(again.headers.get('age'))).toBeGreaterThanOrEqual(0);
    expect(cold.headers.get('age')).toBeNull();
    // Other variables are another answer.
    harness.sql.reset();
    const smaller = await harness.query(STOREFRONT_PAGE, { first: 3 });
    expect(smaller.data!.products.edges).toHaveLength(3);
    expect(harness.sql.counts().catalog).toBe(1);
  });

  it('never stores an answer that is not public, nor one with errors', async () => {
    const { harness } = suite;
    const me = dataset.users[3]!.id;
    harness.sql.reset();
    for (let i = 0; i < 2; i++) {
      const answer = await harness.query('{ me { id displayName } }', {}, { as: me });
      expect(answer.data!.me.id).toBe(me);
    }
    expect(harness.sql.counts().accounts).toBe(2);
    // Public data beside an error: partial answers run every time.
    harness.sql.reset();
    for (let i = 0; i < 2; i++) {
      const answer = await harness.query(
        '{ products(first: 2) { edges { node { id } } } product(id: "not-a-uuid") { id } }',
      );
      expect(answer.data!.products.edges).toHaveLength(2);
      expect(answer.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    expect(harness.sql.counts().catalog).toBe(2);
  });

  it('a write through one gateway is seen at once through the other, which had the old answer in memory', async () => {
    const { harness } = suite;
    const product = dataset.products[20]!;
    for (const read of [await harness.query(PRODUCT, { id: product.id }), await viaOther(PRODUCT, { id: product.id })])
      expect(read.data!.product.title).toBe(product.title);
    harness.sql.reset();
    await viaOther(PRODUCT, { id: product.id });
    expect(harness.sql.counts()).toEqual(none);

    const renamed = await harness.query(RENAME, { id: product.id, title: 'Renamed through A' }, writer);
    expect(renamed.errors).toBeUndefined();
    expect((await viaOther(PRODUCT, { id: product.id })).data!.product.title).toBe('Renamed through A');

    // A review written through B changes the product's count and first page as seen through A.
    const before = (await harness.query(PRODUCT, { id: product.id })).data!.product;
    const created = await viaOther(
      'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
      { input: { productId: product.id, rating: 4, body: 'Seen at once.' } },
      { as: dataset.users[4]!.id },
    );
    expect(created.errors).toBeUndefined();
    const after = (await harness.query(PRODUCT, { id: product.id })).data!.product;
    expect(after.reviewCount).toBe(before.reviewCount + 1);
    expect(after.reviews.edges[0].node.id).toBe(created.data!.createReview.id);

    // Only what the write held is dropped: another product's answer is still a hit.
    const unrelated = dataset.products[21]!;
    await harness.query(PRODUCT, { id: unrelated.id });
    await harness.query(RENAME, { id: product.id, title: 'Renamed again' }, writer);
    harness.sql.reset();
    await harness.query(PRODUCT, { id: unrelated.id });
    expect(harness.sql.counts()).toEqual(none);
  });

  it('a write racing a fill: the racing read does not store its old answer', async () => {
    const { harness } = suite;
    const product = dataset.products[22]!;
    // A gateway whose reviews calls take 400 ms: its fill reads catalog, then waits on reviews.
    const proxy = await slowProxy(() => harness.subgraphs.reviews.url, 400);
    const slow = await harness.startGateway({
      subgraphUrls: {
        accounts: harness.subgraphs.accounts.url,
        catalog: harness.subgraphs.catalog.url,
        reviews: proxy.url,
      },
    });
    try {
      const read = (url = slow.url) => harness.query(PRODUCT, { id: product.id }, { url });
      const racing = read();
      // The fill has its catalog answer (the old title) and waits for reviews; the write lands meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const renamed = await harness.query(RENAME, { id: product.id, title: 'Renamed mid-fill' }, writer);
      expect(renamed.errors).toBeUndefined();
      const raced = await racing;
      expect(raced.errors).toBeUndefined();
      expect(raced.data!.product.title).toBe(product.title);
      // Had the racing read stored its answer, these would be hits with the old title.
      expect((await read()).data!.product.title).toBe('Renamed mid-fill');
      expect((await read(other.url)).data!.product.title).toBe('Renamed mid-fill');
    } finally {
      await slow.stop();
      await proxy.close();
    }
  });

  it('many concurrent misses of one page cost one execution', async () => {
    const { harness } = suite;
    harness.sql.reset();
    const pages = await Promise.all(
      Array.from({ length: 8 }, (_, i) => harness.query(STOREFRONT_PAGE, { first: 7 }, { as: dataset.users[i]!.id })),
    );
    for (const page of pages) expect(page.data).toEqual(pages[0]!.data);
    // The product list is read once (it is in no entity cache); reviews and authors at most once (earlier
    // tests may have left them in the entity cache).
    const counts = harness.sql.counts();
    expect(counts.catalog).toBe(1);
    expect(counts.reviews).toBeLessThanOrEqual(1);
    expect(counts.accounts).toBeLessThanOrEqual(1);
  });
});
