/** Codegen mappers (see codegen.ts): the row each type's resolvers receive, as paths from __generated__/. */
export const mappers = {
  Review: '../../../generated/prisma/client#Review as ReviewRow',
  Product: '../resolvers/refs#EntityRef',
  User: '../resolvers/refs#EntityRef',
  DeleteReviewPayload: '../resolvers/refs#DeleteReviewResult',
};
