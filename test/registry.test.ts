/**
 * Adding a subgraph is one folder and one registry line: a scratch copy of this checkout gets the
 * throwaway `inventory` subgraph (test/fixtures/inventory) in subgraphs/ and its line in the registry,
 * then composes, generates its resolver types, type-checks it, starts through `npm start` and answers
 * a query joining catalog's products with inventory's stock. No other file of the copy changes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import { SUBGRAPHS } from '../subgraphs/registry';
import { freePort } from './databases';
import { createTestDatabase } from './harness';
import { npmStart, type Started } from './service';

const ROOT = join(__dirname, '..');
const REGISTRY = 'subgraphs/registry.ts';
const BIN = join(ROOT, 'node_modules', '.bin');

/** Every file of a tree with its content hash, skipping what is generated or installed. */
function snapshot(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const skip = new Set([
    'node_modules',
    'generated',
    '__generated__',
    'dist',
    '.data',
    '.git',
    '.ci',
    'coverage',
    'test-results',
  ]);
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (skip.has(entry.name)) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile())
        files.set(relative(root, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(root);
  return files;
}

describe('the subgraph registry', () => {
  let scratch: string;
  let database: { url: string; drop(): Promise<void> };
  let service: Started | undefined;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'registry-'));
    // The checkout as it is now (tracked and new files), with this one's installed and generated parts.
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter(Boolean);
    for (const file of files) {
      mkdirSync(dirname(join(scratch, file)), { recursive: true });
      cpSync(join(ROOT, file), join(scratch, file));
    }
    for (const linked of ['node_modules', 'generated', 'gateway/explorer/dist'])
      symlinkSync(join(ROOT, linked), join(scratch, linked));
    for (const { name } of SUBGRAPHS)
      cpSync(join(ROOT, 'subgraphs', name, '__generated__'), join(scratch, 'subgraphs', name, '__generated__'), {
        recursive: true,
      });
    database = await createTestDatabase();
  }, 60_000);

  afterAll(async () => {
    service?.child.kill('SIGTERM');
    await service?.exited;
    service?.killAll();
    await database?.drop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('takes a fifth subgraph from a folder and one line: composed, typed, started and queried through the gateway', async () => {
    const before = snapshot(scratch);
    cpSync(join(__dirname, 'fixtures', 'inventory'), join(scratch, 'subgraphs', 'inventory'), { recursive: true });
    const registry = readFileSync(join(scratch, REGISTRY), 'utf8');
    const line = "  { name: 'inventory', port: 4005, load: () => require('./inventory') as SubgraphModule },\n";
    const edited = registry.replace(/( {2}\{ name: 'reviews'.*\n)/, `$1${line}`);
    expect(edited).not.toBe(registry);
    writeFileSync(join(scratch, REGISTRY), edited);

    const run = (command: string, args: string[]) =>
      execFileSync(command, args, { cwd: scratch, encoding: 'utf8', env: { ...process.env, NODE_ENV: 'production' } });
    run(join(BIN, 'graphql-codegen'), ['--config', 'codegen.ts', '--silent']);
    expect(run(process.execPath, ['--import', 'tsx', 'scripts/compose.ts'])).toMatch(/Wrote .*supergraph\.graphql/);
    const supergraph = readFileSync(join(scratch, 'schema', 'supergraph.graphql'), 'utf8');
    expect(supergraph).toMatch(/INVENTORY @join__graph\(name: "inventory", url: "http:\/\/localhost:4005\/graphql"\)/);
    // The new folder type-checks against the shared code and its generated resolver types.
    writeFileSync(
      join(scratch, 'tsconfig.inventory.json'),
      JSON.stringify({ extends: './tsconfig.json', include: ['subgraphs/inventory', 'generated'], exclude: [] }),
    );
    run(join(BIN, 'tsc'), ['-p', 'tsconfig.inventory.json']);
    rmSync(join(scratch, 'tsconfig.inventory.json'));

    // Nothing outside the new folder changed but the registry line and the composed supergraph.
    const after = snapshot(scratch);
    const changed = [...after].filter(([file, hash]) => before.get(file) !== hash).map(([file]) => file);
    expect(changed.filter((file) => !file.startsWith('subgraphs/inventory/')).sort()).toEqual([
      'schema/supergraph.graphql',
      REGISTRY,
    ]);
    expect([...before.keys()].filter((file) => !after.has(file))).toEqual([]);

    service = await npmStart(
      {
        DATABASE_URL: database.url,
        SEED_SCALE: '0',
        SUBGRAPH_INVENTORY_PORT: String(await freePort()),
        LOG_LEVEL: 'info',
      },
      'start',
      scratch,
    );
    const url = await service.ready;
    expect(service.output()).toMatch(/inventory subgraph ready/);
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: '{ warehouse { name } products(first: 3) { edges { node { id title unitsInStock } } } }',
      }),
    });
    const body = (await response.json()) as { data?: any; errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(body.data.warehouse).toEqual({ name: 'Main warehouse' });
    const products = body.data.products.edges.map((edge: any) => edge.node) as Array<{
      id: string;
      title: string;
      unitsInStock: number;
    }>;
    expect(products).toHaveLength(3);
    // The stock came from inventory's own statement on the database, per product.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: string; units: number }>(
        'SELECT id::text, (abs(hashtext(id::text)) % 100)::int AS units FROM unnest($1::uuid[]) AS id',
        [products.map((p) => p.id)],
      );
      const expected = new Map(rows.map((row) => [row.id, row.units]));
      expect(products.map((p) => p.unitsInStock)).toEqual(products.map((p) => expected.get(p.id)));
    } finally {
      await client.end();
    }
  }, 180_000);
});
