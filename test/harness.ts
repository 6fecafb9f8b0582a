import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../lib/config';
import { createDatabaseClient, type DatabaseClient } from '../lib/db';
import type { RunningServer } from '../lib/http-server';
import { createLogger } from '../lib/logger';
import { startSubgraph } from '../lib/subgraph';
import { startGateway } from '../gateway/server';
import { accountsSubgraph } from '../subgraphs/accounts/server';
import { catalogSubgraph } from '../subgraphs/catalog/server';
import { createCatalogClient } from '../subgraphs/reviews/catalog-client';
import { reviewsSubgraph } from '../subgraphs/reviews/server';
import { adminQuery, withDatabase } from './databases';

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  headers: Headers;
  data?: T | null;
  errors?: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, any> }>;
}

/** A private copy of the seeded fixture database for one test file. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env.TEST_ADMIN_URL;
  const template = process.env.TEST_TEMPLATE_DB;
  if (!adminUrl || !template) throw new Error('Run through jest: test/global-setup.ts prepares the template database.');
  const name = `${template}_${randomBytes(4).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)}`);
  return {
    url: withDatabase(adminUrl, name),
    drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  };
}

export interface Harness {
  gatewayUrl: string;
  subgraphs: Record<'accounts' | 'catalog' | 'reviews', RunningServer>;
  database: DatabaseClient;
  /** POSTs an operation to the gateway (or `url`) and returns status, headers and the JSON body. */
  query<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: { headers?: Record<string, string>; url?: string }): Promise<GraphQLResponse<T>>;
  stop(): Promise<void>;
}

/**
 * Boots the three subgraphs and the gateway on free ports (port 0) against `databaseUrl`, as real
 * HTTP servers, in the way apollographql/federation's tests do.
 */
export async function startSubgraphsAndGateway(databaseUrl: string): Promise<Harness> {
  const config = loadConfig({ ...process.env, DATABASE_URL: databaseUrl });
  const logger = createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const database = createDatabaseClient(databaseUrl, 5);
  const common = { port: 0, host: '127.0.0.1', database, logger, shutdownGraceMs: 1_000 };
  const accounts = await startSubgraph(accountsSubgraph(database), common);
  const catalog = await startSubgraph(catalogSubgraph(database), common);
  const reviews = await startSubgraph(reviewsSubgraph(database, config, createCatalogClient(catalog.url)), common);
  const gateway = await startGateway({
    port: 0,
    logger,
    shutdownGraceMs: 1_000,
    subgraphUrls: { accounts: accounts.url, catalog: catalog.url, reviews: reviews.url },
  });
  return {
    gatewayUrl: gateway.url,
    subgraphs: { accounts, catalog, reviews },
    database,
    async query(query, variables = {}, options = {}) {
      const response = await fetch(options.url ?? gateway.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...options.headers },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: any; errors?: any[] };
      return { status: response.status, headers: response.headers, ...body };
    },
    async stop() {
      await gateway.stop();
      await Promise.all([accounts.stop(), catalog.stop(), reviews.stop()]);
      await database.close();
    },
  };
}
