import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { composeServices } from '@apollo/composition';
import { ApolloServer } from '@apollo/server';
import { GraphQLError, getIntrospectionQuery, getNamedType, isObjectType, parse } from 'graphql';
import * as complexity from 'graphql-query-complexity';
import * as documents from '../lib/documents';
import {
  buildCostModel,
  countSelections,
  estimateCost,
  QUERY_LIMIT_CODES,
  useQueryLimits,
  type QueryCost,
  type QueryCostContext,
  type QueryLimitsOptions,
} from './query-limits';

// Spied on (not replaced) to see whether a document is walked again: scoring, counting, coercing variables.
jest.mock('graphql-query-complexity', () => ({ __esModule: true, ...jest.requireActual('graphql-query-complexity') }));
jest.mock('../lib/documents', () => ({ __esModule: true, ...jest.requireActual('../lib/documents') }));

const SUPERGRAPH_SDL = readFileSync(join(__dirname, '..', 'schema', 'supergraph.graphql'), 'utf8');
const model = buildCostModel(SUPERGRAPH_SDL);
const cost = (query: string, variables?: Record<string, unknown>, operationName?: string) =>
  estimateCost(model, { document: parse(query), variables, operationName });

/** The storefront's product page: products with their rating and a few reviews, each with its author. */
const PRODUCT_PAGE =
  'edges { node { title averageRating reviews(first: 5) { edges { node { body author { displayName } } } } } }';

// By hand, for PRODUCT_PAGE: an author is 1 (displayName is a free scalar); a review node 1 + author 1;
// a review edge 1 + its node; reviews(first: 5) 1 + 5 edges; a product node 1 + title 0 +
// averageRating 2 (@cost) + its reviews; a product edge 1 + its node.
const AUTHOR = 1;
const REVIEW_EDGE = 1 + (1 + AUTHOR);
const REVIEWS_FIRST_5 = 1 + 5 * REVIEW_EDGE;
const PRODUCT_EDGE = 1 + (1 + 0 + 2 + REVIEWS_FIRST_5);
const products = (n: number) => 1 + n * PRODUCT_EDGE;

describe('the cost directives in the contract', () => {
  it('survive composition into the supergraph as @cost and @listSize of the cost spec', () => {
    expect(SUPERGRAPH_SDL).toContain('@link(url: "https://specs.apollo.dev/cost/v0.1", import: ["@listSize"])');
    expect(Object.fromEntries(model.fieldWeights)).toEqual({
      'Mutation.createProduct': 10,
      'Mutation.updateProduct': 10,
      'Mutation.createReview': 10,
      'Mutation.deleteReview': 10,
      'Mutation.runBulkQuery': 10,
      'Mutation.cancelJob': 10,
      'Mutation.createWebhookSubscription': 10,
      'Mutation.deleteWebhookSubscription': 10,
      'Product.averageRating': 2,
      'Product.reviewCount': 2,
    });
    for (const listSize of model.listSizes.values()) {
      expect(listSize).toEqual({ assumedSize: null, slicingArguments: ['first', 'last'], sizedFields: ['edges'] });
    }
  });

  it('give every connection field of the API schema a @listSize', () => {
    const connections: string[] = [];
    for (const type of Object.values(model.apiSchema.getTypeMap())) {
      if (!isObjectType(type) || type.name.startsWith('__')) continue;
      for (const field of Object.values(type.getFields())) {
        if (getNamedType(field.type).name.endsWith('Connection')) connections.push(`${type.name}.${field.name}`);
      }
    }
    expect(connections.sort()).toEqual([
      'Product.reviews',
      'Query.jobs',
      'Query.products',
      'Query.users',
      'Query.webhookSubscriptions',
      'User.reviews',
      'WebhookSubscription.deliveries',
    ]);
    expect([...model.listSizes.keys()].sort()).toEqual(connections);
  });
});

describe('estimateCost', () => {
  it('scores the product page by hand: 1 + 20 x (1 + 1 + 2 + (1 + 5 x 3)) = 401', () => {
    expect(products(20)).toBe(401);
    expect(cost(`{ products(first: 20) { ${PRODUCT_PAGE} } }`)).toBe(401);
  });

  it('reads first from the variables', () => {
    const query = `query Page($first: Int) { products(first: $first) { ${PRODUCT_PAGE} } }`;
    expect(cost(query, { first: 20 })).toBe(products(20));
    expect(cost(query, { first: 3 })).toBe(products(3));
    // Absent or null: the default page size.
    expect(cost(query, {})).toBe(products(20));
    expect(cost(query, { first: null })).toBe(products(20));
    expect(cost(`query Page($first: Int = 7) { products(first: $first) { ${PRODUCT_PAGE} } }`)).toBe(products(7));
  });

  it('sizes a page by last as by first', () => {
    expect(cost(`{ products(last: 5) { ${PRODUCT_PAGE} } }`)).toBe(products(5));
    expect(cost(`query ($last: Int) { products(last: $last) { ${PRODUCT_PAGE} } }`, { last: 12 })).toBe(products(12));
  });

  it('assumes the default page size without first or last', () => {
    expect(cost(`{ products { ${PRODUCT_PAGE} } }`)).toBe(products(20));
    const smallPages = buildCostModel(SUPERGRAPH_SDL, { defaultPageSize: 10 });
    expect(estimateCost(smallPages, { document: parse(`{ products { edges { node { id } } } }`) })).toBe(1 + 10 * 2);
  });

  it('grows linearly with first', () => {
    const at = (first: number) =>
      cost(`query ($first: Int) { products(first: $first) { ${PRODUCT_PAGE} } }`, { first });
    expect([0, 1, 10, 50, 100].map(at)).toEqual([
      1,
      1 + PRODUCT_EDGE,
      1 + 10 * PRODUCT_EDGE,
      1 + 50 * PRODUCT_EDGE,
      1 + 100 * PRODUCT_EDGE,
    ]);
    expect(at(100) - at(50)).toBe(at(50) - at(0));
    // A negative page (which the resolvers reject) costs no less than an empty one.
    expect(at(-5)).toBe(1);
  });

  it('multiplies nested connections and charges pageInfo once per connection', () => {
    expect(cost('{ products(first: 10) { edges { node { reviews(first: 4) { edges { node { id } } } } } } }')).toBe(
      1 + 10 * (1 + 1 + (1 + 4 * 2)),
    );
    expect(cost('{ products(first: 10) { pageInfo { hasNextPage } edges { cursor } } }')).toBe(1 + 1 + 10 * 1);
    expect(cost('{ products(first: 10) { pageInfo { hasNextPage } } }')).toBe(1 + 1);
    // The same connection type twice: each multiplies its own edges.
    expect(
      cost('{ me { reviews(first: 2) { edges { node { author { reviews(first: 3) { edges { cursor } } } } } } } }'),
    ).toBe(1 + 1 + 2 * (1 + 1 + 1 + (1 + 3 * 1)));
  });

  it('charges what @cost declares: 10 per mutation, 2 per rating aggregate, 0 per plain scalar', () => {
    expect(cost('mutation { createReview(input: { productId: "p", rating: 5, body: "ok" }) { id body } }')).toBe(10);
    expect(cost('mutation { deleteReview(id: "r") { deletedReviewId product { id } } }')).toBe(10 + 1);
    expect(cost('{ product(id: "p") { id title reviewCount averageRating } }')).toBe(1 + 2 + 2);
    expect(cost('{ product(id: "p") { id sku price { amountCents } } }')).toBe(1 + 1);
  });

  it('counts fragments where they are spread and leaves out skipped selections', () => {
    const inline = cost(`{ products(first: 20) { ${PRODUCT_PAGE} } }`);
    expect(cost(`{ products(first: 20) { ...Page } } fragment Page on ProductConnection { ${PRODUCT_PAGE} }`)).toBe(
      inline,
    );
    expect(
      cost(
        'query ($full: Boolean!) { product(id: "p") { id reviews(first: 10) @include(if: $full) { edges { node { id } } } } }',
        { full: false },
      ),
    ).toBe(1);
    expect(
      cost(
        'query ($full: Boolean!) { product(id: "p") { id reviews(first: 10) @include(if: $full) { edges { node { id } } } } }',
        { full: true },
      ),
    ).toBe(1 + 1 + 10 * 2);
  });

  it('scores only the operation asked for', () => {
    const document =
      '{ me { id } } query Big { products(first: 50) { edges { node { id } } } } query Small { me { id } }';
    expect(cost(document.replace('{ me { id } } ', ''), undefined, 'Small')).toBe(1);
    expect(cost(document.replace('{ me { id } } ', ''), undefined, 'Big')).toBe(1 + 50 * 2);
    expect(() => cost('query A { me { id } } query B { me { id } }')).toThrow(/name of the operation/);
  });

  it('rejects variables that do not fit as BAD_USER_INPUT', () => {
    expect.assertions(2);
    try {
      cost('query ($first: Int) { products(first: $first) { edges { cursor } } }', { first: 'many' });
    } catch (error) {
      expect(error).toBeInstanceOf(GraphQLError);
      expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
    }
  });

  it('reads renamed cost directives, type weights and plain lists with assumedSize from any supergraph', () => {
    const typeDefs = parse(`
      extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key", { name: "@cost", as: "@weight" }, "@listSize"])
      type Query {
        tags(limit: Int): [Tag!]! @listSize(assumedSize: 7, slicingArguments: ["limit"])
        heavy: Heavy
      }
      type Tag { name: String! owner: Heavy }
      type Heavy @weight(weight: 5) { id: ID! }
    `);
    const composed = composeServices([{ name: 'tags', url: 'http://localhost:4999/graphql', typeDefs }]);
    expect(composed.errors).toBeUndefined();
    const tags = buildCostModel(composed.supergraphSdl!);
    const score = (query: string) => estimateCost(tags, { document: parse(query) });
    expect(score('{ heavy { id } }')).toBe(5);
    // A plain list: each item costs its weight and selections, times limit, else assumedSize.
    expect(score('{ tags { name } }')).toBe(7 * 1);
    expect(score('{ tags(limit: 3) { name owner { id } } }')).toBe(3 * (1 + 5));
  });

  it('gives up on a fragment bomb with Infinity instead of expanding it', () => {
    const levels = ['A', 'B', 'C', 'D', 'E', 'F'];
    const fragments = levels.map((name, i) => {
      const next = levels[i + 1];
      const body = next ? Array.from({ length: 10 }, () => `...${next}`).join(' ') : '__typename';
      return `fragment ${name} on Query { ${body} }`;
    });
    expect(cost(`{ ...A } ${fragments.join(' ')}`)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('countSelections', () => {
  const count = (query: string, variables?: Record<string, unknown>) => {
    const document = parse(query);
    return countSelections(
      document,
      document.definitions.find((d) => d.kind === 'OperationDefinition') as never,
      variables,
    );
  };

  it('counts every field after fragment expansion, scalars and __typename included', () => {
    expect(count('{ product(id: "p") { id title price { amountCents currency } } }')).toBe(6);
    expect(count('{ a: __typename b: __typename ... on Query { __typename } }')).toBe(3);
    // Twelve fragments, each spreading the next twice, over two fields: 2 × 2^11 selections, in linear time.
    const bomb = Array.from({ length: 12 }, (_, i) =>
      i === 0 ? 'fragment F0 on Product { id title }' : `fragment F${i} on Product { ...F${i - 1} ...F${i - 1} }`,
    );
    expect(count(`{ product(id: "p") { ...F11 } } ${bomb.join(' ')}`)).toBe(1 + 2 * 2 ** 11);
  });

  it('leaves out what @skip and @include leave out', () => {
    const query =
      'query ($on: Boolean!) { product(id: "p") { id title @include(if: $on) ... @skip(if: $on) { sku description } } }';
    expect(count(query, { on: true })).toBe(3);
    expect(count(query, { on: false })).toBe(4);
  });
});

interface TestContext extends QueryCostContext {
  requestId: string;
}

describe('useQueryLimits in Apollo Server', () => {
  const resolved: string[] = [];
  const estimates: Array<{ cost: QueryCost; resolvedBefore: number; contextCost: QueryCost | undefined }> = [];
  let onEstimated: QueryLimitsOptions<TestContext>['onEstimated'];
  let server: ApolloServer<TestContext>;

  const review = (id: string) => ({
    id,
    rating: 5,
    body: 'Good.',
    createdAt: '2026-01-31T12:00:00.000Z',
    author: { id: 'u1', displayName: 'Ada' },
  });
  // Trivial resolvers on the root value: graphql-js calls a function property with the arguments.
  const rootValue = {
    me: () => (resolved.push('me'), { id: 'u1', displayName: 'Ada' }),
    review: ({ id }: { id: string }) => (resolved.push('review'), review(id)),
    products: ({ first }: { first?: number }) => {
      resolved.push('products');
      const node = {
        id: 'p1',
        title: 'Lamp',
        averageRating: 4.5,
        reviews: {
          edges: [{ cursor: 'c', node: review('r1') }],
          pageInfo: { hasNextPage: false, hasPreviousPage: false },
        },
      };
      return {
        edges: Array.from({ length: Math.min(first ?? 20, 3) }, () => ({ cursor: 'c', node })),
        pageInfo: { hasNextPage: false, hasPreviousPage: false },
      };
    },
  };

  beforeAll(async () => {
    const limits = useQueryLimits<TestContext>({
      supergraphSdl: SUPERGRAPH_SDL,
      onEstimated: (estimate, requestContext) => {
        estimates.push({
          cost: estimate,
          resolvedBefore: resolved.length,
          contextCost: requestContext.contextValue.cost,
        });
        return onEstimated?.(estimate, requestContext);
      },
    });
    server = new ApolloServer<TestContext>({
      schema: model.apiSchema,
      rootValue,
      introspection: true,
      includeStacktraceInErrorResponses: false,
      validationRules: limits.validationRules,
      parseOptions: limits.parseOptions,
      plugins: [limits.plugin],
    });
    await server.start();
  });

  afterAll(async () => {
    await server.stop();
  });

  beforeEach(() => {
    resolved.length = 0;
    estimates.length = 0;
    onEstimated = undefined;
  });

  async function run(query: string, variables?: Record<string, unknown>) {
    const response = await server.executeOperation({ query, variables }, { contextValue: { requestId: 'test' } });
    if (response.body.kind !== 'single') throw new Error('expected a single result');
    return { status: response.http.status, ...response.body.singleResult };
  }

  async function expectRejected(query: string, code: string, message: RegExp) {
    const result = await run(query);
    expect(result.status).toBe(400);
    expect(result.data).toBeUndefined();
    expect(result.errors).toHaveLength(1);
    expect(result.errors![0]!.extensions?.code).toBe(code);
    expect(result.errors![0]!.message).toMatch(message);
    expect(result.errors![0]!.extensions).not.toHaveProperty('stacktrace');
    expect(result.errors![0]!.extensions).not.toHaveProperty('http');
    expect(QUERY_LIMIT_CODES).toContain(code);
    expect(resolved).toEqual([]);
    expect(estimates).toEqual([]);
    return result.errors![0]!;
  }

  it('runs the product page and hands its estimate to onEstimated before any resolver', async () => {
    const result = await run(`query ($first: Int) { products(first: $first) { ${PRODUCT_PAGE} } }`, { first: 2 });
    expect(result.errors).toBeUndefined();
    expect((result.data as any).products.edges).toHaveLength(2);
    expect(estimates).toEqual([
      {
        cost: { estimated: products(2), max: 5000 },
        resolvedBefore: 0,
        contextCost: { estimated: products(2), max: 5000 },
      },
    ]);
    expect(resolved).toEqual(['products']);
  });

  it('never calls a resolver when onEstimated throws, and answers with its error', async () => {
    onEstimated = () => {
      throw new GraphQLError('Rate limited.', { extensions: { code: 'RATE_LIMITED', http: { status: 429 } } });
    };
    const result = await run(`{ products(first: 20) { ${PRODUCT_PAGE} } }`);
    expect(estimates.map((e) => e.cost)).toEqual([{ estimated: 401, max: 5000 }]);
    expect(result.status).toBe(429);
    expect(result.errors).toEqual([{ message: 'Rate limited.', extensions: { code: 'RATE_LIMITED' } }]);
    expect(resolved).toEqual([]);
  });

  it('scores the same document anew for other variables, and not at all for variables it has seen', async () => {
    const walks = [
      jest.spyOn(complexity, 'getComplexity'),
      jest.spyOn(documents, 'fragmentsOf'),
      jest.spyOn(documents, 'operationVariables'),
    ];
    try {
      // Query text of its own: Apollo's document store hands each request of it the same DocumentNode.
      const query = `query Page($first: Int, $withRating: Boolean!) { products(first: $first) { edges { node {
        title averageRating @include(if: $withRating) } } } } # scored once per variables`;
      const variables = [
        { first: 2, withRating: true },
        { first: 7, withRating: true },
        { first: 7, withRating: false },
      ];
      const expected = [1 + 2 * (1 + 1 + 2), 1 + 7 * (1 + 1 + 2), 1 + 7 * (1 + 1)];
      for (const values of variables) expect((await run(query, values)).errors).toBeUndefined();
      expect(estimates.map((e) => e.cost.estimated)).toEqual(expected);
      expect(walks[0]).toHaveBeenCalledTimes(3);
      for (const walk of walks) walk.mockClear();

      for (const values of variables) expect((await run(query, values)).errors).toBeUndefined();
      expect(estimates.map((e) => e.cost.estimated)).toEqual([...expected, ...expected]);
      expect(estimates.slice(3).map((e) => e.contextCost)).toEqual(
        expected.map((estimated) => ({ estimated, max: 5000 })),
      );
      for (const walk of walks) expect(walk).not.toHaveBeenCalled();
    } finally {
      for (const walk of walks) walk.mockRestore();
    }
  });

  it('rejects an operation over the maximum cost with QUERY_TOO_COMPLEX and its estimate', async () => {
    const query =
      '{ products(first: 100) { edges { node { reviews(first: 100) { edges { node { author { displayName } } } } } } } }';
    const estimated = 1 + 100 * (1 + 1 + (1 + 100 * (1 + 1 + 1)));
    const error = await expectRejected(
      query,
      'QUERY_TOO_COMPLEX',
      /^Query is too complex: estimated cost 30301 exceeds the maximum 5000\.$/,
    );
    expect(error.extensions?.cost).toEqual({ estimated, max: 5000 });
  });

  it('rejects a fragment bomb with QUERY_TOO_COMPLEX, counted before it is scored', async () => {
    const levels = ['A', 'B', 'C', 'D', 'E', 'F'];
    const fragments = levels.map(
      (name, i) =>
        `fragment ${name} on Query { ${levels[i + 1] ? Array.from({ length: 10 }, () => `...${levels[i + 1]}`).join(' ') : '__typename'} }`,
    );
    const error = await expectRejected(
      `{ ...A } ${fragments.join(' ')}`,
      'QUERY_TOO_COMPLEX',
      /^Query is too complex: it makes 100000 field selections once its fragments are expanded, over the maximum 500\.$/,
    );
    expect(error.extensions?.cost).toEqual({ selections: 100_000, maxSelections: 500 });
  });

  it('rejects a query nested deeper than 12 with QUERY_TOO_DEEP', async () => {
    // review 1, author 2, reviews 3, edges 4, node 5, author 6, ... id 14.
    const nested = (levels: number): string =>
      levels === 0 ? 'id' : `author { reviews(first: 1) { edges { node { ${nested(levels - 1)} } } } }`;
    expect((await run(`{ review(id: "r") { ${nested(2)} } }`)).errors).toBeUndefined();
    resolved.length = 0;
    estimates.length = 0;
    await expectRejected(
      `{ review(id: "r") { ${nested(3)} } }`,
      'QUERY_TOO_DEEP',
      /^Query depth limit of 12 exceeded, found 14\.$/,
    );
  });

  it('measures depth by fields, not by fragment spreads', async () => {
    // review 1, product 2, reviews 3, edges 4, node 5, product 6, ... __typename 12: at the limit, where
    // counting each of the three spreads as a level would make it 15.
    const query = `{ review(id: "r") { ...R1 } }
      fragment R1 on Review { product { reviews(first: 1) { edges { node { ...R2 } } } } }
      fragment R2 on Review { product { reviews(first: 1) { edges { node { ...R3 } } } } }
      fragment R3 on Review { product { reviews(first: 1) { __typename } } }`;
    expect((await run(query)).errors).toBeUndefined();
    const tooDeep = query.replace('reviews(first: 1) { __typename }', 'reviews(first: 1) { pageInfo { hasNextPage } }');
    resolved.length = 0;
    estimates.length = 0;
    await expectRejected(tooDeep, 'QUERY_TOO_DEEP', /^Query depth limit of 12 exceeded, found 13\.$/);
  });

  it('rejects more than 30 aliases with TOO_MANY_ALIASES', async () => {
    const aliases = (n: number) => Array.from({ length: n }, (_, i) => `r${i}: review(id: "r${i}") { id }`).join(' ');
    expect((await run(`{ ${aliases(30)} }`)).errors).toBeUndefined();
    resolved.length = 0;
    estimates.length = 0;
    await expectRejected(`{ ${aliases(31)} }`, 'TOO_MANY_ALIASES', /^Aliases limit of 30 exceeded, found 31\.$/);
  });

  it('rejects more than 50 directives with TOO_MANY_DIRECTIVES', async () => {
    const directives = (n: number) => Array.from({ length: n }, () => '__typename @include(if: true)').join(' ');
    expect((await run(`{ ${directives(50)} }`)).errors).toBeUndefined();
    estimates.length = 0;
    await expectRejected(
      `{ ${directives(51)} }`,
      'TOO_MANY_DIRECTIVES',
      /^Directives limit of 50 exceeded, found 51\.$/,
    );
  });

  it('stops parsing beyond 5000 tokens with TOO_MANY_TOKENS', async () => {
    // "{", 4,999 x "__typename", "}": 5,001 tokens. The parser stops before validation sees them.
    await expectRejected(
      `{ ${'__typename '.repeat(4999)}}`,
      'TOO_MANY_TOKENS',
      /^Document contains more than 5000 tokens\. Parsing aborted\.$/,
    );
  });

  it('leaves other syntax and validation errors to Apollo', async () => {
    expect((await run('{ products(first: 1) { edges ')).errors?.[0]?.extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
    expect((await run('{ nope }')).errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(estimates).toEqual([]);
  });

  it('answers the standard introspection query (Sandbox)', async () => {
    const result = await run(getIntrospectionQuery());
    expect(result.errors).toBeUndefined();
    expect((result.data as any).__schema.queryType.name).toBe('Query');
    expect(estimates).toHaveLength(1);
    expect(estimates[0]!.cost.estimated).toBeLessThan(100);
  });
});
