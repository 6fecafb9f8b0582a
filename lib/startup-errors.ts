import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * A start-up failure the operator can act on: what is wrong and what to do, in one message. The entry
 * points print it as it is (lib/cli.ts), without a stack.
 */
export class StartupError extends Error {
  override name = 'StartupError';
}

/** The command line of a process, or null when it cannot be read (another user's, or gone). */
export function commandOf(pid: number): string | null {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return cmdline || null;
  } catch {
    try {
      return (
        execFileSync('ps', ['-o', 'command=', '-p', String(pid)], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        }).trim() || null
      );
    } catch {
      return null;
    }
  }
}

/** "pid 123: node …/scripts/start.ts", the listener of a TCP port as `ss` (Linux) or `lsof` (macOS) tell it; null when neither can. */
export function listenerOf(port: number): string | null {
  const attempts: Array<[string, string[], RegExp]> = [
    ['ss', ['-Hltnp', `sport = :${port}`], /pid=(\d+)/],
    ['lsof', ['-nP', `-iTCP:${port}`, '-sTCP:LISTEN', '-t'], /^(\d+)/m],
  ];
  for (const [command, args, pattern] of attempts) {
    try {
      const output = execFileSync(command, args, {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 2_000,
      });
      const pid = pattern.exec(output)?.[1];
      if (pid) return describeProcess(Number(pid));
    } catch {
      // Not installed, or not allowed: try the next one.
    }
  }
  return null;
}

/** "pid 123 (node …/scripts/start.ts)", the command cut to a readable length. */
export function describeProcess(pid: number): string {
  const command = commandOf(pid);
  return command ? `pid ${pid} (${command.length > 120 ? `${command.slice(0, 117)}…` : command})` : `pid ${pid}`;
}

/** Whether a process with this pid is alive (it may belong to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The message for a port another process holds, naming that process and the setting that moves the port. */
export function portInUse(port: number, host: string, setting: string, { zeroPicksOne = true } = {}): StartupError {
  const holder = listenerOf(port);
  return new StartupError(
    `Port ${port} on ${host} (${setting}) is already in use${holder ? ` by ${holder}` : ' by another process'}. ` +
      `Stop that process, or set ${setting} to a free port${zeroPicksOne ? ' (0 picks one)' : ''}.`,
  );
}

/** A PostgreSQL connection failure (DATABASE_URL) said plainly, with what to do; the error itself when it is none of these. */
export function databaseUnreachable(error: unknown, url: string): Error {
  const target = (() => {
    try {
      const parsed = new URL(url);
      return {
        where: `${parsed.hostname}:${parsed.port || 5432}`,
        database: decodeURIComponent(parsed.pathname.slice(1)) || '(the user name)',
        user: decodeURIComponent(parsed.username),
      };
    } catch {
      return { where: 'the configured host', database: 'the configured database', user: '' };
    }
  })();
  const code = (error as { code?: string } | null)?.code;
  if (code === '3D000') {
    return new StartupError(
      `The database "${target.database}" named in DATABASE_URL does not exist on ${target.where}. Create it (createdb ${target.database}), or point DATABASE_URL at an existing database; without DATABASE_URL, npm start runs an embedded PostgreSQL.`,
    );
  }
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT') {
    return new StartupError(
      `Cannot reach PostgreSQL at ${target.where} (DATABASE_URL): ${code}. Start it, or fix DATABASE_URL; without DATABASE_URL, npm start runs an embedded PostgreSQL.`,
    );
  }
  if (code === '28P01' || code === '28000') {
    return new StartupError(
      `PostgreSQL at ${target.where} refused the credentials of DATABASE_URL${target.user ? ` (user "${target.user}")` : ''}. Fix the user or password in DATABASE_URL.`,
    );
  }
  return error instanceof Error ? error : new StartupError(`The database failed to start: ${String(error)}`);
}
