/**
 * useStaticCacheControl against Apollo's cache control plugin: the same operations, on the same schema
 * with the same mock data, through one server with each, must give the same Cache-Control header and
 * the same overall cache policy. Mock resolvers: this is about computing the policy, not the database.
 */
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControl } from '@apollo/server/plugin/cacheControl';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
} from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import {
  buildSchema,
  getNamedType,
  isAbstractType,
  isEnumType,
  isListType,
  isNonNullType,
  isObjectType,
  Kind,
  parse,
  type GraphQLFieldResolver,
  type GraphQLOutputType,
  type GraphQLResolveInfo,
  type GraphQLSchema,
} from 'graphql';
import * as fieldCollection from 'graphql/execution/collectFields';
import { useStaticCacheControl } from './static-cache-control';
import { contractOf } from './subgraph';

/** A schema besides the subgraphs': interfaces, unions, field hints over type hints, inheritMaxAge. */
const HINTS_SDL = `
  enum CacheControlScope { PUBLIC PRIVATE }
  directive @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean) on FIELD_DEFINITION | OBJECT | INTERFACE | UNION
  type Query {
    node: Node
    search: [SearchResult!]! @cacheControl(maxAge: 40)
    anything: SearchResult
    feed: Feed @cacheControl(maxAge: 50)
    plain: String
    hinted: String @cacheControl(maxAge: 70)
    unhinted: Unhinted
  }
  interface Node @cacheControl(maxAge: 20) { id: ID! }
  type Book implements Node @cacheControl(maxAge: 100) {
    id: ID!
    title: String
    secret: String @cacheControl(scope: PRIVATE)
    related: Node
    author: Author @cacheControl(maxAge: 90)
  }
  type Author implements Node @cacheControl(maxAge: 80) {
    id: ID!
    name: String
    bio: String @cacheControl(maxAge: 1)
    books: [Book!]!
  }
  union SearchResult = Book | Author
  type Feed {
    items: [Book!]! @cacheControl(inheritMaxAge: true)
    cursor: Cursor
    unhinted: Unhinted @cacheControl(inheritMaxAge: true, scope: PRIVATE)
  }
  type Cursor @cacheControl(inheritMaxAge: true) { value: String }
  type Unhinted { value: String }
`;

type SchemaName = 'accounts' | 'catalog' | 'reviews' | 'hints' | 'hints-default-10';
const SUBGRAPHS = ['accounts', 'catalog', 'reviews'] as const;

interface Case {
  schema: SchemaName;
  /** The header both plugins must write: Apollo's answer, checked here so a case says what it tests. */
  header: string;
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  /** A Cache-Control header already on the response when the plugins run. */
  preset?: string;
}

const REPRESENTATIONS = 'query ($r: [_Any!]!) { _entities(representations: $r) ';
const user = (id = 'u1') => ({ __typename: 'User', id });
const product = (id = 'p1') => ({ __typename: 'Product', id });
const REVIEW_PAGE = 'reviews(first: 5) { edges { node { id body author { __typename id } } } } averageRating';

const CASES: Case[] = [
  // accounts: User 60 public, User.email and Query.me 0 private.
  { schema: 'accounts', header: 'max-age=60, public', query: '{ user(id: "u1") { id displayName createdAt } }' },
  { schema: 'accounts', header: 'no-store', query: '{ user(id: "u1") { id email } }' },
  { schema: 'accounts', header: 'max-age=60, public', query: '{ user(id: "missing") { id email } }' },
  { schema: 'accounts', header: 'no-store', query: '{ me { email } }' },
  { schema: 'accounts', header: 'no-store', query: '{ me { id displayName } }' },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: '{ users(first: 2) { edges { cursor node { id displayName } } pageInfo { hasNextPage endCursor } } }',
  },
  { schema: 'accounts', header: 'no-store', query: '{ users(first: 2) { edges { node { email } } } }' },
  { schema: 'accounts', header: 'max-age=60, public', query: '{ users(first: 0) { edges { node { email } } } }' },
  { schema: 'accounts', header: 'no-store', query: '{ users { pageInfo { hasNextPage } } me { id } }' },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: `${REPRESENTATIONS}{ __typename ... on User { id displayName } } }`,
    variables: { r: [user(), user('u2')] },
  },
  {
    schema: 'accounts',
    header: 'no-store',
    query: `${REPRESENTATIONS}{ ... on User { displayName email } } }`,
    variables: { r: [user()] },
  },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: `${REPRESENTATIONS}{ ... on User { displayName email } } }`,
    variables: { r: [user('missing')] },
  },
  { schema: 'accounts', header: 'no-store', query: '{ _entities(representations: []) { ... on User { id } } }' },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: '{ _entities(representations: [{ __typename: "User", id: "u1" }]) { ... on User { id } } }',
  },
  // Validation fails (User has displayName, not name): nothing runs.
  {
    schema: 'accounts',
    header: 'no-store',
    query: `${REPRESENTATIONS}{ ... on User { name } } }`,
    variables: { r: [user()] },
  },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query:
      'query Page { users(first: 2) { ...Connection } } fragment Connection on UserConnection { edges { ...Edge } pageInfo { hasNextPage } } fragment Edge on UserEdge { node { ... on User { id ... { displayName } } } }',
  },
  {
    schema: 'accounts',
    header: 'no-store',
    query: 'query ($email: Boolean!) { user(id: "u1") { id email @include(if: $email) } }',
    variables: { email: true },
  },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: 'query ($email: Boolean!) { user(id: "u1") { id email @include(if: $email) } }',
    variables: { email: false },
  },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query:
      'query ($skip: Boolean = true) { user(id: "u1") { id ...Private @skip(if: $skip) } } fragment Private on User { email }',
  },
  { schema: 'accounts', header: 'max-age=60, public', query: '{ user(id: "u1") { id email @skip(if: true) } }' },
  {
    schema: 'accounts',
    header: 'no-store',
    query: 'query Public { user(id: "u1") { id } } query Private { me { id } }',
    operationName: 'Private',
  },
  {
    schema: 'accounts',
    header: 'max-age=60, public',
    query: 'query Public { user(id: "u1") { id } } query Private { me { id } }',
    operationName: 'Public',
  },
  { schema: 'accounts', header: 'no-store', query: '{ __typename }' },
  { schema: 'accounts', header: 'max-age=60, public', query: '{ user(id: "u1") { __typename } }' },
  { schema: 'accounts', header: 'no-store', query: '{ _service { sdl } }' },
  { schema: 'accounts', header: 'no-store', query: '{ user(id: "boom") { id } }' },
  // A header already set restricts the policy; an unparsable one is left alone.
  {
    schema: 'accounts',
    header: 'max-age=10, private',
    query: '{ user(id: "u1") { id } }',
    preset: 'max-age=10, private',
  },
  { schema: 'accounts', header: 'no-store', query: '{ user(id: "u1") { id } }', preset: 'no-store' },
  { schema: 'accounts', header: 'max-age=5', query: '{ user(id: "u1") { id } }', preset: 'max-age=5' },
  { schema: 'accounts', header: 'no-store', query: '{ me { id } }', preset: 'max-age=100, public' },

  // catalog: everything 60 public, writes 0.
  {
    schema: 'catalog',
    header: 'max-age=60, public',
    query: '{ product(id: "p1") { id sku title price { amountCents currency } status createdAt } }',
  },
  { schema: 'catalog', header: 'max-age=60, public', query: '{ product(id: "missing") { id price { currency } } }' },
  {
    schema: 'catalog',
    header: 'max-age=60, public',
    query:
      '{ products(first: 3, filter: { status: ACTIVE }) { edges { cursor node { id title } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }',
  },
  {
    schema: 'catalog',
    header: 'no-store',
    query:
      'mutation { createProduct(input: { sku: "s", title: "t", price: { amountCents: 100 } }) { id title price { amountCents } } }',
  },
  {
    schema: 'catalog',
    header: 'no-store',
    query: 'mutation ($id: ID!) { updateProduct(id: $id, input: { title: "t" }) { id } }',
    variables: { id: 'p1' },
  },
  {
    schema: 'catalog',
    header: 'max-age=60, public',
    query: `${REPRESENTATIONS}{ ... on Product { __typename id sku title price { amountCents currency } } } }`,
    variables: { r: [product(), product('missing'), product('p2')] },
  },
  { schema: 'catalog', header: 'no-store', query: '{ products { nope } }' },
  { schema: 'catalog', header: 'no-store', query: '{ __typename }' },

  // reviews: everything 30 public, writes 0.
  {
    schema: 'reviews',
    header: 'max-age=30, public',
    query: `${REPRESENTATIONS}{ ... on Product { ${REVIEW_PAGE} } } }`,
    variables: { r: [product(), product('p2')] },
  },
  {
    schema: 'reviews',
    header: 'max-age=30, public',
    query: `${REPRESENTATIONS}{ ... on Product { ${REVIEW_PAGE} } ... on User { reviews(first: 2) { edges { node { id rating product { id } } } pageInfo { hasNextPage } } } } }`,
    variables: { r: [product(), user(), product('missing')] },
  },
  {
    schema: 'reviews',
    header: 'max-age=30, public',
    query: `${REPRESENTATIONS}{ ... on Product { ${REVIEW_PAGE} } } }`,
    variables: { r: [user()] },
  },
  {
    schema: 'reviews',
    header: 'no-store',
    query: `${REPRESENTATIONS}{ ... on Product { id } } }`,
    variables: { r: [{ __typename: 'Nope', id: 'n1' }] },
  },
  {
    schema: 'reviews',
    header: 'max-age=30, public',
    query: '{ review(id: "r1") { id rating body createdAt author { id } product { id reviewCount } } }',
  },
  {
    schema: 'reviews',
    header: 'max-age=30, public',
    query:
      'query { review(id: "r1") { ...Review } } fragment Review on Review { id ... on Review { author { ...Author } } } fragment Author on User { id reviews(first: 1) { edges { ...Edge } } } fragment Edge on ReviewEdge { cursor node { id } }',
  },
  {
    schema: 'reviews',
    header: 'no-store',
    query: 'mutation { createReview(input: { productId: "p1", rating: 5, body: "Fine." }) { id product { id } } }',
  },
  {
    schema: 'reviews',
    header: 'no-store',
    query: 'mutation { deleteReview(id: "r1") { deletedReviewId product { id averageRating } } }',
  },
  { schema: 'reviews', header: 'no-store', query: '{ __typename }' },

  // Hints in general: an abstract field takes its interface's or union's hint (or its own), not the
  // runtime type's; fields below take the runtime type's.
  { schema: 'hints', header: 'max-age=20, public', query: '{ node { id } }' },
  { schema: 'hints', header: 'max-age=20, private', query: '{ node { ... on Book { title secret } } }' },
  { schema: 'hints', header: 'max-age=20, public', query: '{ node { __typename ... on Author { bio } } }' },
  { schema: 'hints', header: 'max-age=20, public', query: '{ node { ... on Book { author { name } } } }' },
  { schema: 'hints', header: 'max-age=1, public', query: '{ node { ... on Book { author { bio } } } }' },
  {
    schema: 'hints',
    header: 'max-age=20, public',
    query: '{ node { __typename ... on Book { related { __typename ... on Author { bio } } } } }',
  },
  { schema: 'hints', header: 'max-age=40, public', query: '{ search { __typename ... on Book { title } } }' },
  { schema: 'hints', header: 'max-age=1, public', query: '{ search { ... on Author { bio } } }' },
  { schema: 'hints', header: 'no-store', query: '{ anything { __typename } }' },
  { schema: 'hints', header: 'max-age=50, public', query: '{ feed { items { title } cursor { value } } }' },
  { schema: 'hints', header: 'max-age=50, private', query: '{ feed { unhinted { value } } }' },
  { schema: 'hints', header: 'no-store', query: '{ plain }' },
  { schema: 'hints', header: 'max-age=70, public', query: '{ hinted }' },
  { schema: 'hints', header: 'no-store', query: '{ unhinted { value } }' },
  { schema: 'hints-default-10', header: 'max-age=10, public', query: '{ plain hinted }' },
  {
    schema: 'hints-default-10',
    header: 'max-age=10, public',
    query: '{ anything { __typename } search { __typename } }',
  },
  {
    schema: 'hints-default-10',
    header: 'max-age=50, private',
    query: '{ feed { unhinted { value } cursor { value } } }',
  },
];

const title = ({ schema, query, variables, operationName, preset }: Case) =>
  [`${schema}: ${query}`, variables && JSON.stringify(variables), operationName, preset && `after ${preset}`]
    .filter(Boolean)
    .join(' ');

interface TestContext {
  preset?: string;
  /** Apollo runs a shallow copy of the context: the policy is written into this shared object. */
  recorded: { policy?: { maxAge?: number; scope?: string } };
}

const NOW = '2026-01-31T12:00:00.000Z';

/** Plausible data for any field: a value of its type, null for id "missing", an error for id "boom". */
const mockResolver: GraphQLFieldResolver<unknown, TestContext> = (source, args, _context, info) => {
  const parent = source as Record<string, unknown> | undefined;
  if (parent && Object.hasOwn(parent, info.fieldName)) return parent[info.fieldName];
  if (args.id === 'missing') return null;
  if (args.id === 'boom') throw new Error('boom');
  return mockOf(info.returnType, info, args.first === 0 || parent?.empty === true);
};

function mockOf(type: GraphQLOutputType, info: GraphQLResolveInfo, empty: boolean): unknown {
  if (isNonNullType(type)) return mockOf(type.ofType, info, empty);
  if (isListType(type)) {
    if (empty) return [];
    const itemType = getNamedType(type);
    // One item of every possible type, so that each fragment applies somewhere.
    if (isAbstractType(itemType)) return info.schema.getPossibleTypes(itemType).map((t) => ({ __typename: t.name }));
    return [mockOf(type.ofType, info, false), mockOf(type.ofType, info, false)];
  }
  if (isAbstractType(type)) return { __typename: info.schema.getPossibleTypes(type)[0]!.name };
  // `empty`: a connection asked for `first: 0` has no edges.
  if (isObjectType(type)) return { empty };
  if (isEnumType(type)) return type.getValues()[0]!.value;
  const scalars: Record<string, unknown> = { ID: `${info.parentType.name}-1`, Int: 3, Float: 4.5, Boolean: false };
  return scalars[type.name] ?? (type.name === 'DateTime' ? NOW : 'text');
}

/** Entities resolve to their representation, or to null for id "missing". */
function entityResolvers(sdl: string) {
  const resolvers: Record<string, { __resolveReference(reference: { id: string }): unknown }> = {};
  for (const definition of parse(sdl).definitions) {
    if (definition.kind !== Kind.OBJECT_TYPE_DEFINITION) continue;
    if (!definition.directives?.some((d) => d.name.value === 'key')) continue;
    resolvers[definition.name.value] = { __resolveReference: (ref) => (ref.id === 'missing' ? null : ref) };
  }
  return resolvers;
}

function schemaFor(name: SchemaName): GraphQLSchema {
  if (name === 'hints' || name === 'hints-default-10') return buildSchema(HINTS_SDL);
  const sdl = contractOf(name);
  return buildSubgraphSchema([{ typeDefs: parse(sdl), resolvers: entityResolvers(sdl) as never }]);
}

/** Records the overall policy after the cache control plugins (listed before it) are done. */
const recordPolicy: ApolloServerPlugin<TestContext> = {
  async requestDidStart({ contextValue, response }) {
    if (contextValue.preset) response.http.headers.set('cache-control', contextValue.preset);
    return {
      async willSendResponse({ overallCachePolicy: { maxAge, scope } }) {
        contextValue.recorded.policy = { maxAge, scope };
      },
    };
  },
};

type Implementation = 'apollo' | 'static';

function serverFor(name: SchemaName, implementation: Implementation, schema = schemaFor(name)) {
  const defaultMaxAge = name === 'hints-default-10' ? 10 : 0;
  const cacheControl =
    implementation === 'apollo'
      ? [ApolloServerPluginCacheControl({ calculateHttpHeaders: true, defaultMaxAge })]
      : [useStaticCacheControl<TestContext>({ defaultMaxAge }), ApolloServerPluginCacheControlDisabled()];
  return new ApolloServer<TestContext>({
    schema,
    fieldResolver: mockResolver,
    // As lib/subgraph.ts: no inline traces.
    plugins: [ApolloServerPluginInlineTraceDisabled(), ...cacheControl, recordPolicy],
  });
}

async function run(server: ApolloServer<TestContext>, { query, variables, operationName, preset }: Case) {
  const contextValue: TestContext = { preset, recorded: {} };
  const response = await server.executeOperation({ query, variables, operationName }, { contextValue });
  const { body } = response;
  return {
    header: response.http.headers.get('cache-control'),
    policy: contextValue.recorded.policy,
    errors: body.kind === 'single' ? (body.singleResult.errors?.map((e) => e.message) ?? []) : ['incremental'],
    data: body.kind === 'single' ? body.singleResult.data : undefined,
  };
}

const servers = new Map<SchemaName, Record<Implementation, ApolloServer<TestContext>>>();

beforeAll(async () => {
  for (const name of [...SUBGRAPHS, 'hints', 'hints-default-10'] as const) {
    const pair = { apollo: serverFor(name, 'apollo'), static: serverFor(name, 'static') };
    await Promise.all([pair.apollo.start(), pair.static.start()]);
    servers.set(name, pair);
  }
});

afterAll(async () => {
  await Promise.all([...servers.values()].flatMap((pair) => [pair.apollo.stop(), pair.static.stop()]));
});

describe('useStaticCacheControl', () => {
  it.each(CASES.map((c) => [title(c), c] as const))('%s', async (_title, testCase) => {
    const pair = servers.get(testCase.schema)!;
    // Twice: the second run takes the document's computed plan from the cache.
    for (let i = 0; i < 2; i += 1) {
      const expected = await run(pair.apollo, testCase);
      const actual = await run(pair.static, testCase);
      expect(expected.header).toBe(testCase.header);
      expect(expected.policy).toBeDefined();
      expect(actual).toEqual(expected);
    }
  });

  it('registers no per-field hook: resolvers stay unwrapped', async () => {
    const schemas = { apollo: schemaFor('accounts'), static: schemaFor('accounts') };
    const resolverOf = (schema: GraphQLSchema) => schema.getQueryType()!.getFields().user!.resolve;
    const before = { apollo: resolverOf(schemas.apollo), static: resolverOf(schemas.static) };
    const started = {
      apollo: serverFor('accounts', 'apollo', schemas.apollo),
      static: serverFor('accounts', 'static', schemas.static),
    };
    try {
      await Promise.all([started.apollo.start(), started.static.start()]);
      for (const server of Object.values(started))
        await run(server, { schema: 'accounts', header: '', query: '{ user(id: "u1") { id } }' });
      // Apollo wraps every resolver of the schema once a plugin has willResolveField: the check works.
      expect(resolverOf(schemas.apollo)).not.toBe(before.apollo);
      expect(resolverOf(schemas.static)).toBe(before.static);
    } finally {
      await Promise.all([started.apollo.stop(), started.static.stop()]);
    }

    const plugin = useStaticCacheControl();
    const listener = await plugin.requestDidStart!({} as never);
    expect(listener).toBeDefined();
    expect(listener).not.toHaveProperty('willResolveField');
    const execution = await listener!.executionDidStart!({
      overallCachePolicy: { maxAge: 1, scope: undefined, restrict() {}, replace() {}, policyIfCacheable: () => null },
    } as never);
    expect(execution).toBeUndefined();
  });

  it('collects an operation’s fields once per document and @skip/@include variable values', async () => {
    const server = servers.get('accounts')!.static;
    const query = `query Once($email: Boolean!, $id: ID!) { user(id: $id) { id email @include(if: $email) } }`;
    const collect = jest.spyOn(fieldCollection, 'collectFields');
    try {
      const header = async (variables: Record<string, unknown>) =>
        (await run(server, { schema: 'accounts', header: '', query, variables })).header;
      expect(await header({ email: false, id: 'u1' })).toBe('max-age=60, public');
      expect(await header({ email: false, id: 'u2' })).toBe('max-age=60, public');
      expect(await header({ email: true, id: 'u1' })).toBe('no-store');
      expect(await header({ email: true, id: 'u3' })).toBe('no-store');
      // Execution calls it too, with every variable; the plugin with only those of @skip/@include: once per
      // value of $email.
      expect(collect.mock.calls.filter(([, , variables]) => !('id' in variables))).toHaveLength(2);
    } finally {
      collect.mockRestore();
    }
  });

  it('assumes every field ran when an answer has errors: a stricter policy, the same no-store header', async () => {
    // user fails, so Apollo never resolves User.email; which fields an error cut off is not in the answer.
    const testCase: Case = { schema: 'accounts', header: '', query: '{ user(id: "boom") { id email } }' };
    const { apollo, static: ours } = servers.get('accounts')!;
    const [expected, actual] = [await run(apollo, testCase), await run(ours, testCase)];
    expect(expected).toMatchObject({ header: 'no-store', policy: { maxAge: 60, scope: undefined } });
    expect(actual).toMatchObject({ header: 'no-store', policy: { maxAge: 0, scope: 'PRIVATE' } });
  });

  it('is more restrictive than Apollo when the data does not tell an abstract field’s runtime type', async () => {
    // node is a Book: Apollo never resolves Author.bio (1 s). Without __typename in the selection the
    // answer cannot tell which type node was, so every possible type's selection counts.
    const testCase: Case = { schema: 'hints', header: '', query: '{ node { ... on Author { bio } } }' };
    const { apollo, static: ours } = servers.get('hints')!;
    expect((await run(apollo, testCase)).header).toBe('max-age=20, public');
    expect((await run(ours, testCase)).header).toBe('max-age=1, public');
  });
});
