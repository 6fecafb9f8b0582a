import { readSubgraphSdls, type SubgraphSdls } from '../scripts/compose';
import type { SubgraphName } from '../subgraphs/registry';

/** Every subgraph's SDL with one of them edited (the edit must change it), for composing a proposed contract. */
export function editedSchema(subgraph: SubgraphName, edit: (sdl: string) => string): SubgraphSdls {
  const sdls = readSubgraphSdls();
  const before = sdls[subgraph]!;
  const after = edit(before);
  if (after === before) throw new Error(`The edit left ${subgraph}'s schema.graphql unchanged.`);
  return { ...sdls, [subgraph]: after };
}
