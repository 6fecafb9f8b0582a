/** /metrics on every process, and one structured log line per request. */
import { Writable } from 'node:stream';
import pino from 'pino';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const suite = useHarness();

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format, enough of it: `name{label="value",...} number`. */
function parse(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ([-+\w.]+)$/.exec(line);
      if (!match) throw new Error(`not Prometheus text: ${line}`);
      const labels = Object.fromEntries(
        [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, key, value]) => [key!, value!]),
      );
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

async function scrape(graphqlUrl: string): Promise<Sample[]> {
  const response = await fetch(graphqlUrl.replace('/graphql', '/metrics'));
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/text\/plain/);
  return parse(await response.text());
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([key, v]) => s.labels[key] === v))
    .reduce((sum, s) => sum + s.value, 0);
const has = (samples: Sample[], name: string) => samples.some((s) => s.name === name);

describe('/metrics', () => {
  beforeAll(async () => {
    await suite.harness.query(STOREFRONT_PAGE, { first: 5 });
    await suite.harness.query('query Broken { products(first: 500) { edges { cursor } } }');
    await suite.harness.query(
      '{ products(first: 100) { edges { node { reviews(first: 100) { edges { node { author { displayName } } } } } } } }',
    );
    // The storefront page reads catalog's products as a list (never cached): a product by id reads catalog's own cache.
    await suite.harness.query('query One($id: ID!) { product(id: $id) { title } }', { id: dataset.products[0]!.id });
  });

  it('on the gateway: latency by operation and outcome, errors by code, subgraph fetches, breakers, cost, saturation', async () => {
    const samples = await scrape(suite.harness.gatewayUrl);
    expect(
      value(samples, 'graphql_request_duration_seconds_count', {
        operation: 'StorefrontPage',
        outcome: 'ok',
        service: 'gateway',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(samples, 'graphql_request_duration_seconds_count', { operation: 'Broken', outcome: 'error' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(samples, 'graphql_request_duration_seconds_count', { operation: 'anonymous', outcome: 'rejected' }),
    ).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'graphql_errors_total', { code: 'BAD_USER_INPUT' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'graphql_errors_total', { code: 'QUERY_TOO_COMPLEX' })).toBeGreaterThanOrEqual(1);
    for (const subgraph of ['catalog', 'reviews', 'accounts']) {
      expect(
        value(samples, 'subgraph_fetch_duration_seconds_count', { subgraph, outcome: 'ok' }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        samples.find((s) => s.name === 'subgraph_circuit_breaker_state' && s.labels.subgraph === subgraph)?.value,
      ).toBe(0);
    }
    expect(value(samples, 'graphql_operation_cost_count')).toBeGreaterThanOrEqual(2);
    expect(value(samples, 'graphql_operation_cost_sum')).toBeGreaterThan(0);
    for (const family of [
      'graphql_requests_in_flight',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_heap_size_used_bytes',
      'rate_limit_store_degraded',
      'process_cpu_seconds_total',
    ]) {
      expect(has(samples, family)).toBe(true);
    }
  });

  it.each(['accounts', 'catalog', 'reviews'] as const)(
    'on %s: GraphQL families, database pool use and entity cache counts',
    async (name) => {
      const samples = await scrape(suite.harness.subgraphs[name].url);
      expect(value(samples, 'graphql_request_duration_seconds_count', { service: name })).toBeGreaterThanOrEqual(1);
      expect(value(samples, 'db_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1);
      expect(has(samples, 'db_pool_connections')).toBe(true);
      // Each subgraph counts its own cache's use (its own services, as in a process of its own).
      expect(
        value(samples, 'entity_cache_hits_total', { service: name }) +
          value(samples, 'entity_cache_misses_total', { service: name }),
      ).toBeGreaterThan(0);
      expect(has(samples, 'nodejs_eventloop_lag_p99_seconds')).toBe(true);
    },
  );

  it('keeps label values bounded: at most 200 operation names, the rest count as "other"', async () => {
    for (let i = 0; i < 210; i += 1) await suite.harness.query(`query Op${i} { __typename }`);
    const samples = await scrape(suite.harness.gatewayUrl);
    const operations = new Set(
      samples.filter((s) => s.name === 'graphql_request_duration_seconds_count').map((s) => s.labels.operation),
    );
    operations.delete('anonymous');
    operations.delete('other');
    expect(operations.size).toBe(200);
    expect(value(samples, 'graphql_request_duration_seconds_count', { operation: 'other' })).toBeGreaterThanOrEqual(10);
  });
});

describe('/metrics access and rejected requests', () => {
  it('counts a request refused for a bad token, and names a broken operation "unresolved" without using a slot', async () => {
    const before = value(await scrape(suite.harness.gatewayUrl), 'graphql_errors_total', { code: 'UNAUTHENTICATED' });
    await suite.harness.query('{ __typename }', {}, { headers: { authorization: 'Bearer not.a.token' } });
    await suite.harness.query('query NeverParses { ', {});
    const samples = await scrape(suite.harness.gatewayUrl);
    expect(value(samples, 'graphql_errors_total', { code: 'UNAUTHENTICATED' })).toBe(before + 1);
    expect(samples.some((s) => s.labels.operation === 'NeverParses')).toBe(false);
  });

  it('answers /metrics only with the metrics token when one is configured', async () => {
    const gateway = await suite.harness.startGateway({ metricsToken: 'a-metrics-token-for-tests' });
    try {
      const metricsUrl = gateway.url.replace('/graphql', '/metrics');
      expect((await fetch(metricsUrl)).status).toBe(401);
      expect(
        (await fetch(metricsUrl, { headers: { authorization: 'Bearer wrong-token-of-some-length' } })).status,
      ).toBe(401);
      const ok = await fetch(metricsUrl, { headers: { authorization: 'Bearer a-metrics-token-for-tests' } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('graphql_requests_in_flight');
    } finally {
      await gateway.stop();
    }
  });
});

describe('request logs', () => {
  it('write one line per request with operation, client, duration, cost and outcome, and nothing personal', async () => {
    const lines: Array<Record<string, any>> = [];
    const logger = pino(
      { level: 'info' },
      new Writable({ write: (chunk, _encoding, done) => done(void lines.push(JSON.parse(String(chunk)))) }),
    );
    const gateway = await suite.harness.startGateway({ logger });
    try {
      const user = dataset.users[2]!;
      const token = await suite.harness.tokenFor(user.id);
      await fetch(gateway.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${token}`,
          'apollographql-client-name': 'web-shop',
          'apollographql-client-version': '1.4.2',
        },
        body: JSON.stringify({
          query: 'query Me($id: ID!) { me { email } user(id: $id) { displayName } }',
          variables: { id: user.id },
        }),
      });
      const requests = lines.filter((line) => line.msg === 'graphql request');
      expect(requests).toHaveLength(1);
      expect(requests[0]).toMatchObject({
        operation: 'Me',
        client: { name: 'web-shop', version: '1.4.2' },
        status: 200,
        outcome: 'ok',
        cost: expect.any(Number),
        durationMs: expect.any(Number),
      });
      const everything = JSON.stringify(lines);
      for (const secret of [user.email, user.id, token]) expect(everything).not.toContain(secret);
    } finally {
      await gateway.stop();
    }
  });
});
