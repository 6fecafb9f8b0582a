import type { SubgraphModule } from '../lib/subgraph-definition';

/**
 * Every subgraph of the service, one line each: its name (also its folder under subgraphs/, which holds
 * its SDL, Prisma models, resolvers, loaders and tests), the port it listens on by default, and how to
 * load its definition (on demand, so the gateway and scripts never load subgraph code they do not run).
 *
 * Everything else derives from this list: the SUBGRAPH_<NAME>_* settings, composition, resolver
 * codegen, `npm start`, the gateway's subgraph URLs and timeouts, tracing names and the test harness.
 * Adding a subgraph is a folder and a line here (see the README's "Changing the schema").
 */
/* eslint-disable @typescript-eslint/no-require-imports -- loaded on demand: the gateway never loads subgraph code */
export const SUBGRAPHS = [
  { name: 'accounts', port: 4001, load: () => require('./accounts') as SubgraphModule },
  { name: 'catalog', port: 4002, load: () => require('./catalog') as SubgraphModule },
  { name: 'reviews', port: 4003, load: () => require('./reviews') as SubgraphModule },
  { name: 'jobs', port: 4004, load: () => require('./jobs') as SubgraphModule },
] as const satisfies readonly SubgraphEntry[];
/* eslint-enable @typescript-eslint/no-require-imports */

export interface SubgraphEntry {
  /** Lower-case letters: the folder name, the `name` in the supergraph and the `<NAME>` in its settings. */
  name: string;
  /** The port it listens on unless SUBGRAPH_<NAME>_PORT says otherwise. */
  port: number;
  /** Loads subgraphs/<name>/index.ts, whose default export is its definition (defineSubgraph). */
  load(): SubgraphModule;
}

export type SubgraphName = (typeof SUBGRAPHS)[number]['name'];

export const SUBGRAPH_NAMES: readonly SubgraphName[] = SUBGRAPHS.map((entry) => entry.name);

export const isSubgraphName = (name: string): name is SubgraphName =>
  (SUBGRAPH_NAMES as readonly string[]).includes(name);

/** The registry line of `name`; throws naming the known subgraphs when there is none. */
export function subgraphEntry(name: string): (typeof SUBGRAPHS)[number] {
  const entry = SUBGRAPHS.find((candidate) => candidate.name === name);
  if (!entry)
    throw new Error(`No subgraph named "${name}" in subgraphs/registry.ts (known: ${SUBGRAPH_NAMES.join(', ')})`);
  return entry;
}
