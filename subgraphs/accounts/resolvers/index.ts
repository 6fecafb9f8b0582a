import { DateTimeResolver } from 'graphql-scalars';
import { isUuid, parseId } from '../../../lib/ids';
import { dateSeek, pageRequest, seekQuery, toConnection } from '../../../lib/pagination';
import type { Resolvers } from '../__generated__/resolvers-types';

const USERS_SORT = 'users:createdAt:desc';

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  Query: {
    user: (_root, { id }, { loaders }) => loaders.userById.load(parseId(id, 'id')),
    users: async (_root, args, { db }) => {
      const page = pageRequest(args, USERS_SORT);
      const { where, orderBy } = seekQuery('createdAt', 'desc', page.after, dateSeek);
      const rows = await db.user.findMany({ where, orderBy, take: page.size + 1 });
      return toConnection(rows, page, USERS_SORT, (user) => user.createdAt.toISOString());
    },
    me: (_root, _args, { callerId, loaders }) => (callerId ? loaders.userById.load(callerId) : null),
  },
  User: {
    // A representation with a malformed id cannot match a row; answer null rather than fail the batch.
    __resolveReference: (ref, { loaders }) => (isUuid(ref.id) ? loaders.userById.load(ref.id.toLowerCase()) : null),
  },
};
