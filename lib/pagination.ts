import { badInput } from './errors';

/** Page size when a client gives neither `first` nor `last`. */
export const DEFAULT_PAGE_SIZE = 20;
/** The largest `first` or `last` a client may ask for. */
export const MAX_PAGE_SIZE = 100;

export interface PageInfo {
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

export interface Connection<T> {
  edges: Array<{ cursor: string; node: T }>;
  pageInfo: PageInfo;
}

/** The Relay connection arguments every list field takes. */
export interface PageArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

/** A keyset position: the sort key's value and the id that breaks ties. */
export interface Seek {
  value: string | number;
  id: string;
}

/**
 * How a list is ordered: by one column, then by id so the order is total and every cursor is
 * unique. The key names list and order inside cursors.
 */
export interface Ordering<F extends string = string> {
  key: string;
  field: F;
  direction: Direction;
  /** `date`: the column is a DateTime (an ISO string in cursors); `int`: a whole number. */
  kind: 'date' | 'int';
}

export type Direction = 'asc' | 'desc';

/** A validated page: which window of the ordered list, and from which end to take `size` rows. */
export interface PageRequest {
  /** Rows the page shows. */
  size: number;
  /** True for `last`: rows are fetched from the far end (reverse order) and flipped back. */
  backward: boolean;
  /** Only rows strictly after this position, or null. */
  after: Seek | null;
  /** Only rows strictly before this position, or null. */
  before: Seek | null;
}

/**
 * Cursors are opaque to clients: base64url of [key, value, id]. The key names the list (its parent
 * and filter included) and its order, so a cursor from one list or ordering cannot be replayed
 * against another.
 */
export function encodeCursor(ordering: Ordering, seek: Seek): string {
  return Buffer.from(JSON.stringify([ordering.key, seek.value, seek.id])).toString('base64url');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** Sort columns of kind `int` are PostgreSQL int4. */
const INT4 = { min: -(2 ** 31), max: 2 ** 31 - 1 };

/**
 * Exactly the values encodeCursor writes, so nothing a client forges can fail later in the
 * database (a year 0 date, an int beyond int4) and turn into an internal error.
 */
function isSortValue(kind: Ordering['kind'], value: unknown): boolean {
  if (kind === 'int') return Number.isInteger(value) && (value as number) >= INT4.min && (value as number) <= INT4.max;
  if (typeof value !== 'string' || !ISO_INSTANT.test(value)) return false;
  const date = new Date(value);
  return !Number.isNaN(date.getTime()) && date.toISOString() === value && date.getUTCFullYear() >= 1;
}

export function decodeCursor(cursor: string, ordering: Ordering, argumentName = 'after'): Seek {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = null;
  }
  const valid =
    Array.isArray(decoded) &&
    decoded.length === 3 &&
    decoded[0] === ordering.key &&
    isSortValue(ordering.kind, decoded[1]) &&
    typeof decoded[2] === 'string' &&
    UUID.test(decoded[2]);
  if (!valid) throw badInput(argumentName, `${argumentName} is not a cursor from this list.`);
  return {
    value: (decoded as [string, string | number, string])[1],
    id: (decoded as [string, string | number, string])[2],
  };
}

function pageSize(value: number, argumentName: 'first' | 'last'): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_PAGE_SIZE) {
    throw badInput(argumentName, `${argumentName} must be between 0 and ${MAX_PAGE_SIZE}; got ${value}.`);
  }
  return value;
}

/** Validates Relay arguments into a page request; each mistake is a BAD_USER_INPUT naming the argument. */
export function pageRequest(args: PageArgs, ordering: Ordering): PageRequest {
  if (args.first != null && args.last != null) throw badInput('last', 'Pass first or last, not both.');
  const backward = args.last != null;
  return {
    size: backward ? pageSize(args.last!, 'last') : pageSize(args.first ?? DEFAULT_PAGE_SIZE, 'first'),
    backward,
    after: args.after == null ? null : decodeCursor(args.after, ordering, 'after'),
    before: args.before == null ? null : decodeCursor(args.before, ordering, 'before'),
  };
}

/** A stable string for a page request, so loads asking for the same page can be batched together. */
export function pageKey(page: PageRequest): string {
  return JSON.stringify([page.size, page.backward, page.after, page.before]);
}

/**
 * An edge of a connection. Its cursor is encoded only when read, that is when a client selects it
 * (graphql-js reads `edge.cursor` for the `cursor` field and nothing else does): most pages ask for
 * nodes and `pageInfo.endCursor` only, and a cursor (an ISO date, JSON and base64) per row they never
 * see is most of what building a connection costs. A class, so the getter is shared, not a closure per edge.
 */
class Edge<T extends { id: string }> {
  constructor(
    readonly node: T,
    private readonly ordering: Ordering<keyof T & string>,
  ) {}

  get cursor(): string {
    return cursorOf(this.ordering, this.node);
  }
}

/** PageInfo whose start and end cursors, like edges' (Edge), are encoded only when read. */
class LazyPageInfo<T extends { id: string }> implements PageInfo {
  constructor(
    readonly hasNextPage: boolean,
    readonly hasPreviousPage: boolean,
    private readonly first: T | undefined,
    private readonly last: T | undefined,
    private readonly ordering: Ordering<keyof T & string>,
  ) {}

  get startCursor(): string | null {
    return this.first === undefined ? null : cursorOf(this.ordering, this.first);
  }

  get endCursor(): string | null {
    return this.last === undefined ? null : cursorOf(this.ordering, this.last);
  }
}

/** The cursor of a row: its sort value and id. */
function cursorOf<T extends { id: string }>(ordering: Ordering<keyof T & string>, node: T): string {
  return encodeCursor(ordering, { value: seekValue(ordering, node[ordering.field]), id: node.id });
}

/**
 * Builds a connection from rows fetched with `limit size + 1` in fetch order (reversed for `last`):
 * the extra row only tells whether the list goes on past the page. Cursors are encoded lazily (Edge).
 */
export function toConnection<T extends { id: string }>(
  rows: T[],
  page: PageRequest,
  ordering: Ordering<keyof T & string>,
): Connection<T> {
  const hasMore = rows.length > page.size;
  const count = Math.min(rows.length, page.size);
  // The visible rows in list order, in one pass: fetch order, or its reverse for `last`.
  const edges = new Array<Edge<T>>(count);
  for (let index = 0; index < count; index += 1)
    edges[index] = new Edge(rows[page.backward ? count - 1 - index : index]!, ordering);
  return {
    edges,
    // Relay lets a server answer the far side of a cursor cheaply: a client that holds a cursor got it
    // from a row on that side, so it says true rather than spend a query to confirm rows remain there.
    pageInfo: new LazyPageInfo(
      page.backward ? page.before !== null : hasMore || page.before !== null,
      page.backward ? hasMore || page.after !== null : page.after !== null,
      edges[0]?.node,
      edges[count - 1]?.node,
      ordering,
    ),
  };
}

const flip = (direction: Direction): Direction => (direction === 'asc' ? 'desc' : 'asc');

/** The order rows are fetched in: the list's own, or reversed when taking the last rows. */
export function fetchDirection(ordering: Ordering, page: PageRequest): Direction {
  return page.backward ? flip(ordering.direction) : ordering.direction;
}

/** A row's sort value as a cursor holds it. */
function seekValue(ordering: Ordering, value: unknown): string | number {
  return ordering.kind === 'date' ? (value as Date).toISOString() : (value as number);
}

/** A cursor's sort value as the database compares it. */
export function sortValue(ordering: Ordering, seek: Seek): Date | number {
  return ordering.kind === 'date' ? new Date(seek.value) : Number(seek.value);
}

/** The same ordering for one list of it: cursors then name that list (a parent, a filter) as well. */
export function forList<F extends string>(
  ordering: Ordering<F>,
  ...list: Array<string | null | undefined>
): Ordering<F> {
  return { ...ordering, key: [ordering.key, ...list.map((part) => part ?? '')].join(':') };
}

/**
 * Prisma `where` and `orderBy` for a keyset page over (field, id), never OFFSET. A bound is written
 * `field <= v AND (field < v OR id < id0)` rather than a bare OR: the first conjunct lets PostgreSQL
 * start the index scan at the cursor, the second only filters rows that tie on `field`. Served by a
 * composite index on (filter columns, field, id).
 */
export function seekQuery<F extends string>(ordering: Ordering<F>, page: PageRequest) {
  const { field } = ordering;
  const bound = (seek: Seek, beyond: 'gt' | 'lt') => {
    const value = sortValue(ordering, seek);
    return {
      [field]: { [`${beyond}e`]: value },
      OR: [{ [field]: { [beyond]: value } }, { id: { [beyond]: seek.id } }],
    };
  };
  const forward = ordering.direction === 'asc' ? 'gt' : 'lt';
  const backward = ordering.direction === 'asc' ? 'lt' : 'gt';
  const bounds = [
    ...(page.after ? [bound(page.after, forward)] : []),
    ...(page.before ? [bound(page.before, backward)] : []),
  ];
  const direction = fetchDirection(ordering, page);
  return {
    where: bounds.length ? { AND: bounds } : {},
    orderBy: [{ [field]: direction }, { id: direction }] as Array<Record<F | 'id', Direction>>,
    take: page.size + 1,
  };
}
