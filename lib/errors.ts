import { randomUUID } from 'node:crypto';
import { unwrapResolverError } from '@apollo/server/errors';
import type { GraphQLFormattedError } from 'graphql';
import { GraphQLError } from 'graphql';
import { Prisma } from '../generated/prisma/client';
import type { Logger } from './logger';

/** Every code a client may see. Stable: clients branch on these, so never rename one. */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  DEPENDENCY_UNAVAILABLE: 'DEPENDENCY_UNAVAILABLE',
  SUBGRAPH_UNAVAILABLE: 'SUBGRAPH_UNAVAILABLE',
  RATE_LIMITED: 'RATE_LIMITED',
  OVERLOADED: 'OVERLOADED',
  QUERY_TOO_COMPLEX: 'QUERY_TOO_COMPLEX',
  QUERY_TOO_DEEP: 'QUERY_TOO_DEEP',
  TOO_MANY_ALIASES: 'TOO_MANY_ALIASES',
  TOO_MANY_DIRECTIVES: 'TOO_MANY_DIRECTIVES',
  TOO_MANY_TOKENS: 'TOO_MANY_TOKENS',
  BAD_REQUEST: 'BAD_REQUEST',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Errors Apollo Server itself raises for bad documents and requests: safe to show as they are. */
const APOLLO_REQUEST_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
]);

export function clientError(code: ErrorCode, message: string, details: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code, ...details } });
}

export const badInput = (argumentName: string, message: string) =>
  clientError(ErrorCode.BAD_USER_INPUT, message, { argumentName });
export const notFound = (argumentName: string, message: string) =>
  clientError(ErrorCode.NOT_FOUND, message, { argumentName });
export const unauthenticated = (message = 'You must be signed in to do this.') =>
  clientError(ErrorCode.UNAUTHENTICATED, message);
export const forbidden = (message: string) => clientError(ErrorCode.FORBIDDEN, message);
/** Something this service needs (its database, another subgraph) cannot be reached: retrying later may work. */
export const dependencyUnavailable = (dependency: string, message: string) =>
  clientError(ErrorCode.DEPENDENCY_UNAVAILABLE, message, { dependency, retryable: true });

/** A Prisma known-request error with this code (P2002 unique violation, P2025 record not found...). */
export function isPrismaError(error: unknown, code: string): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === code;
}

/** A GraphQLError we (or Apollo) raised on purpose, as opposed to a crash wrapped by graphql-js. */
function isDeliberate(error: unknown): error is GraphQLError {
  if (!(error instanceof GraphQLError)) return false;
  const code = error.extensions?.code;
  if (typeof code !== 'string' || code === ErrorCode.INTERNAL_SERVER_ERROR) return false;
  return Object.values(ErrorCode).includes(code as ErrorCode) || APOLLO_REQUEST_CODES.has(code);
}

export interface MaskOptions {
  /**
   * The client error an expected failure that is not a bug stands for (a database outage:
   * DEPENDENCY_UNAVAILABLE), or undefined. Not logged here: whoever watches that failure logs it once,
   * not once per request. Defaults to none.
   */
  expected?: (error: unknown) => GraphQLError | undefined;
}

/**
 * Apollo `formatError`: deliberate errors pass with their code; expected failures become their client
 * error; anything else is logged with an id and replaced by "Internal error" carrying that id. No
 * stack, SQL or host name ever reaches a client. Errors already masked downstream (a subgraph's
 * errorId) keep their id so logs can be joined.
 */
export function maskUnexpectedErrors(logger: Logger, options: MaskOptions = {}) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    if (isDeliberate(original) || isDeliberate(error)) {
      const { stacktrace: _stacktrace, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    const expected = options.expected?.(original);
    if (expected) {
      return {
        message: expected.message,
        path: formatted.path,
        locations: formatted.locations,
        extensions: expected.extensions,
      };
    }
    const downstreamId = formatted.extensions?.errorId;
    if (typeof downstreamId === 'string' && formatted.extensions?.code === ErrorCode.INTERNAL_SERVER_ERROR) {
      return {
        message: 'Internal error',
        path: formatted.path,
        extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, errorId: downstreamId },
      };
    }
    const errorId = randomUUID();
    logger.error({ errorId, err: original, path: formatted.path }, 'unexpected error masked');
    return {
      message: 'Internal error',
      path: formatted.path,
      locations: formatted.locations,
      extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, errorId },
    };
  };
}
