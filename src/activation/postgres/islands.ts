import type pg from "pg";

/**
 * SQL of the period number of date expression `d` at grain g: the body of the migration's
 * aa_period(grain, d), written out. PostgreSQL never inlines that function (a STRICT function whose
 * CASE body it cannot prove strict), and calling it per activity row costs several times this.
 */
export function periodOfDateSql(g: number, d: string): string {
  if (g === 0) return `(${d} - DATE '1970-01-01')`;
  if (g === 1) return `(((${d} - DATE '1970-01-01' + 3) - (((${d} - DATE '1970-01-01' + 3) % 7) + 7) % 7) / 7)`;
  return `((EXTRACT(YEAR FROM ${d})::INTEGER - 1970) * 12 + EXTRACT(MONTH FROM ${d})::INTEGER - 1)`;
}

/**
 * Merges newly seen active periods into a grain's islands (runs of consecutive active periods).
 * Activity only ever adds active periods, so a run touches just the users with activity in
 * [from, through] whose period is not already covered, and for each of them only the islands from
 * its earliest new period on. The islands before that (the "anchor") give the chain's carried values.
 * Returns the earliest new period, or null when nothing changed.
 */
export async function mergeNewPeriods(
  client: pg.ClientBase,
  factId: number,
  grain: number,
  from: string,
  through: string,
): Promise<number | null> {
  const g = Number(grain) | 0; // a constant of ours, inlined so the planner sees it
  const isl = `i.fact_id = $1 AND i.grain = ${g}`;
  const hasIslands = (await client.query(`SELECT 1 FROM layer_island i WHERE ${isl} LIMIT 1`, [factId])).rowCount! > 0;
  if (!hasIslands) return buildIslands(client, factId, g, from, through);
  await client.query(
    g === 0
      ? `CREATE TEMP TABLE np ON COMMIT DROP AS
         SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`
      : `CREATE TEMP TABLE np ON COMMIT DROP AS
         SELECT DISTINCT a.user_key, ${periodOfDateSql(g, "a.activity_date")} AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`,
    [factId, from, through],
  );
  await client.query("ANALYZE np");
  if (hasIslands) {
    await client.query(
      `DELETE FROM np USING layer_island i
       WHERE ${isl} AND i.user_key = np.user_key AND i.start_p <= np.p AND i.end_p >= np.p`,
      [factId],
    );
  }
  await client.query(`CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key, min(p) AS m FROM np GROUP BY user_key`);
  await client.query("ANALYZE au");
  const minNew = (await client.query<{ m: number | null }>(`SELECT min(m) AS m FROM au`)).rows[0]!.m;
  if (minNew === null) {
    await client.query("DROP TABLE np; DROP TABLE au");
    return null;
  }

  if (hasIslands) {
    // The (at most) two latest islands starting before m-1: one may span m-1, the other is then the anchor.
    await client.query(
      `CREATE TEMP TABLE prior ON COMMIT DROP AS
       SELECT au.user_key, au.m, b.start_p, b.end_p, b.active_before, b.first_p, b.rn
       FROM au CROSS JOIN LATERAL (
         SELECT i.start_p, i.end_p, i.active_before, i.first_p, row_number() OVER (ORDER BY i.start_p DESC) AS rn
         FROM layer_island i
         WHERE ${isl} AND i.user_key = au.user_key AND i.start_p < au.m - 1
         ORDER BY i.start_p DESC LIMIT 2) b`,
      [factId],
    );
    await client.query(
      `CREATE TEMP TABLE old_aff ON COMMIT DROP AS
       SELECT i.user_key, i.start_p, i.end_p
       FROM au JOIN layer_island i ON ${isl} AND i.user_key = au.user_key AND i.start_p >= au.m - 1
       UNION ALL
       SELECT user_key, start_p, end_p FROM prior WHERE rn = 1 AND end_p >= m - 1`,
      [factId],
    );
    await client.query(
      `CREATE TEMP TABLE anchor ON COMMIT DROP AS
       SELECT DISTINCT ON (user_key) user_key, start_p, end_p, active_before, first_p
       FROM prior WHERE end_p < m - 1 ORDER BY user_key, start_p DESC`,
    );
  } else {
    await client.query(`CREATE TEMP TABLE old_aff (user_key int, start_p int, end_p int) ON COMMIT DROP`);
    await client.query(`CREATE TEMP TABLE anchor (user_key int, start_p int, end_p int, active_before int, first_p int) ON COMMIT DROP`);
  }

  // Gaps and islands over intervals: a row opens a new island when it starts after every earlier end + 1.
  await client.query(
    `CREATE TEMP TABLE merged ON COMMIT DROP AS
     WITH iv AS (
       SELECT user_key, start_p AS s, end_p AS e FROM old_aff
       UNION ALL SELECT user_key, p, p FROM np
     ), marked AS (
       SELECT user_key, s, e,
              CASE WHEN s <= max(e) OVER (PARTITION BY user_key ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1
                   THEN 0 ELSE 1 END AS brk
       FROM iv
     ), grouped AS (
       SELECT user_key, s, e, sum(brk) OVER (PARTITION BY user_key ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp FROM marked
     )
     SELECT user_key, min(s) AS start_p, max(e) AS end_p FROM grouped GROUP BY user_key, grp`,
  );

  if (hasIslands) {
    await client.query(
      `DELETE FROM layer_island i USING old_aff o
       WHERE ${isl} AND i.user_key = o.user_key AND i.start_p = o.start_p`,
      [factId],
    );
  }
  await client.query(
    `INSERT INTO layer_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, m.user_key, m.start_p, m.end_p,
            COALESCE(lag(m.end_p) OVER w, an.end_p),
            lead(m.start_p) OVER w,
            COALESCE(an.active_before + an.end_p - an.start_p + 1, 0)
              + COALESCE(sum(m.end_p - m.start_p + 1) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
            COALESCE(an.first_p, min(m.start_p) OVER (PARTITION BY m.user_key))
     FROM merged m LEFT JOIN anchor an ON an.user_key = m.user_key
     WINDOW w AS (PARTITION BY m.user_key ORDER BY m.start_p)`,
    [factId],
  );
  if (hasIslands) {
    await client.query(
      `UPDATE layer_island i SET next_start = f.first_start
       FROM (SELECT user_key, min(start_p) AS first_start FROM merged GROUP BY user_key) f
       JOIN anchor an ON an.user_key = f.user_key
       WHERE ${isl} AND i.user_key = an.user_key AND i.start_p = an.start_p`,
      [factId],
    );
    await client.query("DROP TABLE prior");
  }
  await client.query("DROP TABLE np; DROP TABLE au; DROP TABLE old_aff; DROP TABLE anchor; DROP TABLE merged");
  return minNew;
}

/**
 * The first build of a grain (no islands yet): the islands straight from the activity in one sorted
 * pass. Over each user's distinct active periods in order, a period starts an island when the one
 * before is not p - 1 and ends it when the one after is not p + 1; the start row carries prev_end
 * (the period before), active_before (its rank - 1) and first_p, and the end row, reached by lead()
 * over the start and end rows only, carries end_p and next_start. The same islands, with the same
 * carried values, as merging these periods into nothing.
 */
async function buildIslands(client: pg.ClientBase, factId: number, g: number, from: string, through: string): Promise<number | null> {
  const periods =
    g === 0
      ? `SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`
      : `SELECT a.user_key, ${periodOfDateSql(g, "a.activity_date")} AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3 GROUP BY 1, 2`;
  await client.query(
    `INSERT INTO layer_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, user_key, p, end_p, prev_p, next_start, rn - 1, first_p FROM (
       SELECT user_key, p, prev_p, rn, first_p, is_start,
              CASE WHEN is_end THEN p ELSE lead(p) OVER w END AS end_p,
              CASE WHEN is_end THEN next_p ELSE lead(next_p) OVER w END AS next_start
       FROM (
         SELECT user_key, p, prev_p, next_p, rn, first_p,
                prev_p IS NULL OR prev_p < p - 1 AS is_start,
                next_p IS NULL OR next_p > p + 1 AS is_end
         FROM (
           SELECT user_key, p, lag(p) OVER w AS prev_p, lead(p) OVER w AS next_p,
                  row_number() OVER w AS rn, first_value(p) OVER w AS first_p
           FROM (${periods}) s
           WINDOW w AS (PARTITION BY user_key ORDER BY p)
         ) a
       ) b
       WHERE is_start OR is_end
       WINDOW w AS (PARTITION BY user_key ORDER BY p)
     ) c
     WHERE is_start`,
    [factId, from, through],
  );
  const r = await client.query<{ m: number | null }>(
    `SELECT min(start_p) AS m FROM layer_island WHERE fact_id = $1 AND grain = ${g}`,
    [factId],
  );
  return r.rows[0]!.m;
}
