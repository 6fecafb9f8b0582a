/** The gateway follows schema/supergraph.graphql without a restart, and refuses a broken one. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { composeSupergraph, readSubgraphSdls, type SubgraphSdls } from '../scripts/compose';
import { useHarness } from './harness';
import { editedSchema } from './schema-edits';
import { asyncHandler, until } from './service';

const suite = useHarness();

/**
 * A gateway following its own supergraph file, first composed from `sdls`. `publish` writes a new
 * one: composed from a schema folder, or `raw` SDL as it is.
 */
async function followingGateway(sdls: SubgraphSdls, overrides: Parameters<typeof suite.harness.startGateway>[0] = {}) {
  const path = join(mkdtempSync(join(tmpdir(), 'supergraph-')), 'supergraph.graphql');
  writeFileSync(path, composeSupergraph(sdls));
  const gateway = await suite.harness.startGateway({ supergraphPath: path, supergraphSdl: undefined, ...overrides });
  return {
    gateway,
    publish: (next: SubgraphSdls) => writeFileSync(path, composeSupergraph(next)),
    publishRaw: (sdl: string) => writeFileSync(path, sdl),
  };
}

describe('live reload of the supergraph', () => {
  it('serves a field added to a subgraph once the supergraph is recomposed, and keeps serving through a broken one', async () => {
    // The supergraph as it was before catalog's `sku` field was added; catalog (running) already serves it.
    const before = editedSchema('catalog', (sdl) =>
      sdl.replace('  "Stock-keeping unit, unique across the catalog."\n  sku: String!\n', ''),
    );

    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({ write: (chunk, _encoding, done) => done(void lines.push(String(chunk))) }),
    );
    const { gateway, publish, publishRaw } = await followingGateway(before, { logger });
    const skus = () =>
      suite.harness.query('{ products(first: 2) { edges { node { sku } } } }', {}, { url: gateway.url });
    try {
      expect((await skus()).errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');

      // Recompose with the field and publish: the running gateway picks it up.
      publish(readSubgraphSdls());
      await until(async () => (await skus()).errors === undefined);
      expect((await skus()).data!.products.edges[0].node.sku).toMatch(/^SKU-/);
      expect(lines.some((line) => line.includes('supergraph reloaded'))).toBe(true);

      // A broken supergraph is refused; the last good one keeps serving.
      publishRaw('this is not a supergraph');
      await until(async () => lines.some((line) => line.includes('new supergraph refused')));
      const still = await skus();
      expect(still.errors).toBeUndefined();
      expect(still.data!.products.edges).toHaveLength(2);
    } finally {
      await gateway.stop();
    }
  }, 30_000);

  it('scores operations with the costs of the supergraph it serves: a weight added by a reload counts at once', async () => {
    const weighted = editedSchema('catalog', (sdl) =>
      sdl.replace('  title: String!\n', '  title: String! @cost(weight: 40)\n'),
    );
    const { gateway, publish } = await followingGateway(readSubgraphSdls());
    // products 1 + 2 × (edge 1 + node 1 + title): 5 with a free title, 85 once a title weighs 40.
    const cost = async () =>
      (await suite.harness.query('{ products(first: 2) { edges { node { title } } } }', {}, { url: gateway.url }))
        .extensions?.cost?.requested;
    try {
      expect(await cost()).toBe(5);
      publish(weighted);
      await until(async () => (await cost()) === 85);
    } finally {
      await gateway.stop();
    }
  }, 30_000);

  it('enforces the access rules of the supergraph it serves: a rule added by a reload applies at once, and goes with the next', async () => {
    // A supergraph whose Product.sku needs the catalog:write scope (the running catalog does not say so:
    // only the gateway's rules change here).
    const guarded = editedSchema('catalog', (sdl) =>
      sdl.replace('  sku: String!\n', '  sku: String! @requiresScopes(scopes: [["catalog:write"]])\n'),
    );
    const { gateway, publish } = await followingGateway(readSubgraphSdls());
    const skus = () =>
      suite.harness.query('{ products(first: 1) { edges { node { sku } } } }', {}, { url: gateway.url });
    try {
      expect((await skus()).status).toBe(200);
      publish(guarded);
      await until(async () => (await skus()).status === 401);
      expect((await skus()).errors?.map((e) => e.extensions)).toEqual([
        { code: 'UNAUTHENTICATED', fields: ['Product.sku'] },
      ]);
      publish(readSubgraphSdls());
      await until(async () => (await skus()).status === 200);
    } finally {
      await gateway.stop();
    }
  }, 30_000);

  it('lets a request in flight finish while a new supergraph is swapped in', async () => {
    // Reviews answer through a proxy that holds each call for 500 ms, so the request is in flight.
    const target = suite.harness.subgraphs.reviews.url;
    const proxy = http.createServer(
      asyncHandler(async (req, res) => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const upstream = await fetch(target, {
          method: 'POST',
          headers: req.headers as Record<string, string>,
          body: Buffer.concat(chunks),
        });
        res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(await upstream.text());
      }),
    );
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { gateway, publish } = await followingGateway(readSubgraphSdls(), {
      subgraphUrls: {
        accounts: suite.harness.subgraphs.accounts.url,
        catalog: suite.harness.subgraphs.catalog.url,
        reviews: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/graphql`,
      },
    });
    try {
      const inFlight = suite.harness.query(
        '{ products(first: 2) { edges { node { title reviewCount } } } }',
        {},
        { url: gateway.url },
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      // A new supergraph (a field added) while the request waits on reviews.
      const later = editedSchema('catalog', (sdl) =>
        sdl.replace('  title: String!\n', '  title: String!\n  "Not served yet."\n  tagline: String\n'),
      );
      publish(later);
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expect(answer.errors).toBeUndefined();
      expect(answer.data!.products.edges.every((edge: any) => typeof edge.node.reviewCount === 'number')).toBe(true);
      // And the new supergraph did take over.
      await until(async () =>
        (
          await suite.harness.query('{ __type(name: "Product") { fields { name } } }', {}, { url: gateway.url })
        ).data!.__type.fields.some((f: any) => f.name === 'tagline'),
      );
    } finally {
      await gateway.stop();
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  }, 30_000);
});
