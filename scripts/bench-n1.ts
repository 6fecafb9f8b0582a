import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';
import { migrate } from '../prisma/migrate';
import { BENCH_SCALE, generateDataset, seed } from '../prisma/seed';
import { startSubgraphsAndGateway, type Harness } from '../test/harness';
import { STOREFRONT_PAGE, USERS_PAGE } from '../test/operations';

/**
 * `npm run bench:n1`: what N+1 costs. Runs the storefront page and the users page at N = 10, 50, 100
 * against a fresh bench-scale database, through the gateway, once with DataLoader batching and once
 * in the naive mode (BATCHING=off: one statement per item), and prints statements per operation
 * (exact, summed over subgraphs) and median latency for both, with their ratios.
 *
 * PostgreSQL: the server of DATABASE_URL (the bench creates and drops its own database there), or
 * the embedded one. `--iterations K` sets the timed runs per cell (default 30).
 */
/** Its own database, dropped afterwards; the random suffix means it can never be someone else's. */
const BENCH_DB = `storefront_bench_n1_${randomBytes(4).toString('hex')}`;
const SIZES = [10, 50, 100];
const OPERATIONS = [
  { name: 'products(first: N) { reviews(first: 5) { author } averageRating }', query: STOREFRONT_PAGE },
  { name: 'users(first: N) { reviews(first: 5) { product } }', query: USERS_PAGE },
];

interface Cell {
  statements: string;
  total: number;
  medianMs: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

async function timedRun(harness: Harness, query: string, first: number): Promise<{ ms: number; counts: Record<string, number> }> {
  harness.sql.reset();
  const started = performance.now();
  const { errors } = await harness.query(query, { first });
  const ms = performance.now() - started;
  if (errors) throw new Error(`The benchmark query failed: ${JSON.stringify(errors)}`);
  return { ms, counts: harness.sql.counts() };
}

function parseIterations(argv: string[]): number {
  const index = argv.indexOf('--iterations');
  const value = index >= 0 ? Number(argv[index + 1]) : 30;
  if (!Number.isInteger(value) || value < 1 || value > 10_000) throw new Error('--iterations must be a whole number from 1 to 10000');
  return value;
}

async function createBenchDatabase(serverUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${BENCH_DB}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${BENCH_DB}`;
  return url.toString();
}

async function main() {
  const iterations = parseIterations(process.argv.slice(2));
  const server = await ensureDatabase(loadConfig());
  const url = await createBenchDatabase(server.url);
  let batched: Harness | undefined;
  let naive: Harness | undefined;
  try {
    await migrate(url);
    const dataset = generateDataset(BENCH_SCALE);
    await seed(url, dataset);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    await client.end();
    console.log(
      `PostgreSQL ${rows[0]!.server_version}${server.embedded ? ' (embedded)' : ''}; bench scale ${BENCH_SCALE}: ` +
        `${dataset.users.length} users, ${dataset.products.length} products, ${dataset.reviews.length} reviews; ` +
        `${iterations} timed runs per cell after 3 warm-ups, batched and naive interleaved.\n`,
    );

    // The entity cache stays off: this bench measures what batching alone saves.
    batched = await startSubgraphsAndGateway(url, { batching: true, env: { ENTITY_CACHE: 'off' } });
    naive = await startSubgraphsAndGateway(url, { batching: false, env: { ENTITY_CACHE: 'off' } });
    const header = ['operation', 'N', 'batched stmts', 'batched median', 'naive stmts', 'naive median', 'stmts ratio', 'latency ratio'];
    const table: string[][] = [];
    for (const operation of OPERATIONS) {
      for (const first of SIZES) {
        const cells: Record<'batched' | 'naive', Cell> = {} as never;
        const samples = { batched: [] as number[], naive: [] as number[] };
        const counts: Record<'batched' | 'naive', Record<string, number>> = {} as never;
        for (let run = 0; run < iterations + 3; run += 1) {
          for (const [mode, harness] of [['batched', batched], ['naive', naive]] as const) {
            const result = await timedRun(harness, operation.query, first);
            if (run >= 3) samples[mode].push(result.ms);
            counts[mode] = result.counts;
          }
        }
        for (const mode of ['batched', 'naive'] as const) {
          const { accounts, catalog, reviews } = counts[mode] as Record<string, number>;
          const total = accounts! + catalog! + reviews!;
          cells[mode] = { statements: `${total} (${catalog}+${reviews}+${accounts})`, total, medianMs: median(samples[mode]) };
        }
        table.push([
          operation.name,
          String(first),
          cells.batched.statements,
          `${cells.batched.medianMs.toFixed(1)} ms`,
          cells.naive.statements,
          `${cells.naive.medianMs.toFixed(1)} ms`,
          `${(cells.naive.total / cells.batched.total).toFixed(1)}×`,
          `${(cells.naive.medianMs / cells.batched.medianMs).toFixed(1)}×`,
        ]);
      }
    }
    const widths = header.map((title, column) => Math.max(title.length, ...table.map((row) => row[column]!.length)));
    const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
    console.log([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...table.map(line)].join('\n'));
    console.log('\nStatements are summed over subgraphs, shown as (catalog+reviews+accounts). Ratios are naive / batched.');
  } finally {
    await batched?.stop();
    await naive?.stop();
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`);
    await client.end();
    await server.stop();
  }
}

runMain(main);
