/**
 * One trace from the gateway request down to SQL in every subgraph, exported over OTLP. Tracing
 * patches modules through Node's own loader, which jest's module registry bypasses, so the service
 * runs as a real process (`npm start`'s script) exporting to a collector this test runs.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { issueToken } from '../gateway/auth';
import { SUBGRAPH_NAMES } from '../subgraphs/registry';
import { adminQuery, withDatabase } from './databases';
import { describeWithRedis } from './redis-available';

const ROOT = join(__dirname, '..');

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  service: string;
}

/** An OTLP/HTTP (JSON) trace receiver. */
async function startCollector() {
  const spans: ExportedSpan[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const payload = JSON.parse(body) as {
        resourceSpans: Array<{
          resource: { attributes: ExportedSpan['attributes'] };
          scopeSpans: Array<{ spans: ExportedSpan[] }>;
        }>;
      };
      for (const resourceSpan of payload.resourceSpans ?? []) {
        const service = String(
          resourceSpan.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue,
        );
        for (const scope of resourceSpan.scopeSpans) for (const span of scope.spans) spans.push({ ...span, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const attribute = (span: ExportedSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value ? (value.stringValue ?? value.intValue ?? value.boolValue) : undefined;
};

describeWithRedis('tracing', () => {
  it('joins gateway request, query plan, subgraph fetches, resolvers and SQL in one trace, and a job to the request that queued it', async () => {
    const collector = await startCollector();
    const adminUrl = process.env.TEST_ADMIN_URL!;
    const name = `${process.env.TEST_TEMPLATE_DB}_trace`;
    await adminQuery(
      adminUrl,
      `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(process.env.TEST_TEMPLATE_DB!)}`,
    );
    const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), ['scripts/start.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: withDatabase(adminUrl, name),
        GATEWAY_PORT: '0',
        WORKER_PORT: '0',
        ...Object.fromEntries(SUBGRAPH_NAMES.map((subgraph) => [`SUBGRAPH_${subgraph.toUpperCase()}_PORT`, '0'])),
        SEED_SCALE: '0',
        LOG_LEVEL: 'info',
        // The entity cache in the real Redis, under a namespace of its own: first reads miss (SQL runs) and
        // the cache calls are traced too.
        REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
        REDIS_NAMESPACE: name,
        JWT_SECRET: 'trace-test-jwt-secret-of-32-characters!!',
        IDENTITY_SECRET: 'trace-test-identity-secret-of-32-chars!!',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    try {
      const gatewayUrl = await new Promise<string>((resolve, reject) => {
        const giveUp = setTimeout(() => {
          clearInterval(poll);
          reject(new Error(`not ready:\n${output}`));
        }, 20_000);
        const poll = setInterval(() => {
          const match = output.match(/ready in [\d.]+ s: (http:\/\/\S+)/);
          if (match) {
            clearInterval(poll);
            clearTimeout(giveUp);
            resolve(match[1]!);
          }
        }, 50);
      });
      const subgraphPorts = Object.fromEntries(
        [...output.matchAll(/"url":"http:\/\/[^:]+:(\d+)\/graphql"[^\n]*"msg":"(\w+) subgraph ready"/g)].map(
          ([, port, subgraph]) => [port!, subgraph!],
        ),
      );
      expect(Object.values(subgraphPorts).sort()).toEqual([...SUBGRAPH_NAMES].sort());

      const response = await fetch(gatewayUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          query:
            'query Storefront { products(first: 2) { edges { node { title reviews(first: 2) { edges { node { author { displayName } } } } } } } }',
        }),
      });
      const body = (await response.json()) as { errors?: unknown };
      expect(body.errors).toBeUndefined();

      // The batch processor exports every 100 ms; wait for the gateway's request span (it ends last)
      // and a statement from each subgraph.
      const sqlSpans = () => collector.spans.filter((span) => span.name.startsWith('pg.query'));
      const incomingPosts = () => collector.spans.filter((span) => span.kind === 2 && span.name.startsWith('POST'));
      for (let i = 0; i < 100 && (sqlSpans().length < 3 || incomingPosts().length < 4); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 100));

      const byId = new Map(collector.spans.map((span) => [span.spanId, span]));
      const chainOf = (span: ExportedSpan) => {
        const chain = [span];
        while (chain.at(-1)!.parentSpanId && byId.has(chain.at(-1)!.parentSpanId!))
          chain.push(byId.get(chain.at(-1)!.parentSpanId!)!);
        return chain.reverse(); // root first
      };
      const gatewayRequest = incomingPosts().find((span) => !span.parentSpanId);
      expect(gatewayRequest).toBeDefined();

      const reached = new Set<string>();
      for (const sql of sqlSpans()) {
        const chain = chainOf(sql);
        if (chain[0]!.spanId !== gatewayRequest!.spanId) continue;
        // Below the gateway request: the plan and fetch spans @apollo/gateway makes, an outgoing HTTP
        // call, the subgraph's incoming request, its GraphQL execution, then the statement.
        const kinds = chain.map((span) => `${span.kind}:${span.name.split(' ')[0]}`);
        // server POST (gateway) > gateway.request > … > gateway.fetch > client POST > server POST
        // (subgraph) > the subgraph's operation > graphql.resolve … > pg.query
        const fetchAt = kinds.indexOf('1:gateway.fetch');
        expect(fetchAt).toBeGreaterThan(0);
        expect(kinds[fetchAt + 1]).toBe('3:POST');
        expect(kinds[fetchAt + 2]).toBe('2:POST');
        expect(kinds.slice(fetchAt + 3).some((kind) => kind.startsWith('1:graphql.resolve'))).toBe(true);
        expect(kinds.at(-1)).toMatch(/^3:pg\.query/);
        const subgraphServer = chain[fetchAt + 2]!;
        reached.add(
          subgraphPorts[String(attribute(subgraphServer, 'server.port'))] ??
            `unknown port ${attribute(subgraphServer, 'server.port')}`,
        );
      }
      expect([...reached].sort()).toEqual(['accounts', 'catalog', 'reviews']);
      // Prisma's own spans and the Redis calls (entity cache, budget) are in the same trace, and so is the query plan.
      expect(
        collector.spans.some((span) => span.name.startsWith('redis-') && span.traceId === gatewayRequest!.traceId),
      ).toBe(true);
      expect(
        collector.spans.some((span) => span.name.startsWith('prisma:') && span.traceId === gatewayRequest!.traceId),
      ).toBe(true);
      expect(
        collector.spans.some((span) => span.name === 'gateway.plan' && span.traceId === gatewayRequest!.traceId),
      ).toBe(true);
      expect(collector.spans.every((span) => span.service === 'storefront')).toBe(true);

      // A bulk query's spans continue the trace of the request that queued it: pg-boss stored its context, the
      // worker's `process bulk-query` span continues it, and the pages it sends the gateway are below that.
      const traceId = randomBytes(16).toString('hex');
      const token = await issueToken({
        secret: 'trace-test-jwt-secret-of-32-characters!!',
        issuer: 'storefront-supergraph',
        audience: 'storefront',
        userId: randomUUID(),
      });
      const graphql = async (query: string, headers: Record<string, string> = {}) => {
        const answer = await fetch(gatewayUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers },
          body: JSON.stringify({ query }),
        });
        return (await answer.json()) as { data: Record<string, { id: string; status: string; job: { id: string } }> };
      };
      const queued = await graphql(
        'mutation { runBulkQuery(query: "{ products { edges { node { id } } } }") { job { id } } }',
        {
          traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        },
      );
      const jobId = queued.data.runBulkQuery!.job.id;
      for (let i = 0; i < 100; i += 1) {
        const { data } = await graphql(`{ job(id: "${jobId}") { id status } }`);
        if (data.job?.status === 'COMPLETED') break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const processSpan = () =>
        collector.spans.find((span) => span.traceId === traceId && span.name === 'process bulk-query');
      const below = (span: ExportedSpan, ancestor: ExportedSpan) => {
        const all = new Map(collector.spans.map((each) => [each.spanId, each]));
        for (let at: ExportedSpan | undefined = span; at; at = at.parentSpanId ? all.get(at.parentSpanId) : undefined)
          if (at.spanId === ancestor.spanId) return true;
        return false;
      };
      const pageRequests = () =>
        collector.spans.filter(
          (span) => span.kind === 2 && span.name.startsWith('POST') && span.traceId === traceId && span.parentSpanId,
        );
      for (let i = 0; i < 100 && !(processSpan() && pageRequests().some((span) => below(span, processSpan()!))); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(processSpan()).toBeDefined();
      // The page's request arrives at the gateway below the worker's span, in the same trace.
      expect(pageRequests().some((span) => below(span, processSpan()!))).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await exited;
      await collector.close();
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    }
  }, 60_000);
});
