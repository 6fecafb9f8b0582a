/**
 * Imported first by every entry point a user runs (`npm start`, `start:gateway`, `start:subgraph`, the
 * worker-less scripts that serve traffic): the service runs in production mode unless NODE_ENV says
 * otherwise. Libraries read NODE_ENV when they load (graphql-js skips its development-only `instanceOf`
 * checks, Express its development defaults), so this must run before any of them is required.
 * Nothing of ours depends on NODE_ENV: introspection, the explorer and stack traces are settings
 * (INTROSPECTION, EXPLORER; stack traces never reach a client).
 */
process.env.NODE_ENV ??= 'production';
