import * as graphql from 'graphql';
import { buildSchema, getOperationAST, parse } from 'graphql';
import { deprecationsUsed } from './deprecations';

// graphql's visit is spied on (not replaced) to see whether a document is walked again.
jest.mock('graphql', () => ({ __esModule: true, ...jest.requireActual('graphql') }));

const SDL = `
  enum Sort { NEWEST, OLDEST @deprecated(reason: "Sort by NEWEST.") }
  input Filter { text: String, legacy: String @deprecated(reason: "Use text.") }
  type Query {
    items(sort: Sort, filter: Filter, limit: Int @deprecated(reason: "Use first."), first: Int): [String]
    old: String @deprecated(reason: "Use items.")
  }
`;

describe('deprecationsUsed', () => {
  afterEach(() => jest.restoreAllMocks());

  it('walks a document once per schema; each call adds what its own variables use', () => {
    const visit = jest.spyOn(graphql, 'visit');
    const schema = buildSchema(SDL);
    const document = parse(
      'query ($sort: Sort, $filter: Filter) { items(sort: $sort, filter: $filter, limit: 2) old }',
    );
    const operation = getOperationAST(document)!;
    const used = (variables: Record<string, unknown>, on = schema) =>
      deprecationsUsed(on, document, operation, variables).map((item) => item.coordinate);

    expect(used({ sort: 'OLDEST' })).toEqual(['Query.items(limit:)', 'Query.old', 'Sort.OLDEST']);
    expect(used({ filter: { legacy: 'x' } })).toEqual(['Query.items(limit:)', 'Query.old', 'Filter.legacy']);
    expect(used({ sort: 'NEWEST', filter: { text: 'x' } })).toEqual(['Query.items(limit:)', 'Query.old']);
    expect(deprecationsUsed(schema, document, operation, { sort: 'OLDEST' })).toEqual([
      { coordinate: 'Query.items(limit:)', reason: 'Use first.' },
      { coordinate: 'Query.old', reason: 'Use items.' },
      { coordinate: 'Sort.OLDEST', reason: 'Sort by NEWEST.' },
    ]);
    expect(visit).toHaveBeenCalledTimes(1);

    // Another schema (a reloaded supergraph) may deprecate otherwise: the document is walked again for it.
    const reloaded = buildSchema(SDL.replace('old: String @deprecated(reason: "Use items.")', 'old: String'));
    expect(used({}, reloaded)).toEqual(['Query.items(limit:)']);
    expect(visit).toHaveBeenCalledTimes(2);
  });

  it('finds literal input fields and enum values in the document itself', () => {
    const schema = buildSchema(SDL);
    const document = parse('{ items(sort: OLDEST, filter: { legacy: "x" }, first: 1) }');
    expect(deprecationsUsed(schema, document, getOperationAST(document)!).map((item) => item.coordinate)).toEqual([
      'Sort.OLDEST',
      'Filter.legacy',
    ]);
  });
});
