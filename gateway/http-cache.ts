import { createHash } from 'node:crypto';
import type { ApolloServerPlugin, BaseContext, PersistedQueryOptions } from '@apollo/server';
import { ApolloServerPluginCacheControl } from '@apollo/server/plugin/cacheControl';
import { KeyvAdapter } from '@apollo/utils.keyvadapter';
import KeyvRedis from '@keyv/redis';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import Keyv from 'keyv';
import type { RedisConnection, RedisGuard } from '../lib/redis';

/**
 * HTTP caching at the gateway.
 *
 * - Cache-Control: each subgraph computes a header from the `@cacheControl` hints of its SDL (see
 *   lib/subgraph.ts); RemoteGraphQLDataSource folds every subgraph answer's header into the request's
 *   overall cache policy, and the gateway's cache control plugin sends the result:
 *   `max-age=<n>, public` or `max-age=<n>, private` when every part is cacheable, `no-store` otherwise
 *   (any maxAge 0, any error, a mutation, or no subgraph called at all).
 * - GET: Apollo Server runs queries sent with GET (`?query=...&variables=...&extensions=...`) and refuses
 *   mutations over GET with 405. CSRF prevention stays on: a GET must carry a header a browser cannot
 *   send cross-site without a preflight: `apollo-require-preflight: true`, `x-apollo-operation-name`, or
 *   a non-simple `content-type` such as `application/json`. Without one it is refused with 400 BAD_REQUEST.
 * - APQ (automatic persisted queries): in Redis when the gateway has a connection, so every gateway sees a
 *   query registered on any one; in Apollo's bounded in-memory cache otherwise.
 * - ETag: a weak validator over the response's `data` and `errors` only, on the answers to a GET or to a
 *   request that carries If-None-Match: a client sending a plain POST cannot make a conditional request
 *   with it, and hashing every answer for nobody was a cost on every request (Express still hashes what it
 *   sends without an ETag unless its `etag` setting is off for /graphql: see lib/http-server.ts).
 *   `extensions` (the caller's remaining budget, `extensions.cost`) changes on every request and is left
 *   out, which is why the ETag is weak: equal ETags mean the same answer, not the same bytes. An answer
 *   that is not public also hashes in the caller, so one user's ETag never validates another user's
 *   answer. A GET whose `If-None-Match` lists the answer's ETag gets 304 with no body (Express drops it)
 *   but the usual headers. The query still ran and was charged: a 304 saves bandwidth, not work. The check
 *   is made here rather than left to Express, which ignores If-None-Match when the request says
 *   `Cache-Control: no-cache`, as Node's and undici's fetch always do next to If-None-Match.
 */

/** How long a registered persisted query stays in Redis after its last registration. */
export const APQ_TTL_SECONDS = 24 * 60 * 60;

type ApqStore = NonNullable<PersistedQueryOptions['cache']>;

/**
 * The APQ options: a Keyv store in Redis over the gateway's Redis connection when there is one, else
 * Apollo's default bounded in-memory cache. Every store operation goes through the connection's guard:
 * a failure, or no answer within APQ_TIMEOUT_MS, is a miss (the client then sends the full query,
 * which is the APQ protocol's normal recovery) or a dropped write, and after one the store is skipped
 * for a second. The connection logs the outage once: it never fails a request.
 */
export function persistedQueries(redis: RedisConnection | undefined, namespace: string): PersistedQueryOptions {
  if (!redis) return { ttl: APQ_TTL_SECONDS };
  // The connection belongs to the caller (the gateway's bootstrap closes it); Keyv only borrows its client.
  // Keys are `<namespace>:apq:<sha256>`: deployments sharing a Redis do not share persisted queries.
  const keyv = new Keyv<string>({
    store: new KeyvRedis<string>(redis.client as never, { throwOnErrors: true, namespace, keyPrefixSeparator: ':' }),
    namespace,
    useKeyPrefix: false,
  });
  keyv.on('error', () => {});
  const guard = redis.guard('persisted queries', 'persisted queries are misses (clients resend the full query)');
  return { cache: new GuardedApqStore(new KeyvAdapter(keyv), guard), ttl: APQ_TTL_SECONDS };
}

/** The longest a request waits for the APQ store: a hung Redis must not hang requests. */
const APQ_TIMEOUT_MS = 100;

/** A KeyValueCache whose failures, timeouts and fail-fast skips are misses (reads) or dropped (writes). */
class GuardedApqStore implements ApqStore {
  constructor(
    private readonly inner: ApqStore,
    private readonly guard: RedisGuard,
  ) {}

  async get(key: string): Promise<string | undefined> {
    return this.guard.attempt(() => this.inner.get(key), { timeoutMs: APQ_TIMEOUT_MS });
  }

  async set(key: string, value: string, options?: Parameters<ApqStore['set']>[2]): Promise<void> {
    await this.guard.attempt(() => this.inner.set(key, value, options), { timeoutMs: APQ_TIMEOUT_MS });
  }

  async delete(key: string): Promise<boolean | void> {
    return (await this.guard.attempt(async () => this.inner.delete(key), { timeoutMs: APQ_TIMEOUT_MS })) ?? false;
  }
}

/** What the HTTP cache plugin reads from the request context. */
export interface HttpCacheContext extends BaseContext {
  callerId: string | null;
}

/**
 * The gateway's HTTP caching plugins: Apollo's cache control plugin (which writes Cache-Control from
 * the overall policy the subgraphs' headers produced), and this module's plugin, which makes every
 * operation but a query uncacheable and writes the ETag (for a GET, or a request with If-None-Match).
 */
export function httpCachePlugins<TContext extends HttpCacheContext>(): ApolloServerPlugin<TContext>[] {
  return [
    // defaultMaxAge only applies to fields resolved here, and the gateway resolves none: every hint
    // comes from the subgraphs' Cache-Control headers. Uncacheable answers get `no-store`.
    ApolloServerPluginCacheControl({ calculateHttpHeaders: true, defaultMaxAge: 0 }),
    {
      async requestDidStart() {
        return {
          async didResolveOperation({ operation, overallCachePolicy }) {
            // Mutations (and subscriptions) are never cached, whatever the hints of what they return.
            if (operation?.operation !== 'query') overallCachePolicy.restrict({ maxAge: 0 });
          },
          async willSendResponse({ request, response, overallCachePolicy, contextValue }) {
            const { body, http } = response;
            if (body.kind !== 'single' || (http.status !== undefined && http.status !== 200)) return;
            const isGet = request.http?.method === 'GET';
            const ifNoneMatch = request.http?.headers.get('if-none-match');
            // Hashing the answer is worth it only to a client that can send the ETag back.
            if (!isGet && !ifNoneMatch) return;
            const { data, errors } = body.singleResult;
            const shared = overallCachePolicy.policyIfCacheable()?.scope === 'PUBLIC';
            const etag = etagOf({ data, errors }, shared ? null : (contextValue.callerId ?? 'anonymous'));
            http.headers.set('etag', etag);
            // Weak comparison (RFC 9110 13.1.2), for GET only: a POST is not a cacheable read.
            if (isGet && matchesIfNoneMatch(ifNoneMatch, etag)) http.status = 304;
          },
        };
      },
    },
  ];
}

/** A weak ETag over the answer (and, for answers that are not public, the caller). */
export function etagOf(answer: { data?: unknown; errors?: unknown }, caller: string | null): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([answer.data ?? null, answer.errors ?? null, caller]))
    .digest('base64url')
    .slice(0, 27);
  return `W/"${hash}"`;
}

/** True when an If-None-Match header lists `etag` (or is `*`), comparing weakly. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim() === '*' || opaque(tag) === opaque(etag));
}

/** Apollo's own APQ errors that carry no code, by message, with the code a client sees. */
const APQ_ERRORS: Record<string, string> = {
  'provided sha does not match query': 'PERSISTED_QUERY_HASH_MISMATCH',
  'Unsupported persisted query version': 'PERSISTED_QUERY_NOT_SUPPORTED',
};

/**
 * Wraps the gateway's formatError: Apollo raises two APQ client errors (400) without a code, which
 * error masking would otherwise turn into "Internal error"; they get a code of their own instead.
 */
export function withPersistedQueryErrorCodes(
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError,
): (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError {
  return (formatted, error) => {
    const code =
      error instanceof GraphQLError && error.extensions.code === undefined ? APQ_ERRORS[error.message] : undefined;
    return code ? { message: formatted.message, extensions: { code } } : formatError(formatted, error);
  };
}
