import type pg from "pg";

/**
 * Runs `work` while `table` is locked in SHARE mode by a transaction of the test's own: every write to
 * it (a job's, say) waits until `work` is done, so a test can look at the state before those writes.
 */
export async function whileTableLocked<T>(pool: pg.Pool, table: string, work: () => Promise<T>): Promise<T> {
  const hold = await pool.connect();
  try {
    await hold.query("BEGIN");
    await hold.query(`LOCK TABLE ${table} IN SHARE MODE`);
    return await work();
  } finally {
    await hold.query("ROLLBACK").catch(() => {});
    hold.release();
  }
}
