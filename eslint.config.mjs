// ESLint 10 flat config: `npm run lint` (with Prettier's check); formatting belongs to Prettier (`npm run format`).
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import prettier from 'eslint-config-prettier/flat';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  // Generated code and build output (git-ignored; written by `npm run generate` / `npm run build:explorer`).
  globalIgnores([
    'generated/',
    '**/__generated__/',
    'gateway/explorer/dist/',
    'coverage/',
    '.data/',
    '.ci/node/',
    'test-results/',
  ]),

  js.configs.recommended,
  tseslint.configs.recommended,
  // Type-aware, the rules whose bugs tsc does not catch: a promise nobody awaits or handles.
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  // A subgraph folder to be copied into subgraphs/ (test/registry.test.ts): outside tsconfig, linted without types.
  { files: ['test/fixtures/**/*.ts'], extends: [tseslint.configs.disableTypeChecked] },
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // As tsc's noUnusedParameters: a leading _ marks a name kept on purpose (`_root`, `_args`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },

  // Imports: no cycles, one order.
  {
    plugins: { 'import-x': importX },
    settings: {
      // Without these, import-x cannot parse .ts files and silently follows no TypeScript import at all.
      'import-x/extensions': ['.ts', '.js', '.jsx', '.mjs', '.cjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/external-module-folders': ['node_modules', 'node_modules/@types'],
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      // Value imports, `export … from` and import() count; `import type` never does (the plugin has no option).
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/order': [
        'error',
        {
          groups: ['builtin', 'external', ['internal', 'parent', 'sibling', 'index']],
          'newlines-between': 'never',
          alphabetize: { order: 'asc', caseInsensitive: true },
        },
      ],
    },
  },

  // Tests (and the harness client they read answers with) take GraphQL's JSON answers as `any`: the
  // assertions are what type them.
  { files: ['**/*.test.ts', 'test/**/*.ts', 'lib/harness.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },

  // Node code: TypeScript sources and the CommonJS jest.config.js.
  { files: ['**/*.{ts,js,mjs}'], languageOptions: { globals: globals.node } },
  { files: ['**/*.js'], languageOptions: { sourceType: 'commonjs' } },

  // The GraphiQL page: browser JSX.
  {
    files: ['gateway/explorer/**/*.jsx'],
    extends: [reactHooks.configs.flat.recommended],
    languageOptions: { globals: globals.browser, parserOptions: { ecmaFeatures: { jsx: true } } },
  },

  // Last: turn off every rule that would fight Prettier.
  prettier,
);
