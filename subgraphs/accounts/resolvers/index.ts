import { DateTimeResolver } from 'graphql-scalars';
import { isUuid, parseId } from '../../../lib/ids';
import { pageRequest, seekQuery, toConnection, type Ordering } from '../../../lib/pagination';
import type { Resolvers } from '../__generated__/resolvers-types';
import { PUBLIC_USER_COLUMNS } from '../loaders';

const NEWEST_FIRST: Ordering<'createdAt'> = {
  key: 'users:createdAt:desc',
  field: 'createdAt',
  direction: 'desc',
  kind: 'date',
};

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  Query: {
    user: (_root, { id }, { loaders }) => loaders.userById.load(parseId(id, 'id')),
    users: async (_root, args, { db, tags }) => {
      tags.hold('User');
      const page = pageRequest(args, NEWEST_FIRST);
      const rows = await db.user.findMany({ ...seekQuery(NEWEST_FIRST, page), select: PUBLIC_USER_COLUMNS });
      return toConnection(rows, page, NEWEST_FIRST);
    },
    me: (_root, _args, { callerId, loaders }) => (callerId ? loaders.userByIdUncached.load(callerId) : null),
  },
  User: {
    // A representation with a malformed id cannot match a row; answer null rather than fail the batch.
    __resolveReference: (ref, { loaders }) => (isUuid(ref.id) ? loaders.userById.load(ref.id.toLowerCase()) : null),
    // Personal data: only the user themself sees it, read for them alone and never cached.
    email: async (user, _args, { callerId, loaders }) =>
      callerId === user.id ? ((await loaders.emailById.load(user.id))?.email ?? null) : null,
  },
};
