import { RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { GraphQLError } from 'graphql';
import CircuitBreaker from 'opossum';
import { Agent, fetch as undiciFetch, Response, type Dispatcher } from 'undici';
import { ErrorCode } from '../lib/errors';

/** The code a client sees when a subgraph could not answer. Stable: clients branch on it. */
export const SUBGRAPH_UNAVAILABLE = ErrorCode.SUBGRAPH_UNAVAILABLE;

/**
 * Why a subgraph could not answer, as `extensions.reason` on the client-visible error:
 * - `timeout`: no complete answer within `timeoutMs`;
 * - `unreachable`: connection refused, reset, DNS failure...;
 * - `circuit_open`: the breaker is open, so the subgraph was not called at all;
 * - `bad_status`: the subgraph answered with a non-2xx HTTP status;
 * - `bad_response`: it answered 2xx but the body was not a JSON object.
 */
/** Why a call failed; `deadline`: the request's deadline left no time for it (not the subgraph's fault: the breaker ignores it). */
export type SubgraphFailureReason =
  'timeout' | 'deadline' | 'unreachable' | 'circuit_open' | 'bad_status' | 'bad_response';

export type BreakerState = 'closed' | 'open' | 'halfOpen';

/**
 * Carries what signRequest described of a request's context from willSendRequest to the fetcher, which
 * alone sees the exact body; it is removed before the request leaves the gateway.
 */
const TO_SIGN_HEADER = 'x-storefront-to-sign';
/** Internal header from willSendRequest to the fetcher: the request's deadline (epoch ms); never sent. */
const DEADLINE_HEADER = 'x-storefront-deadline';

/** The subset of a pino Logger this class uses. */
export interface SubgraphDataSourceLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface SubgraphBreakerOptions {
  /**
   * Percentage of failed calls (network errors, timeouts, HTTP 5xx) within the rolling window above which
   * the breaker opens. Defaults to 50.
   */
  errorThresholdPercentage?: number;
  /**
   * Calls that must be seen in the rolling window before the breaker may open, so that one early failure
   * cannot trip it on its own. Defaults to 5.
   */
  volumeThreshold?: number;
  /** Length of the rolling window the failure percentage is computed over. Defaults to 10000 ms. */
  rollingWindowMs?: number;
  /** How long the breaker stays open before letting one probe through. Defaults to 10000 ms. */
  resetTimeoutMs?: number;
}

/** RemoteGraphQLDataSource's own constraint on its context (an interface has no index signature for `unknown`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as Apollo declares it
type AnyContext = Record<string, any>;

export interface SubgraphDataSourceOptions<TContext extends AnyContext> {
  /** Subgraph name, used in errors and logs. Required; there is no default. */
  name: string;
  /** The subgraph's GraphQL endpoint. Required; there is no default. */
  url: string;
  /**
   * Longest a subgraph call (connect, send, headers and whole body) may take before it is aborted and
   * counts as a failure. Defaults to 5000 ms.
   */
  timeoutMs?: number;
  /** When the circuit breaker opens and how soon it probes again. Defaults to the defaults of each field. */
  breaker?: SubgraphBreakerOptions;
  /**
   * The request's deadline (epoch ms) from its context: each call's timeout is what is left of it when
   * shorter than `timeoutMs`, and a call with no time left is not made. Defaults to none (timeoutMs only).
   */
  deadlineOf?(context: Partial<TContext>): number | undefined;
  /**
   * Signs each subgraph request for the exact body sent (the gateway signs the caller's identity here).
   * `describe` reads what the signature needs from the request's context (empty for the gateway's own
   * health checks) as a string; `sign` makes the headers to add from that and the body, once per send.
   * Defaults to none.
   */
  signRequest?: {
    describe(context: Partial<TContext>): string;
    sign(described: string, body: string): Promise<Record<string, string>>;
  };
  /**
   * Connection pool for the calls. Pass one to share a pool across data sources; this class then never
   * closes it. Defaults to a keep-alive undici Agent owned by this data source and closed by `dispose()`.
   */
  dispatcher?: Dispatcher;
  /** Where failures and breaker state changes are logged; a pino Logger fits. Required; there is no default. */
  logger: SubgraphDataSourceLogger;
  /** Told the outcome and duration of every call (metrics). Defaults to none. */
  observe?: (call: { subgraph: string; outcome: 'ok' | SubgraphFailureReason; seconds: number }) => void;
}

const NULL_BODY_STATUSES = new Set([204, 205, 304]);

type Fetcher = RemoteGraphQLDataSource['fetcher'];
type FetcherInit = NonNullable<Parameters<Fetcher>[1]>;
type FetcherResponse = Awaited<ReturnType<Fetcher>>;

/** A failed call, with the reason the client will see. Internal: never reaches a client as is. */
class SubgraphCallError extends Error {
  constructor(
    readonly reason: SubgraphFailureReason,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(`subgraph call failed: ${reason}${status ? ` (HTTP ${status})` : ''}`, options);
    this.name = 'SubgraphCallError';
  }
}

/** The client-visible error: names the subgraph and the reason, never a host, URL or stack. */
export function subgraphUnavailable(subgraph: string, reason: SubgraphFailureReason): GraphQLError {
  return new GraphQLError(`The ${subgraph} subgraph is unavailable.`, {
    extensions: { code: SUBGRAPH_UNAVAILABLE, subgraph, reason },
  });
}

/**
 * A RemoteGraphQLDataSource with a per-call timeout, keep-alive connections and a circuit breaker.
 *
 * The breaker wraps the fetcher (the HTTP exchange), not `process()`: a 200 carrying GraphQL errors is the
 * subgraph working as designed, and a failing `signRequest` is the gateway's bug, so neither may open it.
 * Every failed call surfaces through `didEncounterError` as a SUBGRAPH_UNAVAILABLE GraphQLError; the gateway's
 * executeQueryPlan puts a fetch's thrown error in the response's `errors` and still returns the data the
 * other fetches produced, leaving fields of the failed subgraph null.
 */
export class SubgraphDataSource<TContext extends AnyContext = AnyContext> extends RemoteGraphQLDataSource<TContext> {
  readonly subgraph: string;
  private readonly timeoutMs: number;
  private readonly signRequest: SubgraphDataSourceOptions<TContext>['signRequest'];
  private readonly deadlineOf: SubgraphDataSourceOptions<TContext>['deadlineOf'];
  private readonly logger: SubgraphDataSourceLogger;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly breaker: CircuitBreaker<[string, FetcherInit | undefined, number | undefined], FetcherResponse>;
  private disposed: Promise<void> | undefined;

  constructor(options: SubgraphDataSourceOptions<TContext>) {
    // Only fields of the base class: its constructor Object.assign()s whatever it is given onto `this`.
    super({ url: options.url });
    this.subgraph = options.name;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.signRequest = options.signRequest;
    this.deadlineOf = options.deadlineOf;
    this.logger = options.logger;
    this.ownsDispatcher = !options.dispatcher;
    // undici keeps connections alive by default; 4 s idle stays under Node's 5 s server keep-alive, so the
    // client, not the server, closes an idle socket and a request never lands on one being closed.
    this.dispatcher = options.dispatcher ?? new Agent({ keepAliveTimeout: 4_000 });

    const breaker = options.breaker ?? {};
    this.breaker = new CircuitBreaker(
      (url: string, init: FetcherInit | undefined, deadline: number | undefined) => this.call(url, init, deadline),
      {
        name: options.name,
        // The call enforces timeoutMs itself with an AbortSignal, which also frees the socket; opossum's own
        // timeout would only stop waiting and leave the request running.
        timeout: false,
        errorThresholdPercentage: breaker.errorThresholdPercentage ?? 50,
        volumeThreshold: breaker.volumeThreshold ?? 5,
        rollingCountTimeout: breaker.rollingWindowMs ?? 10_000,
        resetTimeout: breaker.resetTimeoutMs ?? 10_000,
        // A call cut short by the request's deadline says nothing about the subgraph's health.
        errorFilter: (error: unknown) => error instanceof SubgraphCallError && error.reason === 'deadline',
      },
    );
    const log = { subgraph: this.subgraph };
    this.breaker.on('open', () => this.logger.warn(log, 'subgraph circuit breaker opened: failing fast'));
    this.breaker.on('halfOpen', () => this.logger.info(log, 'subgraph circuit breaker half-open: probing'));
    this.breaker.on('close', () => this.logger.info(log, 'subgraph circuit breaker closed'));

    const observe = options.observe;
    this.fetcher = observe
      ? async (url, given) => {
          const started = process.hrtime.bigint();
          const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
          try {
            const response = await this.send(url, given);
            // A 4xx reaches the client as bad_status (errorFromResponse) without opening the breaker.
            observe({ subgraph: this.subgraph, outcome: response.ok ? 'ok' : 'bad_status', seconds: seconds() });
            return response;
          } catch (error) {
            const reason: SubgraphFailureReason =
              error instanceof SubgraphCallError ? error.reason : this.breaker.opened ? 'circuit_open' : 'unreachable';
            observe({ subgraph: this.subgraph, outcome: reason, seconds: seconds() });
            throw error;
          }
        }
      : (url, init) => this.send(url, init);
  }

  /** Signs the request, and sends it under the breaker with what is left of its deadline (none left: not sent). */
  private async send(url: string, given: FetcherInit | undefined): Promise<FetcherResponse> {
    const { [DEADLINE_HEADER]: deadline, ...headers } = (given?.headers ?? {}) as Record<string, string>;
    const init = await this.signed(given && { ...given, headers });
    const deadlineAt = deadline === undefined ? undefined : Number(deadline);
    if (deadlineAt !== undefined && deadlineAt - Date.now() <= 0) throw new SubgraphCallError('deadline');
    return this.breaker.fire(url, init, deadlineAt);
  }

  override willSendRequest(options: GraphQLDataSourceProcessOptions<TContext>): void {
    const context = options.context as Partial<TContext>;
    const deadline = this.deadlineOf?.(context);
    if (deadline !== undefined) options.request.http!.headers.set(DEADLINE_HEADER, String(deadline));
    if (!this.signRequest) return;
    options.request.http!.headers.set(TO_SIGN_HEADER, this.signRequest.describe(context));
  }

  /** The request with signRequest's headers for its exact body (each send its own), without the internal header. */
  private async signed(init: FetcherInit | undefined): Promise<FetcherInit | undefined> {
    if (!this.signRequest || !init) return init;
    const { [TO_SIGN_HEADER]: described, ...headers } = init.headers as Record<string, string>;
    if (described === undefined || typeof init.body !== 'string')
      throw new Error('subgraph request without what it must be signed for');
    return { ...init, headers: { ...headers, ...(await this.signRequest.sign(described, init.body)) } };
  }

  /** The breaker's state, for metrics and tests. */
  breakerState(): BreakerState {
    if (this.breaker.opened) return 'open';
    if (this.breaker.halfOpen) return 'halfOpen';
    return 'closed';
  }

  /**
   * Closes an open breaker at once: the subgraph's readiness check says it is back (subgraph-health.ts),
   * so pages need not wait out `resetTimeoutMs`. Calls that still fail open it again.
   */
  closeBreaker(): void {
    if (!this.breaker.opened && !this.breaker.halfOpen) return;
    this.logger.info({ subgraph: this.subgraph }, 'subgraph ready again: closing its circuit breaker');
    this.breaker.close();
  }

  /** Stops the breaker's timers and closes the connection pool if this data source owns it. Idempotent. */
  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      this.breaker.shutdown();
      if (this.ownsDispatcher) await this.dispatcher.close();
    })();
    return this.disposed;
  }

  /**
   * Base-class hook for every error of the HTTP exchange (the fetcher, a non-2xx status, the body parse):
   * whatever it was, the gateway gets a SUBGRAPH_UNAVAILABLE error, so a stack, host or URL never leaks.
   */
  override didEncounterError(error: Error): never {
    // Already the client-visible error (errorFromResponse made it).
    if (error instanceof GraphQLError && error.extensions.code === SUBGRAPH_UNAVAILABLE) throw error;
    const reason: SubgraphFailureReason =
      error instanceof SubgraphCallError
        ? error.reason
        : CircuitBreaker.isOurError(error)
          ? 'circuit_open'
          : 'bad_response';
    // Rejections while open are not logged one by one (the 'open' event already said so), nor calls the
    // request's own deadline cut short (the answer says so; under overload they would flood the log).
    if (reason !== 'circuit_open' && reason !== 'deadline') {
      const status = error instanceof SubgraphCallError ? error.status : undefined;
      this.logger.warn({ subgraph: this.subgraph, reason, status, err: error.cause ?? error }, 'subgraph call failed');
    }
    throw subgraphUnavailable(this.subgraph, reason);
  }

  /**
   * Reached only for non-2xx statuses below 500 (the call itself rejects 5xx). The base version puts the
   * subgraph's URL and body in the error's extensions; this one logs the status and shows neither.
   */
  override async errorFromResponse(response: FetcherResponse): Promise<GraphQLError> {
    this.logger.warn(
      { subgraph: this.subgraph, reason: 'bad_status', status: response.status },
      'subgraph call failed',
    );
    return subgraphUnavailable(this.subgraph, 'bad_status');
  }

  /**
   * One HTTP exchange, under the breaker: resolves with the whole body read, or rejects with the reason.
   * Reading the body here puts a slow body under the timeout and the breaker too, and lets the socket go
   * back to the pool at once.
   */
  private async call(
    url: string,
    init: FetcherInit | undefined,
    deadline: number | undefined,
  ): Promise<FetcherResponse> {
    const left = deadline === undefined ? Infinity : deadline - Date.now();
    const cutByDeadline = left < this.timeoutMs;
    const timeout = AbortSignal.timeout(Math.max(1, Math.min(this.timeoutMs, left)));
    const signal = init?.signal ? AbortSignal.any([init.signal as AbortSignal, timeout]) : timeout;
    try {
      const response = await undiciFetch(url, {
        method: init?.method,
        headers: init?.headers,
        body: init?.body,
        signal,
        dispatcher: this.dispatcher,
      });
      const body = await response.arrayBuffer();
      // 5xx is the subgraph failing; 4xx is this request's problem and must not open the breaker for all.
      if (response.status >= 500) throw new SubgraphCallError('bad_status', response.status);
      const { status, statusText, headers } = response;
      // A Response may not be built with a body for these statuses, even an empty one.
      return new Response(NULL_BODY_STATUSES.has(status) ? null : body, { status, statusText, headers });
    } catch (error) {
      if (error instanceof SubgraphCallError) throw error;
      const reason = timeout.aborted ? (cutByDeadline ? 'deadline' : 'timeout') : 'unreachable';
      throw new SubgraphCallError(reason, undefined, { cause: error });
    }
  }
}
