// First: production mode unless NODE_ENV says otherwise, then tracing, which must patch modules before anything loads them.
import '../lib/production-mode';
import '../lib/instrumentation';
import { runServer } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { startConfiguredWorker } from '../subgraphs/jobs/worker';

/**
 * `npm run start:worker`: a jobs worker as its own process (DATABASE_URL required), any number of them, on any
 * machine that reaches the database, the gateway (JOBS_GATEWAY_URL) and the results folder (JOBS_DIR). Its
 * /healthz, /readyz and /metrics are on WORKER_PORT. SIGTERM: the pages in hand are finished or handed back, exit 0.
 */
runServer(async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL)
    throw new Error('DATABASE_URL is required to run a worker on its own (npm start runs one with everything else).');
  const worker = await startConfiguredWorker(config, createLogger('jobs-worker', config.LOG_LEVEL), {
    databaseUrl: config.DATABASE_URL,
  });
  return worker.stop;
});
