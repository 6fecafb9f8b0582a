// First: production mode unless NODE_ENV says otherwise, then tracing, which must patch modules before anything loads them.
import '../lib/production-mode';
import '../lib/instrumentation';
import { runServer } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';
import { createLogger } from '../lib/logger';
import { startStack } from '../lib/stack';
import { migrate } from '../prisma/migrate';
import { generateDataset, isEmpty, seed } from '../prisma/seed';
import { startConfiguredWorker } from '../subgraphs/jobs/worker';

/**
 * `npm start`: the whole service in one process. Database (embedded unless DATABASE_URL), migrations,
 * seed on first run, every subgraph of the registry on its port, and the gateway. SIGTERM/SIGINT drain everything.
 */
async function main(): Promise<() => Promise<void>> {
  const config = loadConfig();
  const started = Date.now();
  const logger = createLogger('start', config.LOG_LEVEL);
  const database = await ensureDatabase(config, (message) => logger.warn(message));
  logger.info(
    { embedded: database.embedded },
    database.embedded ? 'embedded PostgreSQL running' : 'using DATABASE_URL',
  );

  const applied = await migrate(database.url);
  if (applied.length) logger.info({ applied }, 'migrations applied');
  if (config.SEED_SCALE > 0 && (await isEmpty(database.url))) {
    const dataset = generateDataset(config.SEED_SCALE);
    await seed(database.url, dataset);
    logger.info(
      { users: dataset.users.length, products: dataset.products.length, reviews: dataset.reviews.length },
      'seeded empty database',
    );
  }

  const stack = await startStack({ config, databaseUrl: database.url }).catch(async (error: unknown) => {
    await database.stop();
    throw error;
  });
  // The jobs worker, in this process too unless JOBS_WORKER=off (then run `npm run start:worker`).
  const worker =
    config.JOBS_WORKER === 'on'
      ? await startConfiguredWorker(config, createLogger('jobs-worker', config.LOG_LEVEL), {
          databaseUrl: database.url,
          gatewayUrl: config.JOBS_GATEWAY_URL ?? stack.gateway.url,
        }).catch(async (error: unknown) => {
          await stack.stop();
          await database.stop();
          throw error;
        })
      : undefined;
  const url = stack.gateway.url.replace('//127.0.0.1:', '//localhost:');
  logger.info({ url, readyInMs: Date.now() - started, mode: process.env.NODE_ENV }, 'storefront supergraph ready');
  console.log(`\n  Storefront supergraph ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${url}\n`);

  return async () => {
    logger.info('draining');
    // First: its pages in hand go through the gateway.
    await worker?.stop();
    await stack.stop();
    await database.stop();
  };
}

runServer(main);
