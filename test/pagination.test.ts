/** Relay connections through the gateway: both directions, both ends, bad arguments, and walks under writes. */
import { randomUUID } from 'node:crypto';
import { generateDataset } from '../prisma/seed';
import { PRODUCT_REVIEWS, PRODUCTS_BY_DATE, PRODUCTS_BY_PRICE, USERS_LIST } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const byPrice = <T extends { priceCents: number; id: string }>(rows: T[]) =>
  [...rows].sort((a, b) => a.priceCents - b.priceCents || (a.id < b.id ? -1 : 1));
const newestFirst = <T extends { createdAt: Date; id: string }>(rows: T[]) =>
  [...rows].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));

const suite = useHarness();

interface Page {
  ids: string[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

/** Runs a connection query and returns its node ids and pageInfo; `pick` finds the connection in data. */
async function page(query: string, variables: Record<string, unknown>, pick: (data: any) => any): Promise<Page> {
  const { data, errors } = await suite.harness.query(query, variables);
  expect(errors).toBeUndefined();
  const connection = pick(data);
  return { ids: connection.edges.map((edge: any) => edge.node.id), pageInfo: connection.pageInfo };
}

const productsByPrice = (variables: Record<string, unknown>) =>
  page(PRODUCTS_BY_PRICE, { direction: 'ASC', ...variables }, (d) => d.products);

describe('walking a connection', () => {
  it('forward with first/after and backward with last/before give the same rows, with pageInfo right at both ends', async () => {
    const expected = byPrice(dataset.products).map((p) => p.id);
    const forward: Page[] = [];
    let after: string | null = null;
    do {
      forward.push(await productsByPrice({ first: 15, after }));
      after = forward.at(-1)!.pageInfo.endCursor;
    } while (forward.at(-1)!.pageInfo.hasNextPage);
    expect(forward.flatMap((p) => p.ids)).toEqual(expected);
    // 50 products in pages of 15: only the first page has nothing before it, only the last nothing after.
    expect(forward.map((p) => [p.pageInfo.hasPreviousPage, p.pageInfo.hasNextPage])).toEqual([
      [false, true],
      [true, true],
      [true, true],
      [true, false],
    ]);

    const backward: Page[] = [];
    let before: string | null = null;
    do {
      backward.push(await productsByPrice({ last: 15, before }));
      before = backward.at(-1)!.pageInfo.startCursor;
    } while (backward.at(-1)!.pageInfo.hasPreviousPage);
    // Fetched from the end: the first page fetched has nothing after it, the last nothing before it.
    expect(backward.map((p) => [p.pageInfo.hasPreviousPage, p.pageInfo.hasNextPage])).toEqual([
      [true, false],
      [true, true],
      [true, true],
      [false, true],
    ]);
    expect(backward.reverse().flatMap((p) => p.ids)).toEqual(expected);
  });

  it('returns a window between two cursors', async () => {
    const all = byPrice(dataset.products).map((p) => p.id);
    const first = await productsByPrice({ first: 20 });
    const { data } = await suite.harness.query(PRODUCTS_BY_PRICE, { direction: 'ASC', first: 20 });
    const cursors = data!.products.edges.map((edge: any) => edge.cursor);
    const window = await productsByPrice({ first: 50, after: cursors[4], before: cursors[12] });
    expect(window.ids).toEqual(all.slice(5, 12));
    expect(window.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
    expect(first.ids).toEqual(all.slice(0, 20));
  });

  it("walks a product's reviews backwards as well", async () => {
    const product = dataset.products[0]!;
    const expected = newestFirst(dataset.reviews.filter((r) => r.productId === product.id)).map((r) => r.id);
    const pages: Page[] = [];
    let before: string | null = null;
    do {
      pages.push(await page(PRODUCT_REVIEWS, { id: product.id, last: 4, before }, (d) => d.product.reviews));
      before = pages.at(-1)!.pageInfo.startCursor;
    } while (pages.at(-1)!.pageInfo.hasPreviousPage);
    expect(pages.reverse().flatMap((p) => p.ids)).toEqual(expected);
  });

  it('returns an empty page, not an error, for first: 0', async () => {
    const empty = await page(USERS_LIST, { first: 0 }, (d) => d.users);
    expect(empty).toEqual({
      ids: [],
      pageInfo: { hasNextPage: true, hasPreviousPage: false, startCursor: null, endCursor: null },
    });
  });
});

describe('bad connection arguments', () => {
  const tamper = (cursor: string, change: (parts: unknown[]) => unknown[]) =>
    Buffer.from(JSON.stringify(change(JSON.parse(Buffer.from(cursor, 'base64url').toString())))).toString('base64url');

  it.each([
    ['first above the maximum', { first: 101 }, 'first'],
    ['a negative first', { first: -1 }, 'first'],
    ['last above the maximum', { last: 1000 }, 'last'],
    ['both first and last', { first: 5, last: 5 }, 'last'],
    ['a cursor that is not one', { after: 'bm90IGEgY3Vyc29y' }, 'after'],
  ])('rejects %s with BAD_USER_INPUT naming the argument', async (_name, variables, argumentName) => {
    const { status, data, errors } = await suite.harness.query(PRODUCTS_BY_PRICE, { direction: 'ASC', ...variables });
    expect(status).toBe(200);
    expect(data).toBeNull();
    expect(errors).toHaveLength(1);
    expect(errors![0]!.extensions).toEqual({ code: 'BAD_USER_INPUT', argumentName, serviceName: 'catalog' });
  });

  it('rejects a cursor from another list, another order or filter, or with a tampered value or id', async () => {
    const userCursor = (await suite.harness.query(USERS_LIST, { first: 1 })).data!.users.pageInfo.endCursor as string;
    const { data } = await suite.harness.query(PRODUCTS_BY_PRICE, { direction: 'ASC', first: 1 });
    const priceCursor = data!.products.pageInfo.endCursor as string;
    const cases = [
      { direction: 'ASC', after: userCursor },
      { direction: 'DESC', after: priceCursor },
      { direction: 'ASC', status: 'ACTIVE', after: priceCursor },
      { direction: 'ASC', before: tamper(priceCursor, ([key, value]) => [key, value, "x' OR 1=1 --"]) },
      { direction: 'ASC', after: tamper(priceCursor, ([key, , id]) => [key, 'cheap', id]) },
      // Values that would pass a lax check and then fail in PostgreSQL (an int4 column).
      { direction: 'ASC', after: tamper(priceCursor, ([key, , id]) => [key, 2 ** 40, id]) },
    ];
    for (const variables of cases) {
      const { errors } = await suite.harness.query(PRODUCTS_BY_PRICE, variables);
      expect(errors?.map((e) => e.extensions)).toEqual([
        { code: 'BAD_USER_INPUT', argumentName: 'after' in variables ? 'after' : 'before', serviceName: 'catalog' },
      ]);
    }
  });

  it("rejects one product's review cursor on another product, and a date no encoder writes", async () => {
    const [first, second] = dataset.products;
    const reviews = await page(PRODUCT_REVIEWS, { id: first!.id, first: 2 }, (d) => d.product.reviews);
    const foreign = await suite.harness.query(PRODUCT_REVIEWS, {
      id: second!.id,
      first: 2,
      after: reviews.pageInfo.endCursor,
    });
    expect(foreign.data!.product).toMatchObject({ id: second!.id, reviews: null });
    expect(foreign.errors?.map((e) => e.extensions)).toEqual([
      { code: 'BAD_USER_INPUT', argumentName: 'after', serviceName: 'reviews' },
    ]);

    const users = await page(USERS_LIST, { first: 1 }, (d) => d.users);
    const yearZero = tamper(users.pageInfo.endCursor!, ([key, , id]) => [key, '0000-01-01T00:00:00.000Z', id]);
    const { errors } = await suite.harness.query(USERS_LIST, { first: 1, after: yearZero });
    expect(errors?.map((e) => e.extensions)).toEqual([
      { code: 'BAD_USER_INPUT', argumentName: 'after', serviceName: 'accounts' },
    ]);
  });

  it('rejects a bad nested page on its own field and still renders the rest', async () => {
    const product = dataset.products[0]!;
    const { data, errors } = await suite.harness.query(PRODUCT_REVIEWS, { id: product.id, first: 500 });
    expect(data!.product).toMatchObject({ id: product.id, reviews: null });
    expect(errors).toHaveLength(1);
    expect(errors![0]).toMatchObject({
      path: ['product', 'reviews'],
      extensions: { code: 'BAD_USER_INPUT', argumentName: 'first' },
    });
  });
});

interface WalkOptions<T extends { id: string }> {
  /** The rows in list order before the walk starts. */
  initial: T[];
  fetchPage(after: string | null): Promise<Page>;
  /**
   * Inserts rows around the cursor's row: ties on its sort value with ids just below and just above
   * its id (one lands before the cursor, one after, whatever the direction), and rows far on each side.
   */
  insertAround(cursorRowId: string, step: number): Promise<void>;
  remove(id: string): Promise<void>;
}

/**
 * Pages forward through a list; between pages, inserts rows around the cursor and deletes the
 * cursor's own row, one row shown earlier and one not reached yet. Returns what was seen and what
 * was deleted when.
 */
async function walkWhileWriting<T extends { id: string }>({
  initial,
  fetchPage,
  insertAround,
  remove,
}: WalkOptions<T>) {
  const seen: string[] = [];
  const deletedUnseen = new Set<string>();
  const deletedSeen = new Set<string>();
  const deleted = (id: string) => deletedUnseen.has(id) || deletedSeen.has(id);
  let after: string | null = null;
  let steps = 0;
  for (;;) {
    const current = await fetchPage(after);
    seen.push(...current.ids);
    if (!current.pageInfo.hasNextPage) break;
    after = current.pageInfo.endCursor;
    steps += 1;
    const cursorRow = current.ids.at(-1)!;
    await insertAround(cursorRow, steps);
    const ahead = initial.find((row) => !seen.includes(row.id) && !deleted(row.id) && row.id !== initial.at(-1)!.id);
    const behind = initial.find((row) => seen.includes(row.id) && !deleted(row.id) && row.id !== cursorRow);
    if (ahead) {
      await remove(ahead.id);
      deletedUnseen.add(ahead.id);
    }
    // The next page starts from a cursor whose row no longer exists: keyset pages need no row, only its values.
    for (const id of [cursorRow, behind?.id]) {
      if (!id || deleted(id)) continue;
      await remove(id);
      deletedSeen.add(id);
    }
  }
  return { seen, steps, deletedUnseen, deletedSeen };
}

/** A UUID sorting just below or above `id` (the last 12 hex digits changed by one). */
function neighbourId(id: string, offset: -1 | 1): string {
  const tail = BigInt(`0x${id.slice(24)}`) + BigInt(offset);
  return `${id.slice(0, 24)}${tail.toString(16).padStart(12, '0')}`;
}

function expectNoDuplicateAndNoSkip(
  initial: Array<{ id: string }>,
  walk: Awaited<ReturnType<typeof walkWhileWriting>>,
) {
  expect(walk.steps).toBeGreaterThan(3);
  expect(walk.deletedUnseen.size).toBeGreaterThan(2);
  expect(walk.deletedSeen.size).toBeGreaterThan(2);
  expect(new Set(walk.seen).size).toBe(walk.seen.length);
  // Every row that existed for the whole walk was seen; a row deleted before it was reached was not.
  const survivors = initial.filter((row) => !walk.deletedUnseen.has(row.id) && !walk.deletedSeen.has(row.id));
  expect(survivors.filter((row) => !walk.seen.includes(row.id))).toEqual([]);
  expect([...walk.deletedUnseen].filter((id) => walk.seen.includes(id))).toEqual([]);
}

describe('walking while rows are inserted and deleted', () => {
  it('never repeats a product and never skips one that existed for the whole walk (ties on price included)', async () => {
    const { prisma } = suite.harness.database;
    // The list as it stands (earlier tests in this file write too), not as seeded.
    const initial = byPrice(await prisma.product.findMany({ select: { id: true, priceCents: true } }));
    const priceOf = new Map(initial.map((p) => [p.id, p.priceCents]));
    const walk = await walkWhileWriting({
      initial,
      fetchPage: (after) => productsByPrice({ first: 7, after }),
      insertAround: async (cursorRowId, step) => {
        const cursorPrice = priceOf.get(cursorRowId)!;
        const rows = [
          { id: neighbourId(cursorRowId, -1), priceCents: cursorPrice },
          { id: neighbourId(cursorRowId, 1), priceCents: cursorPrice },
          { id: randomUUID(), priceCents: 100 },
          { id: randomUUID(), priceCents: 60_000 },
        ];
        for (const row of rows) {
          await prisma.product.create({
            data: {
              ...row,
              sku: `WALK-${step}-${randomUUID().slice(0, 8)}`,
              title: 'Inserted mid-walk',
              currency: 'USD',
            },
          });
          priceOf.set(row.id, row.priceCents);
        }
      },
      remove: async (id) => {
        await prisma.product.delete({ where: { id } });
      },
    });
    expectNoDuplicateAndNoSkip(initial, walk);
  });

  it("does the same for a product's reviews, with ties on createdAt", async () => {
    const { prisma } = suite.harness.database;
    const product = dataset.products[1]!;
    const initial = newestFirst(
      await prisma.review.findMany({ where: { productId: product.id }, select: { id: true, createdAt: true } }),
    );
    const createdAtOf = new Map(initial.map((r) => [r.id, r.createdAt]));
    const walk = await walkWhileWriting({
      initial,
      fetchPage: (after) => page(PRODUCT_REVIEWS, { id: product.id, first: 6, after }, (d) => d.product.reviews),
      insertAround: async (cursorRowId) => {
        const cursorCreatedAt = createdAtOf.get(cursorRowId)!;
        const rows = [
          { id: neighbourId(cursorRowId, -1), createdAt: cursorCreatedAt },
          { id: neighbourId(cursorRowId, 1), createdAt: cursorCreatedAt },
          { id: randomUUID(), createdAt: new Date() },
          { id: randomUUID(), createdAt: new Date(0) },
        ];
        for (const row of rows) {
          await prisma.review.create({
            data: { ...row, productId: product.id, authorId: dataset.users[0]!.id, rating: 3, body: 'Mid-walk.' },
          });
          createdAtOf.set(row.id, row.createdAt);
        }
      },
      remove: async (id) => {
        await prisma.review.delete({ where: { id } });
      },
    });
    expectNoDuplicateAndNoSkip(initial, walk);
  });

  it('does the same for active products newest first and for users', async () => {
    const { prisma } = suite.harness.database;
    const active = newestFirst(
      await prisma.product.findMany({ where: { status: 'ACTIVE' }, select: { id: true, createdAt: true } }),
    );
    const productCreatedAt = new Map(active.map((p) => [p.id, p.createdAt]));
    const products = await walkWhileWriting({
      initial: active,
      fetchPage: (after) => page(PRODUCTS_BY_DATE, { status: 'ACTIVE', first: 6, after }, (d) => d.products),
      insertAround: async (cursorRowId, step) => {
        const createdAt = productCreatedAt.get(cursorRowId)!;
        for (const [index, id] of [neighbourId(cursorRowId, -1), neighbourId(cursorRowId, 1)].entries()) {
          await prisma.product.create({
            data: {
              id,
              createdAt,
              status: 'ACTIVE',
              sku: `DATE-${step}-${index}`,
              title: 'Tie',
              priceCents: 900,
              currency: 'USD',
            },
          });
          productCreatedAt.set(id, createdAt);
        }
      },
      remove: async (id) => {
        await prisma.product.delete({ where: { id } });
      },
    });
    expectNoDuplicateAndNoSkip(active, products);

    const initialUsers = newestFirst(await prisma.user.findMany({ select: { id: true, createdAt: true } }));
    const userCreatedAt = new Map(initialUsers.map((u) => [u.id, u.createdAt]));
    const users = await walkWhileWriting({
      initial: initialUsers,
      fetchPage: (after) => page(USERS_LIST, { first: 15, after }, (d) => d.users),
      insertAround: async (cursorRowId) => {
        const createdAt = userCreatedAt.get(cursorRowId)!;
        for (const id of [neighbourId(cursorRowId, -1), neighbourId(cursorRowId, 1)]) {
          await prisma.user.create({ data: { id, createdAt, displayName: 'Tie', email: `${id}@example.com` } });
          userCreatedAt.set(id, createdAt);
        }
      },
      remove: async (id) => {
        await prisma.user.delete({ where: { id } });
      },
    });
    expectNoDuplicateAndNoSkip(initialUsers, users);
  });
});
