import type { User } from '../../generated/prisma/client';
import { queryRows, type PrismaClient } from '../../lib/db';
import { keyedLoader } from '../../lib/loaders';
import type { LoaderDependencies } from '../../lib/subgraph-definition';

/** The accounts subgraph sees only the tables it owns. */
export type AccountsDb = Pick<PrismaClient, 'user'>;

/**
 * A user as anyone may see it. The email is personal: it is never in this row, never cached, and
 * read (batched) only when the user asks for their own.
 */
export type PublicUser = Omit<User, 'email'>;
export const PUBLIC_USER_COLUMNS = { id: true, displayName: true, createdAt: true } as const satisfies Record<
  keyof PublicUser,
  true
>;

/**
 * PublicUser rows by id, exactly PUBLIC_USER_COLUMNS under the model's field names, in one statement through
 * the pool (lib/db.ts queryRows): the storefront asks for a hundred authors per page, and Prisma's findMany
 * cost several times what the statement does.
 */
const PUBLIC_USERS_BY_ID = `SELECT id, display_name AS "displayName", created_at AS "createdAt"
  FROM users WHERE id = ANY($1::uuid[])`;
const publicUsersById = (db: AccountsDb, ids: string[]) => queryRows<PublicUser>(db, PUBLIC_USERS_BY_ID, [ids]);

/** Cached PublicUser rows; bump the version whenever the cached shape changes. */
export const USER_CACHE = { subgraph: 'accounts', name: 'User', version: 1 } as const;

/** Created once per request: batching within a request; the entity cache is what spans requests. */
export function createLoaders(
  db: AccountsDb,
  { loaderOptions: options, cache, tags }: Pick<LoaderDependencies, 'loaderOptions' | 'cache' | 'tags'>,
) {
  return {
    userById: keyedLoader(
      (ids: string[]) => publicUsersById(db, ids),
      (user) => user.id,
      options,
      cache?.type<PublicUser>(USER_CACHE),
      { type: 'User', tags },
    ),
    /** The same rows read straight from the database: `me` is never answered from a cache. */
    userByIdUncached: keyedLoader(
      (ids: string[]) => publicUsersById(db, ids),
      (user) => user.id,
      options,
    ),
    emailById: keyedLoader(
      (ids: string[]) => db.user.findMany({ where: { id: { in: ids } }, select: { id: true, email: true } }),
      (user) => user.id,
      options,
    ),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
