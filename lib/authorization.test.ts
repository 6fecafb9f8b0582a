import { buildSubgraphSchema } from '@apollo/subgraph';
import { getOperationAST, parse } from 'graphql';
import { ANONYMOUS, checkAccess, subgraphAccessRules, type Caller } from './authorization';
import * as documents from './documents';

// So jest.spyOn can count walks of a document (the module's own exports are not configurable).
jest.mock('./documents', () => ({ __esModule: true, ...jest.requireActual('./documents') }));

const SDL = `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key", "@authenticated", "@requiresScopes"])
  type Query {
    public: Public
    secret: Secret
    thing: Thing
    node: Node
    both: String @authenticated @requiresScopes(scopes: [["a"], ["b"]])
  }
  interface Node { label: String }
  type Public implements Node { label: String }
  "Anything that returns this type needs a signed-in caller."
  type Secret implements Node @authenticated { label: String @requiresScopes(scopes: [["a", "b"], ["c"]]) }
  union Thing = Public | Secret
`;
const schema = buildSubgraphSchema({ typeDefs: parse(SDL), resolvers: {} });
const rules = subgraphAccessRules('test', SDL);
const user = (...scopes: string[]): Caller => ({ callerId: '0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', scopes });
const check = (query: string, caller: Caller, variables?: Record<string, unknown>) => {
  const document = parse(query);
  return checkAccess(rules, { schema, document, operation: getOperationAST(document)!, variables }, caller);
};

describe('checkAccess', () => {
  it('reads field and type rules from a subgraph SDL', () => {
    expect(rules.fields.get('Secret.label')).toEqual({ authenticated: true, scopes: [['a', 'b'], ['c']] });
    expect(rules.types.get('Secret')).toEqual({ authenticated: true, scopes: [] });
    // @authenticated and @requiresScopes on one field: both must hold.
    expect(rules.fields.get('Query.both')).toEqual({ authenticated: true, scopes: [['a'], ['b']] });
  });

  it('protects every field returning a protected type, also through a union or an interface', () => {
    expect(check('{ public { label } }', ANONYMOUS)).toBeNull();
    expect(check('{ secret { __typename } }', ANONYMOUS)).toEqual({ code: 'UNAUTHENTICATED', fields: ['Secret'] });
    expect(check('{ thing { __typename } }', ANONYMOUS)).toEqual({ code: 'UNAUTHENTICATED', fields: ['Secret'] });
    expect(check('{ node { __typename } }', ANONYMOUS)).toEqual({ code: 'UNAUTHENTICATED', fields: ['Secret'] });
    expect(check('{ thing { __typename } }', user())).toBeNull();
  });

  it('applies a field rule of a possible type to the field selected on its interface, or in an inline fragment', () => {
    expect(check('{ public { label } node { label } }', user())).toMatchObject({
      code: 'FORBIDDEN',
      fields: ['Secret.label'],
      missingScopes: ['c'],
    });
    expect(check('{ thing { ... on Secret { label } } }', user('a'))).toMatchObject({
      code: 'FORBIDDEN',
      missingScopes: ['b'],
    });
    expect(check('{ node { label } }', user('c'))).toBeNull();
    expect(check('{ node { label } }', user('a', 'b'))).toBeNull();
  });

  it('holds any one alternative of the scopes in full', () => {
    expect(check('{ both }', user('b'))).toBeNull();
    expect(check('{ both }', user('c'))).toMatchObject({ code: 'FORBIDDEN', missingScopes: ['a'] });
    expect(check('{ both }', ANONYMOUS)).toEqual({ code: 'UNAUTHENTICATED', fields: ['Query.both'] });
  });

  it('honours @skip/@include with the variables, defaults included, and reads each fragment once', () => {
    expect(check('query ($on: Boolean = false) { both @include(if: $on) }', ANONYMOUS)).toBeNull();
    expect(check('query ($on: Boolean = false) { both @include(if: $on) }', ANONYMOUS, { on: true })).toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(check('{ ...A ...A } fragment A on Query { ...B } fragment B on Query { both }', ANONYMOUS)).toEqual({
      code: 'UNAUTHENTICATED',
      fields: ['Query.both'],
    });
  });

  it('walks a document once per operation, and once per variables only where @skip/@include read them', () => {
    const walks = jest.spyOn(documents, 'fragmentsOf');
    const plain = parse('{ both public { label } }');
    const run = (document: ReturnType<typeof parse>, caller: Caller, variables?: Record<string, unknown>) =>
      checkAccess(rules, { schema, document, operation: getOperationAST(document)!, variables }, caller);
    for (let i = 0; i < 3; i++) expect(run(plain, ANONYMOUS, { unused: i })).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(run(plain, user('a'))).toBeNull();
    expect(walks).toHaveBeenCalledTimes(1);

    const conditional = parse('query ($on: Boolean!) { public { label } both @include(if: $on) }');
    expect(run(conditional, ANONYMOUS, { on: false })).toBeNull();
    expect(run(conditional, ANONYMOUS, { on: true })).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(run(conditional, ANONYMOUS, { on: false })).toBeNull();
    expect(run(conditional, ANONYMOUS, { on: true })).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(walks).toHaveBeenCalledTimes(3);
    walks.mockRestore();
  });
});
