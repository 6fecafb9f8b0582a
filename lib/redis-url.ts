/**
 * Where the service's Redis is, as one string (REDIS_URL): a single Redis (`redis://…`, `rediss://…` for
 * TLS), or a Redis Cluster reached through some of its nodes, `redis+cluster://[user:password@]host:port,host:port`
 * (`rediss+cluster://` for TLS). loadConfig builds the cluster form from REDIS_CLUSTER_NODES. No imports:
 * lib/config.ts validates with it without loading a Redis client.
 */

export interface RedisNodeAddress {
  host: string;
  port: number;
}

export type RedisTarget =
  | { cluster: false; url: string }
  | {
      cluster: true;
      /** Seed nodes: the client asks the first that answers for the cluster's layout, and finds the rest. */
      nodes: RedisNodeAddress[];
      username?: string;
      password?: string;
      tls: boolean;
    };

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#@]+)\/?$/;
/** `host:port`, or `[IPv6]:port`. */
const NODE = /^(?:\[([0-9a-f:.]+)\]|([^\s,:[\]/]+)):(\d{1,5})$/i;

function parseNodes(list: string): RedisNodeAddress[] | undefined {
  const nodes: RedisNodeAddress[] = [];
  for (const part of list.split(',').map((item) => item.trim())) {
    const match = NODE.exec(part);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65_535) return undefined;
    nodes.push({ host: match[1] ?? match[2]!, port });
  }
  return nodes.length ? nodes : undefined;
}

/** REDIS_CLUSTER_NODES's grammar: `host:port` (or `[IPv6]:port`), comma-separated. */
export const isRedisNodeList = (list: string): boolean => parseNodes(list) !== undefined;

/** The target a REDIS_URL names; throws on a cluster URL it cannot read (a single Redis's URL is node-redis's to read). */
export function parseRedisUrl(url: string): RedisTarget {
  if (!/^rediss?\+cluster:/.test(url)) return { cluster: false, url };
  const match = CLUSTER_URL.exec(url);
  const nodes = match && parseNodes(match[3]!);
  if (!match || !nodes) throw new Error('A Redis Cluster URL is redis+cluster://[user:password@]host:port,host:port');
  const [username, ...password] = (match[2] ?? '').split(':');
  return {
    cluster: true,
    nodes,
    ...(username ? { username: decodeURIComponent(username) } : {}),
    ...(password.length ? { password: decodeURIComponent(password.join(':')) } : {}),
    tls: match[1] === 'rediss',
  };
}

/** Whether `value` is a REDIS_URL this service can use: a redis:// or rediss:// URL, or a well-formed cluster URL. */
export function isRedisUrl(value: string): boolean {
  try {
    return parseRedisUrl(value).cluster || (/^rediss?:\/\//i.test(value) && URL.canParse(value));
  } catch {
    return false;
  }
}

/**
 * The cluster URL of REDIS_CLUSTER_NODES (`host:port,…`), with the user, password and TLS of `base` (REDIS_URL,
 * whose host and database are not used: a cluster is reached through its nodes, and has database 0 only).
 */
export function clusterUrl(nodes: string, base?: string): string {
  const list = parseNodes(nodes);
  if (!list) throw new Error('REDIS_CLUSTER_NODES is host:port,host:port');
  let scheme = 'redis';
  let credentials = '';
  if (base) {
    const target = parseRedisUrl(base);
    if (target.cluster) {
      scheme = target.tls ? 'rediss' : 'redis';
      if (target.username || target.password)
        credentials = `${encodeURIComponent(target.username ?? '')}${target.password === undefined ? '' : `:${encodeURIComponent(target.password)}`}@`;
    } else {
      const url = new URL(base);
      scheme = url.protocol === 'rediss:' ? 'rediss' : 'redis';
      // Already percent-encoded by URL.
      if (url.username || url.password) credentials = `${url.username}${url.password ? `:${url.password}` : ''}@`;
    }
  }
  const hosts = list.map(({ host, port }) => `${host.includes(':') ? `[${host}]` : host}:${port}`).join(',');
  return `${scheme}+cluster://${credentials}${hosts}`;
}
