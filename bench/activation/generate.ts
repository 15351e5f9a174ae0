import type pg from "pg";

/**
 * A deterministic synthetic activity log, generated set-based inside PostgreSQL.
 *
 * Time is counted in days x relative to an anchor day (x = 0 is the "one more day"; the history of a
 * fact with H days is x = -H … -1). Every user has parameters drawn from a hash of its key, so the same
 * user behaves the same in every fact whatever its history length: a fact with 90 days and one with
 * 360 days hold the same users with the same recent behaviour, only the older history differs.
 *
 * - signup day: exponential growth of the user base (density ∝ e^(x/100)) over the last 600 days;
 * - type: loyal/streaky (12%, p 0.70–0.95 every day), regular (20%, p 0.35–0.65 in "engaged" weeks,
 *   a tenth of that in the other quarter of weeks), churner (38%, active ~20 days on average after
 *   signup, then gone), returner (15%, a first stint, a break of 14–103 days, then a second stint
 *   that lasts for good half of the time), casual (15%, p 0.03–0.10 every day);
 * - a day is active when hash(user, day) < p (× the week factor), so streaks follow from p.
 * With 1M users and 180 days: ≈21M active user-days, ≈258k actives on day x = 0.
 */
export const ANCHOR_DATE = "2026-06-30"; // the date of x = 0

/** SQL expression of a uniform [0, 1) draw from an integer key. */
const u01 = (key: string) => `((hashint8(${key}) & 2147483647)::float8 / 2147483648.0)`;

export async function createUsersAndParams(client: pg.ClientBase, users: number): Promise<void> {
  // Stored in user order: the per-day scans below then yield rows in activity_day's key order.
  await client.query(
    `INSERT INTO app_user (user_key, external_id) SELECT u, 'user_' || u FROM generate_series(1, $1::int) u`,
    [users],
  );
  await client.query(`SELECT setval(pg_get_serial_sequence('app_user', 'user_key'), $1::int)`, [users]);
  await client.query(`DROP TABLE IF EXISTS bench_user_param`);
  await client.query(
    `CREATE UNLOGGED TABLE bench_user_param AS
     SELECT u, t, p,
            xs AS lo1,
            CASE WHEN t IN (2, 3) THEN xs + l1 - 1 ELSE 100000 END AS hi1,
            CASE WHEN t = 3 THEN xs + l1 + b END AS lo2,
            CASE WHEN t = 3 THEN CASE WHEN h5 < 0.5 THEN 100000 ELSE xs + l1 + b + l2 - 1 END END AS hi2
     FROM (
       SELECT u,
              CASE WHEN h1 < 0.12 THEN 0 WHEN h1 < 0.32 THEN 1 WHEN h1 < 0.70 THEN 2 WHEN h1 < 0.85 THEN 3 ELSE 4 END AS t,
              CASE WHEN h1 < 0.12 THEN 0.70 + 0.25 * h2 WHEN h1 < 0.32 THEN 0.35 + 0.30 * h2 WHEN h1 < 0.70 THEN 0.30 + 0.50 * h2
                   WHEN h1 < 0.85 THEN 0.30 + 0.40 * h2 ELSE 0.03 + 0.07 * h2 END AS p,
              -floor(-100 * ln(1 - h6 * (1 - exp(-600.0 / 100))))::int AS xs,
              1 + floor(-ln(1 - h3) * 20)::int AS l1,
              14 + floor(h4 * 90)::int AS b,
              1 + floor(-ln(1 - h7) * 40)::int AS l2,
              h5
       FROM (SELECT u, ${u01("u::bigint * 16 + 1")} AS h1, ${u01("u::bigint * 16 + 2")} AS h2, ${u01("u::bigint * 16 + 3")} AS h3,
                    ${u01("u::bigint * 16 + 4")} AS h4, ${u01("u::bigint * 16 + 5")} AS h5, ${u01("u::bigint * 16 + 6")} AS h6,
                    ${u01("u::bigint * 16 + 7")} AS h7
             FROM generate_series(1, $1::int) u) a
     ) b`,
    [users],
  );
  await client.query(`ANALYZE bench_user_param`);
}

/**
 * SELECT of the activity rows (fact_id, activity_date, user_key, first_at, last_at) of day x, in
 * user order (bench_user_param is stored in user order and scanned without parallel workers), so
 * the rows land like a day of ingestion: appended, and in activity_day's primary-key order.
 */
export function activitySelect(factId: number, x: number): string {
  const f = Number(factId) | 0, d = Number(x) | 0;
  const date = `(DATE '${ANCHOR_DATE}' + ${d})`;
  return `SELECT ${f} AS fact_id, ${date} AS activity_date, u AS user_key,
            ${date}::timestamp AT TIME ZONE 'UTC' + make_interval(secs => hd & 65535) AS first_at,
            ${date}::timestamp AT TIME ZONE 'UTC' + make_interval(secs => (hd & 65535) + ((hd >> 16) & 16383)) AS last_at
     FROM (
       SELECT u, hashint8(u::bigint * 4096 + ${d} + 2048) AS hd, p, t
       FROM bench_user_param
       WHERE (lo1 <= ${d} AND hi1 >= ${d}) OR (lo2 <= ${d} AND hi2 >= ${d})
     ) c
     WHERE (hd & 2147483647)::float8 < 2147483648.0 * p
           * CASE WHEN t = 1 AND ${u01(`u::bigint * 1000 + (${d} + 7000) / 7 + 77777777`)} >= 0.75 THEN 0.1::float8 ELSE 1.0::float8 END`;
}

/**
 * Inserts the activity of days [xFrom, xTo] of a fact, one day per statement (as daily ingestion
 * would leave the table: date-clustered), on `parallel` connections, and moves the fact's
 * earliest/latest dates. Returns the number of rows.
 */
export async function insertActivity(pool: pg.Pool, factId: number, xFrom: number, xTo: number, parallel = 1): Promise<number> {
  const days: number[] = [];
  for (let x = xFrom; x <= xTo; x++) days.push(x);
  let rows = 0;
  const worker = async () => {
    const c = await pool.connect();
    try {
      await c.query(`SET max_parallel_workers_per_gather = 0`);
      await c.query(`SET synchronous_commit = off`);
      for (let x = days.shift(); x !== undefined; x = days.shift()) {
        const res = await c.query(`INSERT INTO activity_day (fact_id, activity_date, user_key, first_at, last_at) ${activitySelect(factId, x)}`);
        rows += res.rowCount ?? 0;
      }
    } finally {
      await c.query(`RESET max_parallel_workers_per_gather; RESET synchronous_commit`).catch(() => {});
      c.release();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker));
  await pool.query(
    `UPDATE fact SET earliest_date = LEAST(earliest_date, DATE '${ANCHOR_DATE}' + $2::int),
                     latest_date = GREATEST(latest_date, DATE '${ANCHOR_DATE}' + $3::int) WHERE id = $1`,
    [factId, xFrom, xTo],
  );
  return rows;
}

/**
 * Copies the activity of days [xFrom, xTo] from one fact to another in date order: the generator is
 * deterministic per (user, day), so this is the same as generating those days again, only faster.
 * Days listed in `regenerate` (where the source got extra late rows) are generated instead.
 */
export async function copyActivity(pool: pg.Pool, fromFact: number, toFact: number, xFrom: number, xTo: number, regenerate: number[] = []): Promise<number> {
  const skip = regenerate.filter((x) => x >= xFrom && x <= xTo);
  const c = await pool.connect();
  let rows = 0;
  try {
    await c.query(`SET synchronous_commit = off`);
    const res = await c.query(
      `INSERT INTO activity_day (fact_id, activity_date, user_key, first_at, last_at)
       SELECT $2, activity_date, user_key, first_at, last_at FROM activity_day
       WHERE fact_id = $1 AND activity_date BETWEEN DATE '${ANCHOR_DATE}' + $3::int AND DATE '${ANCHOR_DATE}' + $4::int
         AND NOT (activity_date - DATE '${ANCHOR_DATE}' = ANY($5::int[]))
       ORDER BY activity_date, user_key`,
      [fromFact, toFact, xFrom, xTo, skip],
    );
    rows += res.rowCount ?? 0;
    await c.query(`RESET synchronous_commit`);
  } finally {
    c.release();
  }
  for (const x of skip) rows += await insertActivity(pool, toFact, x, x);
  await pool.query(
    `UPDATE fact SET earliest_date = LEAST(earliest_date, DATE '${ANCHOR_DATE}' + $2::int),
                     latest_date = GREATEST(latest_date, DATE '${ANCHOR_DATE}' + $3::int) WHERE id = $1`,
    [toFact, xFrom, xTo],
  );
  return rows;
}

/**
 * Late events: `count` users who were signed up but not active on day x get an event that day
 * (new (user, date) pairs), as ingestion would receive them: [user_id, epoch ms].
 */
export async function lateEvents(client: pg.ClientBase, factId: number, x: number, count: number): Promise<Array<{ userId: string; occurredAtMs: number }>> {
  const res = await client.query<{ user_id: string; ms: number }>(
    `SELECT 'user_' || pr.u AS user_id,
            extract(epoch FROM (DATE '${ANCHOR_DATE}' + $2::int)::timestamp AT TIME ZONE 'UTC')::float8 * 1000 + (pr.u % 80000) * 1000 AS ms
     FROM bench_user_param pr
     WHERE pr.lo1 <= $2::int
       AND NOT EXISTS (SELECT 1 FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date = DATE '${ANCHOR_DATE}' + $2::int AND a.user_key = pr.u)
     ORDER BY hashint8(pr.u::bigint * 31 + 9) LIMIT $3`,
    [factId, x, count],
  );
  return res.rows.map((r) => ({ userId: r.user_id, occurredAtMs: Number(r.ms) }));
}

export function dateOfX(x: number): string {
  const d = new Date(`${ANCHOR_DATE}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + x);
  return d.toISOString().slice(0, 10);
}
