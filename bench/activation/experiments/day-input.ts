/** One day for the packed-layout experiments (packed-day.ts, packed8-day.ts): its input, and the timed run of its write path. */
import type pg from "pg";
import { GRAINS, dateToDay, periodOfDay, type Grain } from "../../../src/activation/periods.js";
import { dateOfX, insertActivity } from "../generate.js";
import { readInt4Array } from "../../../src/activation/postgres/binary-copy.js";

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

const log = (label: string, t0: number) => console.log(`${(performance.now() - t0).toFixed(1).padStart(9)} ms  ${label}`);

/**
 * The write path of day x = X for every grain in one transaction, timed: the day's activity inserted if
 * missing, a CHECKPOINT, the actives read once, then `grainWork` per grain; rolled back unless `keep`.
 */
export async function runDay(
  pool: pg.Pool,
  factId: number,
  x: number,
  keep: boolean,
  grainWork: (c: pg.PoolClient, g: number, grain: Grain, P: number, actives: Int32Array) => Promise<void>,
): Promise<void> {
  const date = await ensureDayActivity(pool, factId, x);
  await pool.query(`CHECKPOINT`);
  const c = await pool.connect();
  try {
    const t0 = performance.now();
    await c.query("BEGIN");
    let t1 = performance.now();
    const actives = await readDayActives(c, factId, date);
    log(`read ${actives.length} active users`, t1);
    const day = dateToDay(date);
    for (const [g, grain] of GRAINS.entries()) await grainWork(c, g, grain, periodOfDay(grain, day), actives);
    t1 = performance.now();
    await c.query(keep ? "COMMIT" : "ROLLBACK");
    log(keep ? "COMMIT" : "ROLLBACK", t1);
    log("the day, all grains", t0);
  } finally {
    c.release();
  }
}
