import { badInput } from './errors';

/** Page size when a client gives no `first`. */
export const DEFAULT_PAGE_SIZE = 20;
/** The largest `first` a client may ask for. */
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

/** A keyset position: the sort key's value and the id that breaks ties. */
export interface Seek {
  value: string | number;
  id: string;
}

export interface PageRequest {
  /** Rows the page shows. */
  size: number;
  /** Where the page starts (exclusive), or null for the first page. */
  after: Seek | null;
}

/**
 * Cursors are opaque to clients: base64url of [sortKey, value, id]. The sort key is included so a
 * cursor from one ordering cannot be replayed against another.
 */
export function encodeCursor(sortKey: string, seek: Seek): string {
  return Buffer.from(JSON.stringify([sortKey, seek.value, seek.id])).toString('base64url');
}

export function decodeCursor(cursor: string, sortKey: string, argumentName = 'after'): Seek {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = null;
  }
  if (
    !Array.isArray(decoded) ||
    decoded.length !== 3 ||
    decoded[0] !== sortKey ||
    !(typeof decoded[1] === 'string' || typeof decoded[1] === 'number') ||
    typeof decoded[2] !== 'string'
  ) {
    throw badInput(argumentName, `${argumentName} is not a cursor from this list.`);
  }
  return { value: decoded[1], id: decoded[2] };
}

/** Validates `first`/`after` into a page request. */
export function pageRequest(args: { first?: number | null; after?: string | null }, sortKey: string): PageRequest {
  const size = args.first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE) {
    throw badInput('first', `first must be between 0 and ${MAX_PAGE_SIZE}; got ${size}.`);
  }
  return { size, after: args.after == null ? null : decodeCursor(args.after, sortKey) };
}

/**
 * Builds a connection from rows fetched with `take: size + 1`: the extra row only tells whether
 * there is a next page.
 */
export function toConnection<T extends { id: string }>(
  rows: T[],
  page: PageRequest,
  sortKey: string,
  seekValue: (row: T) => string | number,
): Connection<T> {
  const visible = rows.slice(0, page.size);
  const edges = visible.map((node) => ({ cursor: encodeCursor(sortKey, { value: seekValue(node), id: node.id }), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: rows.length > page.size,
      hasPreviousPage: page.after !== null,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

/**
 * Prisma `where` and `orderBy` for a keyset page over (field, id): rows strictly after the cursor in
 * the given direction. Served by a composite index on (filter columns, field, id).
 */
export function seekQuery<F extends string>(
  field: F,
  direction: 'asc' | 'desc',
  after: Seek | null,
  toValue: (raw: string | number) => unknown = (raw) => raw,
) {
  const op = direction === 'asc' ? 'gt' : 'lt';
  const where = after
    ? { OR: [{ [field]: { [op]: toValue(after.value) } }, { [field]: toValue(after.value), id: { [op]: after.id } }] }
    : {};
  const orderBy = [{ [field]: direction }, { id: direction }] as Array<Record<F | 'id', 'asc' | 'desc'>>;
  return { where, orderBy };
}

/** DateTime sort keys travel in cursors as ISO strings. */
export const dateSeek = (raw: string | number) => new Date(raw);
