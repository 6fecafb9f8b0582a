import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SubgraphName } from '../lib/config';
import { SCHEMA_DIR } from '../scripts/compose';

/** A copy of schema/ with one subgraph's SDL edited (the edit must change it), for composing a proposed contract. */
export function editedSchema(subgraph: SubgraphName, edit: (sdl: string) => string): string {
  const dir = mkdtempSync(join(tmpdir(), `schema-${subgraph}-`));
  cpSync(SCHEMA_DIR, dir, { recursive: true });
  const path = join(dir, `${subgraph}.graphql`);
  const before = readFileSync(path, 'utf8');
  const after = edit(before);
  if (after === before) throw new Error(`The edit left ${subgraph}.graphql unchanged.`);
  writeFileSync(path, after);
  return dir;
}
