import { writeFileSync } from 'node:fs';
import { composeServices } from '@apollo/composition';
import { parse, type GraphQLSchema } from 'graphql';
import { SUPERGRAPH_PATH } from '../gateway/supergraph-file';
import { runMain } from '../lib/cli';
import { contractOf } from '../lib/subgraph';
import { SUBGRAPHS } from '../subgraphs/registry';

/** Each subgraph's SDL by name: the registry's subgraphs/<name>/schema.graphql, or a proposed edit of them. */
export type SubgraphSdls = Record<string, string>;

export function readSubgraphSdls(): SubgraphSdls {
  return Object.fromEntries(SUBGRAPHS.map(({ name }) => [name, contractOf(name)]));
}

export class CompositionError extends Error {}

function compose(sdls: SubgraphSdls) {
  // The URLs baked into the supergraph are the default ports; the gateway overrides them from config.
  const result = composeServices(
    SUBGRAPHS.map(({ name, port }) => ({
      name,
      url: `http://localhost:${port}/graphql`,
      typeDefs: parse(sdls[name] ?? contractOf(name)),
    })),
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

/** Composes every subgraph's schema.graphql into supergraph SDL; throws with every composition error listed. */
export function composeSupergraph(sdls: SubgraphSdls = readSubgraphSdls()): string {
  return compose(sdls).supergraphSdl;
}

/** The API schema clients see through the gateway: the composition without federation's machinery. */
export function composeApiSchema(sdls: SubgraphSdls = readSubgraphSdls()): GraphQLSchema {
  return compose(sdls).schema.toAPISchema().toGraphQLJSSchema();
}

if (require.main === module) {
  runMain(async () => {
    const sdl = composeSupergraph();
    writeFileSync(SUPERGRAPH_PATH, sdl.endsWith('\n') ? sdl : `${sdl}\n`);
    console.log(`Wrote ${SUPERGRAPH_PATH}`);
  });
}
