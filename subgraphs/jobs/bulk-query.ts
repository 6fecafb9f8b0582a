/** Bulk queries (like Shopify's bulk operations): checked when submitted, rewritten for the worker to page through. */
import { Supergraph } from '@apollo/federation-internals';
import {
  getNamedType,
  getNullableType,
  GraphQLError,
  isNonNullType,
  isObjectType,
  Kind,
  parse,
  print,
  validate,
  type DocumentNode,
  type FieldNode,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { supergraphForGateway } from '../../gateway/access-control';

/** Stable codes of why a bulk query is refused (also a GraphQL enum BulkQueryErrorCode in the jobs subgraph). */
export const BulkQueryErrorCode = {
  INVALID_QUERY: 'INVALID_QUERY',
  NOT_A_QUERY: 'NOT_A_QUERY',
  VARIABLES_NOT_ALLOWED: 'VARIABLES_NOT_ALLOWED',
  ONE_CONNECTION_REQUIRED: 'ONE_CONNECTION_REQUIRED',
  NODES_REQUIRED: 'NODES_REQUIRED',
} as const;
/** One of {@link BulkQueryErrorCode}'s values. */
export type BulkQueryErrorCode = (typeof BulkQueryErrorCode)[keyof typeof BulkQueryErrorCode];

/** Why a bulk query is refused: a stable code and a message for the client. */
export interface BulkQueryError {
  code: BulkQueryErrorCode;
  message: string;
}

/** How the worker runs an accepted bulk query. */
export interface BulkQueryPlan {
  /** The rewritten document the worker sends for each page (printed), with `$bulkFirst: Int!` and `$bulkAfter`. */
  document: string;
  /** The response key of the top-level connection field (its alias or name). */
  field: string;
  /** The response key under the connection where the added page info is: always 'bulkPageInfo'. */
  pageInfo: typeof BULK_PAGE_INFO;
}

const BULK_PAGE_INFO = 'bulkPageInfo';
// Dropped from the client's top-level field: the worker pages forward through the whole connection itself.
const PAGING_ARGUMENTS = new Set(['first', 'after', 'last', 'before']);
// Response keys on the connection that readPage reads: an alias must not stand in for them.
const RESERVED_KEYS = new Set(['edges', 'nodes', BULK_PAGE_INFO]);
const MAX_ERRORS = 10;

const refuse = (code: BulkQueryErrorCode, ...messages: string[]) => ({
  errors: messages.map((message) => ({ code, message })),
});
const fieldsIn = (set: SelectionSetNode | undefined) => (set?.selections ?? []).filter((s) => s.kind === Kind.FIELD);
const located = (error: GraphQLError) =>
  error.locations?.[0] ? `${error.message} (${error.locations[0].line}:${error.locations[0].column})` : error.message;
const hasFields = (type: GraphQLNamedType | undefined, ...names: string[]) =>
  isObjectType(type) && names.every((name) => name in type.getFields());
const responseKey = (field: FieldNode) => field.alias?.value ?? field.name.value;
// Fields as readPage finds them in the answer: directly there, under their own name and unconditional.
const plainFields = (set: SelectionSetNode | undefined, name: string) =>
  fieldsIn(set).filter((s) => s.name.value === name && !s.alias && !s.directives?.length);

/**
 * Checks a client's bulk query against the API schema and rewrites it for paging. The query must be one
 * `query` operation without variables whose only top-level field is a Relay connection accepting `first` and
 * `after`, selecting `edges { node { … } }` (or `nodes { … }`). Any `first`, `after`, `last` or `before` the
 * client gave that field is dropped: the worker pages forward through the whole connection, with
 * `first: $bulkFirst, after: $bulkAfter`, reading `bulkPageInfo: pageInfo { hasNextPage endCursor }`.
 * A refused query comes back as errors; this throws only on a bug (a rewrite the schema does not accept).
 */
export function planBulkQuery(
  apiSchema: GraphQLSchema,
  query: string,
): { plan: BulkQueryPlan } | { errors: BulkQueryError[] } {
  let document: DocumentNode;
  try {
    document = parse(query);
  } catch (error) {
    if (error instanceof GraphQLError) return refuse('INVALID_QUERY', located(error));
    throw error;
  }
  const invalid = validate(apiSchema, document);
  if (invalid.length > 0) return refuse('INVALID_QUERY', ...invalid.slice(0, MAX_ERRORS).map(located));

  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const [operation] = operations;
  if (operations.length !== 1 || !operation) {
    return refuse('INVALID_QUERY', `A bulk query has exactly one operation, not ${operations.length}.`);
  }
  if (operation.operation !== 'query')
    return refuse('NOT_A_QUERY', `A bulk query is a query, not a ${operation.operation}.`);
  if (operation.variableDefinitions?.length) {
    return refuse('VARIABLES_NOT_ALLOWED', 'A bulk query declares no variables: write the values inline.');
  }

  // A top-level __typename is answered by the gateway alone, so it is dropped rather than refused.
  const tops = operation.selectionSet.selections.filter((s) => s.kind !== Kind.FIELD || s.name.value !== '__typename');
  const [top] = tops;
  if (tops.length !== 1 || top?.kind !== Kind.FIELD) {
    const message = 'A bulk query selects exactly one top-level field, a connection, without fragments around it.';
    return refuse('ONE_CONNECTION_REQUIRED', message);
  }
  const name = top.name.value;
  const definition = apiSchema.getQueryType()?.getFields()[name];
  const connection = definition && getNullableType(definition.type);
  const fields = isObjectType(connection) ? connection.getFields() : {};
  const after = definition?.args.find((a) => a.name === 'after');
  // $bulkFirst is an Int!, $bulkAfter null on the first page; directives could skip the whole field.
  const pageable =
    hasFields(fields.edges && getNamedType(fields.edges.type), 'node') &&
    hasFields(fields.pageInfo && getNamedType(fields.pageInfo.type), 'hasNextPage', 'endCursor') &&
    String(definition?.args.find((a) => a.name === 'first')?.type).replace('!', '') === 'Int' &&
    !top.directives?.length;
  if (!pageable || !after || isNonNullType(after.type)) {
    const message = `Field "${name}" is not a connection a bulk query can page through: it needs edges { node }, pageInfo, first and after, and no directives.`;
    return refuse('ONE_CONNECTION_REQUIRED', message);
  }

  const clash = fieldsIn(top.selectionSet).find((s) => RESERVED_KEYS.has(responseKey(s)) && s.alias);
  if (clash) return refuse('INVALID_QUERY', `The alias "${responseKey(clash)}" on the connection is reserved.`);
  const selectsNodes =
    plainFields(top.selectionSet, 'edges').some((edges) => plainFields(edges.selectionSet, 'node').length > 0) ||
    ('nodes' in fields && plainFields(top.selectionSet, 'nodes').length > 0);
  if (!selectsNodes) {
    const message = `A bulk query selects edges { node { … } }${'nodes' in fields ? ' or nodes { … }' : ''} on "${name}".`;
    return refuse('NODES_REQUIRED', message);
  }

  // The added pieces, parsed rather than built node by node.
  const template = parse(
    `query BulkQuery($bulkFirst: Int!, $bulkAfter: ${String(getNullableType(after.type))}) {
      x(first: $bulkFirst, after: $bulkAfter) { ${BULK_PAGE_INFO}: pageInfo { hasNextPage endCursor } }
    }`,
  ).definitions[0] as OperationDefinitionNode;
  const added = template.selectionSet.selections[0] as FieldNode;
  const args = (top.arguments ?? []).filter((a) => !PAGING_ARGUMENTS.has(a.name.value));
  const own = top.selectionSet!;
  const selectionSet = { ...own, selections: [...own.selections, ...added.selectionSet!.selections] };
  const field = { ...top, arguments: [...args, ...added.arguments!], selectionSet };
  const rewritten: OperationDefinitionNode = {
    ...operation,
    name: operation.name ?? template.name,
    variableDefinitions: template.variableDefinitions,
    selectionSet: { ...operation.selectionSet, selections: [field] },
  };
  const definitions = document.definitions.map((d) => (d === operation ? rewritten : d));
  const result: DocumentNode = { ...document, definitions };
  const broken = validate(apiSchema, result);
  if (broken.length > 0) throw new Error(`Bug: the rewritten bulk query is invalid: ${broken.map(located).join('; ')}`);
  return { plan: { document: print(result), field: responseKey(top), pageInfo: BULK_PAGE_INFO } };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/**
 * The nodes and page info of one page's `data` (for the worker): nodes from `edges[].node` (or `nodes[]` if
 * the client selected `nodes`), page info from `bulkPageInfo`. Throws if the shape is not there, including a
 * next page without a cursor, which the worker could never reach.
 */
export function readPage(
  plan: Pick<BulkQueryPlan, 'field'>,
  data: Record<string, unknown>,
): { nodes: unknown[]; hasNextPage: boolean; endCursor: string | null } {
  const connection = data[plan.field];
  if (!isRecord(connection)) throw new Error(`The page has no connection at "${plan.field}".`);
  const { edges, nodes, [BULK_PAGE_INFO]: page } = connection;
  let read: unknown[];
  if (Array.isArray(nodes)) read = nodes;
  else if (Array.isArray(edges) && edges.every((e) => isRecord(e) && 'node' in e)) read = edges.map((e) => e.node);
  else throw new Error(`The page has neither edges { node } nor nodes at "${plan.field}".`);
  const { hasNextPage, endCursor } = isRecord(page) ? page : {};
  // A next page without a cursor could never be reached: the worker would fetch the first page forever.
  if (typeof hasNextPage !== 'boolean' || !(typeof endCursor === 'string' || (endCursor === null && !hasNextPage))) {
    throw new Error(`The page has no usable ${BULK_PAGE_INFO} { hasNextPage endCursor } at "${plan.field}".`);
  }
  return { nodes: read, hasNextPage, endCursor };
}

let cached: { sdl: string; schema: GraphQLSchema } | undefined;

/**
 * The API schema of a supergraph (what clients may query through the gateway), for {@link planBulkQuery}.
 * The last one is cached: the supergraph changes rarely and building it is slow.
 */
export function apiSchemaOf(supergraphSdl: string): GraphQLSchema {
  if (cached?.sdl !== supergraphSdl) {
    // As the gateway loads it: composition's SECURITY links would otherwise stop Supergraph.build.
    const schema = Supergraph.build(supergraphForGateway(supergraphSdl)).apiSchema().toGraphQLJSSchema();
    cached = { sdl: supergraphSdl, schema };
  }
  return cached.schema;
}
