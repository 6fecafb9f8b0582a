import { getHeapStatistics } from 'node:v8';
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
  warnIfResponseCacheOutgrowsHeap(config, logger);
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

/**
 * The response cache's in-process layer lives in the V8 heap, which `npm run start:gateway` caps
 * (gateway/memory.md): a layer that cannot fit would end the process with "heap out of memory" under load.
 */
function warnIfResponseCacheOutgrowsHeap(config: Config, logger: Logger): void {
  if (config.RESPONSE_CACHE !== 'on') return;
  const limitMb = getHeapStatistics().heap_size_limit / 1024 / 1024;
  // The layer's own bytes, about as much again while answers are built, and the gateway's ~128 MB of live heap.
  const neededMb = 2 * config.RESPONSE_CACHE_MAX_MB + 128;
  if (neededMb > limitMb)
    logger.warn(
      { responseCacheMaxMb: config.RESPONSE_CACHE_MAX_MB, heapLimitMb: Math.round(limitMb) },
      `RESPONSE_CACHE_MAX_MB needs a heap of about ${neededMb} MB: raise --max-old-space-size in NODE_OPTIONS, or lower it`,
    );
}
