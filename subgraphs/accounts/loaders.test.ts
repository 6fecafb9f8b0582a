/** accounts' loaders against a real database: public rows cached, `me` and emails never. */
import { EntityTags } from '../../lib/entity-tags';
import { generateDataset } from '../../prisma/seed';
import { useCountedDatabase } from '../../test/counted-database';
import { FIXTURE_SCALE } from '../../test/global-setup';
import { createLoaders } from './loaders';

const dataset = generateDataset(FIXTURE_SCALE);
const [alice, bob] = dataset.users;
const counted = useCountedDatabase();
const request = () =>
  createLoaders(counted.client.prisma, { loaderOptions: {}, cache: counted.cache, tags: new EntityTags(true) });

describe('accounts loaders', () => {
  it('cache public rows (no email in them) across requests, one statement per batch', async () => {
    const [one, two] = await request().userById.loadMany([alice!.id, bob!.id]);
    expect(counted.statements).toHaveLength(1);
    expect(one).toEqual({ id: alice!.id, displayName: alice!.displayName, createdAt: alice!.createdAt });
    expect(two).not.toHaveProperty('email');
    counted.statements.length = 0;
    await request().userById.load(alice!.id);
    expect(counted.statements).toHaveLength(0);
  });

  it('read `me` and emails from the database every time', async () => {
    for (let i = 0; i < 2; i += 1) {
      const loaders = request();
      await Promise.all([loaders.userByIdUncached.load(alice!.id), loaders.emailById.load(alice!.id)]);
    }
    expect(counted.statements).toHaveLength(4);
    expect((await request().emailById.load(alice!.id))?.email).toBe(alice!.email);
  });
});
