import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Resolver types generated from the contract in schema/. Mappers tie each GraphQL type to the row a
 * resolver really returns, so a resolver that forgets a field fails type-checking.
 */
const common = {
  federation: true,
  useIndexSignature: true,
  scalars: { DateTime: 'Date' },
  enumsAsTypes: true,
  avoidOptionals: { field: true, inputValue: false, object: false, defaultValue: false },
  maybeValue: 'T | null',
};

const config: CodegenConfig = {
  overwrite: true,
  generates: {
    'subgraphs/accounts/__generated__/resolvers-types.ts': {
      schema: 'schema/accounts.graphql',
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        ...common,
        contextType: '../context#Context',
        mappers: {
          User: '../loaders#PublicUser as UserRow',
        },
      },
    },
    'subgraphs/catalog/__generated__/resolvers-types.ts': {
      schema: 'schema/catalog.graphql',
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        ...common,
        contextType: '../context#Context',
        mappers: {
          Product: '../../../generated/prisma/client#Product as ProductRow',
        },
      },
    },
    'subgraphs/reviews/__generated__/resolvers-types.ts': {
      schema: 'schema/reviews.graphql',
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        ...common,
        contextType: '../context#Context',
        mappers: {
          Review: '../../../generated/prisma/client#Review as ReviewRow',
          Product: '../resolvers/refs#EntityRef',
          User: '../resolvers/refs#EntityRef',
          DeleteReviewPayload: '../resolvers/refs#DeleteReviewResult',
        },
      },
    },
  },
};

export default config;
