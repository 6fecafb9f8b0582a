/** Deprecations that speak: headers and extensions when an operation uses a deprecated element, none otherwise. */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { buildClientSchema, getIntrospectionQuery } from 'graphql';
import { loadDeprecations } from '../gateway/deprecations';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { generateDataset } from '../prisma/seed';
import { composeApiSchema } from '../scripts/compose';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';
import { describeWithRedis } from './redis-available';

const dataset = generateDataset(FIXTURE_SCALE);
const suite = useHarness();
const SUNSET = 'Wed, 30 Jun 2027 00:00:00 GMT';
const DEPRECATED_ON = `@${Date.parse('2026-11-23T00:00:00Z') / 1000}`;

async function post(query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const response = await fetch(suite.harness.gatewayUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return {
    headers: response.headers,
    body: (await response.json()) as { data?: any; errors?: any[]; extensions?: any },
  };
}

describe('deprecated elements', () => {
  it('every @deprecated element of the API schema has its dates and migration note, and nothing else does', () => {
    const schema = composeApiSchema();
    const deprecated: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (type.name.startsWith('__')) continue;
      if ('getValues' in type)
        for (const value of type.getValues())
          if (value.deprecationReason) deprecated.push(`${type.name}.${value.name}`);
      if ('getFields' in type) {
        for (const field of Object.values(type.getFields())) {
          if (field.deprecationReason) deprecated.push(`${type.name}.${field.name}`);
          for (const arg of 'args' in field ? field.args : [])
            if (arg.deprecationReason) deprecated.push(`${type.name}.${field.name}(${arg.name}:)`);
        }
      }
    }
    expect(deprecated.sort()).toEqual(Object.keys(loadDeprecations()).sort());
    expect(deprecated).toHaveLength(4);
  });

  it.each([
    ['a field', '{ products(first: 1) { edges { node { priceCents } } } }', {}, 'Product.priceCents'],
    ['an argument', '{ products(first: 1, status: ACTIVE) { edges { node { id } } } }', {}, 'Query.products(status:)'],
    [
      'an enum value, as a literal',
      '{ products(first: 1, orderBy: { field: NEWEST }) { edges { node { id } } } }',
      {},
      'ProductOrderField.NEWEST',
    ],
    [
      'an enum value, in a variable',
      'query ($order: ProductOrder) { products(first: 1, orderBy: $order) { edges { node { id } } } }',
      { order: { field: 'NEWEST' } },
      'ProductOrderField.NEWEST',
    ],
  ])(
    'still works when using %s, and says so in headers and extensions',
    async (_kind, query, variables, coordinate) => {
      const { headers, body } = await post(query, variables);
      expect(body.errors).toBeUndefined();
      expect(body.data.products.edges).toHaveLength(1);
      expect(headers.get('deprecation')).toBe(DEPRECATED_ON);
      expect(headers.get('sunset')).toBe(SUNSET);
      expect(headers.get('link')).toMatch(/^<https:\/\/\S+#[a-z-]+>; rel="deprecation"; type="text\/html"$/);
      expect(body.extensions.deprecations).toEqual([
        {
          coordinate,
          reason: expect.stringContaining('Sunset 2027-06-30'),
          deprecated: '2026-11-23',
          sunset: '2027-06-30',
          migration: expect.stringMatching(/#[a-z-]+$/),
        },
      ]);
    },
  );

  it('applies a deprecated input field (in a variable) and says so', async () => {
    const product = dataset.products[20]!;
    const { headers, body } = await post(
      'mutation ($id: ID!, $input: UpdateProductInput!) { updateProduct(id: $id, input: $input) { priceCents price { amountCents currency } } }',
      {
        id: product.id,
        input: { priceCents: 4242 },
      },
      { authorization: `Bearer ${await suite.harness.tokenFor(dataset.users[0]!.id, { scopes: ['catalog:write'] })}` },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data.updateProduct).toEqual({ priceCents: 4242, price: { amountCents: 4242, currency: 'USD' } });
    expect(headers.get('sunset')).toBe(SUNSET);
    expect(body.extensions.deprecations.map((d: any) => d.coordinate).sort()).toEqual([
      'Product.priceCents',
      'UpdateProductInput.priceCents',
    ]);
  });

  it('sends nothing about deprecation for an operation that uses nothing deprecated', async () => {
    const { headers, body } = await post(
      '{ products(first: 1, filter: { status: ACTIVE }, orderBy: { field: CREATED_AT, direction: DESC }) { edges { node { price { amountCents } } } } }',
    );
    expect(body.errors).toBeUndefined();
    for (const header of ['deprecation', 'sunset', 'link']) expect(headers.get(header)).toBeNull();
    expect(body.extensions.deprecations).toBeUndefined();
  });

  it('shows deprecations to tools: introspection lists them with their reasons', async () => {
    const { body } = await post(getIntrospectionQuery({ inputValueDeprecation: true }));
    const schema = buildClientSchema(body.data);
    expect(
      schema.getType('Product') && (schema.getType('Product') as any).getFields().priceCents.deprecationReason,
    ).toMatch(/Use price/);
  });
});

describeWithRedis('usage of deprecated elements', () => {
  it('is counted per client across gateways sharing Redis, and `npm run schema:usage` reports it', async () => {
    const namespace = `usage-${randomUUID().slice(0, 8)}`;
    const redis = [0, 1].map(() =>
      connectRedis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', createLogger('test', 'silent')),
    );
    expect(await Promise.all(redis.map((r) => r.ready()))).toEqual([true, true]);
    const gateways = await Promise.all(
      redis.map((r) => suite.harness.startGateway({ redis: r, redisNamespace: namespace })),
    );
    try {
      const send = (url: string, client: string, version: string, query: string) =>
        fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'apollographql-client-name': client,
            'apollographql-client-version': version,
          },
          body: JSON.stringify({ query }),
        });
      const old = '{ products(first: 1) { edges { node { priceCents } } } }';
      await send(gateways[0]!.url, 'ios-app', '3.1.0', old);
      await send(gateways[1]!.url, 'ios-app', '3.1.0', old);
      await send(gateways[1]!.url, 'web-shop', '1.4.2', old);
      await send(
        gateways[0]!.url,
        'web-shop',
        '1.5.0',
        '{ products(first: 1) { edges { node { price { amountCents } } } } }',
      );

      const root = join(__dirname, '..');
      const output = execFileSync(
        join(root, 'node_modules', '.bin', 'tsx'),
        [join(root, 'scripts', 'schema-usage.ts')],
        {
          env: {
            ...process.env,
            REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
            REDIS_NAMESPACE: namespace,
          },
          encoding: 'utf8',
        },
      );
      const row = (client: string) =>
        output.split('\n').find((line) => line.includes('Product.priceCents') && line.includes(client));
      expect(row('ios-app@3.1.0')).toMatch(/\| 2 +\| 20\d\d-/);
      expect(row('web-shop@1.4.2')).toMatch(/\| 1 +\| 20\d\d-/);
      expect(output).not.toContain('web-shop@1.5.0');
      expect(output).toMatch(/ProductOrderField\.NEWEST .*\(no recorded use\)/);

      const metrics = await (await fetch(gateways[1]!.url.replace('/graphql', '/metrics'))).text();
      expect(metrics).toMatch(
        /deprecated_element_uses_total\{coordinate="Product.priceCents",client="web-shop@1.4.2",service="gateway"\} 1/,
      );
    } finally {
      await Promise.all(gateways.map((gateway) => gateway.stop()));
      await Promise.all(redis.map((r) => r.close()));
    }
  }, 30_000);
});
