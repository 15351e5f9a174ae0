import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/prisma/client.js";

export type PrismaTransaction = Parameters<Parameters<PrismaClient["$transaction"]>[0]>[0];
/** Repository functions take either, so they compose inside a caller's transaction. */
export type PrismaClientOrTransaction = PrismaClient | PrismaTransaction;

// DATE columns come back as 'YYYY-MM-DD' strings: a calendar date is not an instant.
pg.types.setTypeParser(pg.types.builtins.DATE, (v) => v);
// int8 (count(*), sums) as numbers: our counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

export interface Database {
  pool: pg.Pool;
  prisma: PrismaClient;
  close(): Promise<void>;
}

/** One pg.Pool shared by Prisma (through the adapter) and the layer engine's set-based SQL. */
export function createDatabase(url: string, max = 10): Database {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000 });
  // An idle client losing its server (restart) must not crash the process.
  pool.on("error", () => {});
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    pool,
    prisma,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
