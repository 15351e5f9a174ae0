/** The input of one day for the packed-layout experiments (packed-day.ts, packed8-day.ts). */
import type pg from "pg";
import { dateOfX, insertActivity } from "../generate.js";
import { readInt4Array } from "./binary-copy.js";

/** Inserts the generated activity of day x = X unless it is there already; answers its date. */
export async function ensureDayActivity(pool: pg.Pool, factId: number, x: number): Promise<string> {
  const date = dateOfX(x);
  const present = (await pool.query(`SELECT 1 FROM activity_day WHERE fact_id = $1 AND activity_date = $2 LIMIT 1`, [factId, date])).rowCount;
  if (!present) console.log(`inserted ${await insertActivity(pool, factId, x, x)} activity rows of ${date}`);
  return date;
}

/** The keys of the users active on a date, ascending, in one binary array. */
export async function readDayActives(c: pg.ClientBase, factId: number, date: string): Promise<Int32Array> {
  const res = await c.query(
    `SELECT array_send(COALESCE(array_agg(user_key ORDER BY user_key), '{}')) AS a FROM activity_day WHERE fact_id = $1 AND activity_date = $2`,
    [factId, date],
  );
  return readInt4Array(res.rows[0].a);
}
