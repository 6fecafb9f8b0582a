import { DeprecationUsage } from '../gateway/deprecation-usage';
import { loadDeprecations } from '../gateway/deprecations';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { printTable } from './bench-kit';

/**
 * `npm run schema:usage`: per deprecated element, who still uses it and when they last did, from the
 * counts every gateway keeps in Redis (REDIS_URL; REDIS_NAMESPACE picks the deployment). The answer
 * to "can we remove this yet?".
 */
runMain(async () => {
  const config = loadConfig();
  if (!config.REDIS_URL) throw new Error('Usage is counted in Redis: set REDIS_URL to the Redis the gateways use.');
  const redis = connectRedis(config.REDIS_URL, createLogger('schema-usage', 'silent'));
  try {
    if (!(await redis.ready(3_000))) throw new Error(`Redis at ${config.REDIS_URL} is not reachable.`);
    const facts = loadDeprecations();
    const records = await new DeprecationUsage(config.REDIS_NAMESPACE, redis).report(Object.keys(facts));
    const rows = Object.entries(facts).flatMap(([coordinate, { sunset }]) => {
      const uses = records.filter((record) => record.coordinate === coordinate);
      return uses.length
        ? uses.map((use) => [coordinate, sunset, use.client, String(use.count), use.lastUsed])
        : [[coordinate, sunset, '(no recorded use)', '0', '']];
    });
    printTable(['element', 'sunset', 'client', 'uses', 'last used'], rows);
  } finally {
    await redis.close();
  }
});
