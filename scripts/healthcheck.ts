/**
 * The container image's HEALTHCHECK (Dockerfile, compose.yaml): exits 0 when this container's server answers
 * GET <path> (default /healthz) with 200 within 2 s, 1 otherwise.
 *
 *   node --disable-warning=MODULE_TYPELESS_PACKAGE_JSON scripts/healthcheck.ts [path] [port]
 *
 * Plain Node (its type stripping, no tsx and no project import), so a check every few seconds costs a few
 * milliseconds. One image serves every role, so unless given, the port comes from the command the container
 * runs (PID 1's command line): `start:gateway` and `start` → GATEWAY_PORT (4000), `start:worker` → WORKER_PORT
 * (4010), `start:subgraph -- <name>` → SUBGRAPH_<NAME>_PORT, else the subgraph's port in subgraphs/registry.ts.
 * A container that serves nothing (`db:migrate`, `db:seed`) is healthy while it runs.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Each subgraph's default port, read from the source of subgraphs/registry.ts (`{ name: 'catalog', port: 4002, … }`). */
export function registryPorts(source: string): Record<string, number> {
  const ports: Record<string, number> = {};
  for (const match of source.matchAll(/\{\s*name:\s*'([a-z][a-z0-9-]*)',\s*port:\s*(\d+)/g)) {
    ports[match[1]!] = Number(match[2]);
  }
  return ports;
}

/**
 * The port the server that `command` starts listens on, or null when it starts none. `command` is a command
 * line as words (`npm run start:subgraph -- catalog`, maybe behind an init such as docker-init or tini).
 */
export function healthPort(
  command: readonly string[],
  env: Record<string, string | undefined>,
  ports: () => Record<string, number>,
): number | null {
  const setting = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
  const script = command.findIndex((word) => /^start(:gateway|:worker|:subgraph)?$/.test(word));
  if (script === -1) return null;
  const word = command[script]!;
  if (word === 'start' && command[script - 1] !== 'npm' && command[script - 1] !== 'run') return null;
  if (word === 'start' || word === 'start:gateway') return setting('GATEWAY_PORT', 4000);
  if (word === 'start:worker') return setting('WORKER_PORT', 4010);
  const name = command.slice(script + 1).find((arg) => arg !== '--');
  const known = ports();
  if (!name || !(name in known)) throw new Error(`start:subgraph of an unknown subgraph: ${name ?? '(none)'}`);
  return setting(`SUBGRAPH_${name.toUpperCase()}_PORT`, known[name]!);
}

/**
 * The words of a process's command line as /proc/<pid>/cmdline has it: NUL-separated, or, once npm has set its
 * process title, one string ("npm run start:subgraph catalog", without the `--`).
 */
export const commandWords = (cmdline: string): string[] => cmdline.split(/[\0\s]+/).filter((word) => word !== '');

/** Where to reach this container's own server: HOST, or loopback when it listens on every interface. */
export function healthHost(env: Record<string, string | undefined>): string {
  const host = env.HOST;
  if (!host || host === '0.0.0.0' || host === '::' || host === '[::]') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

async function main(args: string[]): Promise<number> {
  const path = args.find((arg) => arg.startsWith('/')) ?? '/healthz';
  const given = args.find((arg) => /^\d+$/.test(arg));
  const command = given ? null : commandWords(readFileSync('/proc/1/cmdline', 'utf8'));
  // This file is scripts/healthcheck.ts: the registry is beside it, in subgraphs/.
  const registry = join(dirname(resolve(process.argv[1]!)), '..', 'subgraphs', 'registry.ts');
  const port = given
    ? Number(given)
    : healthPort(command!, process.env, () => registryPorts(readFileSync(registry, 'utf8')));
  if (port === null) return 0;
  const url = `http://${healthHost(process.env)}:${port}${path}`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    if (response.ok) return 0;
    console.error(`${url} answered ${response.status}`);
  } catch (error) {
    console.error(`${url}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return 1;
}

// Run as a script (node), not when a test imports it.
if (/healthcheck\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  void main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
