import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { startGateway, type GatewayOptions, type RunningGateway } from './server';
import { gatewaySettings } from './settings';

/**
 * The gateway as configured, with its Redis connection (when REDIS_URL is set): the one way the gateway
 * starts, for `npm run start:gateway`, `npm start` and the test harness. Stopping it closes both.
 */
export async function startConfiguredGateway(
  config: Config,
  logger: Logger,
  overrides: Partial<GatewayOptions> = {},
): Promise<RunningGateway> {
  const redis = config.REDIS_URL && !('redis' in overrides) ? connectRedis(config.REDIS_URL, logger) : undefined;
  // Share counters from the first request when Redis is up; serve on local ones meanwhile if it is not.
  if (redis && !(await redis.ready()))
    logger.warn('Redis not ready at start-up: rate limits use local counters until it is');
  const gateway = await startGateway({ ...gatewaySettings(config, redis), logger, ...overrides });
  return {
    ...gateway,
    stop: async () => {
      await gateway.stop();
      await redis?.close();
    },
  };
}
