import { performance } from 'node:perf_hooks';
import { runMain } from '../lib/cli';
import { startSubgraphsAndGateway, type Harness } from '../lib/harness';
import { createBenchDatabase, median, parseIterations, printTable } from './bench-kit';
import { STOREFRONT_PAGE, USERS_PAGE } from './operations';

/**
 * `npm run bench:n1`: what N+1 costs. Runs the storefront page and the users page at N = 10, 50, 100
 * against a fresh bench-scale database, through the gateway, once with DataLoader batching and once
 * in the naive mode (BATCHING=off: one statement per item), and prints statements per operation
 * (exact, summed over subgraphs) and median latency for both, with their ratios.
 *
 * PostgreSQL: the server of DATABASE_URL (the bench creates and drops its own database there), or
 * the embedded one. `--iterations K` sets the timed runs per cell (default 30).
 */
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

async function timedRun(
  harness: Harness,
  query: string,
  first: number,
): Promise<{ ms: number; counts: Record<string, number> }> {
  harness.sql.reset();
  const started = performance.now();
  const { errors } = await harness.query(query, { first });
  const ms = performance.now() - started;
  if (errors) throw new Error(`The benchmark query failed: ${JSON.stringify(errors)}`);
  return { ms, counts: harness.sql.counts() };
}

async function main() {
  const iterations = parseIterations(process.argv.slice(2));
  const database = await createBenchDatabase('storefront_bench_n1');
  const url = database.url;
  let batched: Harness | undefined;
  let naive: Harness | undefined;
  try {
    console.log(
      `${database.description}; ${iterations} timed runs per cell after 3 warm-ups, batched and naive interleaved.\n`,
    );

    // The entity cache stays off: this bench measures what batching alone saves.
    batched = await startSubgraphsAndGateway(url, { batching: true, env: { ENTITY_CACHE: 'off' } });
    naive = await startSubgraphsAndGateway(url, { batching: false, env: { ENTITY_CACHE: 'off' } });
    const header = [
      'operation',
      'N',
      'batched stmts',
      'batched median',
      'naive stmts',
      'naive median',
      'stmts ratio',
      'latency ratio',
    ];
    const table: string[][] = [];
    for (const operation of OPERATIONS) {
      for (const first of SIZES) {
        const cells: Record<'batched' | 'naive', Cell> = {} as never;
        const samples = { batched: [] as number[], naive: [] as number[] };
        const counts: Record<'batched' | 'naive', Record<string, number>> = {} as never;
        for (let run = 0; run < iterations + 3; run += 1) {
          for (const [mode, harness] of [
            ['batched', batched],
            ['naive', naive],
          ] as const) {
            const result = await timedRun(harness, operation.query, first);
            if (run >= 3) samples[mode].push(result.ms);
            counts[mode] = result.counts;
          }
        }
        for (const mode of ['batched', 'naive'] as const) {
          const { accounts, catalog, reviews } = counts[mode] as Record<string, number>;
          const total = accounts! + catalog! + reviews!;
          cells[mode] = {
            statements: `${total} (${catalog}+${reviews}+${accounts})`,
            total,
            medianMs: median(samples[mode]),
          };
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
    printTable(header, table);
    console.log(
      '\nStatements are summed over subgraphs, shown as (catalog+reviews+accounts). Ratios are naive / batched.',
    );
  } finally {
    await batched?.stop();
    await naive?.stop();
    await database.drop();
  }
}

runMain(main);
