/** Codegen mappers (see codegen.ts): the row each type's resolvers receive, as paths from __generated__/. */
export const mappers = {
  Job: '../../../generated/prisma/client#Job as JobRow',
  WebhookSubscription: '../../../generated/prisma/client#WebhookSubscription as WebhookSubscriptionRow',
  WebhookDelivery: '../../../generated/prisma/client#WebhookDelivery as WebhookDeliveryRow',
};
