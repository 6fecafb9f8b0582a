import type { Caller } from './authorization';
import { runServer } from './cli';
import type { DatabaseClient } from './db';
import type { SubgraphName } from './config';
import { loadConfig } from './config';
import { runSubgraph, type SubgraphDefinition, type SubgraphServices } from './subgraph';

/** Runs one subgraph as its own process (DATABASE_URL required), draining on SIGTERM/SIGINT. */
export function runStandalone<TContext extends Caller>(
  name: SubgraphName,
  build: (database: DatabaseClient, services: SubgraphServices) => SubgraphDefinition<TContext>,
): void {
  runServer(async () => {
    const config = loadConfig();
    if (!config.DATABASE_URL) throw new Error('DATABASE_URL is required to run a subgraph on its own (npm start runs everything with an embedded database).');
    const running = await runSubgraph(name, build, config, config.DATABASE_URL);
    return running.stop;
  });
}
