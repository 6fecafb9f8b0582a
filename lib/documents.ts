import { getDirectiveValues, GraphQLIncludeDirective, GraphQLSkipDirective, Kind, type DocumentNode, type FragmentDefinitionNode, type SelectionNode } from 'graphql';

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
