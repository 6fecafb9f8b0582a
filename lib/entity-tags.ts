import type { ApolloServerPlugin, BaseContext } from '@apollo/server';

/**
 * The entities a subgraph answer holds and the entities a write changed, named as tags: `Product:<id>` for
 * one entity, `Product` for lists of that type (a list changes when any member, or membership, does). The
 * gateway's response cache stores an answer with the tags its subgraphs held and drops it when a mutation
 * reports one of them changed (gateway/response-cache.md). Loaders record them (lib/loaders.ts): a read
 * holds what it loaded, an invalidation changes what it forgot.
 */

/** Header with which the gateway asks a subgraph to list the entities its answer holds (only the response cache needs them). */
export const ENTITY_TAGS_HEADER = 'x-storefront-entity-tags';

/** `extensions` fields of a subgraph answer: what it holds (when asked) and what its writes changed. */
export const HELD_EXTENSION = 'entityTags';
export const CHANGED_EXTENSION = 'changedEntityTags';

/** The tag of one entity. */
export const entityTag = (type: string, id: string) => `${type}:${id}`;

/** One request's tags (lib/subgraph.ts makes one per request and reports it in the answer's extensions). */
export class EntityTags {
  readonly held = new Set<string>();
  readonly changed = new Set<string>();

  /** @param collecting whether reads are recorded: only when the gateway asked (ENTITY_TAGS_HEADER). */
  constructor(readonly collecting = false) {}

  /** This answer holds entities of `type` with these ids; none: a list of the type (its membership). */
  hold(type: string, ids?: Iterable<string>): void {
    if (!this.collecting) return;
    if (!ids) {
      this.held.add(type);
      return;
    }
    for (const id of ids) this.held.add(entityTag(type, id));
  }

  /** A write changed entities of `type` with these ids; with `lists` (the default), every list of the type too. */
  change(type: string, ids: Iterable<string>, { lists = true } = {}): void {
    for (const id of ids) this.changed.add(entityTag(type, id));
    if (lists) this.changed.add(type);
  }
}

/**
 * Reports a request's tags in its answer's `extensions`: what it holds when the gateway asked, and
 * what its writes changed whenever there is any (a mutation's answer must say, even if nobody asked).
 */
export function useEntityTags<TContext extends BaseContext & { tags?: EntityTags }>(): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }) {
          const tags = contextValue.tags;
          if (!tags || response.body.kind !== 'single') return;
          if (!tags.collecting && tags.changed.size === 0) return;
          const result = response.body.singleResult;
          result.extensions = {
            ...result.extensions,
            ...(tags.collecting && { [HELD_EXTENSION]: [...tags.held] }),
            ...(tags.changed.size > 0 && { [CHANGED_EXTENSION]: [...tags.changed] }),
          };
        },
      };
    },
  };
}
