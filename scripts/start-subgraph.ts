// First: production mode unless NODE_ENV says otherwise, then tracing, which must patch modules before anything loads them.
import '../lib/production-mode';
import '../lib/instrumentation';
import { runServer } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { runSubgraph } from '../lib/subgraph';
import { subgraphEntry } from '../subgraphs/registry';

/**
 * `npm run start:subgraph -- <name>`: one subgraph of the registry as its own process (DATABASE_URL
 * required), on SUBGRAPH_<NAME>_PORT, draining on SIGTERM/SIGINT.
 */
runServer(async () => {
  const name = subgraphEntry(process.argv[2] ?? '').name;
  const config = loadConfig();
  if (!config.DATABASE_URL)
    throw new Error(
      'DATABASE_URL is required to run a subgraph on its own (npm start runs everything with an embedded database).',
    );
  const running = await runSubgraph(name, config, config.DATABASE_URL);
  return running.stop;
});
