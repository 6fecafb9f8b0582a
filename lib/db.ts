import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client';

export type { PrismaClient };

export interface DatabaseClient {
  prisma: PrismaClient;
  pool: pg.Pool;
  /** True when PostgreSQL answers a trivial query. Used by /readyz. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * A Prisma client over our own pg pool (driver adapter, no Rust engine). Owning the pool lets
 * readiness checks and shutdown use it directly.
 */
export function createDatabaseClient(url: string, poolSize = 10): DatabaseClient {
  const pool = new pg.Pool({ connectionString: url, max: poolSize, idleTimeoutMillis: 30_000 });
  // An idle client that dies (server restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    ping: async () => {
      try {
        await pool.query('SELECT 1');
        return true;
      } catch {
        return false;
      }
    },
    close: async () => {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
