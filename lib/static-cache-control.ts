import type {
  ApolloServerPlugin,
  BaseContext,
  GraphQLRequestContext,
  GraphQLRequestContextExecutionDidStart,
  GraphQLResponse,
} from '@apollo/server';
import {
  getArgumentValues,
  getNamedType,
  getVariableValues,
  isCompositeType,
  isInterfaceType,
  isObjectType,
  Kind,
  visit,
  type DirectiveNode,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLObjectType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type VariableDefinitionNode,
} from 'graphql';
// graphql-js's own field collection (@skip/@include, fragments, type conditions): the fields it returns are
// exactly the fields execution resolves on an object of that type.
import { collectFields, collectSubfields } from 'graphql/execution/collectFields';

/**
 * Cache-Control for a subgraph from the static `@cacheControl` hints of its schema, computed once per
 * operation document instead of in a hook around every resolver as Apollo's cache control plugin does.
 *
 * Same result as `ApolloServerPluginCacheControl({ calculateHttpHeaders: true, defaultMaxAge })` when no
 * resolver sets a hint itself: Apollo restricts the overall policy with the hint of every field it resolves
 * (the field's `@cacheControl`, else its composite return type's, `inheritMaxAge`, the default maxAge for
 * root fields and unhinted composite fields) and, in @apollo/subgraph's `_entities` resolver, with the hint
 * of each representation's type. Here the fields an operation resolves on an object of each type are
 * collected once per document (and values of the @skip/@include variables). A request then applies the
 * root fields' policy (with `_entities` from its representations' `__typename`s) when execution starts,
 * and, before the header is written, the policies of fields below only if the data shows they were
 * resolved (a null or an empty list resolves nothing below it), and only where they could restrict more.
 *
 * Install it with `ApolloServerPluginCacheControlDisabled()`, or Apollo adds its own plugin as well.
 */
export function useStaticCacheControl<TContext extends BaseContext>({
  defaultMaxAge = 0,
}: StaticCacheControlOptions = {}): ApolloServerPlugin<TContext> {
  const documents = new WeakMap<DocumentNode, DocumentPlans>();

  function planFor(context: GraphQLRequestContextExecutionDidStart<TContext>): OperationPlan | null {
    const { schema, document, operation } = context;
    let plans = documents.get(document);
    if (!plans || plans.schema !== schema) {
      plans = { schema, fragments: fragmentsOf(document), operations: new Map() };
      documents.set(document, plans);
    }
    const operationKey = context.operationName ?? '';
    let entry = plans.operations.get(operationKey);
    if (!entry) {
      entry = { conditionVariables: conditionVariablesOf(operation, plans.fragments), byConditions: new Map() };
      plans.operations.set(operationKey, entry);
    }
    // Only @skip/@include change which fields run: their variables' values are part of the key.
    let conditions: Record<string, unknown> = {};
    if (entry.conditionVariables.length > 0) {
      const coerced = getVariableValues(schema, entry.conditionVariables, context.request.variables ?? {});
      // Execution fails the same way before resolving any field: nothing to restrict.
      if (coerced.errors) return null;
      conditions = coerced.coerced;
    }
    const conditionKey = entry.conditionVariables.map((v) => String(conditions[v.variable.name.value])).join();
    let plan = entry.byConditions.get(conditionKey);
    if (!plan) {
      plan = planOperation(schema, plans.fragments, conditions, operation, defaultMaxAge);
      entry.byConditions.set(conditionKey, plan);
    }
    return plan;
  }

  return {
    async requestDidStart() {
      let executed: { plan: OperationPlan; representations: Map<string, unknown[]> } | null = null;
      return {
        async executionDidStart(context) {
          // As Apollo: a policy another plugin already set before execution is left alone.
          if (isRestricted(context.overallCachePolicy)) return;
          const plan = planFor(context);
          if (!plan) return;
          const root = { ...plan.root.own };
          const representations = new Map<string, unknown[]>();
          for (const entities of plan.entities) {
            const list = representationsOf(entities.field, entities.node, context.request.variables);
            representations.set(entities.key, list);
            restrict(root, entitiesPolicy(context.schema, entities, list, defaultMaxAge));
          }
          context.overallCachePolicy.restrict(root);
          executed = { plan, representations };
        },

        async willSendResponse({ response, overallCachePolicy, schema }) {
          if (executed) {
            const { plan, representations } = executed;
            const { body } = response;
            if (body.kind === 'single' && !body.singleResult.errors && body.singleResult.data) {
              const walk = new DataWalk(schema, overallCachePolicy, representations);
              walk.root(plan.root, body.singleResult.data);
            } else {
              // Which fields ran is unknown (an error may null out resolved ones): assume all of them.
              // The header is no-store in any case, as Apollo's.
              overallCachePolicy.restrict(plan.root.bound);
            }
          }
          setCacheControlHeader(response, overallCachePolicy);
        },
      };
    },
  };
}

export interface StaticCacheControlOptions {
  /**
   * The maxAge of root fields and of fields returning an object, interface or union without a hint
   * of their own or of that type (and without `inheritMaxAge`), as Apollo's `defaultMaxAge`. 0 is not
   * cacheable. Defaults to 0.
   */
  defaultMaxAge?: number;
}

type Scope = 'PUBLIC' | 'PRIVATE';
/** A cache policy as Apollo's CacheHint: unset parts do not restrict. */
interface Hint {
  maxAge?: number;
  scope?: Scope;
}
/** A `@cacheControl` directive's arguments. */
interface Annotation extends Hint {
  inheritMaxAge?: true;
}
type OverallPolicy = GraphQLRequestContext<BaseContext>['overallCachePolicy'];

/** What resolving a selection on an object of one type restricts the policy to. */
interface ObjectPlan {
  /** The hints of the fields resolved on the object itself. */
  own: Hint;
  /** Fields returning objects: what is resolved below them depends on their values. */
  children: FieldPlan[];
  /** `own` with everything below: the most this selection can restrict. */
  bound: Hint;
}

interface FieldPlan {
  /** Response key (alias or name). */
  key: string;
  /** The selection by runtime object type: one for an object type, one per possible type otherwise. */
  byType: Map<string, ObjectPlan>;
  bound: Hint;
  /** Response keys that hold `__typename` whatever the runtime type: how the data tells its type. */
  typenameKeys: string[];
}

/** A root `_entities` field, whose own hint comes from its representations (@apollo/subgraph's resolver). */
interface EntitiesPlan {
  key: string;
  field: GraphQLField<unknown, unknown>;
  node: FieldNode;
  /** Hint from the field and its return type, before the representations' types restrict it. */
  hint: Hint;
}

interface OperationPlan {
  /** The root fields' own hints, what is below them, and its bound; `_entities`' own hint is in `entities`. */
  root: ObjectPlan;
  entities: EntitiesPlan[];
}

interface DocumentPlans {
  schema: GraphQLSchema;
  fragments: Record<string, FragmentDefinitionNode>;
  /** By operation name ('' for the only, anonymous, one). */
  operations: Map<string, { conditionVariables: VariableDefinitionNode[]; byConditions: Map<string, OperationPlan> }>;
}

function planOperation(
  schema: GraphQLSchema,
  fragments: Record<string, FragmentDefinitionNode>,
  conditions: Record<string, unknown>,
  operation: OperationDefinitionNode,
  defaultMaxAge: number,
): OperationPlan {
  const rootType = schema.getRootType(operation.operation)!;
  const entities: EntitiesPlan[] = [];

  function planObject(type: GraphQLObjectType, fields: Map<string, readonly FieldNode[]>, isRoot: boolean) {
    const plan: ObjectPlan = { own: {}, children: [], bound: {} };
    for (const [key, nodes] of fields) {
      // Meta fields (__typename, __schema, __type) have no resolver of the schema's: Apollo never hints them.
      const field = type.getFields()[nodes[0]!.name.value];
      if (!field) continue;
      const { hint, defaulted } = fieldHint(field);
      if (isRoot && isEntitiesField(schema, type, field)) {
        entities.push({ key, field, node: nodes[0]!, hint });
      } else {
        restrict(plan.own, withDefault(hint, defaulted || isRoot, defaultMaxAge));
      }
      const returnType = getNamedType(field.type);
      if (isCompositeType(returnType)) plan.children.push(planField(key, returnType, nodes));
    }
    plan.bound = { ...plan.own };
    for (const child of plan.children) restrict(plan.bound, child.bound);
    return plan;
  }

  function planField(key: string, returnType: GraphQLCompositeType, nodes: readonly FieldNode[]): FieldPlan {
    const types = isObjectType(returnType) ? [returnType] : schema.getPossibleTypes(returnType);
    const plan: FieldPlan = { key, byType: new Map(), bound: {}, typenameKeys: [] };
    const typenames = new Map<string, boolean>();
    for (const type of types) {
      const fields = collectSubfields(schema, fragments, conditions, type, nodes);
      const typePlan = planObject(type, fields, false);
      plan.byType.set(type.name, typePlan);
      restrict(plan.bound, typePlan.bound);
      for (const [responseKey, fieldNodes] of fields) {
        const isTypename = fieldNodes[0]!.name.value === '__typename';
        typenames.set(responseKey, (typenames.get(responseKey) ?? true) && isTypename);
      }
    }
    plan.typenameKeys = [...typenames].filter(([, isTypename]) => isTypename).map(([responseKey]) => responseKey);
    return plan;
  }

  const root = planObject(
    rootType,
    collectFields(schema, fragments, conditions, rootType, operation.selectionSet),
    true,
  );
  return { root, entities };
}

/** Restricts the overall policy with the fields the response data shows were resolved. */
class DataWalk {
  constructor(
    private readonly schema: GraphQLSchema,
    private readonly policy: OverallPolicy,
    private readonly representations: Map<string, unknown[]>,
  ) {}

  /** The root fields' own policies are applied already: only what is below them is left. */
  root(plan: ObjectPlan, data: Record<string, unknown>) {
    for (const child of plan.children) {
      if (!restricts(this.policy, child.bound)) continue;
      const value = data[child.key];
      const representations = this.representations.get(child.key);
      if (representations && Array.isArray(value)) this.entities(child, value, representations);
      else this.value(child, value);
    }
  }

  /** `_entities` answers in the order of its representations: theirs are the runtime types. */
  private entities(plan: FieldPlan, values: unknown[], representations: unknown[]) {
    values.forEach((value, index) => {
      if (!isObject(value) || !restricts(this.policy, plan.bound)) return;
      const typename = (representations[index] as { __typename?: unknown } | undefined)?.__typename;
      const type = typeof typename === 'string' ? this.schema.getType(typename) : undefined;
      const typePlan = type && isObjectType(type) ? plan.byType.get(type.name) : undefined;
      if (typePlan) this.object(typePlan, value);
      else this.value(plan, value);
    });
  }

  private value(plan: FieldPlan, value: unknown) {
    if (Array.isArray(value)) {
      for (const item of value) {
        if (!restricts(this.policy, plan.bound)) return;
        this.value(plan, item);
      }
    } else if (isObject(value)) {
      for (const typePlan of plansFor(plan, value)) this.object(typePlan, value);
    }
  }

  private object(plan: ObjectPlan, value: Record<string, unknown>) {
    this.policy.restrict(plan.own);
    for (const child of plan.children) {
      if (restricts(this.policy, child.bound)) this.value(child, value[child.key]);
    }
  }
}

/** The plan for an object's runtime type; every possible type's when the data does not say which. */
function plansFor(plan: FieldPlan, value: Record<string, unknown>): Iterable<ObjectPlan> {
  if (plan.byType.size === 1) return plan.byType.values();
  for (const key of plan.typenameKeys) {
    const typename = value[key];
    const typePlan = typeof typename === 'string' ? plan.byType.get(typename) : undefined;
    if (typePlan) return [typePlan];
  }
  return plan.byType.values();
}

/** The policy of an `_entities` field: @apollo/subgraph restricts it with each representation's type. */
function entitiesPolicy(
  schema: GraphQLSchema,
  entities: EntitiesPlan,
  representations: unknown[],
  defaultMaxAge: number,
): Hint {
  const hint = { ...entities.hint };
  const seen = new Set<unknown>();
  for (const representation of representations) {
    const typename = (representation as { __typename?: unknown } | null)?.__typename;
    if (seen.has(typename)) continue;
    seen.add(typename);
    const type = typeof typename === 'string' ? schema.getType(typename) : undefined;
    if (type && (isObjectType(type) || isInterfaceType(type))) restrict(hint, typeAnnotation(type));
  }
  return withDefault(hint, true, defaultMaxAge);
}

function representationsOf(
  field: GraphQLField<unknown, unknown>,
  node: FieldNode,
  variables: Record<string, unknown> | undefined,
): unknown[] {
  let value: unknown;
  try {
    value = getArgumentValues(field, node, variables ?? {}).representations;
  } catch {
    // Invalid arguments fail the field: its resolver, and so its hints, never run.
    return [];
  }
  if (value === null || value === undefined) return [];
  // Input coercion makes a single value a list of one.
  return Array.isArray(value) ? value : [value];
}

function isEntitiesField(schema: GraphQLSchema, type: GraphQLObjectType, field: GraphQLField<unknown, unknown>) {
  return type === schema.getQueryType() && field.name === '_entities' && getNamedType(field.type).name === '_Entity';
}

/** A field's hint as Apollo's plugin computes it before a resolver runs, and whether the default applies. */
function fieldHint(field: GraphQLField<unknown, unknown>): { hint: Hint; defaulted: boolean } {
  let cached = fieldHints.get(field);
  if (!cached) {
    const hint: Hint = {};
    let inheritMaxAge = false;
    const returnType = getNamedType(field.type);
    const composite = isCompositeType(returnType);
    if (composite) {
      const annotation = typeAnnotation(returnType);
      replace(hint, annotation);
      inheritMaxAge = !!annotation.inheritMaxAge;
    }
    const annotation = annotationOf(field.astNode?.directives) ?? {};
    if (annotation.inheritMaxAge && hint.maxAge === undefined) {
      inheritMaxAge = true;
      if (annotation.scope) replace(hint, { scope: annotation.scope });
    } else {
      replace(hint, annotation);
    }
    cached = { hint, defaulted: composite && !inheritMaxAge };
    fieldHints.set(field, cached);
  }
  return cached;
}
const fieldHints = new WeakMap<GraphQLField<unknown, unknown>, { hint: Hint; defaulted: boolean }>();

/** The default maxAge for a field without one, when it applies (Apollo: root fields, unhinted composites). */
function withDefault(hint: Hint, defaulted: boolean, defaultMaxAge: number): Hint {
  if (hint.maxAge !== undefined || !defaulted) return hint;
  const policy = { ...hint };
  restrict(policy, { maxAge: defaultMaxAge });
  return policy;
}

function typeAnnotation(type: GraphQLCompositeType): Annotation {
  let annotation = typeAnnotations.get(type);
  if (!annotation) {
    annotation = {};
    for (const node of [type.astNode, ...type.extensionASTNodes]) {
      const found = annotationOf(node?.directives);
      if (found) {
        annotation = found;
        break;
      }
    }
    typeAnnotations.set(type, annotation);
  }
  return annotation;
}
const typeAnnotations = new WeakMap<GraphQLCompositeType, Annotation>();

/** A `@cacheControl` directive read as Apollo does: `inheritMaxAge: true` wins over maxAge. */
function annotationOf(directives: readonly DirectiveNode[] | undefined): Annotation | undefined {
  const directive = directives?.find((d) => d.name.value === 'cacheControl');
  if (!directive?.arguments) return undefined;
  const argument = (name: string) => directive.arguments!.find((a) => a.name.value === name)?.value;
  const maxAge = argument('maxAge');
  const scopeValue = argument('scope');
  const inheritMaxAge = argument('inheritMaxAge');
  const scopeName = scopeValue?.kind === Kind.ENUM ? scopeValue.value : undefined;
  const scope = scopeName === 'PUBLIC' || scopeName === 'PRIVATE' ? scopeName : undefined;
  if (inheritMaxAge?.kind === Kind.BOOLEAN && inheritMaxAge.value) return { inheritMaxAge: true, scope };
  return { maxAge: maxAge?.kind === Kind.INT ? parseInt(maxAge.value, 10) : undefined, scope };
}

function fragmentsOf(document: DocumentNode): Record<string, FragmentDefinitionNode> {
  const fragments: Record<string, FragmentDefinitionNode> = Object.create(null);
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
  }
  return fragments;
}

/** The operation's variables that @skip or @include read (in the operation or any fragment). */
function conditionVariablesOf(
  operation: OperationDefinitionNode,
  fragments: Record<string, FragmentDefinitionNode>,
): VariableDefinitionNode[] {
  const names = new Set<string>();
  const collect = (node: OperationDefinitionNode | FragmentDefinitionNode) =>
    visit(node, {
      Directive(directive) {
        if (directive.name.value !== 'skip' && directive.name.value !== 'include') return;
        for (const argument of directive.arguments ?? []) {
          if (argument.value.kind === Kind.VARIABLE) names.add(argument.value.name.value);
        }
      },
    });
  collect(operation);
  for (const fragment of Object.values(fragments)) collect(fragment);
  return (operation.variableDefinitions ?? []).filter((v) => names.has(v.variable.name.value));
}

/**
 * Cache-Control as Apollo's plugin writes it with calculateHttpHeaders: true: `max-age=N, public|private`
 * for a cacheable answer without errors, else `no-store`; a header already set restricts the policy,
 * an unparsable one is left as it is.
 */
function setCacheControlHeader(response: GraphQLResponse, overall: OverallPolicy) {
  const existing = parseCacheControlHeader(response.http.headers.get('cache-control'));
  if (existing === 'unparsable') return;
  const policy: Hint = {};
  replace(policy, overall);
  if (typeof existing === 'object') restrict(policy, existing);
  const cacheable = policy.maxAge !== undefined && policy.maxAge !== 0;
  if (cacheable && existing !== 'no-store' && response.body.kind === 'single' && !response.body.singleResult.errors) {
    response.http.headers.set('cache-control', `max-age=${policy.maxAge}, ${(policy.scope ?? 'PUBLIC').toLowerCase()}`);
  } else {
    response.http.headers.set('cache-control', 'no-store');
  }
}

function parseCacheControlHeader(header: string | undefined): Hint | 'none' | 'no-store' | 'unparsable' {
  if (!header) return 'none';
  if (header === 'no-store') return 'no-store';
  const match = /^max-age=(\d+), (public|private)$/.exec(header);
  if (!match) return 'unparsable';
  return { maxAge: Number(match[1]), scope: match[2] === 'public' ? 'PUBLIC' : 'PRIVATE' };
}

/** Apollo's CachePolicy.restrict: the shorter maxAge, and PRIVATE once any part is. */
function restrict(policy: Hint, hint: Hint) {
  if (hint.maxAge !== undefined && (policy.maxAge === undefined || hint.maxAge < policy.maxAge)) {
    policy.maxAge = hint.maxAge;
  }
  if (hint.scope !== undefined && policy.scope !== 'PRIVATE') policy.scope = hint.scope;
}

/** Whether restricting `policy` with `hint` would change it: if not, nothing below needs a look. */
function restricts(policy: Hint, hint: Hint): boolean {
  return (
    (hint.maxAge !== undefined && (policy.maxAge === undefined || hint.maxAge < policy.maxAge)) ||
    (hint.scope !== undefined && policy.scope !== 'PRIVATE' && policy.scope !== hint.scope)
  );
}

/** Apollo's CachePolicy.replace: set parts overwrite. */
function replace(policy: Hint, hint: Hint) {
  if (hint.maxAge !== undefined) policy.maxAge = hint.maxAge;
  if (hint.scope !== undefined) policy.scope = hint.scope;
}

function isRestricted(policy: Hint): boolean {
  return policy.maxAge !== undefined || policy.scope !== undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
