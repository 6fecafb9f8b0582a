import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CodegenConfig } from '@graphql-codegen/cli';
import { SUBGRAPH_NAMES } from './subgraphs/registry';

/**
 * Resolver types for every subgraph in the registry, from its schema.graphql into its __generated__/.
 * Its mappers.ts (optional) ties each GraphQL type to the row a resolver really returns, so a resolver
 * that forgets a field fails type-checking.
 */
const common = {
  federation: true,
  useIndexSignature: true,
  scalars: { DateTime: 'Date' },
  enumsAsTypes: true,
  avoidOptionals: { field: true, inputValue: false, object: false, defaultValue: false },
  maybeValue: 'T | null',
  contextType: '../context#Context',
};

function mappersOf(name: string): Record<string, string> {
  const file = join(__dirname, 'subgraphs', name, 'mappers.ts');
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- codegen loads this file synchronously
  return existsSync(file) ? (require(file) as { mappers: Record<string, string> }).mappers : {};
}

const config: CodegenConfig = {
  overwrite: true,
  generates: Object.fromEntries(
    SUBGRAPH_NAMES.map((name) => [
      `subgraphs/${name}/__generated__/resolvers-types.ts`,
      {
        schema: `subgraphs/${name}/schema.graphql`,
        plugins: ['typescript', 'typescript-resolvers'],
        config: { ...common, mappers: mappersOf(name) },
      },
    ]),
  ),
};

export default config;
