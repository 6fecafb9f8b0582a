import { createClient } from 'redis';
import type { Logger } from './logger';

export type RedisClient = ReturnType<typeof createClient>;

/**
 * A node-redis client for shared counters and caches. Start-up does not wait for Redis: while it is
 * unreachable, commands fail at once (no offline queue) and callers use their local fallback; the
 * client keeps reconnecting with capped backoff.
 */
export function connectRedis(url: string, logger: Logger): { client: RedisClient; ready(timeoutMs?: number): Promise<boolean>; close(): Promise<void> } {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 1_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
  });
  // Errors are reported by the users of the client (once per outage); without a listener they would crash the process.
  client.on('error', () => {});
  client.connect().catch((error: Error) => logger.warn({ err: error.message }, 'Redis not reachable yet; retrying'));
  return {
    client,
    /** Waits up to `timeoutMs` (default 2000) for the first connection; false if Redis is not there yet. */
    ready: async (timeoutMs = 2_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!client.isReady && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      return client.isReady;
    },
    // Graceful when connected (pending replies may arrive for a second); immediate otherwise.
    close: async () => {
      if (client.isReady) {
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1_000)));
        await Promise.race([client.close().catch(() => undefined), gaveUp]);
        clearTimeout(timer);
      }
      if (client.isOpen) client.destroy();
    },
  };
}
