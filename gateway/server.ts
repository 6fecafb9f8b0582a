import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BaseContext } from '@apollo/server';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { ApolloServerPluginSchemaReportingDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginUsageReportingDisabled } from '@apollo/server/plugin/disabled';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { maskUnexpectedErrors } from '../lib/errors';
import { startGraphQLHttpServer, type RunningServer } from '../lib/http-server';
import { IDENTITY_HEADER, type IdentitySigner } from '../lib/identity';
import type { Logger } from '../lib/logger';
import type { BearerAuthenticator } from './auth';

// Nothing in this service may call out to the internet.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

export const SUPERGRAPH_PATH = join(__dirname, '..', 'schema', 'supergraph.graphql');

export interface GatewayContext extends BaseContext {
  /** The verified user id from the bearer token, or null for an anonymous caller. */
  callerId: string | null;
  /** The caller's identity signed for subgraphs: made once per request, on the first subgraph fetch. */
  signedIdentity?: Promise<string>;
}

export interface GatewayOptions {
  /** Supergraph SDL. Defaults to the committed schema/supergraph.graphql. */
  supergraphSdl?: string;
  /** Subgraph URLs by name, overriding those composed into the supergraph. Defaults to none. */
  subgraphUrls?: Partial<Record<string, string>>;
  /** Port to listen on; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** Interface to listen on. Defaults to 127.0.0.1. */
  host?: string;
  /** How long SIGTERM lets in-flight requests finish. Defaults to 10000 ms. */
  shutdownGraceMs?: number;
  /** Verifies the client's bearer token (see createBearerAuthenticator). */
  authenticate: BearerAuthenticator;
  /** Signs the caller's identity for subgraphs (see createIdentitySigner). */
  signIdentity: IdentitySigner;
  logger: Logger;
}

/** Passes the caller's identity, signed, to every subgraph fetch (anonymous callers too). */
class IdentityForwardingDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  constructor(
    config: ConstructorParameters<typeof RemoteGraphQLDataSource<GatewayContext>>[0],
    private readonly signIdentity: IdentitySigner,
  ) {
    super(config);
  }

  override async willSendRequest({ request, context }: Parameters<NonNullable<RemoteGraphQLDataSource<GatewayContext>['willSendRequest']>>[0]) {
    context.signedIdentity ??= this.signIdentity(context.callerId ?? null);
    request.http?.headers.set(IDENTITY_HEADER, await context.signedIdentity);
  }
}

/** The gateway: one endpoint over the composed supergraph, with the Sandbox landing page on GET. */
export function startGateway(options: GatewayOptions): Promise<RunningServer> {
  const gateway = new ApolloGateway({
    // A static supergraph: no managed federation, no runtime introspection of subgraphs.
    supergraphSdl: options.supergraphSdl ?? readFileSync(SUPERGRAPH_PATH, 'utf8'),
    buildService: ({ name, url }) => new IdentityForwardingDataSource({ url: options.subgraphUrls?.[name] ?? url }, options.signIdentity),
    logger: options.logger,
  });
  return startGraphQLHttpServer<GatewayContext>({
    apollo: {
      gateway,
      formatError: maskUnexpectedErrors(options.logger),
      introspection: true,
      plugins: [
        ApolloServerPluginLandingPageLocalDefault({ embed: true, includeCookies: false }),
        ApolloServerPluginUsageReportingDisabled(),
        ApolloServerPluginSchemaReportingDisabled(),
      ],
    },
    // A bad token is a 401 before anything runs; no token is an anonymous caller.
    context: async ({ req }) => ({ callerId: await options.authenticate(req.headers.authorization) }),
    ready: async () => true,
    host: options.host,
    port: options.port,
    shutdownGraceMs: options.shutdownGraceMs,
    logger: options.logger,
  });
}
