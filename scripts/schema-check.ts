import { readFileSync } from 'node:fs';
import { Supergraph } from '@apollo/federation-internals';
import {
  BreakingChangeType,
  findBreakingChanges,
  findDangerousChanges,
  isEnumType,
  isInputObjectType,
  isObjectType,
  type GraphQLSchema,
} from 'graphql';
import { unguardedWrites } from '../gateway/access-control';
import { DeprecationUsage } from '../gateway/deprecation-usage';
import { loadDeprecations, type DeprecationFacts } from '../gateway/deprecations';
import { SUPERGRAPH_PATH } from '../gateway/supergraph-file';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { connectRedis } from '../lib/redis';
import { composeSupergraph, type SubgraphSdls } from './compose';

export interface SchemaChange {
  /** `unguarded`: a write that does not say who may make it (never allowed). */
  kind: 'breaking' | 'dangerous' | 'safe' | 'unguarded';
  description: string;
  /** For a removal: the schema coordinate removed. */
  coordinate?: string;
  /** For a breaking change: whether it may ship, and why (or why not). */
  allowed?: boolean;
  why?: string;
}

/** The schema coordinate a removal names, from graphql-js's descriptions. */
function removedCoordinate(type: string, description: string): string | undefined {
  if (type === BreakingChangeType.FIELD_REMOVED || type === BreakingChangeType.TYPE_REMOVED)
    return /^(\S+) was removed\.$/.exec(description)?.[1];
  if (type === BreakingChangeType.VALUE_REMOVED_FROM_ENUM) {
    const match = /^(\S+) was removed from enum type (\S+)\.$/.exec(description);
    return match ? `${match[2]}.${match[1]}` : undefined;
  }
  if (type === BreakingChangeType.ARG_REMOVED) {
    const match = /^(\S+) arg (\S+) was removed\.$/.exec(description);
    return match ? `${match[1]}(${match[2]}:)` : undefined;
  }
  return undefined;
}

function isDeprecatedIn(schema: GraphQLSchema, coordinate: string): boolean {
  const argument = /^(\w+)\.(\w+)\((\w+):\)$/.exec(coordinate);
  if (argument) {
    const type = schema.getType(argument[1]!);
    return (
      isObjectType(type) &&
      Boolean(type.getFields()[argument[2]!]?.args.find((arg) => arg.name === argument[3])?.deprecationReason)
    );
  }
  const [typeName, member] = coordinate.split('.');
  const type = schema.getType(typeName!);
  if (!member) return false;
  if (isEnumType(type)) return Boolean(type.getValue(member)?.deprecationReason);
  if (isObjectType(type) || isInputObjectType(type)) return Boolean(type.getFields()[member]?.deprecationReason);
  return false;
}

/** Fields, arguments and enum values present in `next` and not in `previous`: safe additions. */
function additions(previous: GraphQLSchema, next: GraphQLSchema): string[] {
  const added: string[] = [];
  for (const type of Object.values(next.getTypeMap())) {
    if (type.name.startsWith('__')) continue;
    const old = previous.getType(type.name);
    if (!old) {
      added.push(`${type.name} was added.`);
      continue;
    }
    if (isEnumType(type) && isEnumType(old))
      for (const value of type.getValues())
        if (!old.getValue(value.name)) added.push(`${type.name}.${value.name} was added.`);
    if ((isObjectType(type) && isObjectType(old)) || (isInputObjectType(type) && isInputObjectType(old))) {
      for (const field of Object.values(type.getFields())) {
        const oldField = old.getFields()[field.name];
        if (!oldField) added.push(`${type.name}.${field.name} was added.`);
        else if ('args' in field && 'args' in oldField)
          for (const arg of field.args)
            if (!oldField.args.some((a) => a.name === arg.name))
              added.push(`${type.name}.${field.name} arg ${arg.name} was added.`);
      }
    }
  }
  return added;
}

export interface CheckOptions {
  /** The supergraph committed (the schema clients use now). */
  committedSupergraph: string;
  /** The subgraph SDLs to compose (the proposed schema). Defaults to schema/. */
  subgraphSdls?: SubgraphSdls;
  facts: Record<string, DeprecationFacts>;
  /** Recorded uses of a coordinate, or null when usage is unknown (no Redis). */
  usesOf: (coordinate: string) => Promise<number | null>;
  /** Defaults to now. */
  today?: Date;
}

/**
 * Composes the subgraphs (throwing with every composition error), compares the API schema with the
 * committed one and classifies every change. A breaking removal may ship only when the element was
 * deprecated, its sunset date has passed and no client used it (recorded usage is zero). A write
 * without `@authenticated` or `@requiresScopes` never ships.
 */
export async function checkSchema(options: CheckOptions): Promise<{ ok: boolean; changes: SchemaChange[] }> {
  const supergraph = composeSupergraph(options.subgraphSdls);
  const next = Supergraph.build(supergraph, { supportedFeatures: null }).apiSchema().toGraphQLJSSchema();
  // Only the API schema is read: which features a supergraph may use is the gateway's check.
  const previous = Supergraph.build(options.committedSupergraph, { supportedFeatures: null })
    .apiSchema()
    .toGraphQLJSSchema();
  const today = (options.today ?? new Date()).toISOString().slice(0, 10);
  const changes: SchemaChange[] = [];
  for (const change of findBreakingChanges(previous, next)) {
    const coordinate = removedCoordinate(change.type, change.description);
    let allowed = false;
    let why = 'a breaking change to an element that was not deprecated';
    if (coordinate && isDeprecatedIn(previous, coordinate)) {
      const facts = options.facts[coordinate];
      const uses = await options.usesOf(coordinate);
      if (!facts) why = `${coordinate} is deprecated but has no entry in schema/deprecations.json`;
      else if (facts.sunset > today) why = `the sunset of ${coordinate} is ${facts.sunset}`;
      else if (uses === null) why = `usage of ${coordinate} is unknown (set REDIS_URL to the gateways' Redis)`;
      else if (uses > 0) why = `${coordinate} was used ${uses} time(s) since it was deprecated (npm run schema:usage)`;
      else {
        allowed = true;
        why = `deprecated, past its sunset (${facts.sunset}) and unused`;
      }
    }
    changes.push({ kind: 'breaking', description: change.description, coordinate, allowed, why });
  }
  for (const change of findDangerousChanges(previous, next))
    changes.push({ kind: 'dangerous', description: change.description });
  for (const description of additions(previous, next)) changes.push({ kind: 'safe', description });
  for (const coordinate of unguardedWrites(supergraph)) {
    changes.push({
      kind: 'unguarded',
      description: `${coordinate} is a write without @authenticated or @requiresScopes.`,
      coordinate,
      allowed: false,
      why: 'every write must say who may make it',
    });
  }
  return {
    ok: changes.every((change) => (change.kind !== 'breaking' && change.kind !== 'unguarded') || change.allowed),
    changes,
  };
}

if (require.main === module) {
  runMain(async () => {
    const config = loadConfig();
    const redis = config.REDIS_URL ? connectRedis(config.REDIS_URL, createLogger('schema-check', 'silent')) : undefined;
    try {
      const ready = redis ? await redis.ready(3_000) : false;
      const usage = ready ? new DeprecationUsage(config.REDIS_NAMESPACE, redis) : undefined;
      const { ok, changes } = await checkSchema({
        committedSupergraph: readFileSync(SUPERGRAPH_PATH, 'utf8'),
        facts: loadDeprecations(),
        usesOf: async (coordinate) =>
          usage ? (await usage.report([coordinate])).reduce((sum, record) => sum + record.count, 0) : null,
      });
      if (!changes.length) console.log('No change to the API schema.');
      for (const change of changes) {
        const verdict =
          change.kind === 'breaking'
            ? change.allowed
              ? 'breaking, allowed'
              : 'BREAKING'
            : change.kind === 'unguarded'
              ? 'UNGUARDED WRITE'
              : change.kind;
        console.log(`${verdict.padEnd(17)} ${change.description}${change.why ? ` (${change.why})` : ''}`);
      }
      if (changes.some((change) => change.kind === 'unguarded'))
        throw new Error(
          'Schema check failed: every Mutation field must say who may call it, with @authenticated or @requiresScopes.',
        );
      if (!ok)
        throw new Error(
          'Schema check failed: a breaking change would reach clients. Deprecate first, wait for the sunset and for usage to reach zero.',
        );
      console.log('Schema check passed.');
    } finally {
      await redis?.close();
    }
  });
}
