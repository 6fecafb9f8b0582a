/** Codegen mappers (see codegen.ts): the row each type's resolvers receive, as paths from __generated__/. */
export const mappers = {
  Product: '../../../generated/prisma/client#Product as ProductRow',
};
