import {
  getDirectiveValues,
  getVariableValues,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionNode,
} from 'graphql';

/** Whether a selection runs given the variables (`@skip`/`@include`); an unreadable condition counts as included. */
export function isIncluded(node: SelectionNode, variables: Record<string, unknown> | undefined): boolean {
  if (!node.directives?.length) return true;
  try {
    if (getDirectiveValues(GraphQLSkipDirective, node, variables)?.if === true) return false;
    if (getDirectiveValues(GraphQLIncludeDirective, node, variables)?.if === false) return false;
  } catch {
    // Variables that do not coerce are reported by execution; here the selection is assumed to run.
  }
  return true;
}

/** The document's named fragments, by name. */
export function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  return fragments;
}

/**
 * The variables an operation runs with: the client's values coerced, with the operation's defaults
 * filled in (`$withEmail: Boolean = false`), as execution will see them. When they do not coerce,
 * execution reports it; until then the raw values stand (and unreadable conditions count as included).
 */
export function operationVariables(
  schema: GraphQLSchema,
  operation: OperationDefinitionNode,
  raw: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const result = getVariableValues(schema, operation.variableDefinitions ?? [], raw ?? {});
  return result.coerced ?? raw ?? {};
}
