import { keyedLoader, type LoaderOptions } from '../../lib/loaders';
import type { AccountsDb } from './context';

/** Created once per request: batching within a request, never a cache across requests. */
export function createLoaders(db: AccountsDb, options: LoaderOptions = {}) {
  return {
    userById: keyedLoader((ids: string[]) => db.user.findMany({ where: { id: { in: ids } } }), (user) => user.id, options),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
