import {
  AUTHENTICATED_VERSIONS,
  AuthenticatedSpecDefinition,
  buildSubgraph,
  FieldDefinition,
  NamedSchemaElement,
  REQUIRES_SCOPES_VERSIONS,
  RequiresScopesSpecDefinition,
  type Directive,
  type FeatureVersion,
  type Schema,
} from '@apollo/federation-internals';
import type { ApolloServerPlugin } from '@apollo/server';
import {
  BREAK,
  getNamedType,
  isAbstractType,
  isCompositeType,
  isInterfaceType,
  isObjectType,
  Kind,
  type DocumentNode,
  type GraphQLCompositeType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  visit,
} from 'graphql';
import { fragmentsOf, isIncluded, operationVariables } from './documents';
import { clientError, ErrorCode } from './errors';

/**
 * Who may select a field, as the contract says with federation's `@authenticated` and
 * `@requiresScopes(scopes: [[...]])`: `scopes` is a list of alternatives, any one of which the caller
 * must hold in full (`[["a", "b"], ["c"]]` is a and b, or c). A scope requirement implies authentication.
 */
export interface AccessRule {
  authenticated: boolean;
  scopes: readonly (readonly string[])[];
}

/** The access rules of one schema: by field coordinate (`Mutation.updateProduct`) and by type name. */
export interface AccessRules {
  fields: ReadonlyMap<string, AccessRule>;
  types: ReadonlyMap<string, AccessRule>;
}

/** Who is asking: a verified user or not, and the scopes their token grants. */
export interface Caller {
  /** The verified user id, or null for an anonymous caller. */
  callerId: string | null;
  /** Scopes granted by the caller's token (OAuth 2.0 `scope`). Empty for an anonymous caller. */
  scopes: readonly string[];
  /**
   * True when a job acts for the caller (a delegation token, lib/delegation.ts): background work, which the
   * gateway runs only on spare capacity (gateway/admission.ts). Absent for the caller's own requests.
   */
  background?: true;
}

export const ANONYMOUS: Caller = Object.freeze({ callerId: null, scopes: Object.freeze([]) as readonly string[] });

/** The two security features this service enforces itself, with the versions it knows. */
export const ENFORCED_SECURITY_FEATURES: readonly string[] = [
  ...AUTHENTICATED_VERSIONS.versions().map((version) => `${AuthenticatedSpecDefinition.identity}/${version}`),
  ...REQUIRES_SCOPES_VERSIONS.versions().map((version) => `${RequiresScopesSpecDefinition.identity}/${version}`),
];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- federation-internals' own element generics
type AppliedDirective = Directive<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
type AnyElement = any;

/** Gathers the applications of `@authenticated` and `@requiresScopes` into rules keyed by coordinate or type. */
function collectRules(
  authenticated: Iterable<AppliedDirective>,
  requiresScopes: Iterable<AppliedDirective>,
): AccessRules {
  const fields = new Map<string, AccessRule>();
  const types = new Map<string, AccessRule>();
  const add = (application: AppliedDirective, rule: AccessRule) => {
    const parent = application.parent;
    const [map, key] =
      parent instanceof FieldDefinition
        ? [fields, parent.coordinate]
        : [types, (parent as NamedSchemaElement<AnyElement, AnyElement, AnyElement>).name];
    map.set(key, both(map.get(key), rule));
  };
  for (const application of authenticated) add(application, { authenticated: true, scopes: [] });
  for (const application of requiresScopes)
    add(application, { authenticated: true, scopes: (application.arguments() as { scopes: string[][] }).scopes });
  return { fields, types };
}

/** A rule that holds when both hold: every alternative of one joined with every alternative of the other. */
function both(a: AccessRule | undefined, b: AccessRule): AccessRule {
  if (!a) return b;
  const scopes =
    a.scopes.length === 0
      ? b.scopes
      : b.scopes.length === 0
        ? a.scopes
        : a.scopes.flatMap((left) => b.scopes.map((right) => [...new Set([...left, ...right])]));
  return { authenticated: a.authenticated || b.authenticated, scopes };
}

/**
 * The access rules of a supergraph: composition keeps `@authenticated` and `@requiresScopes` on the
 * supergraph's fields and types, linked as `for: SECURITY` features. The names are resolved through the
 * `@link`, so a renamed import still works; an unknown version of either feature is refused.
 */
export function supergraphAccessRules(schema: Schema): AccessRules {
  const directive = <T>(
    identity: string,
    versions: { find(version: FeatureVersion): T | undefined },
    pick: (spec: T) => { applications(): Iterable<AppliedDirective> } | undefined,
  ) => {
    const feature = schema.coreFeatures?.getByIdentity(identity);
    if (!feature) return [];
    const spec = versions.find(feature.url.version);
    if (!spec) throw new Error(`Unsupported security feature ${feature.url.toString()} in the supergraph.`);
    return pick(spec)?.applications() ?? [];
  };
  return collectRules(
    directive(AuthenticatedSpecDefinition.identity, AUTHENTICATED_VERSIONS, (spec) =>
      spec.authenticatedDirective(schema),
    ),
    directive(RequiresScopesSpecDefinition.identity, REQUIRES_SCOPES_VERSIONS, (spec) =>
      spec.requiresScopesDirective(schema),
    ),
  );
}

/** The access rules of one subgraph's SDL (imported from federation v2.5+ under any name). */
export function subgraphAccessRules(name: string, sdl: string): AccessRules {
  const metadata = buildSubgraph(name, '', sdl).metadata();
  return collectRules(
    metadata.authenticatedDirective().applications(),
    metadata.requiresScopesDirective().applications(),
  );
}

export interface AccessRequest {
  /** The schema the document was validated against (the API schema at the gateway, the subgraph's own schema). */
  schema: GraphQLSchema;
  document: DocumentNode;
  operation: OperationDefinitionNode;
  variables?: Record<string, unknown>;
}

/**
 * The rules of every field the operation selects, by coordinate: fragments and inline fragments
 * included (each named fragment is read once, however often it is spread), `@skip`/`@include` honoured
 * with the variables as execution will see them (defaults filled in). A field selected on an interface
 * carries the rules of that field on each possible type; a field returning a protected type carries that
 * type's rule, and one returning an interface or union the rules of each type it may return.
 */
export function selectedRules(rules: AccessRules, request: AccessRequest): Map<string, AccessRule> {
  if (rules.fields.size === 0 && rules.types.size === 0) return new Map();
  // Once per document and operation (and variables, only when @skip/@include could use them): a client
  // sends the same few documents again and again, and each is walked on every request otherwise.
  let byDocument = selectedCache.get(rules);
  if (!byDocument) selectedCache.set(rules, (byDocument = new WeakMap()));
  let byKey = byDocument.get(request.document);
  if (!byKey) byDocument.set(request.document, (byKey = new Map()));
  const key = `${request.operation.name?.value ?? ''}\n${hasConditions(request.document) ? JSON.stringify(request.variables ?? {}) : ''}`;
  let selected = byKey.get(key);
  if (!selected) {
    selected = walkSelectedRules(rules, request);
    if (byKey.size < MAX_CACHED_VARIANTS) byKey.set(key, selected);
  }
  return selected;
}

/** How many variants (operation and variables) of one document selectedRules keeps. */
const MAX_CACHED_VARIANTS = 16;
const selectedCache = new WeakMap<AccessRules, WeakMap<DocumentNode, Map<string, Map<string, AccessRule>>>>();
const conditional = new WeakMap<DocumentNode, boolean>();

/** Whether the document uses @skip or @include anywhere (then what it selects depends on the variables). */
function hasConditions(document: DocumentNode): boolean {
  let found = conditional.get(document);
  if (found === undefined) {
    found = false;
    visit(document, {
      Directive(node) {
        if (node.name.value === 'skip' || node.name.value === 'include') {
          found = true;
          return BREAK;
        }
        return undefined;
      },
    });
    conditional.set(document, found);
  }
  return found;
}

function walkSelectedRules(rules: AccessRules, request: AccessRequest): Map<string, AccessRule> {
  const selected = new Map<string, AccessRule>();
  const { schema } = request;
  const variables = operationVariables(schema, request.operation, request.variables);
  const fragments = fragmentsOf(request.document);
  const read = new Set<string>();
  const note = (key: string, rule: AccessRule | undefined) => {
    if (rule) selected.set(key, rule);
  };
  const walk = (selectionSet: SelectionSetNode, parent: GraphQLCompositeType) => {
    for (const selection of selectionSet.selections) {
      if (!isIncluded(selection, variables)) continue;
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (name.startsWith('__') || !(isObjectType(parent) || isInterfaceType(parent))) continue;
        const field = parent.getFields()[name];
        if (!field) continue;
        note(`${parent.name}.${name}`, rules.fields.get(`${parent.name}.${name}`));
        if (isAbstractType(parent)) {
          for (const type of schema.getPossibleTypes(parent))
            note(`${type.name}.${name}`, rules.fields.get(`${type.name}.${name}`));
        }
        const returned = getNamedType(field.type);
        note(returned.name, rules.types.get(returned.name));
        if (isAbstractType(returned)) {
          for (const type of schema.getPossibleTypes(returned)) note(type.name, rules.types.get(type.name));
        }
        if (selection.selectionSet && isCompositeType(returned)) walk(selection.selectionSet, returned);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
        if (isCompositeType(type)) {
          note(type.name, rules.types.get(type.name));
          walk(selection.selectionSet, type);
        }
      } else if (!read.has(selection.name.value)) {
        read.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        const type = fragment && schema.getType(fragment.typeCondition.name.value);
        if (fragment && isCompositeType(type)) {
          note(type.name, rules.types.get(type.name));
          walk(fragment.selectionSet, type);
        }
      }
    }
  };
  const root = schema.getRootType(request.operation.operation);
  if (root) walk(request.operation.selectionSet, root);
  return selected;
}

/** The scopes still missing from the alternative the caller is closest to holding. */
function missingScopes(rule: AccessRule, granted: ReadonlySet<string>): string[] {
  let best: string[] | null = null;
  for (const alternative of rule.scopes) {
    const missing = alternative.filter((scope) => !granted.has(scope));
    if (best === null || missing.length < best.length) best = missing;
  }
  return best ?? [];
}

/** Why an operation is refused: who must be signed in, or which scopes are missing. */
export type AccessRefusal =
  | { code: typeof ErrorCode.UNAUTHENTICATED; fields: string[] }
  | { code: typeof ErrorCode.FORBIDDEN; fields: string[]; missingScopes: string[] };

/**
 * Checks an operation against the access rules, before anything runs: null when the caller may run
 * all of it, else why not. The whole operation is refused when any field it selects is refused.
 */
export function checkAccess(rules: AccessRules, request: AccessRequest, caller: Caller): AccessRefusal | null {
  const selected = selectedRules(rules, request);
  if (selected.size === 0) return null;
  if (caller.callerId === null) {
    const fields = [...selected].filter(([, rule]) => rule.authenticated).map(([coordinate]) => coordinate);
    return fields.length > 0 ? { code: ErrorCode.UNAUTHENTICATED, fields } : null;
  }
  const granted = new Set(caller.scopes);
  const fields: string[] = [];
  const missing = new Set<string>();
  for (const [coordinate, rule] of selected) {
    if (rule.scopes.length === 0) continue;
    const lacking = missingScopes(rule, granted);
    if (lacking.length === 0) continue;
    fields.push(coordinate);
    for (const scope of lacking) missing.add(scope);
  }
  return fields.length > 0 ? { code: ErrorCode.FORBIDDEN, fields, missingScopes: [...missing] } : null;
}

/** The client-visible error for a refusal; `http` adds the gateway's status and `WWW-Authenticate` (RFC 6750). */
export function accessError(refusal: AccessRefusal, options: { http?: boolean } = {}) {
  const fields = refusal.fields.join(', ');
  if (refusal.code === ErrorCode.UNAUTHENTICATED) {
    return clientError(
      ErrorCode.UNAUTHENTICATED,
      `Sign in first: ${fields} ${refusal.fields.length > 1 ? 'need' : 'needs'} an authenticated caller.`,
      {
        fields: refusal.fields,
        ...(options.http && { http: { status: 401, headers: new Map([['www-authenticate', 'Bearer']]) } }),
      },
    );
  }
  const scopes = refusal.missingScopes.join(' ');
  return clientError(
    ErrorCode.FORBIDDEN,
    `Missing scope ${scopes}: ${fields} ${refusal.fields.length > 1 ? 'need' : 'needs'} it.`,
    {
      fields: refusal.fields,
      missingScopes: refusal.missingScopes,
      ...(options.http && {
        http: {
          status: 403,
          headers: new Map([['www-authenticate', `Bearer error="insufficient_scope", scope="${scopes}"`]]),
        },
      }),
    },
  );
}

/**
 * A subgraph's own enforcement of its contract's access rules, from the caller in the gateway's signed
 * identity: a request that reaches the subgraph by another path than the gateway is refused too. The
 * refusal is a GraphQL error (HTTP 200), so the gateway passes it on as it is.
 */
export function useAccessRules<TContext extends Caller>(rules: AccessRules): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ schema, document, operation, request, contextValue }) {
          if (!operation) return;
          const refusal = checkAccess(
            rules,
            { schema, document, operation, variables: request.variables },
            contextValue,
          );
          if (refusal) throw accessError(refusal);
        },
      };
    },
  };
}
