import { GraphQLError } from 'graphql';
import {
  decodeCursor,
  encodeCursor,
  forList,
  MAX_PAGE_SIZE,
  pageRequest,
  seekQuery,
  toConnection,
  type Ordering,
} from './pagination';

const BY_DATE: Ordering<'createdAt'> = {
  key: 'things:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};
const BY_PRICE: Ordering<'price'> = { key: 'things:price:asc', field: 'price', direction: 'asc', kind: 'int' };
const ID = '0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
const raw = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function badInputArgument(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(GraphQLError);
    expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
    return (error as GraphQLError).extensions.argumentName as string;
  }
  throw new Error('expected a BAD_USER_INPUT error');
}

describe('cursors', () => {
  it('round-trip the sort value and id', () => {
    const cursor = encodeCursor(BY_PRICE, { value: 1250, id: ID });
    expect(decodeCursor(cursor, BY_PRICE)).toEqual({ value: 1250, id: ID });
  });

  it.each([
    ['not base64 JSON', '%%%'],
    ['JSON of the wrong shape', raw({ value: 1 })],
    ['another list or order', encodeCursor(BY_DATE, { value: '2026-01-01T00:00:00.000Z', id: ID })],
    ['a value of the wrong kind', raw([BY_PRICE.key, '2026-01-01T00:00:00.000Z', ID])],
    ['a non-integer price', raw([BY_PRICE.key, 12.5, ID])],
    ['an id that is not a UUID', raw([BY_PRICE.key, 100, "1' OR '1'='1"])],
    ['an integer beyond int4', raw([BY_PRICE.key, 2 ** 31, ID])],
    ['a huge integer', raw([BY_PRICE.key, 1e300, ID])],
    ['a cursor of the same order on another list', encodeCursor(forList(BY_PRICE, 'ACTIVE'), { value: 100, id: ID })],
  ])('reject %s with BAD_USER_INPUT naming the argument', (_name, cursor) => {
    expect(badInputArgument(() => decodeCursor(cursor, BY_PRICE, 'before'))).toBe('before');
  });

  it.each([
    'yesterday',
    '1',
    'Tue, 01 Jan 2030 00:00:00 GMT',
    '0000-01-01T00:00:00.000Z',
    '2026-02-30T00:00:00.000Z',
    '2026-01-01T00:00:00Z',
    '+275760-09-13T00:00:00.000Z',
  ])('reject %j as a date cursor value: only instants encodeCursor could have written', (value) => {
    expect(badInputArgument(() => decodeCursor(raw([BY_DATE.key, value, ID]), BY_DATE))).toBe('after');
  });

  it('accept the instants encodeCursor writes', () => {
    const value = new Date('0001-01-01T00:00:00.000Z').toISOString();
    expect(decodeCursor(encodeCursor(BY_DATE, { value, id: ID }), BY_DATE)).toEqual({ value, id: ID });
  });
});

describe('page requests', () => {
  it('default to the first 20 rows', () => {
    expect(pageRequest({}, BY_DATE)).toEqual({ size: 20, backward: false, after: null, before: null });
  });

  it.each([
    [{ first: MAX_PAGE_SIZE + 1 }, 'first'],
    [{ first: -1 }, 'first'],
    [{ last: MAX_PAGE_SIZE + 1 }, 'last'],
    [{ last: -5 }, 'last'],
    [{ first: 5, last: 5 }, 'last'],
  ])('reject %j naming %s', (args, argumentName) => {
    expect(badInputArgument(() => pageRequest(args, BY_DATE))).toBe(argumentName);
  });

  it('take the last rows by fetching in reverse and flipping back', () => {
    const page = pageRequest({ last: 2 }, BY_PRICE);
    expect(seekQuery(BY_PRICE, page).orderBy).toEqual([{ price: 'desc' }, { id: 'desc' }]);
    const rows = [
      { id: 'c', price: 30 },
      { id: 'b', price: 20 },
      { id: 'a', price: 10 },
    ];
    const connection = toConnection(rows, page, BY_PRICE);
    expect(connection.edges.map((edge) => edge.node.id)).toEqual(['b', 'c']);
    expect(connection.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
  });

  it('seek from a cursor with an index-friendly bound, never an offset', () => {
    const after = { value: 500, id: ID };
    const query = seekQuery(BY_PRICE, { size: 10, backward: false, after, before: null });
    expect(query).toEqual({
      where: { AND: [{ price: { gte: 500 }, OR: [{ price: { gt: 500 } }, { id: { gt: ID } }] }] },
      orderBy: [{ price: 'asc' }, { id: 'asc' }],
      take: 11,
    });
  });
});
