import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { SUBGRAPH_NAMES } from '../../subgraphs/registry';
import { PROCESS_COMMANDS, startService, stopServices, waitReady, type Service } from './processes';

/**
 * Starting and stopping the whole service (every subgraph, then the gateway) for `npm run bench:load`,
 * waiting for its first whole storefront page, and emptying the Redis namespace a run used. Shared by
 * the speed section, which restarts the service once per configuration, and the overload phases.
 */

type Redis = ReturnType<typeof createClient>;

export async function withRedis<T>(url: string, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = createClient({ url, socket: { connectTimeout: 2_000, reconnectStrategy: false } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    client.destroy();
  }
}

/** Deletes what the run left in Redis: only keys of a namespace this script made up. */
export async function cleanRedis(url: string, namespace: string): Promise<number> {
  if (!namespace.startsWith('bench-load-')) return 0;
  return withRedis(url, async (client) => {
    let deleted = 0;
    for await (const keys of client.scanIterator({ MATCH: `${namespace}:*`, COUNT: 1_000 }))
      if (keys.length) deleted += await client.unlink(keys);
    return deleted;
  });
}

/** The Redis server's pid (INFO server), so its CPU can be read like a service process's; undefined if unknown. */
export async function redisPid(url: string): Promise<number | undefined> {
  const info = await withRedis(url, (client) => client.info('server')).catch(() => '');
  const match = /^process_id:(\d+)/m.exec(info);
  return match ? Number(match[1]) : undefined;
}

/**
 * Starts every subgraph (each on its SUBGRAPH_<NAME>_PORT of `env`), waits until each is ready, then
 * the gateway (GATEWAY_PORT). Each process is handed to `track` as soon as it is spawned, so whoever
 * tracks them can stop or kill them whatever happens next (a start-up failure, a signal).
 */
export async function startStack(
  root: string,
  env: Record<string, string>,
  track: (service: Service) => void,
  log: (line: string) => void,
): Promise<{ gateway: Service; subgraphs: Service[] }> {
  log(`starting ${SUBGRAPH_NAMES.join(', ')} in ${root}`);
  const subgraphs = SUBGRAPH_NAMES.map((name) =>
    startService(
      name,
      PROCESS_COMMANDS.subgraph(name, root),
      root,
      env,
      Number(env[`SUBGRAPH_${name.toUpperCase()}_PORT`]),
    ),
  );
  subgraphs.forEach(track);
  await Promise.all(subgraphs.map((service) => waitReady(service)));
  log('starting the gateway');
  const gateway = startService('gateway', PROCESS_COMMANDS.gateway(root), root, env, Number(env.GATEWAY_PORT));
  track(gateway);
  await waitReady(gateway);
  return { gateway, subgraphs };
}

/** Whether `service` is a gateway: `gateway`, or `gateway <n>` when the scale mode runs several. */
export const isGateway = (service: Service) => /^gateway( \d+)?$/.test(service.name);

/**
 * Stops `stack`: the gateways first (they call the subgraphs), then the rest; whatever ignores SIGTERM
 * for `graceMs` is killed. Returns how each ended.
 */
export async function stopStack(stack: Service[], graceMs = 20_000): Promise<Map<string, number | string>> {
  const endings = new Map<string, number | string>();
  for (const group of [stack.filter(isGateway), stack.filter((s) => !isGateway(s))])
    for (const [name, ending] of await stopServices(group, graceMs)) endings.set(name, ending);
  return endings;
}

export const describeEndings = (endings: Map<string, number | string>) =>
  [...endings].map(([name, ending]) => `${name} ${ending === 0 ? 'exit 0' : ending}`).join(', ');

/**
 * One request at a time until the page comes back whole (200, 20 products, no errors). A 503 or 429 is
 * retried for up to 15 s (a gateway may refuse while it is still warming up); anything else throws.
 * Returns the refusals seen before the first page, and the page's body.
 */
export async function firstPage(
  origin: string,
  body: string,
  token: string,
): Promise<{ refusals: string[]; text: string }> {
  const refusals: string[] = [];
  const deadline = Date.now() + 15_000;
  for (;;) {
    const response = await fetch(`${origin}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
    const text = await response.text();
    const parsed = JSON.parse(text) as { data?: { products?: { edges?: unknown[] } }; errors?: unknown };
    if (response.status === 200 && !parsed.errors && parsed.data?.products?.edges?.length === 20)
      return { refusals, text };
    if ((response.status !== 503 && response.status !== 429) || Date.now() > deadline)
      throw new Error(`The storefront page did not come back whole (${response.status}): ${text.slice(0, 500)}`);
    refusals.push(`${response.status} ${text.slice(0, 200)}`);
    await sleep(250);
  }
}
