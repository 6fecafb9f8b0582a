import type { GraphQLError } from 'graphql';
import { Prisma } from '../generated/prisma/client';
import { isConnectionFailure, isConnectionSqlState, type DatabaseClient } from './db';
import { dependencyUnavailable } from './errors';

/**
 * Prisma's codes for a database it could not reach or lost: P1001 cannot reach the server, P1002 timed out
 * reaching it, P1008 operation timed out (a socket timeout), P1017 the server closed the connection,
 * P2037 too many connections. Refused credentials (P1000, P1010) and a missing database (P1003) are
 * configuration errors and stay unexpected.
 */
const UNREACHABLE_PRISMA_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2037']);

/** The same failures as @prisma/adapter-pg names them in a DriverAdapterError's `cause.kind`. */
const UNREACHABLE_ADAPTER_KINDS = new Set([
  'DatabaseNotReachable',
  'SocketTimeout',
  'ConnectionClosed',
  'TooManyConnections',
]);

/** What a DriverAdapterError carries: `kind`, and for PostgreSQL's own errors the SQLSTATE as `originalCode`. */
interface AdapterCause {
  kind?: unknown;
  originalCode?: unknown;
}

function adapterCauseOf(error: object): AdapterCause | undefined {
  const adapterError =
    error instanceof Prisma.PrismaClientKnownRequestError
      ? (error.meta as { driverAdapterError?: unknown } | undefined)?.driverAdapterError
      : (error as { name?: unknown }).name === 'DriverAdapterError'
        ? error
        : undefined;
  const cause = (adapterError as { cause?: unknown } | undefined)?.cause;
  return typeof cause === 'object' && cause !== null ? (cause as AdapterCause) : undefined;
}

/**
 * Whether an error a resolver raised means its database could not be reached, judged by type and code,
 * never by message: Prisma's connection codes, the driver adapter's connection kinds and connection
 * SQLSTATEs (57P01 admin shutdown reaches Prisma as P2010 with the SQLSTATE in its cause), and what pg
 * raises itself (socket codes, connect timeouts, a connection lost mid-statement: isConnectionFailure).
 * Follows `cause` a few levels down.
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 4) return false;
  if (isConnectionFailure(error)) return true;
  if (error instanceof Prisma.PrismaClientKnownRequestError && UNREACHABLE_PRISMA_CODES.has(error.code)) return true;
  if (error instanceof Prisma.PrismaClientInitializationError && UNREACHABLE_PRISMA_CODES.has(error.errorCode ?? ''))
    return true;
  const cause = adapterCauseOf(error);
  if (cause && typeof cause.kind === 'string' && UNREACHABLE_ADAPTER_KINDS.has(cause.kind)) return true;
  if (cause && typeof cause.originalCode === 'string' && isConnectionSqlState(cause.originalCode)) return true;
  return isDatabaseUnavailable((error as { cause?: unknown }).cause, depth + 1);
}

/** What a client sees for a subgraph whose database is unreachable: no host, URL or stack. */
export const databaseUnavailable = (subgraph: string): GraphQLError =>
  dependencyUnavailable('database', `The ${subgraph} database is unavailable; retry shortly.`);

/** For maskUnexpectedErrors' `expected`: a database outage is the DEPENDENCY_UNAVAILABLE error, not a bug. */
export const databaseOutageAsError =
  (subgraph: string) =>
  (error: unknown): GraphQLError | undefined =>
    isDatabaseUnavailable(error) ? databaseUnavailable(subgraph) : undefined;

/** The subset of a pino Logger an outage log uses. */
export interface OutageLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * Logs a subgraph's database outages from what its pool sees (every statement, /readyz's ping included):
 * one warning when the first connection fails, with the error's code, and one line when a statement is
 * answered again, with how long it lasted and how many failures it saw. Nothing per request: the
 * requests themselves answer DEPENDENCY_UNAVAILABLE. Returns how to stop watching.
 */
export function logDatabaseOutages(subgraph: string, database: DatabaseClient, logger: OutageLogger): () => void {
  let since: number | undefined;
  let failures = 0;
  return database.watch({
    unreachable(error) {
      failures += 1;
      if (since !== undefined) return;
      since = Date.now();
      failures = 1;
      const { code, message } = error as { code?: unknown; message?: unknown };
      logger.warn(
        { dependency: 'database', code: typeof code === 'string' ? code : null, reason: String(message) },
        `${subgraph} database unavailable: requests answer DEPENDENCY_UNAVAILABLE until it is back`,
      );
    },
    answered() {
      if (since === undefined) return;
      logger.info({ dependency: 'database', downMs: Date.now() - since, failures }, `${subgraph} database is back`);
      since = undefined;
    },
  });
}
