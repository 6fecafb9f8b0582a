import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { composeServices } from '@apollo/composition';
import { parse, type GraphQLSchema } from 'graphql';
import { runMain } from '../lib/cli';
import type { SubgraphName } from '../lib/config';

export const SCHEMA_DIR = join(__dirname, '..', 'schema');
export const SUPERGRAPH_PATH = join(SCHEMA_DIR, 'supergraph.graphql');

/** The subgraphs and the URLs baked into the supergraph (the gateway may override them from config). */
export const SUBGRAPHS = [
  { name: 'accounts', url: 'http://localhost:4001/graphql' },
  { name: 'catalog', url: 'http://localhost:4002/graphql' },
  { name: 'reviews', url: 'http://localhost:4003/graphql' },
] as const satisfies ReadonlyArray<{ name: SubgraphName; url: string }>;

export function readSubgraphSdl(name: SubgraphName, dir: string = SCHEMA_DIR): string {
  return readFileSync(join(dir, `${name}.graphql`), 'utf8');
}

export class CompositionError extends Error {}

function compose(dir: string) {
  const result = composeServices(
    SUBGRAPHS.map(({ name, url }) => ({ name, url, typeDefs: parse(readSubgraphSdl(name, dir)) })),
  );
  if (result.errors) {
    const lines = result.errors.map((error) => {
      const code = (error.extensions?.code as string | undefined) ?? 'COMPOSITION_ERROR';
      return `  [${code}] ${error.message}`;
    });
    throw new CompositionError(`Composition failed with ${result.errors.length} error(s):\n${lines.join('\n')}`);
  }
  return result;
}

/** Composes schema/<subgraph>.graphql into supergraph SDL; throws with every composition error listed. */
export function composeSupergraph(dir: string = SCHEMA_DIR): string {
  return compose(dir).supergraphSdl;
}

/** The API schema clients see through the gateway: the composition without federation's machinery. */
export function composeApiSchema(dir: string = SCHEMA_DIR): GraphQLSchema {
  return compose(dir).schema.toAPISchema().toGraphQLJSSchema();
}

if (require.main === module) {
  runMain(async () => {
    const sdl = composeSupergraph();
    writeFileSync(SUPERGRAPH_PATH, sdl.endsWith('\n') ? sdl : `${sdl}\n`);
    console.log(`Wrote ${SUPERGRAPH_PATH}`);
  });
}
