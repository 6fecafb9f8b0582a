import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLDataSourceRequestKind } from '@apollo/gateway/dist/datasources/types';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createSubgraphServices } from '../lib/subgraph';
import { SubgraphDataSource } from './subgraph-data-source';
import { SubgraphHealth } from './subgraph-health';

/**
 * A subgraph's replicas behind one data source: SUBGRAPH_<NAME>_URL may list several endpoints,
 * comma-separated; the gateway's SubgraphDataSource takes them in turn, one per call, passes over one whose
 * connection is refused, and its breaker (the subgraph's, not an endpoint's) stays closed while any answers.
 */

const silent = { info() {}, warn() {} };

interface Replica {
  url: string;
  /** GraphQL calls it answered. */
  calls: number;
  /** Whether /readyz answers 200. */
  ready: boolean;
  stop(): Promise<void>;
}

const servers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!();
});

/** A stand-in replica: POST /graphql answers `{ data: { replica: <n> } }`, GET /readyz 200 (or 503). */
async function startReplica(n: number, port = 0): Promise<Replica> {
  const replica: Replica = { url: '', calls: 0, ready: true, stop: async () => {} };
  const server = http.createServer((req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(replica.ready ? 200 : 503).end();
      return;
    }
    req.resume();
    req.on('end', () => {
      replica.calls += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { replica: n } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  replica.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  let stopped: Promise<void> | undefined;
  replica.stop = () =>
    (stopped ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  servers.push(replica.stop);
  return replica;
}

/** A URL on which nothing listens (a port bound, then released): connecting to it is refused. */
async function deadUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/graphql`;
}

function dataSource(url: string) {
  const source = new SubgraphDataSource({ name: 'catalog', url, logger: silent, breaker: { volumeThreshold: 1 } });
  servers.push(() => source.dispose());
  return source;
}

/** One call of `source`, as the gateway's health checks make them (no incoming operation): the replica that answered. */
async function callOnce(source: SubgraphDataSource): Promise<unknown> {
  const response = await source.process({
    kind: GraphQLDataSourceRequestKind.HEALTH_CHECK,
    request: { query: '{ replica }' },
    context: {},
  });
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  return (response.data as { replica: number }).replica;
}

describe('SUBGRAPH_<NAME>_URL with several endpoints', () => {
  it('accepts a comma-separated list (trimmed) and names the variable when an entry is not a URL', () => {
    const config = loadConfig({
      SUBGRAPH_CATALOG_URL: ' http://a.internal:4002/graphql , http://b.internal:4002/graphql',
    });
    expect(config.subgraphs.catalog.url).toBe('http://a.internal:4002/graphql,http://b.internal:4002/graphql');
    expect(loadConfig({ SUBGRAPH_CATALOG_URL: 'http://a.internal/graphql' }).subgraphs.catalog.url).toBe(
      'http://a.internal/graphql',
    );
    expect(() => loadConfig({ SUBGRAPH_CATALOG_URL: 'http://a.internal/graphql,nowhere' })).toThrow(
      /SUBGRAPH_CATALOG_URL: must be a URL, or several comma-separated/,
    );
    expect(() => loadConfig({ SUBGRAPH_CATALOG_URL: ',' })).toThrow(/SUBGRAPH_CATALOG_URL/);
  });

  it("gives another subgraph's calls (reviews asks catalog) one endpoint of the list per call, in turn", async () => {
    const config = loadConfig({
      SUBGRAPH_CATALOG_URL: 'http://a.internal/graphql,http://b.internal/graphql',
      JWT_SECRET: 'x'.repeat(32),
      IDENTITY_SECRET: 'y'.repeat(32),
      ENTITY_CACHE: 'off',
    });
    const services = createSubgraphServices(config, createLogger('reviews', 'silent'));
    try {
      expect([1, 2, 3].map(() => services.subgraphUrl('catalog'))).toEqual([
        'http://a.internal/graphql',
        'http://b.internal/graphql',
        'http://a.internal/graphql',
      ]);
      expect(services.subgraphUrl('accounts')).toBe('http://127.0.0.1:4001/graphql');
    } finally {
      await services.close();
    }
  });
});

describe('SubgraphDataSource over several endpoints', () => {
  it('spreads calls over every endpoint, one per call, in turn', async () => {
    const [a, b] = await Promise.all([startReplica(1), startReplica(2)]);
    const source = dataSource(`${a.url},${b.url}`);
    expect(source.urls).toEqual([a.url, b.url]);
    const answered = [];
    for (let i = 0; i < 10; i += 1) answered.push(await callOnce(source));
    expect(answered).toEqual([1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
    expect([a.calls, b.calls]).toEqual([5, 5]);
    // Concurrent calls spread the same way.
    await Promise.all(Array.from({ length: 10 }, () => callOnce(source)));
    expect([a.calls, b.calls]).toEqual([10, 10]);
  });

  it('passes over an endpoint whose connection is refused: every call answered, its breaker closed', async () => {
    const live = await startReplica(1);
    const source = dataSource(`${await deadUrl()},${live.url}`);
    const answered = [];
    for (let i = 0; i < 20; i += 1) answered.push(await callOnce(source));
    expect(answered).toEqual(Array(20).fill(1));
    expect(live.calls).toBe(20);
    expect(source.breakerState()).toBe('closed');
  });

  it('stops sending to a replica that goes away, and sends to it again once it is back', async () => {
    const [a, b] = await Promise.all([startReplica(1), startReplica(2)]);
    const source = dataSource(`${a.url},${b.url}`);
    await Promise.all([callOnce(source), callOnce(source)]);
    await b.stop();
    const answered = [];
    for (let i = 0; i < 6; i += 1) answered.push(await callOnce(source));
    expect(answered).toEqual(Array(6).fill(1));
    expect(source.breakerState()).toBe('closed');
    // Back on the same port: once the second it is passed over has run out, calls alternate again.
    const back = await startReplica(3, Number(new URL(b.url).port));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const after = [];
    for (let i = 0; i < 4; i += 1) after.push(await callOnce(source));
    expect([...after].sort()).toEqual([1, 1, 3, 3]);
    expect(back.calls).toBe(2);
  });

  it('fails as unreachable, and counts for the breaker, only when no endpoint connects', async () => {
    const source = dataSource(`${await deadUrl()},${await deadUrl()}`);
    await expect(callOnce(source)).rejects.toMatchObject({
      extensions: { code: 'SUBGRAPH_UNAVAILABLE', reason: 'unreachable' },
    });
    expect(source.breakerState()).toBe('open');
  });

  it('with one endpoint, behaves as before: a refused connection is unreachable at once', async () => {
    const source = dataSource(await deadUrl());
    expect(source.urls).toHaveLength(1);
    await expect(callOnce(source)).rejects.toMatchObject({ extensions: { reason: 'unreachable' } });
  });
});

describe('SubgraphHealth over several endpoints', () => {
  it('finds the subgraph ready while any replica is, and unreachable when none answers', async () => {
    const live = await startReplica(1);
    const dead = await deadUrl();
    const monitored = (urls: string[]) => ({
      subgraph: 'catalog',
      url: urls[0]!,
      urls,
      breakerState: () => 'closed' as const,
      closeBreaker: () => {},
    });
    for (const [urls, expected] of [
      [[dead, live.url], 'ready'],
      [[live.url, dead], 'ready'],
      [[dead, dead], 'unreachable'],
    ] as const) {
      const health = new SubgraphHealth(() => [monitored([...urls])], { logger: createLogger('gateway', 'silent') });
      health.start();
      const deadline = Date.now() + 2_000;
      while (health.readiness().catalog === 'unknown' && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      health.stop();
      expect(health.readiness().catalog).toBe(expected);
    }
    live.ready = false;
    const health = new SubgraphHealth(() => [monitored([dead, live.url])], {
      logger: createLogger('gateway', 'silent'),
    });
    health.start();
    while (health.readiness().catalog === 'unknown') await new Promise((resolve) => setTimeout(resolve, 10));
    health.stop();
    expect(health.readiness().catalog).toBe('not_ready');
  });
});
