import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** The command line of `npm run bench:load`. */

export const USAGE = `npm run bench:load -- [options]

  --speed-only            run only the speed section (the service against the ceiling: cold, entity cache
                          only, warm), not the overload phases that follow it by default
  --speed-concurrency N   requests kept outstanding in the speed section's closed-loop windows (default 8)
  --quick                 smoke run: speed windows 5 s (one round of each), every phase 5 s, probe steps 5 s,
                          soak 30 s (unless --soak-seconds)
  --rate R                sustainable rate in requests/s: skips the capacity probe
  --soak-seconds N        soak length (default 300, 30 with --quick)
  --root DIR              checkout to run the processes from (default: this repository)
  --env KEY=VALUE         extra environment for every process (repeatable), e.g. --env MAX_IN_FLIGHT=128
  --deadline-ms N         the deadline "nothing waits longer than" is judged against (default 5000)
  --connections N         client connection pool size (default 1000)
  --timeout-ms N          client timeout of one request (default 30000)
  --users N               signed-in users, round robin (default 200)`;

export interface Options {
  quick: boolean;
  speedOnly: boolean;
  speedConcurrency: number;
  rate?: number;
  soakSeconds: number;
  root: string;
  env: Record<string, string>;
  deadlineMs: number;
  connections: number;
  timeoutMs: number;
  users: number;
}

function positive(name: string, value: string | undefined, fallback: number, integer = true): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0 || (integer && !Number.isInteger(number)))
    throw new Error(`--${name} must be a positive ${integer ? 'whole ' : ''}number, not "${value}"\n\n${USAGE}`);
  return number;
}

export function parseOptions(argv: string[], defaultRoot: string): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      'speed-only': { type: 'boolean', default: false },
      'speed-concurrency': { type: 'string' },
      rate: { type: 'string' },
      'soak-seconds': { type: 'string' },
      root: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      'deadline-ms': { type: 'string' },
      connections: { type: 'string' },
      'timeout-ms': { type: 'string' },
      users: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const env: Record<string, string> = {};
  for (const pair of values.env) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
    if (!match) throw new Error(`--env takes KEY=VALUE, not "${pair}"`);
    env[match[1]!] = match[2]!;
  }
  const root = resolve(values.root ?? defaultRoot);
  for (const file of ['gateway/index.ts', 'scripts/start-subgraph.ts'])
    if (!existsSync(join(root, file)))
      throw new Error(`--root ${root} has no ${file}: is it a checkout of this service?`);
  return {
    quick: values.quick,
    speedOnly: values['speed-only'],
    speedConcurrency: positive('speed-concurrency', values['speed-concurrency'], 8),
    rate: values.rate === undefined ? undefined : positive('rate', values.rate, 0, false),
    soakSeconds: positive('soak-seconds', values['soak-seconds'], values.quick ? 30 : 300),
    root,
    env,
    deadlineMs: positive('deadline-ms', values['deadline-ms'], 5_000),
    connections: positive('connections', values.connections, 1_000),
    timeoutMs: positive('timeout-ms', values['timeout-ms'], 30_000),
    users: positive('users', values.users, 200),
  };
}
