import { readFileSync } from 'node:fs';
import { loadDeprecations } from '../gateway/deprecations';
import { SUPERGRAPH_PATH } from '../gateway/supergraph-file';
import { editedSchema } from '../test/schema-edits';
import { CompositionError } from './compose';
import { checkSchema } from './schema-check';

const committedSupergraph = readFileSync(SUPERGRAPH_PATH, 'utf8');
const facts = loadDeprecations();
const AFTER_SUNSET = new Date('2027-07-01T00:00:00Z');

/** Every subgraph's SDL with catalog's edited. */
const editedCatalog = (edit: (sdl: string) => string) => editedSchema('catalog', edit);

const unused = async () => 0;

describe('npm run schema:check', () => {
  it('passes when the subgraphs compose to the committed API schema', async () => {
    expect(await checkSchema({ committedSupergraph, facts, usesOf: unused })).toEqual({ ok: true, changes: [] });
  });

  it('passes an addition, classified safe', async () => {
    const subgraphSdls = editedCatalog((sdl) =>
      sdl.replace('  title: String!\n', '  title: String!\n  "A short marketing line."\n  tagline: String\n'),
    );
    const { ok, changes } = await checkSchema({ committedSupergraph, subgraphSdls, facts, usesOf: unused });
    expect(ok).toBe(true);
    expect(changes).toEqual([{ kind: 'safe', description: 'Product.tagline was added.' }]);
  });

  it('fails on a write that does not say who may make it, though adding it is otherwise safe', async () => {
    const subgraphSdls = editedCatalog((sdl) =>
      sdl.replace('type Mutation {\n', 'type Mutation {\n  archiveProduct(id: ID!): Product! @cost(weight: 10)\n'),
    );
    const { ok, changes } = await checkSchema({ committedSupergraph, subgraphSdls, facts, usesOf: unused });
    expect(ok).toBe(false);
    expect(changes).toEqual([
      { kind: 'safe', description: 'Mutation.archiveProduct was added.' },
      expect.objectContaining({ kind: 'unguarded', coordinate: 'Mutation.archiveProduct', allowed: false }),
    ]);
  });

  it('fails on removing a field that was never deprecated', async () => {
    const subgraphSdls = editedCatalog((sdl) =>
      sdl.replace(/ {2}"Stock-keeping unit, unique across the catalog."\n {2}sku: String!\n/, ''),
    );
    const { ok, changes } = await checkSchema({
      committedSupergraph,
      subgraphSdls,
      facts,
      usesOf: unused,
      today: AFTER_SUNSET,
    });
    expect(ok).toBe(false);
    expect(changes).toEqual([
      expect.objectContaining({
        kind: 'breaking',
        coordinate: 'Product.sku',
        allowed: false,
        why: expect.stringContaining('not deprecated'),
      }),
    ]);
  });

  describe('removing a deprecated field', () => {
    const subgraphSdls = () =>
      editedCatalog((sdl) =>
        sdl.replace(
          / {2}"The price in cents of the product's currency."\n {2}priceCents: Int! @deprecated\(reason: "[^"]*"\)\n/,
          '',
        ),
      );

    it('fails before its sunset', async () => {
      const { ok, changes } = await checkSchema({
        committedSupergraph,
        subgraphSdls: subgraphSdls(),
        facts,
        usesOf: unused,
        today: new Date('2027-01-01T00:00:00Z'),
      });
      expect(ok).toBe(false);
      expect(changes[0]).toMatchObject({
        coordinate: 'Product.priceCents',
        allowed: false,
        why: 'the sunset of Product.priceCents is 2027-06-30',
      });
    });

    it('fails after its sunset while clients still use it, or when usage is unknown', async () => {
      const used = await checkSchema({
        committedSupergraph,
        subgraphSdls: subgraphSdls(),
        facts,
        usesOf: async () => 3,
        today: AFTER_SUNSET,
      });
      expect(used.ok).toBe(false);
      expect(used.changes[0]!.why).toMatch(/used 3 time/);
      const unknown = await checkSchema({
        committedSupergraph,
        subgraphSdls: subgraphSdls(),
        facts,
        usesOf: async () => null,
        today: AFTER_SUNSET,
      });
      expect(unknown.ok).toBe(false);
      expect(unknown.changes[0]!.why).toMatch(/unknown/);
    });

    it('passes after its sunset with no recorded use', async () => {
      const { ok, changes } = await checkSchema({
        committedSupergraph,
        subgraphSdls: subgraphSdls(),
        facts,
        usesOf: unused,
        today: AFTER_SUNSET,
      });
      expect(ok).toBe(true);
      expect(changes).toEqual([
        expect.objectContaining({ kind: 'breaking', coordinate: 'Product.priceCents', allowed: true }),
      ]);
    });
  });

  it('knows a deprecated argument and enum value by their coordinates', async () => {
    const subgraphSdls = editedCatalog((sdl) =>
      sdl
        .replace(/ {4}"Only products in this status."\n {4}status: ProductStatus @deprecated\(reason: "[^"]*"\)\n/, '')
        .replace(/ {2}"Newest first, whatever the direction."\n {2}NEWEST @deprecated\(reason: "[^"]*"\)\n/, ''),
    );
    const { ok, changes } = await checkSchema({
      committedSupergraph,
      subgraphSdls,
      facts,
      usesOf: unused,
      today: AFTER_SUNSET,
    });
    expect(ok).toBe(true);
    expect(changes.map((change) => change.coordinate).sort()).toEqual([
      'ProductOrderField.NEWEST',
      'Query.products(status:)',
    ]);
  });

  it('fails with every composition error when the subgraphs do not compose', async () => {
    const subgraphSdls = editedCatalog((sdl) => sdl.replace('hasNextPage: Boolean!', 'hasNextPage: String!'));
    await expect(checkSchema({ committedSupergraph, subgraphSdls, facts, usesOf: unused })).rejects.toThrow(
      CompositionError,
    );
  });
});
