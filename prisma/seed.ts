import pg from 'pg';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { ensureDatabase } from '../lib/database';

/**
 * Deterministic demo data: the same scale and seed always give the same rows, ids included, so tests
 * can compare API answers with `generateDataset()` itself. Scale N gives N × 100 users, 50 products and
 * 2,000 reviews.
 */
export const PER_SCALE = { users: 100, products: 50, reviews: 2_000 } as const;
const DEFAULT_SEED = 20_261_122;
/**
 * Scale of the database `npm run bench:n1` and the index test run on: large enough that PostgreSQL's
 * planner costs an index against a sequential scan as it would in production.
 */
export const BENCH_SCALE = 100;
const EPOCH = Date.UTC(2025, 0, 1);

export interface SeedUser {
  id: string;
  displayName: string;
  email: string;
  createdAt: Date;
}
export interface SeedProduct {
  id: string;
  sku: string;
  title: string;
  description: string;
  priceCents: number;
  currency: string;
  status: 'ACTIVE' | 'DRAFT' | 'ARCHIVED';
  createdAt: Date;
  updatedAt: Date;
}
export interface SeedReview {
  id: string;
  rating: number;
  body: string;
  authorId: string;
  productId: string;
  createdAt: Date;
}
export interface Dataset {
  users: SeedUser[];
  products: SeedProduct[];
  reviews: SeedReview[];
}

/** mulberry32: a tiny, well-known 32-bit PRNG; enough for reproducible demo data. */
function prng(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const FIRST = [
  'Ada',
  'Grace',
  'Alan',
  'Edsger',
  'Barbara',
  'Donald',
  'Margaret',
  'Linus',
  'Radia',
  'Ken',
  'Frances',
  'Dennis',
];
const LAST = [
  'Lovelace',
  'Hopper',
  'Turing',
  'Dijkstra',
  'Liskov',
  'Knuth',
  'Hamilton',
  'Torvalds',
  'Perlman',
  'Thompson',
  'Allen',
  'Ritchie',
];
const ADJECTIVES = [
  'Classic',
  'Compact',
  'Deluxe',
  'Everyday',
  'Featherweight',
  'Heritage',
  'Modular',
  'Rugged',
  'Silent',
  'Solar',
];
const NOUNS = [
  'Backpack',
  'Kettle',
  'Lamp',
  'Notebook',
  'Headphones',
  'Water Bottle',
  'Desk Chair',
  'Keyboard',
  'Jacket',
  'Tent',
];
const OPINIONS = [
  'Does exactly what it says.',
  'Better than I expected.',
  'Solid build, fair price.',
  'Not for me, sadly.',
  'Would buy again.',
  'Arrived quickly and works well.',
];

export function generateDataset(scale: number, seed: number = DEFAULT_SEED): Dataset {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const uuid = (): string => {
    const hex = Array.from({ length: 16 }, () =>
      Math.floor(random() * 256)
        .toString(16)
        .padStart(2, '0'),
    );
    hex[6] = `4${hex[6]!.slice(1)}`;
    hex[8] = ((parseInt(hex[8]!, 16) & 0x3f) | 0x80).toString(16);
    const s = hex.join('');
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
  };
  const minutes = (n: number) => new Date(EPOCH + n * 60_000);

  const users = Array.from({ length: scale * PER_SCALE.users }, (_, i): SeedUser => {
    const first = pick(FIRST);
    const last = pick(LAST);
    return {
      id: uuid(),
      displayName: `${first} ${last}`,
      email: `${first}.${last}.${i}@example.com`.toLowerCase(),
      createdAt: minutes(i * 7),
    };
  });
  const products = Array.from({ length: scale * PER_SCALE.products }, (_, i): SeedProduct => {
    const roll = random();
    const createdAt = minutes(i * 13);
    return {
      id: uuid(),
      sku: `SKU-${String(i + 1).padStart(6, '0')}`,
      title: `${pick(ADJECTIVES)} ${pick(NOUNS)}`,
      description: `Product ${i + 1} of the demo catalog.`,
      priceCents: 500 + Math.floor(random() * 50_000),
      currency: 'USD',
      status: roll < 0.8 ? 'ACTIVE' : roll < 0.9 ? 'DRAFT' : 'ARCHIVED',
      createdAt,
      updatedAt: createdAt,
    };
  });
  const reviews = Array.from({ length: scale * PER_SCALE.reviews }, (_, i): SeedReview => ({
    id: uuid(),
    rating: 1 + Math.floor(random() * 5),
    body: pick(OPINIONS),
    authorId: pick(users).id,
    productId: pick(products).id,
    createdAt: minutes(i * 3),
  }));
  return { users, products, reviews };
}

const CHUNK = 20_000;

/** One INSERT ... SELECT FROM unnest(...) per chunk: a few statements for hundreds of thousands of rows. */
async function insertColumns(
  client: pg.ClientBase,
  table: string,
  columns: Array<[name: string, type: string, values: unknown[]]>,
) {
  const total = columns[0]![2].length;
  const names = columns.map(([name]) => `"${name}"`).join(', ');
  const unnest = columns.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ');
  for (let start = 0; start < total; start += CHUNK) {
    const params = columns.map(([, , values]) => values.slice(start, start + CHUNK));
    await client.query(`INSERT INTO "${table}" (${names}) SELECT * FROM unnest(${unnest})`, params);
  }
}

/** Loads a dataset in one transaction: all of it or none of it. */
export async function seed(databaseUrl: string, dataset: Dataset): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    const { users, products, reviews } = dataset;
    await insertColumns(client, 'users', [
      ['id', 'uuid', users.map((u) => u.id)],
      ['display_name', 'varchar', users.map((u) => u.displayName)],
      ['email', 'varchar', users.map((u) => u.email)],
      ['created_at', 'timestamptz', users.map((u) => u.createdAt)],
    ]);
    await insertColumns(client, 'products', [
      ['id', 'uuid', products.map((p) => p.id)],
      ['sku', 'varchar', products.map((p) => p.sku)],
      ['title', 'varchar', products.map((p) => p.title)],
      ['description', 'text', products.map((p) => p.description)],
      ['price_cents', 'int4', products.map((p) => p.priceCents)],
      ['currency', 'bpchar', products.map((p) => p.currency)],
      ['status', 'product_status', products.map((p) => p.status)],
      ['created_at', 'timestamptz', products.map((p) => p.createdAt)],
      ['updated_at', 'timestamptz', products.map((p) => p.updatedAt)],
    ]);
    await insertColumns(client, 'reviews', [
      ['id', 'uuid', reviews.map((r) => r.id)],
      ['rating', 'int2', reviews.map((r) => r.rating)],
      ['body', 'text', reviews.map((r) => r.body)],
      ['author_id', 'uuid', reviews.map((r) => r.authorId)],
      ['product_id', 'uuid', reviews.map((r) => r.productId)],
      ['created_at', 'timestamptz', reviews.map((r) => r.createdAt)],
    ]);
    await client.query('COMMIT');
    await client.query('ANALYZE users, products, reviews');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await client.end();
  }
}

/** True when the database holds no users yet (a fresh install). */
export async function isEmpty(databaseUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM users) AS empty');
    return rows[0]!.empty;
  } finally {
    await client.end();
  }
}

function parseArgs(argv: string[]): { scale: number; seed: number } {
  const value = (flag: string) => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const scale = Number(value('--scale') ?? 1);
  const seedValue = Number(value('--seed') ?? DEFAULT_SEED);
  if (!Number.isInteger(scale) || scale < 1 || scale > 1000)
    throw new Error('--scale must be a whole number from 1 to 1000');
  if (!Number.isInteger(seedValue)) throw new Error('--seed must be a whole number');
  return { scale, seed: seedValue };
}

if (require.main === module) {
  runMain(async () => {
    const { scale, seed: seedValue } = parseArgs(process.argv.slice(2));
    const database = await ensureDatabase(loadConfig());
    try {
      if (!(await isEmpty(database.url)))
        throw new Error('The database already has data; seed an empty database (drop it or use a new DATABASE_URL).');
      const started = Date.now();
      const dataset = generateDataset(scale, seedValue);
      await seed(database.url, dataset);
      console.log(
        `Seeded ${dataset.users.length} users, ${dataset.products.length} products, ${dataset.reviews.length} reviews in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    } finally {
      await database.stop();
    }
  });
}
