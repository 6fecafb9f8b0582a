/** catalog's loaders against a real database: one statement per batch, the entity cache, and invalidation through the loader. */
import { EntityTags } from '../../lib/entity-tags';
import { generateDataset } from '../../prisma/seed';
import { useCountedDatabase } from '../../test/counted-database';
import { FIXTURE_SCALE } from '../../test/global-setup';
import { createLoaders } from './loaders';

const dataset = generateDataset(FIXTURE_SCALE);
const [first, second, third] = dataset.products;
const counted = useCountedDatabase();
const request = (tags = new EntityTags(true)) =>
  createLoaders(counted.client.prisma, { loaderOptions: {}, cache: counted.cache, tags });

describe('catalog loaders', () => {
  it('load many products in one statement, in key order, null for an unknown id; then from the cache', async () => {
    const ids = [third!.id, first!.id, '0190a6d8-0000-7000-8000-000000000000', second!.id];
    const rows = await request().productById.loadMany(ids);
    expect(counted.statements).toHaveLength(1);
    expect(rows.map((row) => (row && !(row instanceof Error) ? row.id : row))).toEqual([
      third!.id,
      first!.id,
      null,
      second!.id,
    ]);
    counted.statements.length = 0;
    await request().productById.loadMany([first!.id, second!.id]);
    expect(counted.statements).toHaveLength(0);
  });

  it('hold the products they load and, after invalidate, report them and product lists changed (response cache tags)', async () => {
    const tags = new EntityTags(true);
    const loaders = request(tags);
    await loaders.productById.loadMany([first!.id, second!.id]);
    expect([...tags.held].sort()).toEqual([`Product:${first!.id}`, `Product:${second!.id}`].sort());
    expect(tags.changed.size).toBe(0);
    await loaders.productById.invalidate([first!.id]);
    expect([...tags.changed].sort()).toEqual(['Product', `Product:${first!.id}`]);
    // Not asked by the gateway: reads hold nothing, writes still report.
    const unasked = new EntityTags(false);
    await request(unasked).productById.invalidate([second!.id]);
    await request(unasked).productById.load(second!.id);
    expect(unasked.held.size).toBe(0);
    expect([...unasked.changed].sort()).toEqual(['Product', `Product:${second!.id}`]);
  });

  it('invalidate(id) forgets the product in this request and for later ones', async () => {
    const loaders = request();
    const before = await loaders.productById.load(first!.id);
    await counted.client.prisma.product.update({ where: { id: first!.id }, data: { title: 'Renamed by the test' } });
    await loaders.productById.invalidate([first!.id]);
    try {
      counted.statements.length = 0;
      expect((await loaders.productById.load(first!.id))?.title).toBe('Renamed by the test');
      expect((await request().productById.load(first!.id))?.title).toBe('Renamed by the test');
      expect(counted.statements.filter((statement) => /SELECT/.test(statement.text))).toHaveLength(1);
    } finally {
      await counted.client.prisma.product.update({ where: { id: first!.id }, data: { title: before!.title } });
    }
  });
});
