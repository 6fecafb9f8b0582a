#!/bin/sh
# Stand-in for Prisma's native schema engine, which cannot be downloaded here. `prisma generate`
# only checks that an engine exists; generation runs in WebAssembly. Migrations go through
# @prisma/schema-engine-wasm (scripts/db/migrate.ts), never through this file.
echo "schema-engine-cli 0.0.0-wasm-stub"
