import { Supergraph } from '@apollo/federation-internals';
import type { GraphQLRequestContext } from '@apollo/server';
import { Kind, parse, print, visit, type DirectiveNode, type GraphQLSchema } from 'graphql';
import {
  accessError,
  checkAccess,
  ENFORCED_SECURITY_FEATURES,
  supergraphAccessRules,
  type AccessRules,
  type Caller,
} from '../lib/authorization';

/**
 * Hands @apollo/gateway a supergraph it will load. Composition links `@authenticated` and
 * `@requiresScopes` `for: SECURITY`, and the gateway, which does not enforce them, refuses any
 * supergraph with a SECURITY feature it does not know (rightly: ignoring one would serve what the
 * contract forbids). This gateway enforces those two itself (useAccessControl), so their links lose the
 * `for:` purpose, and only theirs: any other SECURITY feature still stops the supergraph from loading.
 * The directives stay where they are, so the rules are read from the result as from the original.
 */
export function supergraphForGateway(supergraphSdl: string): string {
  const enforced = new Set(ENFORCED_SECURITY_FEATURES);
  let changed = false;
  const edited = visit(parse(supergraphSdl), {
    Directive(node: DirectiveNode) {
      if (node.name.value !== 'link') return undefined;
      const url = node.arguments?.find((argument) => argument.name.value === 'url')?.value;
      if (url?.kind !== Kind.STRING || !enforced.has(url.value)) return undefined;
      changed = true;
      return { ...node, arguments: node.arguments!.filter((argument) => argument.name.value !== 'for') };
    },
  });
  return changed ? print(edited) : supergraphSdl;
}

/** The rules of a supergraph's `@authenticated` and `@requiresScopes` (either form of the SDL). */
export function accessRulesOf(supergraphSdl: string): AccessRules {
  return supergraphAccessRules(Supergraph.build(supergraphForGateway(supergraphSdl)).schema);
}

/**
 * Enforces the contract's `@authenticated` and `@requiresScopes` at the gateway, which @apollo/gateway
 * does not do itself: `authorize` checks every field the operation selects (fragments, variables and
 * `@skip`/`@include` included) against the caller before any subgraph is called, and refuses the whole
 * operation: UNAUTHENTICATED (401, `WWW-Authenticate: Bearer`) without a signed-in caller, FORBIDDEN
 * (403, `error="insufficient_scope"`) naming the missing scopes. The rules follow the supergraph the
 * gateway serves: `onSchemaLoadOrUpdate` reads them for each API schema it loads, live reloads included,
 * and a request on a schema without rules is refused (the file watcher reads a new supergraph's rules
 * before swapping it in, so one whose rules cannot be read is refused like a broken one).
 */
export function useAccessControl() {
  const bySchema = new WeakMap<GraphQLSchema, AccessRules>();
  return {
    onSchemaLoadOrUpdate({ apiSchema, coreSupergraphSdl }: { apiSchema: GraphQLSchema; coreSupergraphSdl: string }) {
      bySchema.set(apiSchema, accessRulesOf(coreSupergraphSdl));
    },
    authorize({ schema, document, operation, request, contextValue }: GraphQLRequestContext<Caller>): void {
      if (!operation || !document) return;
      const rules = bySchema.get(schema);
      // Fails closed: a schema whose rules could not be read serves nobody (a masked internal error).
      if (!rules) throw new Error('No access rules were read for the schema this request runs on.');
      const refusal = checkAccess(rules, { schema, document, operation, variables: request.variables }, contextValue);
      if (refusal) throw accessError(refusal, { http: true });
    },
  };
}

/**
 * The writes a supergraph leaves open: every `Mutation` field must say who may make it, with
 * `@authenticated` or `@requiresScopes` on the field itself. `npm run schema:check` and a test fail on any.
 */
export function unguardedWrites(supergraphSdl: string): string[] {
  const supergraph = Supergraph.build(supergraphForGateway(supergraphSdl));
  const rules = supergraphAccessRules(supergraph.schema);
  const mutation = supergraph.apiSchema().toGraphQLJSSchema().getMutationType();
  return Object.keys(mutation?.getFields() ?? {})
    .map((name) => `${mutation!.name}.${name}`)
    .filter((coordinate) => !rules.fields.get(coordinate)?.authenticated);
}
