import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import {
  getNamedType,
  GraphQLEnumType,
  GraphQLInputObjectType,
  GraphQLList,
  GraphQLNonNull,
  type GraphQLInputType,
  type GraphQLSchema,
  type DocumentNode,
  type OperationDefinitionNode,
  typeFromAST,
  TypeInfo,
  visit,
  visitWithTypeInfo,
} from 'graphql';
import { clientOf } from '../lib/metrics';
import { clientLabel, type DeprecationUsage } from './deprecation-usage';

/** Deprecation facts kept next to the contract: schema/deprecations.json, by schema coordinate. */
export interface DeprecationFacts {
  /** ISO date the element was deprecated. */
  deprecated: string;
  /** ISO date after which it may be removed. */
  sunset: string;
  /** Anchor of its migration note in the docs. */
  migration: string;
}

export const DEPRECATIONS_PATH = join(__dirname, '..', 'schema', 'deprecations.json');

export function loadDeprecations(path: string = DEPRECATIONS_PATH): Record<string, DeprecationFacts> {
  const { $comment: _comment, ...facts } = JSON.parse(readFileSync(path, 'utf8')) as Record<
    string,
    DeprecationFacts
  > & { $comment?: string };
  return facts;
}

/** A deprecated element an operation used. */
export interface UsedDeprecation {
  coordinate: string;
  reason: string;
}

/** Walks a variable's value against its type, collecting deprecated input fields and enum values it uses. */
function walkValue(type: GraphQLInputType, value: unknown, found: Map<string, string>): void {
  if (value === null || value === undefined) return;
  if (type instanceof GraphQLNonNull) return walkValue(type.ofType, value, found);
  if (type instanceof GraphQLList) {
    for (const item of Array.isArray(value) ? value : [value]) walkValue(type.ofType, item, found);
    return;
  }
  if (type instanceof GraphQLEnumType) {
    const enumValue = typeof value === 'string' ? type.getValue(value) : undefined;
    if (enumValue?.deprecationReason) found.set(`${type.name}.${enumValue.name}`, enumValue.deprecationReason);
    return;
  }
  if (type instanceof GraphQLInputObjectType && typeof value === 'object') {
    for (const [name, fieldValue] of Object.entries(value as Record<string, unknown>)) {
      const field = type.getFields()[name];
      if (!field) continue;
      if (field.deprecationReason) found.set(`${type.name}.${name}`, field.deprecationReason);
      walkValue(field.type, fieldValue, found);
    }
  }
}

/**
 * The deprecated fields, arguments, input fields and enum values a document names itself (variables aside),
 * by schema: found by walking the document once per schema (a reloaded supergraph may deprecate more), then
 * kept for as long as the document is (Apollo Server hands every request of the same query text the same
 * DocumentNode), so a request pays only for its variables.
 */
const namedInDocuments = new WeakMap<DocumentNode, { schema: GraphQLSchema; found: ReadonlyMap<string, string> }>();

function deprecationsNamedIn(schema: GraphQLSchema, document: DocumentNode): ReadonlyMap<string, string> {
  const cached = namedInDocuments.get(document);
  if (cached?.schema === schema) return cached.found;
  const found = new Map<string, string>();
  const typeInfo = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field() {
        const field = typeInfo.getFieldDef();
        const parent = typeInfo.getParentType();
        if (field?.deprecationReason && parent) found.set(`${parent.name}.${field.name}`, field.deprecationReason);
      },
      Argument(node) {
        const argument = typeInfo.getArgument();
        const field = typeInfo.getFieldDef();
        const parent = typeInfo.getParentType();
        if (argument?.deprecationReason && field && parent)
          found.set(`${parent.name}.${field.name}(${node.name.value}:)`, argument.deprecationReason);
      },
      ObjectField(node) {
        const parent = typeInfo.getParentInputType();
        const named = parent ? getNamedType(parent) : undefined;
        if (named instanceof GraphQLInputObjectType) {
          const field = named.getFields()[node.name.value];
          if (field?.deprecationReason) found.set(`${named.name}.${field.name}`, field.deprecationReason);
        }
      },
      EnumValue() {
        const value = typeInfo.getEnumValue();
        const type = typeInfo.getInputType();
        const named = type ? getNamedType(type) : undefined;
        if (value?.deprecationReason && named) found.set(`${named.name}.${value.name}`, value.deprecationReason);
      },
    }),
  );
  namedInDocuments.set(document, { schema, found });
  return found;
}

/** Every deprecated field, argument, input field and enum value the operation uses, literals and variables. */
export function deprecationsUsed(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown> = {},
): UsedDeprecation[] {
  // A copy: the variables' finds are this request's, and come after the document's, as they always have.
  const found = new Map(deprecationsNamedIn(schema, document));
  for (const definition of operation.variableDefinitions ?? []) {
    const type = typeFromAST(schema, definition.type as never) as GraphQLInputType | undefined;
    if (type) walkValue(type, variables[definition.variable.name.value], found);
  }
  return [...found].map(([coordinate, reason]) => ({ coordinate, reason }));
}

export interface DeprecationNoticeOptions {
  /** Deprecation and sunset dates by coordinate. Defaults to schema/deprecations.json. */
  facts?: Record<string, DeprecationFacts>;
  /** Base URL of the migration notes (the Link header). Defaults to the README's section. */
  docsUrl?: string;
  /** Where each use is counted per client. Defaults to none. */
  usage?: DeprecationUsage;
  /** Told of each use (metrics). Defaults to none. */
  onUse?: (coordinate: string, client: string) => void;
}

const epochSeconds = (isoDate: string) => Math.floor(Date.parse(`${isoDate}T00:00:00Z`) / 1000);

/**
 * Tells clients when an operation uses something deprecated: `Deprecation` (RFC 9745, the earliest
 * deprecation date), `Sunset` (RFC 8594, the earliest sunset), a `Link` to the migration note, and
 * `extensions.deprecations` listing each element. Operations that use nothing deprecated get none.
 */
export function useDeprecationNotices<TContext extends BaseContext>(
  options: DeprecationNoticeOptions = {},
): ApolloServerPlugin<TContext> {
  const facts = options.facts ?? loadDeprecations();
  const docsUrl =
    options.docsUrl ?? 'https://github.com/storefront-supergraph/storefront-supergraph/blob/main/README.md';
  return {
    async requestDidStart() {
      let used: Array<UsedDeprecation & Partial<DeprecationFacts>> = [];
      return {
        async didResolveOperation({ schema, document, operation, request }) {
          if (!operation) return;
          used = deprecationsUsed(schema, document, operation, request.variables ?? {}).map((item) => ({
            ...item,
            ...facts[item.coordinate],
          }));
          if (used.length) {
            const headers = request.http?.headers;
            const { name, version } = headers ? clientOf(headers) : { name: null, version: null };
            const client = clientLabel(name, version);
            for (const item of used) options.onUse?.(item.coordinate, client);
            await options.usage?.record(
              used.map((item) => item.coordinate),
              client,
            );
          }
        },
        async willSendResponse({ response }) {
          if (!used.length) return;
          const dated = used.filter((item) => item.deprecated && item.sunset);
          if (dated.length) {
            const deprecated = dated.map((item) => item.deprecated!).sort()[0]!;
            const sunset = dated.map((item) => item.sunset!).sort()[0]!;
            const first = dated.find((item) => item.sunset === sunset)!;
            response.http.headers.set('deprecation', `@${epochSeconds(deprecated)}`);
            response.http.headers.set('sunset', new Date(`${sunset}T00:00:00Z`).toUTCString());
            response.http.headers.set('link', `<${docsUrl}#${first.migration}>; rel="deprecation"; type="text/html"`);
          }
          const body = response.body;
          if (body?.kind === 'single') {
            const deprecations = used.map(({ coordinate, reason, deprecated, sunset, migration }) => ({
              coordinate,
              reason,
              ...(deprecated ? { deprecated, sunset, migration: `${docsUrl}#${migration}` } : {}),
            }));
            body.singleResult.extensions = { ...body.singleResult.extensions, deprecations };
          }
        },
      };
    },
  };
}
