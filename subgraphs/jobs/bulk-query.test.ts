/** Bulk queries: what is refused and why, the rewrite the worker pages with, and reading a page back. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildSchema,
  Kind,
  parse,
  print,
  validate,
  type FieldNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { apiSchemaOf, BulkQueryErrorCode, planBulkQuery, readPage, type BulkQueryPlan } from './bulk-query';

const schema = buildSchema(`
  type Query {
    products(first: Int, after: String, last: Int, before: String, filter: ProductFilter): ProductConnection!
    product(id: ID!): Product
    users(first: Int, after: String): UserConnection
    recent: ProductConnection!
    pinned(first: Int, after: String!): ProductConnection!
  }
  type Mutation {
    deleteProduct(id: ID!): Boolean
  }
  input ProductFilter {
    titleContains: String
  }
  type PageInfo {
    hasNextPage: Boolean!
    hasPreviousPage: Boolean!
    startCursor: String
    endCursor: String
  }
  type Product {
    id: ID!
    title: String!
    reviews(first: Int, after: String): ReviewConnection
  }
  type ProductConnection {
    edges: [ProductEdge!]!
    pageInfo: PageInfo!
    totalCount: Int!
  }
  type ProductEdge {
    cursor: String!
    node: Product!
  }
  type Review {
    rating: Int!
  }
  type ReviewConnection {
    edges: [ReviewEdge!]!
    pageInfo: PageInfo!
  }
  type ReviewEdge {
    node: Review!
  }
  type User {
    name: String!
  }
  type UserConnection {
    edges: [UserEdge!]!
    nodes: [User!]!
    pageInfo: PageInfo!
  }
  type UserEdge {
    node: User!
  }
`);

/** The plan of a query that must be accepted (its rewritten document checked against the schema again). */
function planOf(query: string, apiSchema: GraphQLSchema = schema): BulkQueryPlan {
  const result = planBulkQuery(apiSchema, query);
  if ('errors' in result) throw new Error(`Refused: ${JSON.stringify(result.errors)}`);
  expect(validate(apiSchema, parse(result.plan.document))).toEqual([]);
  return result.plan;
}

/** The codes a query is refused with (none when it is accepted). */
function refusals(query: string): string[] {
  const result = planBulkQuery(schema, query);
  return 'errors' in result ? result.errors.map((error) => error.code) : [];
}

/** The rewritten operation and its one top-level field. */
function rewritten(plan: BulkQueryPlan): { operation: OperationDefinitionNode; top: FieldNode } {
  const operations = parse(plan.document).definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  expect(operations).toHaveLength(1);
  const [operation] = operations as [OperationDefinitionNode];
  expect(operation.selectionSet.selections).toHaveLength(1);
  return { operation, top: operation.selectionSet.selections[0] as FieldNode };
}

const fieldNamed = (set: SelectionSetNode | undefined, key: string) =>
  set?.selections.find((s): s is FieldNode => s.kind === Kind.FIELD && (s.alias ?? s.name).value === key);

describe('planBulkQuery', () => {
  test('pages the top-level connection itself: the client paging arguments give way to the variables', () => {
    const plan = planOf(`{
      products(first: 5, after: "a", last: 3, before: "b", filter: { titleContains: "mug" }) {
        totalCount
        edges { cursor node { id title } }
      }
    }`);
    expect(plan.field).toBe('products');
    expect(plan.pageInfo).toBe('bulkPageInfo');
    const { operation, top } = rewritten(plan);
    expect(operation.operation).toBe('query');
    expect(operation.name?.value).toBe('BulkQuery');
    expect(operation.variableDefinitions?.map((v) => `$${v.variable.name.value}: ${print(v.type)}`)).toEqual([
      '$bulkFirst: Int!',
      '$bulkAfter: String',
    ]);
    expect(top.arguments?.map(print)).toEqual([
      'filter: {titleContains: "mug"}',
      'first: $bulkFirst',
      'after: $bulkAfter',
    ]);
    const pageInfo = fieldNamed(top.selectionSet, 'bulkPageInfo');
    expect(pageInfo?.name.value).toBe('pageInfo');
    expect(pageInfo?.selectionSet?.selections.map(print)).toEqual(['hasNextPage', 'endCursor']);
    // What the client selected on the connection stays.
    expect(fieldNamed(top.selectionSet, 'totalCount')).toBeDefined();
    expect(print(fieldNamed(top.selectionSet, 'edges')!).replace(/\s+/g, ' ')).toBe(
      'edges { cursor node { id title } }',
    );
  });

  test('keeps the operation name, and answers to the alias of the connection', () => {
    const plan = planOf('query Export { all: products { edges { node { id } } } }');
    expect(plan.field).toBe('all');
    const { operation, top } = rewritten(plan);
    expect(operation.name?.value).toBe('Export');
    expect(top.alias?.value).toBe('all');
    expect(top.name.value).toBe('products');
  });

  test('keeps fragments used under the node, nested connections and all', () => {
    const plan = planOf(`
      { products { edges { node { ...Card } } } }
      fragment Card on Product { id ... on Product { title } reviews(first: 3) { edges { node { rating } } } }
    `);
    const fragments = parse(plan.document).definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION);
    expect(fragments.map((f) => f.name.value)).toEqual(['Card']);
    expect(plan.document).toContain('reviews(first: 3)');
  });

  test('drops a top-level __typename and accepts nodes where the connection has them', () => {
    expect(rewritten(planOf('{ __typename products { edges { node { id } } } }')).top.name.value).toBe('products');
    expect(planOf('{ users { nodes { name } } }').field).toBe('users');
  });

  test('refuses what does not parse, with where', () => {
    const result = planBulkQuery(schema, '{ products { edges { node { id } }');
    expect(result).toEqual({
      errors: [{ code: BulkQueryErrorCode.INVALID_QUERY, message: expect.stringMatching(/\(1:\d+\)$/) }],
    });
  });

  test('refuses what the schema does not accept, one error per problem and ten at most', () => {
    const result = planBulkQuery(schema, '{ products { edges { node { id nope } } } }');
    expect(result).toEqual({
      errors: [{ code: 'INVALID_QUERY', message: expect.stringMatching(/Cannot query field "nope".*\(1:32\)$/) }],
    });
    const many = Array.from({ length: 15 }, (_, i) => `nope${i}`).join(' ');
    expect(refusals(`{ products { edges { node { ${many} } } } }`)).toEqual(Array(10).fill('INVALID_QUERY'));
    expect(refusals('{ products { edges { node { id } } } } mutation M { deleteProduct(id: "1") }')).toEqual([
      'INVALID_QUERY',
    ]);
    expect(refusals('query A { products { edges { node { id } } } } query B { users { nodes { name } } }')).toEqual([
      'INVALID_QUERY',
    ]);
  });

  test('refuses a mutation', () => {
    expect(refusals('mutation { deleteProduct(id: "1") }')).toEqual([BulkQueryErrorCode.NOT_A_QUERY]);
  });

  test('refuses variables: the worker owns them', () => {
    const query = 'query ($filter: ProductFilter) { products(filter: $filter) { edges { node { id } } } }';
    expect(refusals(query)).toEqual([BulkQueryErrorCode.VARIABLES_NOT_ALLOWED]);
  });

  test('refuses anything but one connection it can page through at the top', () => {
    const refused = [
      '{ products { edges { node { id } } } users { nodes { name } } }',
      '{ ...Everything } fragment Everything on Query { products { edges { node { id } } } }',
      '{ ... on Query { products { edges { node { id } } } } }',
      '{ product(id: "1") { id } }',
      '{ recent { edges { node { id } } } }',
      '{ pinned(after: "x") { edges { node { id } } } }',
      '{ products @include(if: true) { edges { node { id } } } }',
    ];
    for (const query of refused) expect([query, refusals(query)]).toEqual([query, ['ONE_CONNECTION_REQUIRED']]);
    const result = planBulkQuery(schema, '{ product(id: "1") { id } }');
    expect('errors' in result && result.errors[0]?.message).toContain('"product"');
  });

  test('refuses a connection without its nodes', () => {
    const refused = [
      '{ products { totalCount pageInfo { hasNextPage } } }',
      '{ products { edges { cursor } } }',
      '{ products { edges { item: node { id } } } }',
      '{ products { edges { node @skip(if: true) { id } } } }',
      '{ products { ... on ProductConnection { edges { node { id } } } } }',
    ];
    for (const query of refused) expect([query, refusals(query)]).toEqual([query, ['NODES_REQUIRED']]);
  });

  test('refuses aliases that would stand in for what the worker reads', () => {
    expect(refusals('{ products { nodes: edges { node { id } } edges { node { id } } } }')).toEqual(['INVALID_QUERY']);
    expect(refusals('{ products { bulkPageInfo: totalCount edges { node { id } } } }')).toEqual(['INVALID_QUERY']);
  });
});

describe('readPage', () => {
  test('reads the nodes from edges, and the page info the rewrite added', () => {
    const data = {
      all: {
        totalCount: 3,
        edges: [{ cursor: 'a', node: { id: '1' } }, { node: { id: '2' } }],
        bulkPageInfo: { hasNextPage: true, endCursor: 'b' },
      },
    };
    expect(readPage({ field: 'all' }, data)).toEqual({
      nodes: [{ id: '1' }, { id: '2' }],
      hasNextPage: true,
      endCursor: 'b',
    });
  });

  test('reads nodes where the client selected them, and the last page', () => {
    const data = { users: { nodes: [{ name: 'Ann' }], bulkPageInfo: { hasNextPage: false, endCursor: null } } };
    expect(readPage({ field: 'users' }, data)).toEqual({
      nodes: [{ name: 'Ann' }],
      hasNextPage: false,
      endCursor: null,
    });
  });

  test('throws when the shape is not there', () => {
    const pageInfo = { hasNextPage: false, endCursor: null };
    expect(() => readPage({ field: 'products' }, {})).toThrow(/"products"/);
    expect(() => readPage({ field: 'products' }, { products: null })).toThrow();
    expect(() =>
      readPage({ field: 'products' }, { products: { edges: [{ cursor: 'a' }], bulkPageInfo: pageInfo } }),
    ).toThrow();
    expect(() => readPage({ field: 'products' }, { products: { edges: [] } })).toThrow(/bulkPageInfo/);
    // A next page without a cursor would have the worker fetch the first page forever.
    const endless = { products: { edges: [], bulkPageInfo: { hasNextPage: true, endCursor: null } } };
    expect(() => readPage({ field: 'products' }, endless)).toThrow();
  });
});

describe('with the real API schema', () => {
  const sdl = readFileSync(join(__dirname, '../../schema/supergraph.graphql'), 'utf8');

  test('plans a products export with nested reviews', () => {
    const apiSchema = apiSchemaOf(sdl);
    expect(apiSchemaOf(sdl)).toBe(apiSchema);
    const plan = planOf(
      '{ products { edges { node { id title reviews(first: 100) { edges { node { rating author { displayName } } } } } } } }',
      apiSchema,
    );
    expect(plan.field).toBe('products');
    const { top } = rewritten(plan);
    expect(top.arguments?.map(print)).toEqual(['first: $bulkFirst', 'after: $bulkAfter']);
    expect(plan.document).toContain('reviews(first: 100)');
  });
});
