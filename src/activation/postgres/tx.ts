import type pg from "pg";

const RETRYABLE = new Set(["40P01", "40001"]); // deadlock, serialization failure

/** Runs `work` in a transaction on one pooled connection (opened by `begin`), retrying deadlocks a few times. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, attempts = 4, begin = "BEGIN"): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query(begin);
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      const code = (err as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 20 * attempt + Math.random() * 30));
    } finally {
      client.release();
    }
  }
}

/** Runs `work`'s several reads in one snapshot (a read-only repeatable-read transaction). */
export function withReadSnapshot<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withTransaction(pool, work, 1, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}
