import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { freePort } from './databases';

/**
 * A real Redis Cluster for tests: `redis-server --cluster-enabled yes` processes on free local ports, in a
 * temporary folder, joined with `redis-cli --cluster create`. Nothing is kept on disk but each node's
 * nodes.conf, so a node restarted after a kill comes back with its place in the cluster and no data.
 */

/** Why a cluster cannot be started here (no redis-server or redis-cli that runs), or undefined when it can. */
export function redisClusterUnavailable(): string | undefined {
  for (const binary of ['redis-server', 'redis-cli']) {
    const run = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    if (run.error || run.status !== 0) return `${binary} does not run (${run.error?.message ?? run.stderr.trim()})`;
    // --cluster-port (the bus port chosen here) came with Redis 7.
    const major = Number(/v=(\d+)\./.exec(run.stdout)?.[1] ?? /(\d+)\.\d+\.\d+/.exec(run.stdout)?.[1]);
    if (major < 7) return `${binary} is ${run.stdout.trim()}, and a test cluster needs Redis 7 or later`;
  }
  return undefined;
}

export interface RedisClusterOptions {
  /** Masters, among which the 16384 slots are split. Defaults to 3 (the fewest `redis-cli --cluster create` takes). */
  masters?: number;
  /** Replicas of each master: with one, a killed master's replica takes over (failover). Defaults to 0. */
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a silent node takes to be failed (and a replica promoted). Defaults to 1000 ms. */
  nodeTimeoutMs?: number;
  /** Client ports of the first nodes (e.g. seeds a client was given before the cluster existed). Defaults to free ones. */
  ports?: number[];
}

export interface LocalRedisCluster {
  /** The client port of every node, masters first as created. */
  readonly ports: readonly number[];
  /** Every node as REDIS_CLUSTER_NODES takes them: `127.0.0.1:<port>,…`. */
  readonly nodes: string;
  /** The port of the master now serving `key`'s slot (asked of a live node). */
  masterOf(key: string): Promise<number>;
  /** How many keys match `pattern` (SCAN's MATCH) on each live master, by port. */
  keysPerMaster(pattern: string): Promise<Map<number, number>>;
  /** SIGKILLs the node on `port` and waits until it has exited. */
  kill(port: number): Promise<void>;
  /** Starts the node on `port` again (after kill), from its nodes.conf, and waits until it answers. */
  restart(port: number): Promise<void>;
  /** Waits until every running node says `cluster_state:ok` and agrees on `masters` masters serving every slot. */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every node and removes the temporary folder; safe to call twice, and after a failed start. */
  stop(): Promise<void>;
}

/** `redis-cli` against one node (or `--cluster …`): its output, or a rejection with its stderr. */
function redisCli(args: string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`redis-cli ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Redis Cluster: ${what} not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every process a cluster of this file started, killed when the test process exits however it ends. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts a cluster (see the module comment); the caller stops it, also when its test fails. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<LocalRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1_000;
  const dir = mkdtempSync(join(tmpdir(), 'storefront-redis-cluster-'));
  const processes = new Map<number, ChildProcess>();
  const busPorts = new Map<number, number>();
  const ports: number[] = [...(options.ports ?? [])];
  let stopped = false;

  const launch = (port: number) => {
    const nodeDir = join(dir, String(port));
    mkdirSync(nodeDir, { recursive: true });
    // The bus port is chosen too: port + 10000 (Redis's default) may fall in the kernel's ephemeral range.
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--cluster-port',
        String(busPorts.get(port)),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        '--save',
        '',
        '--appendonly',
        'no',
        // A replica's first sync starts at once (Redis waits 5 s by default): one cannot take over before it.
        '--repl-diskless-sync-delay',
        '0',
        '--dir',
        nodeDir,
        '--logfile',
        join(nodeDir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
    running.add(child);
    child.once('exit', () => running.delete(child));
    // Not started at all (the waits below then say which node never answered).
    child.once('error', () => running.delete(child));
    processes.set(port, child);
  };
  const alive = (port: number) => {
    const child = processes.get(port);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  };
  const answers = (port: number) => redisCli(['-p', String(port), 'ping'], 2_000).then((out) => out.includes('PONG'));

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      [...processes.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const count = masters * (1 + replicas);
    const taken = (port: number) => ports.includes(port) || [...busPorts.values()].includes(port);
    for (const port of ports) {
      let bus = await freePort();
      while (taken(bus)) bus = await freePort();
      busPorts.set(port, bus);
    }
    while (ports.length < count) {
      const [port, bus] = [await freePort(), await freePort()];
      if (port === bus || taken(port) || taken(bus)) continue;
      ports.push(port);
      busPorts.set(port, bus);
    }
    for (const port of ports) launch(port);
    await Promise.all(ports.map((port) => waitFor(() => answers(port), 10_000, `node ${port} answering`)));
    await redisCli([
      '--cluster',
      'create',
      ...ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ]);
  } catch (error) {
    await stop();
    throw error;
  }

  const cluster: LocalRedisCluster = {
    ports,
    nodes: ports.map((port) => `127.0.0.1:${port}`).join(','),
    async masterOf(key) {
      for (const port of ports) {
        if (!alive(port)) continue;
        const client = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false } });
        try {
          await client.connect();
          const slot = await client.clusterKeySlot(key);
          for (const range of await client.clusterSlots())
            if (slot >= range.from && slot <= range.to) return range.master.port;
        } catch {
          // That node is down or not ready: ask another.
        } finally {
          client.destroy();
        }
      }
      throw new Error(`Redis Cluster: no live node knows the master of ${key}`);
    },
    async keysPerMaster(pattern) {
      const counts = new Map<number, number>();
      for (const port of ports.filter(alive)) {
        const client = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false } });
        try {
          await client.connect();
          if (!(await client.info('replication')).includes('role:master')) continue;
          let count = 0;
          for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1_000 })) count += batch.length;
          counts.set(port, count);
        } finally {
          client.destroy();
        }
      }
      return counts;
    },
    async kill(port) {
      const child = processes.get(port);
      if (!child || !alive(port)) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    async restart(port) {
      launch(port);
      await waitFor(() => answers(port), 10_000, `node ${port} answering again`);
    },
    async waitUntilHealthy(timeoutMs = 30_000) {
      await waitFor(
        async () => {
          for (const port of ports.filter(alive)) {
            const info = await redisCli(['-p', String(port), 'cluster', 'info'], 2_000);
            if (!info.includes('cluster_state:ok')) return false;
            // It knows `masters` masters serving slots, none failing nor disconnected (`CLUSTER NODES`:
            // id, address, flags, master id, ping, pong, config epoch, link state, then slots).
            const serving = (await redisCli(['-p', String(port), 'cluster', 'nodes'], 2_000))
              .split('\n')
              .map((line) => line.trim().split(' '))
              .filter((fields) => fields[2]?.split(',').includes('master') && fields.length > 8);
            if (serving.length !== masters) return false;
            if (serving.some((fields) => fields[2]!.includes('fail') || fields[7] !== 'connected')) return false;
            // A replica has its master's data (or it could not take over).
            const replication = await redisCli(['-p', String(port), 'info', 'replication'], 2_000);
            if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false;
          }
          return true;
        },
        timeoutMs,
        'every node reporting cluster_state:ok',
      );
    },
    stop,
  };
  try {
    await cluster.waitUntilHealthy();
  } catch (error) {
    await stop();
    throw error;
  }
  return cluster;
}
