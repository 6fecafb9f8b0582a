/** ESM-only packages (pg-boss and what it imports), compiled to CommonJS for Jest like our own files. */
const ESM_PACKAGES = ['pg-boss', 'serialize-error', 'non-error', 'rrule-temporal', 'temporal-spec'];

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: [
    '<rootDir>/lib',
    '<rootDir>/subgraphs',
    '<rootDir>/gateway',
    '<rootDir>/prisma',
    '<rootDir>/scripts',
    '<rootDir>/test',
  ],
  transform: {
    // swc strips types only (tsc checks them in `npm test`). import() becomes require(), which jest can
    // follow; ESM-only packages are imported only in global setup, where Node's own require loads them.
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
    ],
    [`/node_modules/(${ESM_PACKAGES.join('|')})/.+\\.js$`]: [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'ecmascript', importAttributes: true }, target: 'es2022' },
        module: { type: 'commonjs' },
      },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_PACKAGES.join('|')})/)`],
  // The generated Prisma client imports its siblings with .js extensions (ESM style).
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 30_000,
  // Two cores: two workers keep PostgreSQL and the servers under test from starving each other.
  maxWorkers: 2,
};
