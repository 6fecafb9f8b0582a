import { RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { GraphQLError } from 'graphql';
import CircuitBreaker from 'opossum';
import { Agent, type Dispatcher } from 'undici';
import { urlList } from '../lib/config';
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
  /**
   * The subgraph's GraphQL endpoint, or several comma-separated (its replicas, SUBGRAPH_<NAME>_URL): each
   * call goes to the next one in turn, and a call whose connection is refused moves on to the next (see
   * `call`). Required; there is no default.
   */
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
  /**
   * Whether identical concurrent fetches of queries (same body: document, variables, operation name) share
   * one call. An answer is shared with another caller only when it is public (`Cache-Control: public` with a
   * max-age), else only with the same caller; never a fetch of a mutation, nor one sent before a write
   * (`writes`). Defaults to true.
   */
  shareFetches?: boolean;
  /**
   * Whether a request's query fetches are its own, neither taking another request's answer nor giving its own
   * (with read replicas: a request that must read the primary, right after its caller's write). Defaults to none.
   */
  ownFetchesOnly?(context: Partial<TContext>): boolean;
  /** The gateway's write counter, shared by its data sources (see WriteClock). Defaults to one of its own. */
  writes?: WriteClock;
  /** Headers sent with every call (the response cache asks subgraphs for entity tags). Defaults to none. */
  headers?: Record<string, string>;
  /**
   * Told every answer of an incoming operation, with the operation's type and the request context (the
   * response cache gathers the entity tags it reports). Defaults to none.
   */
  didReceive?(
    response: GatewayGraphQLResponse,
    call: { subgraph: string; operation?: string; context: Partial<TContext> },
  ): void;
  /** Told when a fetch was answered by another request's call (metrics). Defaults to none. */
  onShared?(subgraph: string): void;
}

/** A subgraph's GraphQL response, as the gateway's query plan executor takes it. */
export type GatewayGraphQLResponse = Awaited<ReturnType<RemoteGraphQLDataSource['process']>>;
/** The incoming request's context, which a fetch of its query plan is given. */
type IncomingRequestContext = Extract<
  GraphQLDataSourceProcessOptions,
  { incomingRequestContext: unknown }
>['incomingRequestContext'];

/** One subgraph's HTTP answer, read whole: what the gateway needs of it, and nothing that holds a socket. */
interface SubgraphAnswer {
  status: number;
  contentType: string | undefined;
  cacheControl: string | undefined;
  text: string;
}

/** The caller-independent part of a subgraph request and what is shared while it is in flight. */
interface Flight {
  /** What signRequest described of the leader's context (its caller). */
  caller: string;
  /** The gateway's write generation when it was sent (WriteClock). */
  generation: number;
  answer: Promise<SubgraphAnswer>;
}

/**
 * Counts the writes (mutation fetches) of one gateway, so a query never joins a fetch sent before a
 * write it follows: a fetch is shared only among requests that saw the same generation. One per gateway,
 * shared by its data sources.
 */
export class WriteClock {
  generation = 0;
  tick(): void {
    this.generation += 1;
  }
}

const header = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/** `Cache-Control` of an answer any caller may be given (public, with a max-age): a subgraph's contract marks caller-dependent fields PRIVATE. */
function isPublicAnswer(cacheControl: string | undefined): boolean {
  if (!cacheControl) return false;
  const directives = parseCacheControl(cacheControl);
  return directives.public === true && Number(directives['max-age']) > 0;
}

function parseCacheControl(value: string): Record<string, string | true> {
  const directives: Record<string, string | true> = {};
  for (const part of value.split(',')) {
    const [name, argument] = part.trim().split('=', 2) as [string, string | undefined];
    if (name) directives[name.toLowerCase()] = argument ?? true;
  }
  return directives;
}

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

/** One of a subgraph's endpoints, and until when it is passed over after a refused connection (epoch ms). */
interface Endpoint {
  origin: string;
  path: string;
  downUntil: number;
}

/** How long an endpoint whose connection was refused is passed over while another one is left. */
const ENDPOINT_DOWN_MS = 1_000;

/**
 * Errors of a connection that was never made, so the request never reached the subgraph and another
 * endpoint may be tried, mutations included. A reset or a timeout is not one: the request may have run.
 */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
function neverConnected(error: unknown): boolean {
  const { code, errors } = error as { code?: unknown; errors?: unknown };
  if (typeof code === 'string' && NOT_CONNECTED.has(code)) return true;
  // Node's happy eyeballs reports every address it tried in an AggregateError.
  return Array.isArray(errors) && errors.length > 0 && errors.every(neverConnected);
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
  /** Every endpoint (one per replica), in the order calls take them. */
  readonly urls: readonly string[];
  private readonly endpoints: Endpoint[];
  private nextEndpoint = 0;
  private readonly timeoutMs: number;
  private readonly options: SubgraphDataSourceOptions<TContext>;
  private readonly logger: SubgraphDataSourceLogger;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly writes: WriteClock;
  private readonly inFlight = new Map<string, Flight>();
  private readonly breaker: CircuitBreaker<[string, Record<string, string>, number | undefined], SubgraphAnswer>;
  private disposed: Promise<void> | undefined;

  constructor(options: SubgraphDataSourceOptions<TContext>) {
    // Only fields of the base class: its constructor Object.assign()s whatever it is given onto `this`.
    const urls = urlList(options.url);
    if (!urls.length) throw new Error(`No URL for the ${options.name} subgraph`);
    super({ url: urls[0] });
    this.subgraph = options.name;
    this.urls = urls;
    this.endpoints = urls.map((endpoint) => {
      const url = new URL(endpoint);
      return { origin: url.origin, path: `${url.pathname}${url.search}`, downUntil: 0 };
    });
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.options = options;
    this.logger = options.logger;
    this.writes = options.writes ?? new WriteClock();
    this.ownsDispatcher = !options.dispatcher;
    // undici keeps connections alive by default; 4 s idle stays under Node's 5 s server keep-alive, so the
    // client, not the server, closes an idle socket and a request never lands on one being closed.
    this.dispatcher = options.dispatcher ?? new Agent({ keepAliveTimeout: 4_000 });

    const breaker = options.breaker ?? {};
    this.breaker = new CircuitBreaker(
      (body: string, headers: Record<string, string>, deadline: number | undefined) =>
        this.call(body, headers, deadline),
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
  }

  /**
   * One subgraph fetch of a query plan. Replaces the base class's, which builds node-fetch Headers and a
   * Request and goes through WHATWG fetch for every call: here the body is sent with undici's request API
   * and read whole as text, the identity is signed for that exact body, and identical concurrent queries
   * share one call (shareFetches).
   */
  override async process(options: GraphQLDataSourceProcessOptions<TContext>): Promise<GatewayGraphQLResponse> {
    const { request } = options;
    if (!request.query) throw new Error('Missing query');
    const incoming = 'incomingRequestContext' in options ? options.incomingRequestContext : undefined;
    const context = options.context as Partial<TContext>;
    const body = JSON.stringify({
      query: request.query,
      variables: request.variables,
      operationName: request.operationName,
      extensions: request.extensions,
    });
    const caller = this.options.signRequest?.describe(context) ?? '';
    const deadline = this.options.deadlineOf?.(context);
    const operation = incoming?.operation?.operation;
    try {
      let answer: SubgraphAnswer;
      if (operation === 'query' && this.options.shareFetches !== false && !this.options.ownFetchesOnly?.(context)) {
        answer = await this.shared(body, caller, deadline);
      } else if (operation === 'mutation') {
        // Before and after: a query sent during the write does not join one sent before it, nor one after it.
        this.writes.tick();
        answer = await this.fetchAs(body, caller, deadline).finally(() => this.writes.tick());
      } else {
        answer = await this.fetchAs(body, caller, deadline);
      }
      const response = this.parse(answer);
      if (incoming) {
        restrictCachePolicy(incoming, answer.cacheControl);
        this.options.didReceive?.(response, { subgraph: this.subgraph, operation, context });
      }
      return response;
    } catch (error) {
      return this.didEncounterError(error as Error);
    }
  }

  /**
   * The answer of an identical query already in flight, when it may be given to this caller; else a call of
   * this caller's own, shared with the same caller's identical queries (keyed by caller and body).
   */
  private async shared(
    body: string,
    caller: string,
    deadline: number | undefined,
    key = body,
  ): Promise<SubgraphAnswer> {
    const flight = this.inFlight.get(key);
    if (flight && flight.generation === this.writes.generation) {
      try {
        const answer = await flight.answer;
        if (flight.caller === caller || isPublicAnswer(answer.cacheControl)) {
          this.options.onShared?.(this.subgraph);
          return answer;
        }
      } catch (error) {
        // The leader's deadline is not this request's: it calls on its own. Any other failure is the subgraph's.
        if (!(error instanceof SubgraphCallError && error.reason === 'deadline')) throw error;
      }
      const own = `${caller}\n${body}`;
      return key === own ? this.fetchAs(body, caller, deadline) : this.shared(body, caller, deadline, own);
    }
    const own: Flight = { caller, generation: this.writes.generation, answer: this.fetchAs(body, caller, deadline) };
    this.inFlight.set(key, own);
    try {
      return await own.answer;
    } finally {
      if (this.inFlight.get(key) === own) this.inFlight.delete(key);
    }
  }

  /** Signs the body for the caller, and calls under the breaker with what is left of the deadline (none left: no call). */
  private async fetchAs(body: string, caller: string, deadline: number | undefined): Promise<SubgraphAnswer> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      ...this.options.headers,
      ...(this.options.signRequest && (await this.options.signRequest.sign(caller, body))),
    };
    if (deadline !== undefined && deadline - Date.now() <= 0) throw new SubgraphCallError('deadline');
    const observe = this.options.observe;
    if (!observe) return this.breaker.fire(body, headers, deadline);
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const answer = await this.breaker.fire(body, headers, deadline);
      // A 4xx reaches the client as bad_status (parse) without opening the breaker.
      observe({ subgraph: this.subgraph, outcome: answer.status < 300 ? 'ok' : 'bad_status', seconds: seconds() });
      return answer;
    } catch (error) {
      const reason: SubgraphFailureReason =
        error instanceof SubgraphCallError ? error.reason : this.breaker.opened ? 'circuit_open' : 'unreachable';
      observe({ subgraph: this.subgraph, outcome: reason, seconds: seconds() });
      throw error;
    }
  }

  /**
   * The GraphQL response in an answer, parsed for this request alone (a shared answer is parsed once per
   * request, so no two requests hold the same objects). A non-2xx status below 500 is logged with its status
   * and shown as bad_status, never with the subgraph's URL or body; a 2xx that is not a JSON object is bad_response.
   */
  private parse(answer: SubgraphAnswer): GatewayGraphQLResponse {
    if (answer.status < 200 || answer.status >= 300) {
      this.logger.warn(
        { subgraph: this.subgraph, reason: 'bad_status', status: answer.status },
        'subgraph call failed',
      );
      throw subgraphUnavailable(this.subgraph, 'bad_status');
    }
    const json =
      answer.contentType?.startsWith('application/json') ||
      answer.contentType?.startsWith('application/graphql-response+json');
    if (!json) throw new Error(`Expected a JSON response, got ${answer.contentType ?? 'no content type'}`);
    const body: unknown = JSON.parse(answer.text);
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new Error('Expected a JSON object response');
    return body as GatewayGraphQLResponse;
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
   * Every error of a fetch (the call, a non-2xx status, the body parse, signing) ends here: whatever it
   * was, the gateway gets a SUBGRAPH_UNAVAILABLE error, so a stack, host or URL never leaks.
   */
  override didEncounterError(error: Error): never {
    // Already the client-visible error (parse made it).
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
   * The endpoint for the next call: the next in turn that is not passed over, else (all of them refused
   * their connection within ENDPOINT_DOWN_MS) simply the next in turn.
   */
  private pickEndpoint(): Endpoint {
    const now = Date.now();
    const count = this.endpoints.length;
    const first = this.nextEndpoint;
    for (let offset = 0; offset < count; offset += 1) {
      const endpoint = this.endpoints[(first + offset) % count]!;
      if (endpoint.downUntil <= now) {
        this.nextEndpoint = (first + offset + 1) % count;
        return endpoint;
      }
    }
    this.nextEndpoint = (first + 1) % count;
    return this.endpoints[first]!;
  }

  /**
   * One HTTP exchange, under the breaker: resolves with the whole body read, or rejects with the reason.
   * Reading the body here puts a slow body under the timeout and the breaker too, and lets the socket go
   * back to the pool at once. With several endpoints, one whose connection is refused is passed over for
   * ENDPOINT_DOWN_MS and the call tries the next (within the same timeout), so a dead replica costs no
   * failed page and the breaker, which is the whole subgraph's, opens only when none connects.
   */
  private async call(
    body: string,
    headers: Record<string, string>,
    deadline: number | undefined,
  ): Promise<SubgraphAnswer> {
    const left = deadline === undefined ? Infinity : deadline - Date.now();
    const cutByDeadline = left < this.timeoutMs;
    const timeout = AbortSignal.timeout(Math.max(1, Math.min(this.timeoutMs, left)));
    for (let attempt = 1; ; attempt += 1) {
      const endpoint = this.pickEndpoint();
      try {
        return await this.exchange(endpoint, body, headers, timeout);
      } catch (error) {
        if (error instanceof SubgraphCallError) throw error;
        const failover = this.endpoints.length > 1 && !timeout.aborted && neverConnected(error);
        if (failover) endpoint.downUntil = Date.now() + ENDPOINT_DOWN_MS;
        if (failover && attempt < this.endpoints.length) continue;
        const reason = timeout.aborted ? (cutByDeadline ? 'deadline' : 'timeout') : 'unreachable';
        throw new SubgraphCallError(reason, undefined, { cause: error });
      }
    }
  }

  /** The HTTP exchange with one endpoint; a 5xx throws bad_status, a failed connection or read throws as undici did. */
  private async exchange(
    endpoint: Endpoint,
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<SubgraphAnswer> {
    const response = await this.dispatcher.request({
      origin: endpoint.origin,
      path: endpoint.path,
      method: 'POST',
      headers,
      body,
      signal,
    });
    const text = await response.body.text();
    // 5xx is the subgraph failing; 4xx is this request's problem and must not open the breaker for all.
    if (response.statusCode >= 500) throw new SubgraphCallError('bad_status', response.statusCode);
    return {
      status: response.statusCode,
      contentType: header(response.headers['content-type']),
      cacheControl: header(response.headers['cache-control']),
      text,
    };
  }
}

/** Restricts the operation's cache policy by a subgraph answer's Cache-Control, as RemoteGraphQLDataSource does. */
function restrictCachePolicy(incoming: IncomingRequestContext, cacheControl: string | undefined): void {
  const policy = incoming.overallCachePolicy;
  if (!policy || !('restrict' in policy)) return;
  const directives = parseCacheControl(cacheControl ?? '');
  const maxAge = directives['max-age'];
  policy.restrict({
    maxAge: typeof maxAge === 'string' && /^[0-9]+$/.test(maxAge) ? Number(maxAge) : 0,
    ...(directives.private === true && { scope: 'PRIVATE' as const }),
    ...(directives.public === true && { scope: 'PUBLIC' as const }),
  });
}
