import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import pg from 'pg';

/**
 * Prisma's schema engine compiled to WebAssembly. The native engine that `prisma migrate` downloads
 * cannot be fetched here, so migrations run through this one. Its ESM entry imports the .wasm file
 * directly (which Node 20 only allows behind a flag), so we instantiate the module ourselves.
 */
// @types/node 20 does not declare the WebAssembly global; this is the little we use of it.
interface WasmApi {
  Module: new (bytes: Buffer) => object;
  Instance: new (module: object, imports: Record<string, unknown>) => { exports: Record<string, unknown> };
}
const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };

type Bindings = typeof import('@prisma/schema-engine-wasm/schema_engine_bg', { with: { 'resolution-mode': 'import' } });
let loaded: Promise<Bindings> | undefined;
function instantiate(): Promise<Bindings> {
  loaded ??= load();
  return loaded;
}
async function load(): Promise<Bindings> {
  // An ES module: imported, not required.
  const bindings = await import('@prisma/schema-engine-wasm/schema_engine_bg');
  const bgPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
  const module = new WebAssembly.Module(readFileSync(join(dirname(bgPath), 'schema_engine_bg.wasm')));
  // The engine arms timers (timeouts) it does not always clear; unref them so a finished migration
  // does not hold the process open for ten seconds.
  const imports: Record<string, unknown> = { ...bindings };
  for (const name of Object.keys(imports).filter((key) => key.startsWith('__wbg_setTimeout_'))) {
    imports[name] = (callback: () => void, ms: number) => setTimeout(callback, ms >>> 0).unref();
  }
  const instance = new WebAssembly.Instance(module, { './schema_engine_bg.js': imports });
  bindings.__wbg_set_wasm(instance.exports as never);
  (instance.exports.__wbindgen_start as () => void)();
  return bindings;
}

/** The Prisma schema is every subgraph's schema.prisma plus subgraphs/schema.prisma (generator and datasource). */
export const SCHEMA_DIR = join(__dirname, '..', 'subgraphs');
export const MIGRATIONS_DIR = join(__dirname, 'migrations');

export type SchemaFiles = Array<{ path: string; content: string }>;

/** Reads every `.prisma` file under the schema folder (as `prisma generate` does), sorted so results are stable. */
export function readSchemaFiles(dir: string = SCHEMA_DIR): SchemaFiles {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.prisma'))
    .sort()
    .map((name) => ({ path: join(dir, name), content: readFileSync(join(dir, name), 'utf8') }));
}

const noFilters = { externalTables: [], externalEnums: [] };

/** Opens the WebAssembly schema engine on a database. Call `close()` when done. */
export async function openSchemaEngine(databaseUrl: string, files: SchemaFiles = readSchemaFiles()) {
  const bindings = await instantiate();
  // Our own pool, so closing it lets the process exit at once (the engine does not dispose it).
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const adapter = bindMigrationAwareSqlAdapterFactory(new PrismaPg(pool));
  const engine = await bindings.SchemaEngine.new(
    { datamodels: files.map((f) => [f.path, f.content] as [string, string]) },
    () => {},
    adapter,
  );
  return {
    engine,
    filters: noFilters,
    close: async () => {
      engine.free();
      await pool.end();
    },
  };
}

/**
 * The SQL that turns one schema into another. The engine compares the two datamodels itself; it only
 * opens a connection to learn the server's flavour, and changes nothing in that database.
 */
export async function diffSchemas(databaseUrl: string, from: SchemaFiles | 'empty', to: SchemaFiles): Promise<string> {
  const { engine, filters, close } = await openSchemaEngine(databaseUrl, to);
  try {
    const result = await engine.diff({
      from: from === 'empty' ? { tag: 'empty' } : { tag: 'schemaDatamodel', files: from },
      to: { tag: 'schemaDatamodel', files: to },
      script: true,
      exitCode: null,
      filters,
    });
    return result.stdout ?? '';
  } finally {
    await close();
  }
}
