import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { ErrorCode } from '../lib/errors';

export interface OutageStatusOptions {
  /**
   * `Retry-After` of an outage answer, in seconds. Defaults to 5: a database restart or failover lasts
   * seconds to a minute, and a client fleet retrying every second would pile onto the service as it comes
   * back (each attempt holds a subgraph request for up to its 3 s connect timeout); retries sooner than
   * that would mostly meet the same outage.
   */
  retryAfterSeconds?: number;
  /**
   * The codes of errors that are outages a retry may cure. Defaults to DEPENDENCY_UNAVAILABLE (a subgraph
   * cannot reach its database or another subgraph) and SUBGRAPH_UNAVAILABLE (the gateway cannot reach a subgraph).
   */
  codes?: readonly string[];
}

/**
 * Apollo plugin: an answer that carries no data (`data` null, or every root field null) and whose every
 * error is an outage is `503 Service Unavailable` with `Retry-After`, so clients, proxies and load
 * balancers see a retryable failure rather than a 200. An answer with some data stays 200: the page
 * renders without the missing part, and its errors say which. Other refusals (4xx, 429) keep their status.
 *
 * List it first among the gateway's plugins: willSendResponse hooks run in order, and the metrics and the
 * request log read the status this one sets (the ETag plugin then leaves a 503 alone).
 */
export function useOutageStatus<TContext extends BaseContext>({
  retryAfterSeconds = 5,
  codes = [ErrorCode.DEPENDENCY_UNAVAILABLE, ErrorCode.SUBGRAPH_UNAVAILABLE],
}: OutageStatusOptions = {}): ApolloServerPlugin<TContext> {
  const outages = new Set<unknown>(codes);
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ response }) {
          const { body, http } = response;
          if (body.kind !== 'single') return;
          // 304 is what the ETag check may have made of the 200.
          if (http.status !== undefined && http.status !== 200 && http.status !== 304) return;
          const { data, errors } = body.singleResult;
          if (!errors?.length || !errors.every((error) => outages.has(error.extensions?.code))) return;
          if (data && Object.values(data).some((value) => value !== null)) return;
          http.status = 503;
          http.headers.set('retry-after', String(retryAfterSeconds));
        },
      };
    },
  };
}
