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
  // A client losing its server (a restart) must not crash the process: idle ones report through the
  // pool, checked-out ones (a run's lock or transaction) through their own 'error' event, which has no
  // other listener; their pending and next queries fail, and the pool drops them when released.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
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
