import type { RedisClient } from '../lib/redis';

/** A client as counted, from clientOf()'s name and version: reduced to safe characters. */
export function clientLabel(name: string | null | undefined, version: string | null | undefined): string {
  const clean = (value: string | null | undefined) => (value ?? '').replace(/[^\w.@/-]/g, '').slice(0, 48);
  return `${clean(name) || 'unknown'}@${clean(version) || 'unknown'}`;
}

export interface UsageRecord {
  coordinate: string;
  client: string;
  count: number;
  lastUsed: string;
}

/**
 * Who still uses each deprecated element, and when they last did: in Redis when given (every gateway
 * adds to the same counts), else in this process. Keys: `<namespace>:deprecation-usage:<coordinate>`
 * (a hash of client → count) and `…:last` (client → ISO time).
 */
export class DeprecationUsage {
  private readonly local = new Map<string, UsageRecord>();

  constructor(
    private readonly namespace: string,
    private readonly redis?: RedisClient,
  ) {}

  private key(coordinate: string) {
    return `${this.namespace}:deprecation-usage:${coordinate}`;
  }

  /** Counts one use by `client` of each coordinate. Never fails a request: errors are dropped. */
  async record(coordinates: string[], client: string, at = new Date()): Promise<void> {
    for (const coordinate of coordinates) {
      const local = this.local.get(`${coordinate} ${client}`) ?? { coordinate, client, count: 0, lastUsed: at.toISOString() };
      local.count += 1;
      local.lastUsed = at.toISOString();
      this.local.set(`${coordinate} ${client}`, local);
    }
    if (!this.redis?.isReady) return;
    const multi = this.redis.multi();
    for (const coordinate of coordinates) {
      multi.hIncrBy(this.key(coordinate), client, 1);
      multi.hSet(`${this.key(coordinate)}:last`, client, at.toISOString());
    }
    await multi.exec().catch(() => undefined);
  }

  /** Usage of the given coordinates, most recent first (from Redis when given, else this process). */
  async report(coordinates: string[]): Promise<UsageRecord[]> {
    if (!this.redis) return [...this.local.values()].filter((record) => coordinates.includes(record.coordinate));
    const records: UsageRecord[] = [];
    for (const coordinate of coordinates) {
      const [counts, last] = await Promise.all([this.redis.hGetAll(this.key(coordinate)), this.redis.hGetAll(`${this.key(coordinate)}:last`)]);
      for (const [client, count] of Object.entries(counts)) records.push({ coordinate, client, count: Number(count), lastUsed: last[client] ?? '' });
    }
    return records.sort((a, b) => a.coordinate.localeCompare(b.coordinate) || b.lastUsed.localeCompare(a.lastUsed));
  }
}
