import type { EntityCache } from '../../lib/entity-cache';
import { keyedLoader, type LoaderOptions } from '../../lib/loaders';
import type { AccountsDb } from './context';

/** Cached User rows; bump the version whenever the cached shape (the model's columns) changes. */
export const USER_CACHE = { type: 'User', version: 1 } as const;

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(db: AccountsDb, options: LoaderOptions = {}, cache: EntityCache | null = null) {
  return {
    userById: keyedLoader((ids: string[]) => db.user.findMany({ where: { id: { in: ids } } }), (user) => user.id, options, cache?.type(USER_CACHE.type, USER_CACHE.version)),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
