// First: tracing must patch modules before anything loads them.
import '../lib/instrumentation';
import { runServer } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';
import type { RunningServer } from '../lib/http-server';
import { createLogger } from '../lib/logger';
import { runSubgraph } from '../lib/subgraph';
import { gatewaySettings } from '../gateway/settings';
import { connectRedis } from '../lib/redis';
import { startGateway } from '../gateway/server';
import { migrate } from '../prisma/migrate';
import { generateDataset, isEmpty, seed } from '../prisma/seed';
import { accountsSubgraph } from '../subgraphs/accounts/server';
import { catalogSubgraph } from '../subgraphs/catalog/server';
import { reviewsSubgraph } from '../subgraphs/reviews/server';

/**
 * `npm start`: the whole service in one process. Database (embedded unless DATABASE_URL), migrations,
 * seed on first run, three subgraphs on their ports, and the gateway. SIGTERM/SIGINT drain everything.
 */
async function main(): Promise<() => Promise<void>> {
  const config = loadConfig();
  const started = Date.now();
  const logger = createLogger('start', config.LOG_LEVEL);
  const database = await ensureDatabase(config, (message) => logger.warn(message));
  logger.info({ embedded: database.embedded }, database.embedded ? 'embedded PostgreSQL running' : 'using DATABASE_URL');

  const applied = await migrate(database.url);
  if (applied.length) logger.info({ applied }, 'migrations applied');
  if (config.SEED_SCALE > 0 && (await isEmpty(database.url))) {
    const dataset = generateDataset(config.SEED_SCALE);
    await seed(database.url, dataset);
    logger.info({ users: dataset.users.length, products: dataset.products.length, reviews: dataset.reviews.length }, 'seeded empty database');
  }

  const subgraphs = await Promise.all([
    runSubgraph('accounts', accountsSubgraph, config, database.url),
    runSubgraph('catalog', catalogSubgraph, config, database.url),
    runSubgraph('reviews', reviewsSubgraph, config, database.url),
  ]);
  const [accounts, catalog, reviews] = subgraphs.map((s) => s.server) as [RunningServer, RunningServer, RunningServer];
  const gatewayLogger = createLogger('gateway', config.LOG_LEVEL);
  const redis = config.REDIS_URL ? connectRedis(config.REDIS_URL, gatewayLogger) : undefined;
  // Share counters from the first request when Redis is up; serve on local ones meanwhile if it is not.
  if (redis && !(await redis.ready())) gatewayLogger.warn('Redis not ready at start-up: rate limits use local counters until it is');
  const gateway = await startGateway({
    port: config.GATEWAY_PORT,
    host: config.HOST,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
    subgraphUrls: { accounts: accounts.url, catalog: catalog.url, reviews: reviews.url },
    ...gatewaySettings(config, redis?.client),
    logger: gatewayLogger,
  });
  const url = gateway.url.replace('//127.0.0.1:', '//localhost:');
  logger.info({ url, readyInMs: Date.now() - started }, 'storefront supergraph ready');
  console.log(`\n  Storefront supergraph ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${url}\n`);

  return async () => {
    logger.info('draining');
    await gateway.stop();
    await redis?.close();
    await Promise.all(subgraphs.map((s) => s.stop()));
    await database.stop();
  };
}

runServer(main);
