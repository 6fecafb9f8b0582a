// First: production mode unless NODE_ENV says otherwise, then tracing, which must patch modules before anything loads them.
import '../lib/production-mode';
import '../lib/instrumentation';
import { getHeapStatistics } from 'node:v8';
import { runServer } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { startConfiguredGateway } from './bootstrap';

/** `npm run start:gateway`: the gateway on its own, calling each subgraph at SUBGRAPH_<NAME>_URL (or its default port). */
runServer(async () => {
  const config = loadConfig();
  const logger = createLogger('gateway', config.LOG_LEVEL);
  const gateway = await startConfiguredGateway(config, logger);
  // The heap's limit, so an operator sees the bound `start:gateway` sets (gateway/memory.md) took effect.
  const heapLimitMb = Math.round(getHeapStatistics().heap_size_limit / 1024 / 1024);
  logger.info({ url: gateway.url, mode: process.env.NODE_ENV, heapLimitMb }, 'gateway ready');
  return gateway.stop;
});
