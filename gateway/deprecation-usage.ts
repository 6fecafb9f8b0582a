import type { RedisConnection, RedisGuard } from '../lib/redis';

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

/** How long report() waits for Redis: it runs in scripts, not on a request's path. */
const REPORT_TIMEOUT_MS = 5_000;

/**
 * Who still uses each deprecated element, and when they last did: in Redis when given (every gateway
 * adds to the same counts), else in this process. Keys: `<namespace>:deprecation-usage:<coordinate>`
 * (a hash of client → count) and `…:last` (client → ISO time). Redis is reached through the
 * connection's guard: while it is down or hung, uses are counted in this process only.
 */
export class DeprecationUsage {
  private readonly local = new Map<string, UsageRecord>();
  private readonly guard: RedisGuard | undefined;

  constructor(
    private readonly namespace: string,
    redis?: RedisConnection,
  ) {
    this.guard = redis?.guard('deprecation usage', 'uses of deprecated elements are counted in this process only');
  }

  private key(coordinate: string) {
    return `${this.namespace}:deprecation-usage:${coordinate}`;
  }

  /** Counts one use by `client` of each coordinate. Never fails a request, nor holds it longer than the guard's wait. */
  async record(coordinates: string[], client: string, at = new Date()): Promise<void> {
    for (const coordinate of coordinates) {
      const local = this.local.get(`${coordinate} ${client}`) ?? {
        coordinate,
        client,
        count: 0,
        lastUsed: at.toISOString(),
      };
      local.count += 1;
      local.lastUsed = at.toISOString();
      this.local.set(`${coordinate} ${client}`, local);
    }
    // Sent together (one round trip), not as a MULTI: on a Redis Cluster a transaction's keys must share a
    // slot, and these need no transaction (a count read before its time is harmless).
    await this.guard?.attempt((redis) =>
      Promise.all(
        coordinates.flatMap((coordinate) => [
          redis.hIncrBy(this.key(coordinate), client, 1),
          redis.hSet(`${this.key(coordinate)}:last`, client, at.toISOString()),
        ]),
      ),
    );
  }

  /**
   * Usage of the given coordinates, most recent first (from Redis when given, else this process).
   * Throws when Redis does not answer: this process's counts alone would understate the usage.
   */
  async report(coordinates: string[]): Promise<UsageRecord[]> {
    if (!this.guard) return [...this.local.values()].filter((record) => coordinates.includes(record.coordinate));
    const read = await this.guard.attempt(
      (redis) =>
        Promise.all(
          coordinates.map(async (coordinate) => {
            const [counts, last] = await Promise.all([
              redis.hGetAll(this.key(coordinate)),
              redis.hGetAll(`${this.key(coordinate)}:last`),
            ]);
            return { coordinate, counts, last };
          }),
        ),
      { timeoutMs: REPORT_TIMEOUT_MS },
    );
    if (!read) throw new Error('Redis did not answer: the usage of deprecated elements cannot be read');
    const records: UsageRecord[] = [];
    for (const { coordinate, counts, last } of read) {
      for (const [client, count] of Object.entries(counts))
        records.push({ coordinate, client, count: Number(count), lastUsed: last[client] ?? '' });
    }
    return records.sort((a, b) => a.coordinate.localeCompare(b.coordinate) || b.lastUsed.localeCompare(a.lastUsed));
  }
}
