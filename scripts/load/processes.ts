import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The service as separate processes for `npm run bench:load`: every subgraph and the gateway, each a
 * `node --import tsx …` child started in a checkout root (this repository, or an older worktree for a
 * before/after comparison), with its own ports, readiness wait, RSS/CPU readings and SIGTERM stop.
 */

/**
 * How each process is started, relative to the checkout root. The one place to adapt when an older
 * checkout starts its processes differently. `process.execPath` keeps the Node that runs the benchmark;
 * `--import tsx` resolves from the root's own node_modules.
 */
const ROOT = join(__dirname, '..', '..');

export const PROCESS_COMMANDS = {
  subgraph: (name: string, root = ROOT): string[] => [
    process.execPath,
    ...nodeOptionsOf(root, 'start:subgraph'),
    '--import',
    'tsx',
    'scripts/start-subgraph.ts',
    name,
  ],
  gateway: (root = ROOT): string[] => [
    process.execPath,
    ...nodeOptionsOf(root, 'start:gateway'),
    '--import',
    'tsx',
    'gateway/index.ts',
  ],
};

/**
 * The V8 flags a checkout's npm `script` gives its process in NODE_OPTIONS (the heap bounds,
 * gateway/memory.md): the bench runs each process as that checkout starts it, so an older checkout runs
 * with V8's defaults, as it did.
 */
export function nodeOptionsOf(root: string, script: 'start:gateway' | 'start:subgraph'): string[] {
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: Record<string, string> })
    .scripts;
  const options = /NODE_OPTIONS=\\?"([^"$\\]*)/.exec(scripts?.[script] ?? '')?.[1] ?? '';
  return options.split(/\s+/).filter((flag) => flag.startsWith('--'));
}

/** Variables of the benchmark's own environment a child inherits; everything else is set explicitly. */
const INHERITED = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ'];

/** Ports other work on this machine uses, never picked (the default service ports, the embedded PostgreSQL, test ranges). */
const RESERVED = (port: number) => (port >= 4000 && port <= 4003) || port === 54329 || (port >= 5100 && port <= 5199);

/** Whether nothing listens on 127.0.0.1:`port` (bound and released at once). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * `count` distinct free ports from 30000-31999. Children cannot be given port 0 (their address would
 * have to be read back from each one), so the ports are chosen here and checked free; one taken between
 * the check and the child's bind makes the child fail at start-up with a message naming it.
 */
export async function freePorts(count: number): Promise<number[]> {
  const chosen = new Set<number>();
  for (let attempt = 0; chosen.size < count && attempt < 500; attempt += 1) {
    const port = 30_000 + Math.floor(Math.random() * 2_000);
    if (!chosen.has(port) && !RESERVED(port) && (await portFree(port))) chosen.add(port);
  }
  if (chosen.size < count) throw new Error('No free ports between 30000 and 31999');
  return [...chosen];
}

export interface Service {
  /** `gateway` or the subgraph's name. */
  name: string;
  port: number;
  child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
  /** Output lines (stdout and stderr) the process printed. */
  lines(): number;
  /** The last 16 kB of its output, for a failure message. */
  tail(): string;
  /** The most frequent messages (pino's `msg`, else the line) with their counts. */
  topMessages(limit: number): [string, number][];
}

const TAIL_BYTES = 16_384;

/** Starts `command` in `root` with exactly `env` on top of the few inherited variables. */
export function startService(name: string, command: string[], root: string, env: Record<string, string>, port: number) {
  const inherited = Object.fromEntries(
    INHERITED.filter((key) => process.env[key] !== undefined).map((key) => [key, process.env[key]!]),
  );
  const child = spawn(command[0]!, command.slice(1), {
    cwd: root,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let lines = 0;
  let partial = '';
  const messages = new Map<string, number>();
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    tail = (tail + text).slice(-TAIL_BYTES);
    const parts = (partial + text).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      if (!line.trim()) continue;
      lines += 1;
      let message = line.slice(0, 160);
      try {
        const parsed = JSON.parse(line) as { msg?: unknown };
        if (typeof parsed.msg === 'string') message = parsed.msg.slice(0, 160);
      } catch {
        // Not a pino line: counted as it is.
      }
      messages.set(message, (messages.get(message) ?? 0) + 1);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const service: Service = {
    name,
    port,
    child,
    exited,
    lines: () => lines,
    tail: () => tail,
    topMessages: (limit) => [...messages.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit),
  };
  return service;
}

/** Waits until GET /readyz answers 200; throws with the process's output if it exits first or takes over `timeoutMs`. */
export async function waitReady(service: Service, timeoutMs = 120_000): Promise<void> {
  let exitedWith: number | string | undefined;
  void service.exited.then((code) => (exitedWith = code));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitedWith !== undefined)
      throw new Error(`${service.name} exited (${exitedWith}) before it was ready:\n${service.tail()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${service.port}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline)
      throw new Error(`${service.name} was not ready after ${timeoutMs / 1000} s:\n${service.tail()}`);
    await sleep(100);
  }
}

/**
 * SIGTERM to every process still running, then waits up to `graceMs` for each to exit and SIGKILLs
 * whichever has not. Returns how each ended (`0`, a code, or `SIGKILL` when it had to be killed).
 */
export async function stopServices(services: Service[], graceMs: number): Promise<Map<string, number | string>> {
  const endings = new Map<string, number | string>();
  await Promise.all(
    services.map(async (service) => {
      if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGTERM');
      const timer = sleep(graceMs).then(() => 'timeout' as const);
      const ending = await Promise.race([service.exited, timer]);
      if (ending === 'timeout') {
        service.child.kill('SIGKILL');
        await service.exited;
        endings.set(service.name, 'SIGKILL (did not exit after SIGTERM)');
      } else endings.set(service.name, ending);
    }),
  );
  return endings;
}

/** SIGKILLs every process still running, synchronously: for the `exit` hook when the benchmark itself is stopped. */
export function killServices(services: Service[]): void {
  for (const service of services)
    if (service.child.exitCode === null && service.child.signalCode === null) {
      try {
        service.child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
}

/** Resident set size of `pid` in bytes (VmRSS of /proc/<pid>/status), or undefined once it has exited. */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time `pid` has used (user + system), in clock ticks (fields 14 and 15 of /proc/<pid>/stat), or undefined. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Clock ticks per second of /proc's CPU times (USER_HZ): 100 on every Linux build in use. */
export const TICKS_PER_SECOND = 100;
