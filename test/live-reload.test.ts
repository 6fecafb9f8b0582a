/** The gateway follows schema/supergraph.graphql without a restart, and refuses a broken one. */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { composeSupergraph, SCHEMA_DIR } from '../scripts/compose';
import { useHarness } from './harness';

const suite = useHarness();

async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('live reload of the supergraph', () => {
  it('serves a field added to a subgraph once the supergraph is recomposed, and keeps serving through a broken one', async () => {
    // The supergraph as it was before catalog's `sku` field was added; catalog (running) already serves it.
    const before = mkdtempSync(join(tmpdir(), 'schema-before-'));
    cpSync(SCHEMA_DIR, before, { recursive: true });
    const catalogSdl = readFileSync(join(before, 'catalog.graphql'), 'utf8');
    const withoutSku = catalogSdl.replace('  "Stock-keeping unit, unique across the catalog."\n  sku: String!\n', '');
    expect(withoutSku).not.toBe(catalogSdl);
    writeFileSync(join(before, 'catalog.graphql'), withoutSku);
    const path = join(mkdtempSync(join(tmpdir(), 'supergraph-')), 'supergraph.graphql');
    writeFileSync(path, composeSupergraph(before));

    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => done(void lines.push(String(chunk))) }));
    const gateway = await suite.harness.startGateway({ supergraphPath: path, supergraphSdl: undefined, logger });
    const skus = () => suite.harness.query('{ products(first: 2) { edges { node { sku } } } }', {}, { url: gateway.url });
    try {
      expect((await skus()).errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');

      // Recompose with the field and publish: the running gateway picks it up.
      writeFileSync(path, composeSupergraph(SCHEMA_DIR));
      await until(async () => (await skus()).errors === undefined);
      expect((await skus()).data!.products.edges[0].node.sku).toMatch(/^SKU-/);
      expect(lines.some((line) => line.includes('supergraph reloaded'))).toBe(true);

      // A broken supergraph is refused; the last good one keeps serving.
      writeFileSync(path, 'this is not a supergraph');
      await until(async () => lines.some((line) => line.includes('new supergraph refused')));
      const still = await skus();
      expect(still.errors).toBeUndefined();
      expect(still.data!.products.edges).toHaveLength(2);
    } finally {
      await gateway.stop();
    }
  }, 30_000);
});
