import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';
import { MIGRATIONS_DIR, openSchemaEngine } from './schema-engine';

/** The migrations folder in the shape the schema engine expects (the same one `prisma migrate deploy` reads). */
export function readMigrations(dir: string = MIGRATIONS_DIR) {
  const lockPath = join(dir, 'migration_lock.toml');
  const names = readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, 'migration.sql')))
    .map((entry) => entry.name)
    .sort();
  return {
    baseDir: dir,
    lockfile: { path: 'migration_lock.toml', content: existsSync(lockPath) ? readFileSync(lockPath, 'utf8') : null },
    shadowDbInitScript: '',
    migrationDirectories: names.map((name) => ({
      path: name,
      migrationFile: {
        path: 'migration.sql',
        content: { tag: 'ok' as const, value: readFileSync(join(dir, name, 'migration.sql'), 'utf8') },
      },
    })),
  };
}

/**
 * Applies pending migrations and records them in `_prisma_migrations`, exactly as `prisma migrate deploy`.
 * Returns the names applied now (empty when the database was already up to date).
 */
export async function migrate(databaseUrl: string): Promise<string[]> {
  const { engine, filters, close } = await openSchemaEngine(databaseUrl);
  try {
    const { appliedMigrationNames } = await engine.applyMigrations({ migrationsList: readMigrations(), filters });
    return appliedMigrationNames;
  } finally {
    await close();
  }
}

if (require.main === module) {
  runMain(async () => {
    const database = await ensureDatabase(loadConfig());
    try {
      const applied = await migrate(database.url);
      console.log(applied.length ? `Applied ${applied.join(', ')}` : 'Database is up to date; nothing applied.');
    } finally {
      await database.stop();
    }
  });
}
