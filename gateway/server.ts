import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BaseContext } from '@apollo/server';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { ApolloServerPluginSchemaReportingDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginUsageReportingDisabled } from '@apollo/server/plugin/disabled';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { maskUnexpectedErrors } from '../lib/errors';
import { startGraphQLHttpServer, type RunningServer } from '../lib/http-server';
import { readCallerId, USER_ID_HEADER } from '../lib/identity';
import type { Logger } from '../lib/logger';

// Nothing in this service may call out to the internet.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

export const SUPERGRAPH_PATH = join(__dirname, '..', 'schema', 'supergraph.graphql');

export interface GatewayContext extends BaseContext {
  callerId: string | null;
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
  logger: Logger;
}

/** Forwards the caller's identity to every subgraph fetch. */
class IdentityForwardingDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  override willSendRequest({ request, context }: Parameters<NonNullable<RemoteGraphQLDataSource<GatewayContext>['willSendRequest']>>[0]) {
    if (context.callerId) request.http?.headers.set(USER_ID_HEADER, context.callerId);
  }
}

/** The gateway: one endpoint over the composed supergraph, with the Sandbox landing page on GET. */
export function startGateway(options: GatewayOptions): Promise<RunningServer> {
  const gateway = new ApolloGateway({
    // A static supergraph: no managed federation, no runtime introspection of subgraphs.
    supergraphSdl: options.supergraphSdl ?? readFileSync(SUPERGRAPH_PATH, 'utf8'),
    buildService: ({ name, url }) => new IdentityForwardingDataSource({ url: options.subgraphUrls?.[name] ?? url }),
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
    context: async ({ req }) => ({ callerId: readCallerId(req.headers) }),
    ready: async () => true,
    host: options.host,
    port: options.port,
    shutdownGraceMs: options.shutdownGraceMs,
    logger: options.logger,
  });
}
