/** Codegen mappers (see codegen.ts): the row each type's resolvers receive, as paths from __generated__/. */
export const mappers = {
  User: '../loaders#PublicUser as UserRow',
};
