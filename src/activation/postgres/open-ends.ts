import type pg from "pg";

/**
 * layer_open_end: the latest (open) islands of a fact and grain counted by end period, with the
 * attributes the metrics' end events need. Open islands live in a partition without an end_p index so
 * that extending one is a HOT update; the metrics read their ends from here instead. A run subtracts
 * the open islands of the users it touches before merging and adds their open islands after.
 */
const COUNTS = ["c_all", "c_len2", "c_len3", "c_first_single", "c_react_single"] as const;

/** The counts of rows with columns (start, end, prev) grouped by end, each multiplied by `sign`. */
export function openEndCountsSql(rows: string, start: string, end: string, prev: string, sign: 1 | -1): string {
  const m = sign === 1 ? "" : "-";
  return `SELECT ${end} AS end_p,
      ${m}count(*)::int AS c_all,
      ${m}count(*) FILTER (WHERE ${end} >= ${start} + 1)::int AS c_len2,
      ${m}count(*) FILTER (WHERE ${end} >= ${start} + 2)::int AS c_len3,
      ${m}count(*) FILTER (WHERE ${prev} IS NULL AND ${end} = ${start})::int AS c_first_single,
      ${m}count(*) FILTER (WHERE ${prev} IS NOT NULL AND ${end} = ${start})::int AS c_react_single
    FROM ${rows} GROUP BY 1`;
}

/** Starts the temp table of this run's changes to layer_open_end (dropped at commit). */
export async function beginOpenEndDelta(client: pg.ClientBase, firstPart: string): Promise<void> {
  await client.query(`CREATE TEMP TABLE oe_delta ON COMMIT DROP AS ${firstPart}`);
}

export async function addOpenEndDelta(client: pg.ClientBase, part: string, params: unknown[] = []): Promise<void> {
  await client.query(`INSERT INTO oe_delta ${part}`, params);
}

/** Applies the run's changes and drops the temp table; rows whose count falls to zero go. */
export async function applyOpenEndDelta(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  await client.query(
    `INSERT INTO layer_open_end AS o (fact_id, grain, end_p, ${COUNTS.join(", ")})
     SELECT $1, ${g | 0}, end_p, ${COUNTS.map((c) => `sum(${c})`).join(", ")}
     FROM oe_delta GROUP BY end_p
     ON CONFLICT (fact_id, grain, end_p) DO UPDATE SET ${COUNTS.map((c) => `${c} = o.${c} + excluded.${c}`).join(", ")}`,
    [factId],
  );
  await client.query(`DELETE FROM layer_open_end WHERE fact_id = $1 AND grain = ${g | 0} AND c_all = 0`, [factId]);
  await client.query("DROP TABLE oe_delta");
}

/** Counts a grain's open islands afresh (its first build). */
export async function rebuildOpenEnds(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  await client.query(`DELETE FROM layer_open_end WHERE fact_id = $1 AND grain = ${g | 0}`, [factId]);
  await client.query(
    `INSERT INTO layer_open_end (fact_id, grain, end_p, ${COUNTS.join(", ")})
     SELECT $1, ${g | 0}, * FROM (${openEndCountsSql(
       `layer_island i WHERE i.fact_id = $1 AND i.grain = ${g | 0} AND i.next_start IS NULL`,
       "i.start_p", "i.end_p", "i.prev_end", 1,
     )}) c`,
    [factId],
  );
}

/** The latest end period of any island of the grain (the latest island of some user), null when none. */
export async function latestEnd(client: pg.ClientBase, factId: number, g: number): Promise<number | null> {
  const r = await client.query<{ m: number | null }>(`SELECT max(end_p) AS m FROM layer_open_end WHERE fact_id = $1 AND grain = ${g | 0}`, [factId]);
  return r.rows[0]!.m;
}
