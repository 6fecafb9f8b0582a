import {
  COST_VERSIONS,
  costIdentity,
  EnumType,
  FieldDefinition,
  ObjectType,
  ScalarType,
  Supergraph,
} from '@apollo/federation-internals';
import type {
  ApolloServerPlugin,
  BaseContext,
  GraphQLRequestContext,
  GraphQLRequestContextDidResolveOperation,
} from '@apollo/server';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  GraphQLError,
  Kind,
  getNamedType,
  getOperationAST,
  isCompositeType,
  isInterfaceType,
  isObjectType,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ParseOptions,
  type ValidationRule,
} from 'graphql';
import { getComplexity, simpleEstimator, type ComplexityEstimator } from 'graphql-query-complexity';
import { fragmentsOf, isIncluded, operationVariables } from '../lib/documents';
import { ErrorCode } from '../lib/errors';

/** The operation's estimated cost is above `maxCost`. `extensions.cost` is `{ estimated, max }`. */
export const QUERY_TOO_COMPLEX = ErrorCode.QUERY_TOO_COMPLEX;
/** Selections nest deeper than `maxDepth`. */
export const QUERY_TOO_DEEP = ErrorCode.QUERY_TOO_DEEP;
/** The operation has more than `maxAliases` aliases. */
export const TOO_MANY_ALIASES = ErrorCode.TOO_MANY_ALIASES;
/** The operation has more than `maxDirectives` directives. */
export const TOO_MANY_DIRECTIVES = ErrorCode.TOO_MANY_DIRECTIVES;
/** The document has more than `maxTokens` tokens; the parser stopped there. */
export const TOO_MANY_TOKENS = ErrorCode.TOO_MANY_TOKENS;

/** Every code these limits reject with (all HTTP 400): an error-masking formatError must let them through. */
export const QUERY_LIMIT_CODES: readonly string[] = [
  QUERY_TOO_COMPLEX,
  QUERY_TOO_DEEP,
  TOO_MANY_ALIASES,
  TOO_MANY_DIRECTIVES,
  TOO_MANY_TOKENS,
];

/** An operation's estimated cost against the per-operation maximum. */
export interface QueryCost {
  estimated: number;
  max: number;
}

/** What the plugin writes into an object context value, for the plugins and resolvers after it. */
export interface QueryCostContext {
  cost?: QueryCost;
}

export interface QueryLimitsOptions<TContext extends BaseContext = BaseContext> {
  /** Supergraph SDL the costs are read from. */
  supergraphSdl: string;
  /** Highest estimated cost one operation may have. Defaults to 5000. */
  maxCost?: number;
  /** Deepest selection nesting (fragments do not add a level; introspection's `__schema` is not counted). Defaults to 12. */
  maxDepth?: number;
  /** Most aliases in one operation (`__typename` aliases are free). Defaults to 30. */
  maxAliases?: number;
  /** Most directives in one operation. Defaults to 50. */
  maxDirectives?: number;
  /** Most tokens in one document (the parser stops beyond). Defaults to 5000. */
  maxTokens?: number;
  /**
   * Most field selections one operation may make once its fragments are expanded, scalars and
   * `__typename` included. The largest real page (test/operations.ts) makes 24 and the full
   * introspection query of GraphiQL and Sandbox 230. Defaults to 500.
   */
  maxSelections?: number;
  /** Page size assumed for a connection without first/last. Defaults to 20 (the resolvers' default). */
  defaultPageSize?: number;
  /**
   * Called first, before the operation is counted, scored or charged (the gateway's access control):
   * what it throws is the answer, and the request then costs only the minimum point. Defaults to none.
   */
  authorize?: (requestContext: GraphQLRequestContext<TContext>) => void;
  /**
   * Called with each operation's estimate before any subgraph is called (only for operations within
   * `maxCost`); may throw (the per-client budget does), and what it throws is the response's error.
   * Defaults to none.
   */
  onEstimated?: (cost: QueryCost, requestContext: GraphQLRequestContext<TContext>) => Promise<void> | void;
}

/** What the gateway spreads into its ApolloServer config. */
export interface QueryLimits<TContext extends BaseContext = BaseContext> {
  plugin: ApolloServerPlugin<TContext>;
  validationRules: ValidationRule[];
  parseOptions: ParseOptions;
  /**
   * Reads the costs of a supergraph the gateway loads (ApolloGateway's onSchemaLoadOrUpdate), so an
   * operation is scored with the weights of the supergraph it runs on, live reloads included.
   */
  onSchemaLoadOrUpdate(schema: { apiSchema: GraphQLSchema; coreSupergraphSdl: string }): void;
}

interface ListSize {
  assumedSize: number | null;
  slicingArguments: readonly string[];
  sizedFields: readonly string[];
}

/** The costs declared in a supergraph (`@cost` / `@listSize` of https://specs.apollo.dev/cost) and its API schema. */
export interface CostModel {
  /** The API schema of the supergraph: what clients query, without federation's machinery. */
  apiSchema: GraphQLSchema;
  /** `@cost(weight:)` by field coordinate (`Product.averageRating`). */
  fieldWeights: ReadonlyMap<string, number>;
  /** `@cost(weight:)` on object, scalar and enum types, by type name. */
  typeWeights: ReadonlyMap<string, number>;
  /** `@listSize` by field coordinate (`Query.products`). */
  listSizes: ReadonlyMap<string, ListSize>;
  /** The `sizedFields` of each type a `@listSize` field returns (`ProductConnection` -> `edges`). */
  sizedFields: ReadonlyMap<string, ReadonlySet<string>>;
  /** Page size for a sized field given no slicing argument and no `assumedSize`. */
  defaultPageSize: number;
}

/**
 * Reads the cost directives from supergraph SDL. Composition keeps them on the supergraph's fields
 * (`@cost(weight: 10)`, `@listSize(...)`, with `@link(url: "https://specs.apollo.dev/cost/v0.1")`), but the API
 * schema strips them, so weights are keyed by coordinate and looked up while scoring against the API
 * schema. The names are resolved through the `@link`, so a renamed import still works.
 */
export function buildCostModel(supergraphSdl: string, options: { defaultPageSize?: number } = {}): CostModel {
  // Only the costs are read here: which features the supergraph may use is the gateway's check.
  const supergraph = Supergraph.build(supergraphSdl, { supportedFeatures: null });
  const schema = supergraph.schema;
  const fieldWeights = new Map<string, number>();
  const typeWeights = new Map<string, number>();
  const listSizes = new Map<string, ListSize>();
  const feature = schema.coreFeatures?.getByIdentity(costIdentity);
  const spec = feature ? COST_VERSIONS.find(feature.url.version) : undefined;
  if (feature && !spec) throw new Error(`Unsupported cost spec ${feature.url.toString()} in the supergraph.`);
  for (const application of spec?.costDirective(schema)?.applications() ?? []) {
    const { weight } = application.arguments() as { weight: number };
    const parent = application.parent;
    if (parent instanceof FieldDefinition) fieldWeights.set(parent.coordinate, weight);
    else if (parent instanceof ObjectType || parent instanceof ScalarType || parent instanceof EnumType)
      typeWeights.set(parent.name, weight);
    // Argument and input-field weights are not charged.
  }
  for (const application of spec?.listSizeDirective(schema)?.applications() ?? []) {
    const args = application.arguments() as {
      assumedSize?: number | null;
      slicingArguments?: string[] | null;
      sizedFields?: string[] | null;
    };
    const parent = application.parent;
    if (!(parent instanceof FieldDefinition)) continue;
    listSizes.set(parent.coordinate, {
      assumedSize: args.assumedSize ?? null,
      slicingArguments: args.slicingArguments ?? [],
      sizedFields: args.sizedFields ?? [],
    });
  }
  const apiSchema = supergraph.apiSchema().toGraphQLJSSchema();
  const sizedFields = new Map<string, Set<string>>();
  for (const [coordinate, listSize] of listSizes) {
    const [typeName, fieldName] = coordinate.split('.') as [string, string];
    const type = apiSchema.getType(typeName);
    const field = isObjectType(type) || isInterfaceType(type) ? type.getFields()[fieldName] : undefined;
    if (!field || listSize.sizedFields.length === 0) continue;
    const returnType = getNamedType(field.type).name;
    sizedFields.set(returnType, new Set([...(sizedFields.get(returnType) ?? []), ...listSize.sizedFields]));
  }
  return {
    apiSchema,
    fieldWeights,
    typeWeights,
    listSizes,
    sizedFields,
    defaultPageSize: options.defaultPageSize ?? 20,
  };
}

/** graphql-query-complexity stops (and throws) beyond this many evaluated selections, e.g. a fragment bomb. */
const MAX_SCORED_NODES = 10_000;

/**
 * The estimators for one scoring pass, first match wins:
 *
 * 1. A field returning a type with sized fields (a connection, per `@listSize(sizedFields: ["edges"])`):
 *    its weight, plus the cost of its sized fields times the page size, plus its other selections
 *    (`pageInfo`) once. A `@listSize` field without `sizedFields` is a plain list: weight and
 *    selections, times the page size.
 * 2. A sized field (`ProductConnection.edges`): its cost (1 + the edge's selections) is noted for its
 *    connection, which graphql-query-complexity estimates next (it estimates bottom-up: a field right after
 *    everything below it), so the connection multiplies exactly its own `edges`; nested connections have
 *    taken theirs by then. (A sized field reached through an abstract type would be taken by the next
 *    connection of that type, or by none; the contract has no such field.)
 * 3. A field with `@cost`, or returning a type with `@cost`: that weight plus its selections.
 * 4. A scalar or enum field: 0.
 * 5. Anything else, i.e. a plain object field: simpleEstimator, 1 plus its selections.
 */
function createEstimators(model: CostModel): ComplexityEstimator[] {
  // Costs of sized fields not yet taken by their connection, in the order they were estimated.
  const pending: Array<{ owner: string; cost: number }> = [];
  const take = (owner: string): number => {
    let taken = 0;
    for (let i = pending.length - 1; i >= 0; i -= 1) {
      if (pending[i]!.owner !== owner) continue;
      taken += pending[i]!.cost;
      pending.splice(i, 1);
    }
    return taken;
  };

  const costEstimator: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
    const coordinate = `${type.name}.${field.name}`;
    const returnType = getNamedType(field.type);
    const declaredWeight = model.fieldWeights.get(coordinate) ?? model.typeWeights.get(returnType.name);
    const weight = declaredWeight ?? (isCompositeType(returnType) ? 1 : 0);
    const listSize = model.listSizes.get(coordinate);
    const ownsSizedFields = model.sizedFields.has(returnType.name);
    let cost: number | undefined;
    if (ownsSizedFields) {
      // A connection: its own sized fields (taken whether or not this field declares @listSize) per item.
      const sized = take(returnType.name);
      cost = weight + (childComplexity - sized) + pageSize(listSize, args, model.defaultPageSize) * sized;
    } else if (listSize) {
      // A plain list: every item costs the weight and the selections.
      cost = pageSize(listSize, args, model.defaultPageSize) * (weight + childComplexity);
    } else if (declaredWeight !== undefined) {
      cost = weight + childComplexity;
    } else if (!isCompositeType(returnType)) {
      cost = 0;
    }
    if (model.sizedFields.get(type.name)?.has(field.name)) {
      cost ??= 1 + childComplexity;
      pending.push({ owner: type.name, cost });
    }
    return cost;
  };
  return [costEstimator, simpleEstimator({ defaultComplexity: 1 })];
}

/** The largest slicing argument given (negative counts as 0), else `assumedSize`, else the default page size. */
function pageSize(listSize: ListSize | undefined, args: Record<string, unknown>, defaultPageSize: number): number {
  const given = (listSize?.slicingArguments ?? [])
    .map((name) => args[name])
    .filter((value): value is number => typeof value === 'number');
  if (given.length > 0) return Math.max(0, ...given);
  return listSize?.assumedSize ?? defaultPageSize;
}

export interface CostRequest {
  document: DocumentNode;
  /** The operation's variables, as the client sent them. Defaults to none. */
  variables?: Record<string, unknown>;
  /** Which operation of the document to score; optional when it has one. */
  operationName?: string | null;
  /** The schema to score against. Defaults to the model's API schema (the gateway's schema is the same). */
  schema?: GraphQLSchema;
}

/**
 * The estimated cost of one operation, with its variables: a pure function of the model and the request.
 *
 * - A field returning an object costs 1, a scalar or enum 0, plus the cost of its selections; a field
 *   with `@cost(weight: w)` costs w instead of its default (mutations 10, `averageRating`/`reviewCount` 2).
 * - A connection (`@listSize(slicingArguments: ["first", "last"], sizedFields: ["edges"])`) costs
 *   1 + its other selections once (`pageInfo { ... }` is 1) + n x (1 + the edge's selections), where n is `first` or `last` from
 *   the arguments or variables, else `assumedSize`, else the default page size (20). Nested connections
 *   multiply.
 * - Skipped (`@skip`/`@include`) selections are free; fragments count where they are spread.
 *
 * Worked example, `products(first: 20) { edges { node { title averageRating reviews(first: 5) {
 * edges { node { body author { displayName } } } } } } }`:
 *
 *     author = 1 (displayName 0)                     review node = 1 + author 1 = 2
 *     one review edge = 1 + 2 = 3                    reviews(first: 5) = 1 + 5 x 3 = 16
 *     product node = 1 + title 0 + averageRating 2 + reviews 16 = 19
 *     one product edge = 1 + 19 = 20                 products(first: 20) = 1 + 20 x 20 = 401
 *
 * Returns Infinity when the operation expands (through fragments) to more than 10,000 selections.
 * Throws a BAD_USER_INPUT GraphQLError when the variables do not fit the operation, or when the
 * document has no such operation.
 */
export function estimateCost(model: CostModel, request: CostRequest): number {
  const operation = getOperationAST(request.document, request.operationName ?? undefined);
  if (!operation) {
    throw new GraphQLError(
      request.operationName
        ? `Unknown operation named "${request.operationName}".`
        : 'Must provide the name of the operation to run.',
      {
        extensions: { code: ErrorCode.BAD_USER_INPUT, http: { status: 400 } },
      },
    );
  }
  // Only this operation and the fragments: getComplexity would otherwise add up every operation.
  const query: DocumentNode = {
    ...request.document,
    definitions: request.document.definitions.filter(
      (definition) => definition === operation || definition.kind === Kind.FRAGMENT_DEFINITION,
    ),
  };
  // Counted in linear time first: scoring walks the expansion, which a fragment bomb makes exponential.
  if (countSelections(request.document, operation, request.variables) > MAX_SCORED_NODES)
    return Number.POSITIVE_INFINITY;
  try {
    return getComplexity({
      schema: request.schema ?? model.apiSchema,
      query,
      variables: request.variables ?? {},
      estimators: createEstimators(model),
      // A backstop only (it also counts fragments as nodes): the count above already bounds the walk.
      maxQueryNodes: 4 * MAX_SCORED_NODES,
    });
  } catch (error) {
    if (error instanceof GraphQLError) {
      throw new GraphQLError(error.message, { extensions: { code: ErrorCode.BAD_USER_INPUT, http: { status: 400 } } });
    }
    throw error;
  }
}

/**
 * How many field selections an operation makes once its fragments are expanded, scalars and
 * `__typename` included, skipping what `@skip`/`@include` leave out (given the variables as execution
 * sees them: see operationVariables). Each named fragment is counted
 * once and multiplied where it is spread, so a fragment bomb (each fragment spreading the next twice) is
 * counted in time linear in the document, not in its expansion.
 */
export function countSelections(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables?: Record<string, unknown>,
): number {
  const fragments = fragmentsOf(document);
  const perFragment = new Map<string, number>();
  const count = (selectionSet: SelectionSetNode): number => {
    let total = 0;
    for (const selection of selectionSet.selections) {
      if (!isIncluded(selection, variables)) continue;
      if (selection.kind === Kind.FIELD) {
        total += 1 + (selection.selectionSet ? count(selection.selectionSet) : 0);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        total += count(selection.selectionSet);
      } else {
        const name = selection.name.value;
        let spread = perFragment.get(name);
        if (spread === undefined) {
          // Validation refuses fragment cycles before this runs; were one to get here, it counts as unbounded.
          perFragment.set(name, Number.POSITIVE_INFINITY);
          const fragment = fragments.get(name);
          spread = fragment ? count(fragment.selectionSet) : 0;
          perFragment.set(name, spread);
        }
        total += spread;
      }
    }
    return total;
  };
  return count(operation.selectionSet);
}

function tooManySelections(selections: number, maxSelections: number): GraphQLError {
  return new GraphQLError(
    `Query is too complex: it makes ${selections} field selections once its fragments are expanded, over the maximum ${maxSelections}.`,
    {
      extensions: { code: QUERY_TOO_COMPLEX, cost: { selections, maxSelections }, http: { status: 400 } },
    },
  );
}

function tooComplex(estimated: number, max: number): GraphQLError {
  const finite = Number.isFinite(estimated);
  const message = finite
    ? `Query is too complex: estimated cost ${estimated} exceeds the maximum ${max}.`
    : `Query is too complex: it expands to more than ${MAX_SCORED_NODES} selections, beyond the maximum cost ${max}.`;
  return new GraphQLError(message, {
    extensions: { code: QUERY_TOO_COMPLEX, cost: { estimated: finite ? estimated : null, max }, http: { status: 400 } },
  });
}

/** What is computed of one operation with one set of variables: its selection count, then its estimated cost. */
interface Score {
  selections?: number;
  estimated?: number;
}

/** Variable sets whose scores one document keeps; more, and the oldest is forgotten. */
const SCORES_PER_DOCUMENT = 16;
/** Longer variables (big mutation inputs, rarely sent twice) are scored every time rather than kept. */
const MAX_SCORE_KEY_LENGTH = 2_048;

/**
 * Scores by document (held weakly: gone with the document from Apollo's document store), then by schema and
 * cost model (a reloaded supergraph may weigh the same document differently), then by operation name and
 * variables.
 */
class DocumentScores {
  private readonly byDocument = new WeakMap<
    DocumentNode,
    { schema: GraphQLSchema; model: CostModel; scores: Map<string, Score> }
  >();

  of(document: DocumentNode, schema: GraphQLSchema, model: CostModel, key: string): Score {
    if (key.length > MAX_SCORE_KEY_LENGTH) return {};
    let entry = this.byDocument.get(document);
    if (entry?.schema !== schema || entry.model !== model) {
      entry = { schema, model, scores: new Map() };
      this.byDocument.set(document, entry);
    }
    let score = entry.scores.get(key);
    if (!score) {
      score = {};
      entry.scores.set(key, score);
      if (entry.scores.size > SCORES_PER_DOCUMENT) entry.scores.delete(entry.scores.keys().next().value!);
    }
    return score;
  }
}

/** graphql-armor's messages start "Syntax Error: " although they are not syntax errors. */
const withoutSyntaxErrorPrefix = (message: string) => message.replace(/^Syntax Error: /, '');

/** An armor rule's rejection, reported as a validation error that carries our code. */
const reportAs = (code: string): NonNullable<NonNullable<Parameters<typeof maxDepthRule>[0]>['onReject']> => [
  (context, error) =>
    context?.reportError(new GraphQLError(withoutSyntaxErrorPrefix(error.message), { extensions: { code } })),
];

/** graphql-js's parse error for `maxTokens` (16.x spells it "more that"). */
const TOKEN_LIMIT = /^Syntax Error: Document contains more tha[nt] (\d+) tokens\. Parsing aborted\.$/;

/**
 * Query limits for the gateway, all checked before any subgraph is called:
 *
 * - `parseOptions.maxTokens`: graphql-js stops parsing a document beyond `maxTokens` tokens.
 * - `validationRules`: graphql-armor's depth, alias and directive limits, run with Apollo's validation.
 * - `plugin`: in `didResolveOperation` (after validation, before execution), in this order: it calls
 *   `authorize` (who may); counts the operation's field selections after fragment expansion (see
 *   countSelections), answering QUERY_TOO_COMPLEX with `extensions.cost { selections, maxSelections }`
 *   over `maxSelections`; then estimates the operation's
 *   cost (see estimateCost) against the request's schema, with its variables, and sets
 *   `contextValue.cost = { estimated, max }` (QueryCostContext) for the plugins after it. Over `maxCost`
 *   it answers QUERY_TOO_COMPLEX with `extensions.cost { estimated, max }`; otherwise it awaits
 *   `onEstimated`, whose error (if it throws) is the answer. Apollo reports parse and validation
 *   failures as GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED; the plugin's `didEncounterErrors` gives
 *   the limits' own failures back their codes (TOO_MANY_TOKENS, QUERY_TOO_DEEP, TOO_MANY_ALIASES,
 *   TOO_MANY_DIRECTIVES). Every rejection is HTTP 400. List the plugin before plugins that read error codes.
 *
 * The gateway spreads `validationRules` and `parseOptions` into its ApolloServer options and adds `plugin`.
 */
export function useQueryLimits<TContext extends BaseContext = BaseContext>(
  options: QueryLimitsOptions<TContext>,
): QueryLimits<TContext> {
  const maxCost = options.maxCost ?? 5_000;
  const maxSelections = options.maxSelections ?? 500;
  const initialModel = buildCostModel(options.supergraphSdl, { defaultPageSize: options.defaultPageSize });
  // By the API schema each supergraph was loaded as; the initial one serves a server without a gateway.
  const models = new WeakMap<GraphQLSchema, CostModel>();
  const validationRules: ValidationRule[] = [
    maxDepthRule({
      n: options.maxDepth ?? 12,
      ignoreIntrospection: true,
      flattenFragments: true,
      propagateOnRejection: false,
      onReject: reportAs(QUERY_TOO_DEEP),
    }),
    maxAliasesRule({ n: options.maxAliases ?? 30, propagateOnRejection: false, onReject: reportAs(TOO_MANY_ALIASES) }),
    maxDirectivesRule({
      n: options.maxDirectives ?? 50,
      propagateOnRejection: false,
      onReject: reportAs(TOO_MANY_DIRECTIVES),
    }),
  ];
  const validationCodes = new Set<string>([QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_DIRECTIVES]);
  const scores = new DocumentScores();
  /**
   * The score of this request's operation, with these variables, on this schema: computed at most once
   * per document (Apollo Server hands every request of the same query text the same DocumentNode) for a
   * few variable sets, since `first: $n` and `@include(if: $v)` make it depend on them.
   */
  const scoreOf = ({ document, schema, request }: GraphQLRequestContextDidResolveOperation<TContext>) => {
    const model = models.get(schema) ?? initialModel;
    // A newline appears in no operation name.
    const key = `${request.operationName ?? ''}\n${JSON.stringify(request.variables ?? {})}`;
    return { model, score: scores.of(document, schema, model, key) };
  };

  const plugin: ApolloServerPlugin<TContext> = {
    async requestDidStart() {
      return {
        async didResolveOperation(requestContext) {
          // The gateway would fail on these with an uncoded error (a 500): answer the client's mistake as one.
          if (!requestContext.operation) {
            const named = requestContext.request.operationName;
            throw new GraphQLError(
              named
                ? `No operation named "${named}" in the document.`
                : 'The document has several operations: name the one to run with operationName.',
              {
                extensions: { code: 'OPERATION_RESOLUTION_FAILURE', http: { status: 400 } },
              },
            );
          }
          if (requestContext.operation.operation === 'subscription') {
            throw new GraphQLError('Subscriptions are not supported.', {
              extensions: { code: ErrorCode.BAD_REQUEST, http: { status: 400 } },
            });
          }
          options.authorize?.(requestContext);
          const { model, score } = scoreOf(requestContext);
          // Counted in linear time before scoring, which walks the expansion (at most MAX_SCORED_NODES).
          score.selections ??= countSelections(
            requestContext.document,
            requestContext.operation,
            operationVariables(requestContext.schema, requestContext.operation, requestContext.request.variables),
          );
          if (score.selections > maxSelections) throw tooManySelections(score.selections, maxSelections);
          // Not kept when it throws (variables that do not fit): the next request with them throws again.
          score.estimated ??= estimateCost(model, {
            document: requestContext.document,
            variables: requestContext.request.variables,
            operationName: requestContext.request.operationName,
            schema: requestContext.schema,
          });
          const estimated = score.estimated;
          const cost: QueryCost = { estimated, max: maxCost };
          (requestContext.contextValue as QueryCostContext).cost = cost;
          if (!(estimated <= maxCost)) throw tooComplex(estimated, maxCost);
          await options.onEstimated?.(cost, requestContext);
        },
        async didEncounterErrors({ errors }) {
          for (const error of errors) {
            const original = error.originalError;
            const code = original instanceof GraphQLError ? original.extensions.code : undefined;
            if (
              error.extensions.code === 'GRAPHQL_VALIDATION_FAILED' &&
              typeof code === 'string' &&
              validationCodes.has(code)
            ) {
              error.extensions.code = code;
              continue;
            }
            const tokens = error.extensions.code === 'GRAPHQL_PARSE_FAILED' ? TOKEN_LIMIT.exec(error.message) : null;
            if (tokens) {
              error.extensions.code = TOO_MANY_TOKENS;
              error.message = `Document contains more than ${tokens[1]} tokens. Parsing aborted.`;
            }
          }
        },
      };
    },
  };
  return {
    plugin,
    validationRules,
    parseOptions: { maxTokens: options.maxTokens ?? 5_000 },
    onSchemaLoadOrUpdate: ({ apiSchema, coreSupergraphSdl }) =>
      models.set(apiSchema, buildCostModel(coreSupergraphSdl, { defaultPageSize: options.defaultPageSize })),
  };
}
