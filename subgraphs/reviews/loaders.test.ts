/** reviews' loaders against a real database: what each read costs in statements, with the entity cache in memory. */
import { EntityTags } from '../../lib/entity-tags';
import { createIdentitySigner } from '../../lib/identity';
import { pageRequest } from '../../lib/pagination';
import { generateDataset } from '../../prisma/seed';
import { useCountedDatabase } from '../../test/counted-database';
import { FIXTURE_SCALE } from '../../test/global-setup';
import { createLoaders, NEWEST_FIRST } from './loaders';

const dataset = generateDataset(FIXTURE_SCALE);
const product = dataset.products[0]!;
const newest = dataset.reviews
  .filter((review) => review.productId === product.id)
  .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));

const counted = useCountedDatabase();
const statements = counted.statements;

/** The loaders of one request (each request gets its own, as lib/subgraph.ts builds them). */
const request = (tags = new EntityTags(true)) =>
  createLoaders(counted.client.prisma, {
    loaderOptions: {},
    cache: counted.cache,
    signIdentity: createIdentitySigner('loaders-test-identity-secret-of-32-chars'),
    subgraphUrl: () => 'http://127.0.0.1:1/graphql',
    tags,
  });

const firstPage = pageRequest({ first: 5 }, NEWEST_FIRST);

describe('reviews loaders', () => {
  it("answer concurrent cold requests for one product's first page and stats with ONE statement, then from the cache", async () => {
    const [one, two] = [request(), request()];
    const [pageOne, statsOne, pageTwo, statsTwo] = await Promise.all([
      one.reviewPage('product', product.id, firstPage),
      one.ratingStats(product.id),
      two.reviewPage('product', product.id, firstPage),
      two.ratingStats(product.id),
    ]);
    expect(statements).toHaveLength(1);
    expect(pageOne.map((review) => review.id)).toEqual(newest.slice(0, 6).map((review) => review.id));
    expect(pageTwo).toEqual(pageOne);
    expect(statsOne).toEqual({ reviewCount: newest.length, averageRating: expect.any(Number) });
    expect(statsTwo).toEqual(statsOne);

    statements.length = 0;
    const later = request();
    expect(await later.reviewPage('product', product.id, firstPage)).toEqual(pageOne);
    expect(statements).toHaveLength(0);
  });

  it("put uncacheable slices (an author's page) in the same statement as the cache misses", async () => {
    const loaders = request();
    const author = newest[0]!.authorId;
    const authorPage = pageRequest({ first: 2 }, NEWEST_FIRST);
    await Promise.all([
      loaders.reviewPage('product', product.id, firstPage),
      loaders.reviewPage('author', author, authorPage),
    ]);
    expect(statements).toHaveLength(1);
    expect(statements[0]!.text).toMatch(/UNION ALL/);
    // Cached now: the product's first page is a hit, the author's page is read again, alone.
    statements.length = 0;
    const next = request();
    await Promise.all([
      next.reviewPage('product', product.id, firstPage),
      next.reviewPage('author', author, authorPage),
    ]);
    expect(statements).toHaveLength(1);
    expect(statements[0]!.text).not.toMatch(/UNION ALL/);
  });

  it("forget a product's stats and first pages after a write (invalidateReviews), here and for later requests", async () => {
    const tags = new EntityTags(true);
    const loaders = request(tags);
    await loaders.ratingStats(product.id);
    await loaders.reviewPage('author', newest[0]!.authorId, firstPage);
    // What the answer holds, for the response cache: the product (its stats) and the author (their page).
    expect([...tags.held].sort()).toEqual([`Product:${product.id}`, `User:${newest[0]!.authorId}`].sort());
    await loaders.invalidateReviews({ productId: product.id, authorId: newest[0]!.authorId });
    // A review changes its product's and its author's reviews, not every product's or user's list.
    expect([...tags.changed].sort()).toEqual([`Product:${product.id}`, `User:${newest[0]!.authorId}`].sort());
    statements.length = 0;
    await loaders.ratingStats(product.id);
    await request().reviewPage('product', product.id, firstPage);
    expect(statements).toHaveLength(2);
  });
});
