import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, type ApolloServerOptions, type BaseContext } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { expressMiddleware, type ExpressContextFunctionArgument } from '@as-integrations/express5';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Registry } from 'prom-client';
import { ErrorCode } from './errors';
import type { Logger } from './logger';
import { portInUse } from './startup-errors';

export interface GraphQLHttpServerOptions<TContext extends BaseContext> {
  /** Apollo Server options; the drain plugin and error masking are added here. */
  apollo: ApolloServerOptions<TContext>;
  /** Builds the per-request context. */
  context: (args: ExpressContextFunctionArgument) => Promise<TContext>;
  /** Answers /readyz: true when every dependency is reachable. */
  ready: () => Promise<boolean>;
  /** Interface to listen on. Defaults to 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** Express middleware run before /graphql is parsed (the gateway's request limits). Defaults to none. */
  middleware?: RequestHandler[];
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
  /** Largest accepted request body. Defaults to 100kb. */
  bodyLimit?: string;
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
  const app = express();
  const httpServer = http.createServer(app);
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
    const ok = !stopping && (await options.ready().catch(() => false));
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable' });
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
  // The body's bytes are kept (a reference, not a copy): a subgraph checks that the signed identity
  // was made for exactly this body (lib/identity.ts).
  const keepRawBody = (req: http.IncomingMessage & { rawBody?: Uint8Array }, _res: unknown, body: Buffer) => {
    req.rawBody = body;
  };
  app.use(
    '/graphql',
    ...(options.middleware ?? []),
    express.json({ limit: options.bodyLimit ?? '100kb', verify: keepRawBody }),
    expressMiddleware(apollo, { context: options.context }),
  );
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
    const code = status === 413 ? ErrorCode.PAYLOAD_TOO_LARGE : ErrorCode.BAD_REQUEST;
    res.status(status).json({
      errors: [
        { message: status === 413 ? 'Request body too large.' : 'Malformed request body.', extensions: { code } },
      ],
    });
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
