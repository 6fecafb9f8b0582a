/** The real service as users start it, for the tests of start, stop, signals and the README's snippets. */
import { spawn, type ChildProcess } from 'node:child_process';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SUBGRAPH_NAMES } from '../subgraphs/registry';
import { freePort } from './databases';

const ROOT = join(__dirname, '..');

export interface Started {
  /** npm, which the signals of a test go to (it passes them on to the server). */
  child: ChildProcess;
  /** Kills the whole process group at once (cleanup after a failed test). */
  killAll(): void;
  output(): string;
  /** Resolves with the gateway URL once the service says it is ready; rejects if it exits first. */
  ready: Promise<string>;
  exited: Promise<number | null>;
}

/**
 * `npm start` (or `script`) in `cwd`, every registry subgraph's port and the worker's free, `env` on top. NODE_ENV is not
 * passed on (Jest sets it to `test`): the entry point's own default, production, is what is tested.
 */
export async function npmStart(env: NodeJS.ProcessEnv, script = 'start', cwd = ROOT): Promise<Started> {
  const [gateway, worker, ...subgraphs] = await Promise.all([
    freePort(),
    freePort(),
    ...SUBGRAPH_NAMES.map(() => freePort()),
  ]);
  const { NODE_ENV: _jestsOwn, ...inherited } = process.env;
  const child = spawn('npm', ['run', '-s', script], {
    cwd,
    env: {
      ...inherited,
      LOG_LEVEL: 'info',
      SEED_SCALE: '1',
      GATEWAY_PORT: String(gateway),
      WORKER_PORT: String(worker),
      ...Object.fromEntries(
        SUBGRAPH_NAMES.map((name, index) => [`SUBGRAPH_${name.toUpperCase()}_PORT`, String(subgraphs[index])]),
      ),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a test can clean up everything it started (the embedded PostgreSQL too).
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const match = output.match(/ready in [\d.]+ s: (http:\/\/\S+)/);
      if (match) {
        clearInterval(timer);
        resolve(match[1]!);
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`npm ${script} exited (${code}) before it was ready:\n${output}`));
    });
  });
  ready.catch(() => undefined);
  const killAll = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  return { child, killAll, output: () => output, ready, exited };
}

/** The exit code, or a failure that shows what the service printed when it has not exited within `timeoutMs`. */
export async function exitCode(service: Started, timeoutMs = 45_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running after ${timeoutMs} ms; it printed:\n${service.output()}`)),
      timeoutMs,
    );
  });
  return Promise.race([service.exited, late]).finally(() => clearTimeout(timer));
}

/** Waits until `check` holds (it may be async), polling every 50 ms; throws after `timeoutMs`. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** An async node:http request handler whose failure ends its response (destroyed) instead of going unhandled. */
export const asyncHandler =
  (handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>) =>
  (req: IncomingMessage, res: ServerResponse) =>
    void handle(req, res).catch((error: Error) => res.destroy(error));

/** A proxy in front of a subgraph that answers each call `delayMs` late (stopped with `close()`). */
export async function slowProxy(
  target: () => string,
  delayMs: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer(
    asyncHandler(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => resolve(void timers.delete(timer)), delayMs);
        timers.add(timer);
      });
      if (res.destroyed) return;
      const upstream = await fetch(target(), {
        method: 'POST',
        headers: req.headers as Record<string, string>,
        body: Buffer.concat(chunks),
      }).catch(() => null);
      // Cache-Control too: the gateway's cache policy is made of the subgraphs' headers.
      const cacheControl = upstream?.headers.get('cache-control');
      res
        .writeHead(upstream?.status ?? 502, {
          'content-type': 'application/json',
          ...(cacheControl && { 'cache-control': cacheControl }),
        })
        .end(upstream ? await upstream.text() : '{}');
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
