import { defineConfig } from 'prisma/config';

// Used by the Prisma CLI (generate). Migrations run through scripts/db/migrate.ts.
export default defineConfig({
  // Every subgraph's schema.prisma (subgraphs/<name>/) and subgraphs/schema.prisma, read recursively.
  schema: 'subgraphs',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/storefront' },
});
