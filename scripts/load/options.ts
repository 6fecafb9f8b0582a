import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** The command line of `npm run bench:load`. */

export const USAGE = `npm run bench:load -- [options]

  --speed-only            run only the speed section (the service against the ceiling: cold, entity cache
                          only, warm), not the overload phases that follow it by default
  --speed-concurrency N   requests kept outstanding in the speed section's closed-loop windows (default 8)
  --scale N,N,…           scale mode instead of the speed section and the overload phases: for each count, that
                          many gateway processes (the load generator takes them in turn), each configuration's
                          capacity (the probe) and latency at one fixed open-loop rate (see --rate)
  --subgraph-replicas M,… with --scale (or alone, with one gateway): that many processes of every subgraph, the
                          gateways' SUBGRAPH_<NAME>_URL listing them all (one per subgraph call, in turn);
                          every gateway count is run with every replica count (default 1)
  --scale-rounds N        rounds of every configuration in scale mode, in alternating order (forward, then
                          backward); throughput is the best round's, latency over all (default 2, 1 with --quick)
  --scale-config KEY      what the scale mode serves: entity (default: entity cache on, response cache off, so
                          every page is computed), warm (response cache on), shared, cold (see the speed
                          section), or default (the service's own defaults)
  --quick                 smoke run: speed windows 5 s (one round of each), every phase 5 s, probe steps 5 s,
                          soak 30 s (unless --soak-seconds); in scale mode 5 s probe steps and a 5 s fixed rate
  --rate R                sustainable rate in requests/s: skips the capacity probe; in scale mode, the fixed
                          open-loop rate latency is measured at in every configuration (default: half the
                          first configuration's sustainable rate)
  --soak-seconds N        soak length (default 300, 30 with --quick)
  --root DIR              checkout to run the processes from (default: this repository)
  --env KEY=VALUE         extra environment for every process (repeatable), e.g. --env MAX_IN_FLIGHT=128
  --deadline-ms N         the deadline "nothing waits longer than" is judged against (default 5000)
  --connections N         client connection pool size (default 1000)
  --timeout-ms N          client timeout of one request (default 30000)
  --users N               signed-in users, round robin (default 200)`;

/** What the scale mode serves: a speed configuration's settings, or the service's defaults. */
export const SCALE_CONFIGS = ['entity', 'warm', 'shared', 'cold', 'default'] as const;
export type ScaleConfig = (typeof SCALE_CONFIGS)[number];

export interface Scale {
  /** Gateway processes, one configuration per count (with each replica count). */
  gateways: number[];
  /** Processes of every subgraph, one configuration per count (with each gateway count). */
  replicas: number[];
  config: ScaleConfig;
  /** Rounds of every configuration (alternating order). */
  rounds: number;
}

export interface Options {
  quick: boolean;
  speedOnly: boolean;
  /** Scale mode (--scale, --subgraph-replicas), instead of the speed section and the overload phases. */
  scale?: Scale;
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

/** A comma-separated list of distinct whole numbers from 1 to `max`, ascending. */
function countList(name: string, value: string, max: number): number[] {
  const counts = value.split(',').map((entry) => Number(entry.trim()));
  if (!counts.length || counts.some((count) => !Number.isInteger(count) || count < 1 || count > max))
    throw new Error(`--${name} takes whole numbers from 1 to ${max}, comma-separated, not "${value}"\n\n${USAGE}`);
  return [...new Set(counts)].sort((a, b) => a - b);
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
      scale: { type: 'string' },
      'subgraph-replicas': { type: 'string' },
      'scale-config': { type: 'string' },
      'scale-rounds': { type: 'string' },
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
  let scale: Scale | undefined;
  if (values.scale !== undefined || values['subgraph-replicas'] !== undefined) {
    if (values['speed-only'])
      throw new Error(`--scale and --subgraph-replicas run instead of --speed-only\n\n${USAGE}`);
    const config = values['scale-config'] ?? 'entity';
    if (!(SCALE_CONFIGS as readonly string[]).includes(config))
      throw new Error(`--scale-config takes ${SCALE_CONFIGS.join(', ')}, not "${config}"\n\n${USAGE}`);
    scale = {
      gateways: countList('scale', values.scale ?? '1', 8),
      replicas: countList('subgraph-replicas', values['subgraph-replicas'] ?? '1', 4),
      config: config as ScaleConfig,
      rounds: positive('scale-rounds', values['scale-rounds'], values.quick ? 1 : 2),
    };
  } else if (values['scale-config'] !== undefined || values['scale-rounds'] !== undefined)
    throw new Error(`--scale-config and --scale-rounds need --scale or --subgraph-replicas\n\n${USAGE}`);
  return {
    quick: values.quick,
    speedOnly: values['speed-only'],
    scale,
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
