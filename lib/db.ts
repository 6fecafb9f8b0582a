import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client';

export type { PrismaClient };

/** One SQL statement as it was sent to PostgreSQL. */
export interface SqlStatement {
  text: string;
  values: unknown[];
  /** The read replica it was sent to (its index in `replicaUrls`); absent for the primary. */
  replica?: number;
}

export interface DatabaseClientOptions {
  /** Connections in the pool. Defaults to 10. */
  poolSize?: number;
  /**
   * Called for every statement sent on any pooled connection (Prisma's, raw ones, transactions'),
   * before it is sent. Tests and `bench:n1` count with it. Defaults to none.
   */
  onStatement?: (statement: SqlStatement) => void;
  /**
   * Longest wait for a connection: opening one, or a free one when the pool is full. Past it the
   * statement fails as the database being unavailable (isConnectionFailure) instead of hanging on a
   * server that accepts connections but never answers. Under the gateway's 5 s subgraph timeout, so the
   * subgraph's coded answer arrives before the gateway gives up. Defaults to 3000 ms.
   */
  connectTimeoutMs?: number;
  /**
   * Read replicas of `url` (streaming standbys), each with a pool of `poolSize` made as the primary's (counted,
   * watched). Only pools and clients here: which statement goes where is lib/read-replicas.ts's. Defaults to none.
   */
  replicaUrls?: readonly string[];
}

/** Told how the database answers: what lib/dependency-outage.ts logs outages from. */
export interface ConnectionWatcher {
  /** A connection could not be opened, or one in use or idle was lost (never a statement's own error). */
  unreachable(error: unknown): void;
  /** A statement was answered: the database is reachable. */
  answered(): void;
}

export interface DatabaseClient {
  /** The connection string it was made with. */
  url: string;
  prisma: PrismaClient;
  pool: pg.Pool;
  /** A client of each of `replicaUrls`, in order (lib/read-replicas.ts routes reads to them); empty without. */
  replicas: DatabaseClient[];
  /** True when PostgreSQL answers a trivial query. Used by /readyz. */
  ping(): Promise<boolean>;
  /** Tells `watcher` of every connection failure and every answered statement; returns how to stop. */
  watch(watcher: ConnectionWatcher): () => void;
  close(): Promise<void>;
}

/**
 * Settings of every session the service opens.
 * - TimeZone=UTC: Prisma's pg adapter sends DateTime parameters as UTC wall-clock text without a zone.
 * - random_page_cost=1.1: PostgreSQL's default (4) models spinning disks and makes it scan a whole
 *   table rather than fetch 100 rows by primary key; on SSDs or cached data the index is the faster
 *   choice (measured here: 0.34 ms against 1.4 ms for 100 of 10,000 users). PostgreSQL's docs suggest 1.1 for SSDs.
 * Tests that EXPLAIN statements use the same settings, so they plan as the service does.
 */
export const SESSION_OPTIONS = '-c TimeZone=UTC -c random_page_cost=1.1';

/** pg's `client.query` takes a config object or (text, values?, callback?). */
function describeStatement(args: unknown[]): SqlStatement {
  const [first, second] = args;
  if (typeof first === 'string') return { text: first, values: Array.isArray(second) ? second : [] };
  const config = first as { text?: string; values?: unknown[] };
  return { text: config.text ?? '', values: config.values ?? (Array.isArray(second) ? second : []) };
}

/** The statement /readyz sends; the statement log leaves it out. */
const READINESS_PING = 'SELECT 1 AS ready';

/** Node's socket errors that mean the server cannot be reached or the connection broke. */
const SOCKET_FAILURES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * SQLSTATEs of a server that is going away or refusing sessions (PostgreSQL Appendix A): class 08
 * (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting
 * up, recovering), 53300 too many connections.
 */
const CONNECTION_SQLSTATES = /^(08...|57P0[123]|53300)$/;

/** Whether a SQLSTATE means the server is going away or refusing sessions (see CONNECTION_SQLSTATES). */
export const isConnectionSqlState = (sqlState: string): boolean => CONNECTION_SQLSTATES.test(sqlState);

/** A PostgreSQL error's SQLSTATE (pg's DatabaseError carries it as `code`, next to a `severity`). */
function sqlStateOf(error: { code?: unknown; severity?: unknown }): string | undefined {
  return typeof error.code === 'string' && typeof error.severity === 'string' ? error.code : undefined;
}

/** Set on errors pg raised while opening a connection or for a connection it lost (see markFailure). */
const CONNECTION_FAILURE = Symbol('database connection failure');

/**
 * Whether a pg error (as pg raises it, before Prisma wraps it) means the database could not be reached,
 * judged by type and code, never by message: a socket error code, a connection SQLSTATE, or an error
 * this module saw pg raise for a connection it could not open or lost (a connect timeout, "terminated
 * unexpectedly": pg gives those no code). A statement's own failure (a constraint, a syntax error) is not one.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (CONNECTION_FAILURE in error) return true;
  const { code } = error as { code?: unknown };
  const sqlState = sqlStateOf(error);
  if (sqlState !== undefined) return isConnectionSqlState(sqlState);
  return typeof code === 'string' && SOCKET_FAILURES.has(code);
}

/**
 * Marks what pg raised for a connection as a connection failure: anything without a SQLSTATE (socket
 * errors, timeouts, a connection closed under it), or a connection SQLSTATE. A refused login (28P01)
 * or a missing database (3D000) is a configuration error, not an outage, and stays unmarked.
 */
function markFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (sqlStateOf(error) !== undefined && !isConnectionFailure(error)) return false;
  if (!(CONNECTION_FAILURE in error)) Object.defineProperty(error, CONNECTION_FAILURE, { value: true });
  return true;
}

type ConnectCallback = (
  error: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void,
) => void;

/** The pool under each Prisma client createDatabaseClient made (see queryRows). */
const POOLS = new WeakMap<object, pg.Pool>();

/**
 * A client view that chooses its database per statement (lib/read-replicas.ts's per-request view) answers
 * queryRows itself under this key.
 */
export const ROUTED_QUERY = Symbol('queryRows of a routed client view');

/** What a routed client view puts under ROUTED_QUERY. */
export type RoutedQuery = (text: string, values: unknown[]) => Promise<pg.QueryResult>;

/**
 * The rows of one raw statement (`$1`… parameters) on the pool under `prisma`, a client (or a narrowed view of
 * one, as a subgraph's `db`) that createDatabaseClient made. Rows come as pg parses them: uuid and text as
 * strings, int2/int4/float8 as numbers, timestamptz as a Date, each column under its name in the statement
 * (alias it to the model's field name). For hot reads of a few columns by key, where Prisma's own work
 * (building its query, then converting each row) costs more than the statement: the same pool, so the
 * statement is counted, traced and watched like Prisma's, and one statement stays one. Prisma still owns
 * the schema and migrations, and every other read and write. A read: with read replicas, a request's view
 * (lib/read-replicas.ts) sends it where that request reads.
 */
export async function queryRows<R>(prisma: object, text: string, values: unknown[]): Promise<R[]> {
  const routed = (prisma as { [ROUTED_QUERY]?: RoutedQuery })[ROUTED_QUERY];
  if (routed) return (await routed(text, values)).rows as R[];
  const pool = POOLS.get(prisma);
  if (!pool) throw new Error('queryRows: not a Prisma client of createDatabaseClient');
  return (await pool.query(text, values)).rows as R[];
}

/**
 * Statements of the read routing's own bookkeeping (lib/read-replicas.ts), left out of the statement log
 * like the readiness ping: the primary's WAL position after a write, and how far a standby has replayed.
 */
const WRITE_LSN = 'SELECT pg_current_wal_lsn()::text AS lsn';
const REPLAY_LSN = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';
const UNCOUNTED = new Set([READINESS_PING, WRITE_LSN, REPLAY_LSN]);

/** The primary's current WAL position (`X/Y`): asked after a write commits, a position that includes it. */
export async function currentWalLsn(database: DatabaseClient): Promise<string> {
  return (await database.pool.query<{ lsn: string }>(WRITE_LSN)).rows[0]!.lsn;
}

/** How far a standby has replayed the primary's WAL (`X/Y`); null from a server that is not a standby. */
export async function replayedWalLsn(replica: DatabaseClient): Promise<string | null> {
  return (await replica.pool.query<{ lsn: string | null }>(REPLAY_LSN)).rows[0]!.lsn;
}

/**
 * A Prisma client over our own pg pool (driver adapter, no Rust engine), and one over each read replica's.
 * Owning the pools lets readiness checks and shutdown use them directly, and lets us see every statement
 * that reaches PostgreSQL.
 */
export function createDatabaseClient(url: string, options: DatabaseClientOptions = {}): DatabaseClient {
  const replicas = (options.replicaUrls ?? []).map((replicaUrl, index) => createClient(replicaUrl, options, index));
  const primary = createClient(url, options, undefined, replicas);
  return {
    ...primary,
    close: async () => {
      await Promise.all([primary.close(), ...replicas.map((replica) => replica.close())]);
    },
  };
}

function createClient(
  url: string,
  options: DatabaseClientOptions,
  replica: number | undefined,
  replicas: DatabaseClient[] = [],
): DatabaseClient {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    options: SESSION_OPTIONS,
  });
  const watchers = new Set<ConnectionWatcher>();
  const unreachable = (error: unknown) => {
    // Errors while the pool is being closed are this process shutting down, not the database.
    if (pool.ending || !markFailure(error)) return;
    for (const watcher of watchers) watcher.unreachable(error);
  };
  const answered = () => {
    for (const watcher of watchers) watcher.answered();
  };
  // An idle client that dies (server restart) must not crash the process; the pool replaces it.
  pool.on('error', unreachable);
  // Every connection Prisma, raw queries and transactions use is checked out here (pool.query too).
  const connect = pool.connect.bind(pool) as (callback: ConnectCallback) => void;
  pool.connect = ((callback?: ConnectCallback) => {
    const checkout = (done: ConnectCallback) =>
      connect((error, client, release) => {
        if (error) unreachable(error);
        done(error, client, release);
      });
    if (callback) return checkout(callback);
    return new Promise<pg.PoolClient>((resolve, reject) =>
      checkout((error, client) => (error ? reject(error) : resolve(client!))),
    );
  }) as typeof pool.connect;
  const { onStatement } = options;
  // Every pool.query() and every checked-out client's query() goes through the client's query().
  pool.on('connect', (client) => {
    // What pg emits on a client is its connection failing; the queries it was running get the same error.
    client.on('error', unreachable);
    const send = client.query.bind(client) as (...args: unknown[]) => unknown;
    const outcome = (error: unknown) => {
      if (!error) answered();
      else if (isConnectionFailure(error)) unreachable(error);
    };
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const statement = describeStatement(args);
      if (replica !== undefined) statement.replica = replica;
      // Readiness checks (asked every second by every gateway) and routing bookkeeping are not the work being counted.
      if (!UNCOUNTED.has(statement.text)) onStatement?.(statement);
      const callback = args.at(-1);
      if (typeof callback === 'function') {
        args[args.length - 1] = (error: unknown, result: unknown) => {
          outcome(error);
          callback(error, result);
        };
        return send(...args);
      }
      const result = send(...args);
      if (result instanceof Promise) void result.then(() => outcome(null), outcome);
      return result;
    };
  });
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  POOLS.set(prisma, pool);
  return {
    url,
    prisma,
    pool,
    replicas,
    ping: async () => {
      try {
        await pool.query(READINESS_PING);
        return true;
      } catch {
        return false;
      }
    },
    watch: (watcher) => {
      watchers.add(watcher);
      return () => void watchers.delete(watcher);
    },
    close: async () => {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
