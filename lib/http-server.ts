import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ApolloServer, type ApolloServerOptions, type BaseContext } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { expressMiddleware, type ExpressContextFunctionArgument } from '@as-integrations/express5';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Registry } from 'prom-client';
import { ErrorCode } from './errors';
import type { Logger } from './logger';
import { continueWhenReading, parseSize, readBody } from './request-body';
import { portInUse } from './startup-errors';

/** The code of a request whose body (or headers) did not arrive in time (HTTP 408). */

export interface GraphQLHttpServerOptions<TContext extends BaseContext> {
  /** Apollo Server options; the drain plugin and error masking are added here. */
  apollo: ApolloServerOptions<TContext>;
  /** Builds the per-request context. */
  context: (args: ExpressContextFunctionArgument) => Promise<TContext>;
  /**
   * Answers /readyz: true when every dependency is reachable, or `{ ready, ...details }` to show the
   * details too (the gateway lists its subgraphs).
   */
  ready: () => Promise<boolean | ({ ready: boolean } & Record<string, unknown>)>;
  /** Interface to listen on. Defaults to 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Defaults to 0. */
  port?: number;
  /**
   * Express middleware run on /graphql before its body is read: the checks that should refuse a request
   * before reading it (the gateway's IP rate and credentials). Defaults to none.
   */
  middleware?: RequestHandler[];
  /**
   * Express middleware run on /graphql once its body has been read whole (and parsed), just before Apollo
   * Server: what a client still sending its body must not hold (the gateway's in-flight cap). Defaults to none.
   */
  afterBody?: RequestHandler[];
  /** Express "trust proxy" setting ("false", "true", a hop count or subnets). Defaults to false. */
  trustProxy?: string;
  /** Served as Prometheus text at GET /metrics. Defaults to none (no /metrics). */
  metrics?: Registry;
  /** When set, /metrics answers only `Authorization: Bearer <metricsToken>`. Defaults to none. */
  metricsToken?: string;
  /**
   * Registers extra routes on the Express app (the gateway's GraphiQL at /graphiql), after /healthz,
   * /readyz, /metrics and /graphql and before the JSON 404 handler; they skip `middleware`. Defaults to none.
   */
  routes?: (app: Express) => void;
  /**
   * Largest accepted request body ("100kb", "1mb": binary units). A larger declared `Content-Length` is
   * refused at once, a chunked body as soon as it passes the limit (413 PAYLOAD_TOO_LARGE, connection
   * closed). Defaults to 100kb.
   */
  bodyLimit?: string;
  /**
   * How long a /graphql request's body may take to arrive, from when reading it begins; then 408
   * REQUEST_TIMEOUT and the connection is closed. A GraphQL body is a few kB and the limit 100 kB, which
   * takes under 4 s even at 256 kbit/s, while a stalled body holds a connection and its buffer only this
   * long. Defaults to 5000 ms.
   */
  bodyTimeoutMs?: number;
  /** How long a client may take to send a request's headers (http.Server headersTimeout); then 408 and closed. Defaults to 10000 ms. */
  headersTimeoutMs?: number;
  /**
   * How long a client may take to send a whole request, headers and body (http.Server requestTimeout);
   * then 408 and closed. A backstop for bodies nothing reads (other routes): greater than both
   * `headersTimeoutMs` and `bodyTimeoutMs`. Defaults to 30000 ms.
   */
  requestTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open between requests (http.Server keepAliveTimeout). Defaults to 5000 ms. */
  keepAliveTimeoutMs?: number;
  /** How long stop() lets in-flight requests finish. Defaults to 10000 ms. */
  shutdownGraceMs?: number;
  /** The setting that chooses `port` (GATEWAY_PORT…), named when the port is taken. Defaults to "the port". */
  portSetting?: string;
  logger: Logger;
}

export interface RunningServer {
  url: string;
  port: number;
  /** Stops accepting connections, lets in-flight requests finish, then closes. */
  stop(): Promise<void>;
}

/**
 * Express + Apollo Server with /graphql, /healthz (alive) and /readyz (dependencies reachable).
 * Shared by the gateway and every subgraph so they behave the same at the HTTP level.
 */
export async function startGraphQLHttpServer<TContext extends BaseContext>(
  options: GraphQLHttpServerOptions<TContext>,
): Promise<RunningServer> {
  const bodyLimit = parseSize(options.bodyLimit ?? '100kb');
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 5_000;
  const headersTimeoutMs = options.headersTimeoutMs ?? 10_000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  if (requestTimeoutMs <= Math.max(headersTimeoutMs, bodyTimeoutMs))
    throw new Error(
      `requestTimeoutMs (${requestTimeoutMs}) must be greater than headersTimeoutMs (${headersTimeoutMs}) and bodyTimeoutMs (${bodyTimeoutMs}).`,
    );
  const app = express();
  const httpServer = http.createServer(
    {
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 5_000,
      // How often Node looks for connections past those timeouts (its default, 30 s, would let a slow
      // client keep a connection up to 30 s longer than they allow).
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(headersTimeoutMs / 4))),
    },
    app,
  );
  // `Expect: 100-continue` is answered when the body is about to be read, not before the checks.
  continueWhenReading(httpServer);
  // Errors Node answers itself, before Express (headers too slow or too large, malformed HTTP): JSON too.
  httpServer.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const response = (socket as Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
    if (error.code !== 'ECONNRESET' && socket.writable && !response?.headersSent) {
      const [status, code, message] =
        error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, ErrorCode.REQUEST_TIMEOUT, 'The request did not arrive in time.']
          : error.code === 'HPE_HEADER_OVERFLOW'
            ? [431, ErrorCode.BAD_REQUEST, 'Request headers too large.']
            : [400, ErrorCode.BAD_REQUEST, 'Malformed request.'];
      const body = JSON.stringify({ errors: [{ message, extensions: { code } }] });
      socket.write(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  });
  const apollo = new ApolloServer<TContext>({
    ...options.apollo,
    includeStacktraceInErrorResponses: false,
    // The entry point owns SIGTERM/SIGINT (lib/cli.ts runServer drains everything, then exits 0); Apollo's
    // own handlers would stop this server alone and re-raise the signal, racing that drain.
    stopOnTerminationSignals: false,
    plugins: [
      ...(options.apollo.plugins ?? []),
      ApolloServerPluginDrainHttpServer({ httpServer, stopGracePeriodMillis: options.shutdownGraceMs ?? 10_000 }),
    ],
  } as ApolloServerOptions<TContext>);
  await apollo.start();

  let stopping = false;
  app.disable('x-powered-by');
  const trust = options.trustProxy ?? 'false';
  app.set(
    'trust proxy',
    trust === 'true' ? true : trust === 'false' ? false : /^\d+$/.test(trust) ? Number(trust) : trust,
  );
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const answer = stopping ? false : await options.ready().catch(() => false);
    const { ready: ok, ...details } = typeof answer === 'boolean' ? { ready: answer } : answer;
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable', ...details });
  });
  const registry = options.metrics;
  if (registry) {
    const expected = options.metricsToken ? `Bearer ${options.metricsToken}` : null;
    app.get('/metrics', async (req, res) => {
      if (expected && req.headers.authorization !== expected) {
        res.status(401).json({
          errors: [{ message: 'Metrics need the metrics token.', extensions: { code: ErrorCode.UNAUTHENTICATED } }],
        });
        return;
      }
      res.type(registry.contentType).send(await registry.metrics());
    });
  }
  // Checks that refuse before reading, then the body, bounded in size and time (a client still sending
  // it holds nothing counted by `afterBody`). Its bytes are kept as req.rawBody: a subgraph checks that
  // the signed identity was made for exactly this body (lib/identity.ts).
  // Its own Express app, for its own settings: no Express ETag (a hash of every answer's bytes, which no
  // POST can use: the gateway sets a validator of the answer itself where a client can use one,
  // gateway/http-cache.ts). Everything else, trust proxy included, is inherited from `app`.
  const graphql = express();
  graphql.disable('x-powered-by');
  graphql.set('etag', false);
  graphql.use(
    ...(options.middleware ?? []),
    readBody({ limit: bodyLimit, timeoutMs: bodyTimeoutMs }),
    ...(options.afterBody ?? []),
    expressMiddleware(apollo, { context: options.context }),
  );
  app.use('/graphql', graphql);
  options.routes?.(app);
  app.use((_req, res) => {
    res
      .status(404)
      .json({ errors: [{ message: 'Not found. The API is at /graphql.', extensions: { code: ErrorCode.NOT_FOUND } }] });
  });
  // Body-parser and other middleware errors: a JSON answer with a code, never Express's HTML stack page.
  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    const status = typeof error?.status === 'number' && error.status < 500 ? error.status : 500;
    if (status === 500) {
      const errorId = randomUUID();
      options.logger.error({ err: error, errorId }, 'request failed');
      res.status(500).json({
        errors: [{ message: 'Internal error', extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, errorId } }],
      });
      return;
    }
    const [code, message] =
      status === 413
        ? [ErrorCode.PAYLOAD_TOO_LARGE, 'Request body too large.']
        : status === 408
          ? [ErrorCode.REQUEST_TIMEOUT, 'The request body did not arrive in time.']
          : [ErrorCode.BAD_REQUEST, 'Malformed request body.'];
    res.status(status).json({ errors: [{ message, extensions: { code } }] });
  };
  app.use(onError);

  await new Promise<void>((resolve, reject) => {
    // Only a failure to listen is a start-up failure: the listener goes once listening.
    const failed = (error: NodeJS.ErrnoException) => {
      void apollo.stop();
      reject(
        error.code === 'EADDRINUSE'
          ? portInUse(options.port ?? 0, options.host ?? '127.0.0.1', options.portSetting ?? 'the port')
          : error,
      );
    };
    httpServer.once('error', failed);
    httpServer.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      httpServer.off('error', failed);
      resolve();
    });
  });
  const { port } = httpServer.address() as AddressInfo;
  const host = options.host ?? '127.0.0.1';
  const urlHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  return {
    url: `http://${urlHost}:${port}/graphql`,
    port,
    stop: async () => {
      stopping = true;
      await apollo.stop();
    },
  };
}
