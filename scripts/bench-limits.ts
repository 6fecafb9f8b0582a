import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { getIntrospectionQuery } from 'graphql';
import { runMain } from '../lib/cli';
import { startSubgraphsAndGateway, type Harness } from '../lib/harness';
import { generateDataset, BENCH_SCALE } from '../prisma/seed';
import { createBenchDatabase, median, parseIterations, printTable } from './bench-kit';
import { STOREFRONT_PAGE } from './operations';

/**
 * `npm run bench:limits`: what the worst documents the gateway's limits allow cost it, next to the
 * storefront page: the deepest, widest, most aliased, costliest, largest fragment expansion and largest
 * token count that are still accepted, and the same shapes just past each limit, which are refused.
 * Every run sends a document the gateway has not seen (a comment makes it new), so parsing,
 * validation and planning are paid every time, as an attacker varying a document would make them.
 * Each row checks its outcome (accepted, or refused with the expected code) before it is timed.
 * The whole stack runs in this process: CPU is the process's, subgraphs included for accepted documents.
 */

interface Case {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  /** The code it must be refused with; absent: it must be accepted without errors. */
  refusedWith?: string;
}

function cases(): Case[] {
  const dataset = generateDataset(BENCH_SCALE);
  const product = dataset.products[0]!.id;
  const review = dataset.reviews[0]!.id;
  const fragmentChain = (levels: number) =>
    `{ product(id: "${product}") { ...F${levels - 1} } } ` +
    Array.from({ length: levels }, (_, i) =>
      i === 0 ? 'fragment F0 on Product { id title }' : `fragment F${i} on Product { ...F${i - 1} ...F${i - 1} }`,
    ).join(' ');
  // review 1 > product 2 > reviews 3 > edges 4 > node 5 > product 6 > reviews 7 > edges 8 > node 9 > author 10 > reviews 11 > edges 12 > node 13 > id 14
  const deep = (extra: boolean) =>
    `{ review(id: "${review}") { product { reviews(first: 2) { edges { node { product { reviews(first: 2) { edges { node { author { ${extra ? 'reviews(first: 1) { edges { node { id } } }' : 'displayName'} } } } } } } } } } } }`;
  const fields =
    'id sku title description price { amountCents currency } status createdAt updatedAt averageRating reviewCount';
  const aliased = (count: number) =>
    `{ ${Array.from({ length: count }, (_, i) => `p${i}: product(id: "${dataset.products[i % dataset.products.length]!.id}") { ${fields} }`).join(' ')} }`;
  const introspection = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  });
  return [
    { name: 'storefront page, 20 products × 5 reviews', query: STOREFRONT_PAGE, variables: { first: 20 } },
    { name: 'full introspection (GraphiQL, Sandbox)', query: introspection },
    {
      name: 'costliest: 100 products × 15 reviews + authors (cost 4,801)',
      query: `{ products(first: 100) { edges { node { title reviews(first: 15) { edges { node { body author { displayName } } } } } } } }`,
    },
    { name: 'deepest: 12 levels', query: deep(false) },
    { name: 'widest: 30 aliased products × 14 fields (451 selections)', query: aliased(30) },
    { name: 'largest fragment expansion: 8 levels (257 selections)', query: fragmentChain(8) },
    {
      name: 'most tokens: 499 repeated fields (~1,000 tokens)',
      query: `{ product(id: "${product}") { ${Array.from({ length: 499 }, () => 'title').join(' ')} } }`,
    },
    {
      name: 'over cost: 100 products × 100 reviews',
      query:
        '{ products(first: 100) { edges { node { reviews(first: 100) { edges { node { author { displayName } } } } } } } }',
      refusedWith: 'QUERY_TOO_COMPLEX',
    },
    { name: 'too deep: 14 levels', query: deep(true), refusedWith: 'QUERY_TOO_DEEP' },
    { name: 'too many aliases: 31', query: aliased(31), refusedWith: 'TOO_MANY_ALIASES' },
    { name: 'fragment bomb: 12 levels (4,097 selections)', query: fragmentChain(12), refusedWith: 'QUERY_TOO_COMPLEX' },
    {
      name: '1,000 aliased __typename',
      query: `{ ${Array.from({ length: 1_000 }, (_, i) => `t${i}: __typename`).join(' ')} }`,
      refusedWith: 'QUERY_TOO_COMPLEX',
    },
    {
      name: 'too many tokens: 6,000',
      query: `{ ${Array.from({ length: 6_000 }, () => '__typename').join(' ')} }`,
      refusedWith: 'TOO_MANY_TOKENS',
    },
  ];
}

/** One request with a document the gateway has not seen: its wall time, the process's CPU time, and the outcome. */
async function send(harness: Harness, item: Case): Promise<{ ms: number; cpuMs: number; outcome: string }> {
  const query = `${item.query}\n# ${randomUUID()}`;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const { status, errors } = await harness.query(query, item.variables ?? {});
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const outcome = errors?.length
    ? `${status} ${errors.map((error) => error.extensions?.code).join(',')}`
    : `${status} ok`;
  return { ms, cpuMs: (used.user + used.system) / 1000, outcome };
}

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)]!;

async function main() {
  const iterations = parseIterations(process.argv.slice(2), 50);
  const database = await createBenchDatabase('storefront_bench_limits');
  let harness: Harness | undefined;
  try {
    console.log(
      `${database.description}; default limits (cost 5000, depth 12, aliases 30, selections 500, tokens 5000); ${iterations} timed runs per row, one at a time, after 5 warm-ups.\n`,
    );
    harness = await startSubgraphsAndGateway(database.url);
    const rows: string[][] = [];
    for (const item of cases()) {
      const first = await send(harness, item);
      const expected = item.refusedWith ? new RegExp(`^4\\d\\d ${item.refusedWith}$`) : /^200 ok$/;
      if (!expected.test(first.outcome))
        throw new Error(`"${item.name}" was answered ${first.outcome}, expected ${item.refusedWith ?? 'ok'}.`);
      for (let i = 0; i < 4; i += 1) await send(harness, item);
      const wall: number[] = [];
      const cpu: number[] = [];
      for (let i = 0; i < iterations; i += 1) {
        const run = await send(harness, item);
        wall.push(run.ms);
        cpu.push(run.cpuMs);
      }
      rows.push([
        item.name,
        first.outcome,
        `${median(wall).toFixed(1)} ms`,
        `${percentile(wall, 99).toFixed(1)} ms`,
        `${Math.max(...wall).toFixed(1)} ms`,
        `${median(cpu).toFixed(1)} ms`,
        `${item.query.length.toLocaleString('en')} B`,
      ]);
    }
    printTable(['document', 'answer', 'p50', 'p99', 'max', 'CPU p50', 'size'], rows);
  } finally {
    await harness?.stop();
    await database.drop();
  }
}

runMain(main);
