import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { migrate } from '../prisma/migrate';
import { BENCH_SCALE, generateDataset, seed } from '../prisma/seed';

/** Shared by the `bench:*` scripts: a fresh bench-scale database, timing helpers, a table printer. */

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** `--iterations K` (timed runs per cell), 1 to 10000. */
export function parseIterations(argv: string[], fallback = 30): number {
  const index = argv.indexOf('--iterations');
  const value = index >= 0 ? Number(argv[index + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1 || value > 10_000)
    throw new Error('--iterations must be a whole number from 1 to 10000');
  return value;
}

/**
 * A new database seeded at BENCH_SCALE on the server of DATABASE_URL (or the embedded one), named
 * with a random suffix so it can never be someone else's, and dropped by `drop()`.
 */
export async function createBenchDatabase(prefix: string) {
  const server = await ensureDatabase(loadConfig());
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  const drop = async () => {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await server.stop();
  };
  try {
    await migrate(url.toString());
    const dataset = generateDataset(BENCH_SCALE);
    await seed(url.toString(), dataset);
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    await client.end();
    const description =
      `PostgreSQL ${rows[0]!.server_version}${server.embedded ? ' (embedded)' : ''}; bench scale ${BENCH_SCALE}: ` +
      `${dataset.users.length} users, ${dataset.products.length} products, ${dataset.reviews.length} reviews`;
    return { url: url.toString(), description, drop };
  } catch (error) {
    await drop();
    throw error;
  }
}

/** A Markdown table, columns padded. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  console.log([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n'));
}

/** REDIS_URL (default the local 6379) when a Redis answers there within a second, else undefined (in-memory stores). */
export async function redisUrlOrNothing(): Promise<string | undefined> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const probe = connectRedis(url, createLogger('bench', 'silent'));
  const ready = await probe.ready(1_000);
  await probe.close();
  return ready ? url : undefined;
}

/** The `--env KEY=VALUE` overrides of a run, for its header ('' when there are none). */
export const describeEnv = (env: Record<string, string>) =>
  Object.keys(env).length
    ? `; --env ${Object.entries(env)
        .map(([key, value]) => `${key}=${value}`)
        .join(' ')}`
    : '';
