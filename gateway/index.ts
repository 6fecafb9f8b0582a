// First: tracing must patch modules before anything loads them.
import '../lib/instrumentation';
import { runServer } from '../lib/cli';
import { loadConfig, subgraphUrl } from '../lib/config';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { startGateway } from './server';
import { gatewaySettings } from './settings';

/** Runs the gateway on its own, calling subgraphs at ACCOUNTS_URL, CATALOG_URL and REVIEWS_URL (or the default ports). */
runServer(async () => {
  const config = loadConfig();
  const logger = createLogger('gateway', config.LOG_LEVEL);
  const redis = config.REDIS_URL ? connectRedis(config.REDIS_URL, logger) : undefined;
  // Share counters from the first request when Redis is up; serve on local ones meanwhile if it is not.
  if (redis && !(await redis.ready())) logger.warn('Redis not ready at start-up: rate limits use local counters until it is');
  const server = await startGateway({
    port: config.GATEWAY_PORT,
    host: config.HOST,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
    subgraphUrls: {
      accounts: subgraphUrl(config, 'accounts'),
      catalog: subgraphUrl(config, 'catalog'),
      reviews: subgraphUrl(config, 'reviews'),
    },
    ...gatewaySettings(config, redis?.client),
    logger,
  });
  logger.info({ url: server.url }, 'gateway ready');
  return async () => {
    await server.stop();
    await redis?.close();
  };
});
