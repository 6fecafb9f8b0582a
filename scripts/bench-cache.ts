import { performance } from 'node:perf_hooks';
import { runMain } from '../lib/cli';
import { startSubgraphsAndGateway, type Harness } from '../lib/harness';
import { createBenchDatabase, median, parseIterations, printTable, redisUrlOrNothing } from './bench-kit';
import { STOREFRONT_PAGE } from './operations';

/**
 * `npm run bench:cache`: the storefront page (products with their rating, newest reviews and each
 * review's author) through the gateway at N = 20 and 100, cold (entity cache emptied before every run)
 * against warm, on a fresh bench-scale database and the Redis of REDIS_URL (else 127.0.0.1:6379, else
 * the in-memory cache). Prints SQL statements per operation (catalog+reviews+accounts), median latency
 * and the cache's hit rate.
 */
const SIZES = [20, 100];

async function run(harness: Harness, first: number): Promise<{ ms: number; statements: string }> {
  harness.sql.reset();
  const started = performance.now();
  const { errors } = await harness.query(STOREFRONT_PAGE, { first });
  const ms = performance.now() - started;
  if (errors) throw new Error(`The benchmark query failed: ${JSON.stringify(errors)}`);
  const { catalog, reviews, accounts } = harness.sql.counts();
  return { ms, statements: `${catalog + reviews + accounts} (${catalog}+${reviews}+${accounts})` };
}

async function main() {
  const iterations = parseIterations(process.argv.slice(2));
  const redisUrl = await redisUrlOrNothing();
  const database = await createBenchDatabase('storefront_bench_cache');
  let harness: Harness | undefined;
  try {
    console.log(
      `${database.description}; entity cache in ${redisUrl ? `Redis (${redisUrl})` : 'memory (no Redis reachable)'}; ${iterations} timed runs per cell.\n`,
    );
    harness = await startSubgraphsAndGateway(database.url, {
      env: { ENTITY_CACHE: 'on', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) },
    });
    const caches = Object.values(harness.services).map((services) => services.cache!);
    const rows: string[][] = [];
    for (const first of SIZES) {
      const cold: number[] = [];
      const warm: number[] = [];
      let coldStatements = '';
      let warmStatements = '';
      for (let i = 0; i < iterations + 3; i += 1) {
        await Promise.all(caches.map((cache) => cache.clear()));
        const coldRun = await run(harness, first);
        const warmRun = await run(harness, first);
        if (i >= 3) {
          cold.push(coldRun.ms);
          warm.push(warmRun.ms);
        }
        coldStatements = coldRun.statements;
        warmStatements = warmRun.statements;
      }
      rows.push([
        `products(first: ${first}) storefront page`,
        coldStatements,
        `${median(cold).toFixed(1)} ms`,
        warmStatements,
        `${median(warm).toFixed(1)} ms`,
        `${(median(cold) / median(warm)).toFixed(1)}×`,
      ]);
    }
    printTable(['operation', 'cold stmts', 'cold median', 'warm stmts', 'warm median', 'speed-up'], rows);
    const [hits, misses, errors] = (['hits', 'misses', 'errors'] as const).map((kind) =>
      caches.reduce((total, cache) => total + cache.counters[kind], 0),
    );
    console.log(
      `\nEntity cache over the whole run: ${hits} hits, ${misses} misses, ${errors} errors. The one warm statement is the product list itself, which is not an entity lookup.`,
    );
  } finally {
    await harness?.stop();
    await database.drop();
  }
}

runMain(main);
