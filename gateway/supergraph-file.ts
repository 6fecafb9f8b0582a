import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import type { SupergraphManager, SupergraphSdlHook } from '@apollo/gateway';
import type { Logger } from '../lib/logger';
import { accessRulesOf, supergraphForGateway } from './access-control';

/** The composed contract the gateway serves: committed, written by `npm run compose`, followed live. */
export const SUPERGRAPH_PATH = join(__dirname, '..', 'schema', 'supergraph.graphql');

export interface SupergraphFileOptions {
  /** The supergraph file to serve and follow. */
  path: string;
  /** How often the file is checked for a change, in ms. Defaults to 250. */
  intervalMs?: number;
  logger: Logger;
}

/**
 * The supergraph from a file on disk, followed live, as @apollo/gateway's own LocalCompose is a
 * supergraph source: no managed federation, no runtime introspection of subgraphs. When the file
 * changes, the new supergraph is validated and swapped in without a restart (in-flight requests finish
 * on the old one); a broken one is refused and the old one keeps serving.
 */
export class SupergraphFile implements SupergraphManager {
  constructor(private readonly options: SupergraphFileOptions) {}

  /** The file's supergraph as the gateway serves it (its access-control links enforced here: access-control.ts). */
  read(): string {
    return supergraphForGateway(readFileSync(this.options.path, 'utf8'));
  }

  async initialize({ update }: Parameters<SupergraphSdlHook>[0]) {
    const { path, logger } = this.options;
    let current = readFileSync(path, 'utf8');
    const supergraphSdl = supergraphForGateway(current);
    watchFile(path, { interval: this.options.intervalMs ?? 250, persistent: false }, () => {
      let next: string;
      try {
        next = readFileSync(path, 'utf8');
      } catch {
        return;
      }
      if (next === current) return;
      try {
        const forGateway = supergraphForGateway(next);
        // Its access rules must read before it may serve: the gateway would swap it in regardless.
        accessRulesOf(forGateway);
        update(forGateway);
        current = next;
        logger.info({ path }, 'supergraph reloaded');
      } catch (error) {
        logger.error({ err: error, path }, 'new supergraph refused: still serving the previous one');
      }
    });
    return { supergraphSdl, cleanup: async () => unwatchFile(path) };
  }
}
