import type pg from "pg";
import { statusColumnsSql } from "./status-sql.js";
import { METRIC_COLUMNS } from "./metrics.js";
import { governs, islandsGoverning } from "./audience-sql.js";

/** SQL of the first day of period `expr` (an integer expression) at grain g. */
export function periodDateSql(g: number, expr: string): string {
  if (g === 0) return `(DATE '1970-01-01' + (${expr}))`;
  if (g === 1) return `(DATE '1970-01-01' + ((${expr}) * 7 - 3))`;
  return `aa_period_start(2::smallint, ${expr})`;
}

/** SQL of the first day of period `expr` at grain g, as a day number (days since 1970-01-01). */
function periodDaySql(g: number, expr: string): string {
  if (g === 0) return `(${expr})`;
  if (g === 1) return `((${expr}) * 7 - 3)`;
  return `(aa_period_start(2::smallint, ${expr}) - DATE '1970-01-01')`;
}

/** The date columns of a status row. */
export const STATUS_DATE_COLUMNS = new Set(["period", "first_active_period", "last_active_period"]);

/**
 * The status row's output columns; with `days`, the date columns as day numbers, which the NDJSON
 * export writes as dates itself (CopyTextToNdjson's "day" kind: PostgreSQL's date output was a tenth of
 * the status stream's work there).
 */
const STATUS_OUT = (g: number, days = false) => {
  const date = days ? periodDaySql : periodDateSql;
  return `user_key, user_id, ${date(g, "p")} AS period, state, previous_state, transition_segment,
  is_active, ${date(g, "first_active_period")} AS first_active_period,
  ${date(g, "last_active_period")} AS last_active_period, inactivity_periods, consecutive_active_periods,
  last_streak_periods, return_interval_periods, last_active_state, active_periods_total, tenure_periods${g === 0 ? ", growth_state" : ""}`;
};

export interface StatusFilter {
  state?: string;
  transition_segment?: string;
}

/**
 * Status rows of one period: each user's governing island is the one with start_p <= P < next_start,
 * so exactly one island per user with first period <= P qualifies.
 * Parameters: $1 fact id, $2 period; then the filters, then the keyset cursor and limit when paged.
 */
export const STATUS_COLUMNS = [
  "user_id", "period", "state", "previous_state", "transition_segment", "is_active", "first_active_period",
  "last_active_period", "inactivity_periods", "consecutive_active_periods", "last_streak_periods",
  "return_interval_periods", "last_active_state", "active_periods_total", "tenure_periods",
] as const;
export const statusColumnsFor = (g: number): string[] => (g === 0 ? [...STATUS_COLUMNS, "growth_state"] : [...STATUS_COLUMNS]);
export const ACTIVATION_COLUMNS = ["user_id", "period", "state", "return_interval_periods"] as const;
export const FIRST_LAST_COLUMNS = ["snapshot_date", "user_id", "first_active_date", "last_active_date", "first_event_at", "last_event_at"] as const;

/**
 * A page of a list over islands: the users after afterUserKey in the chunks [chunkLo, chunkHi]
 * (chunk = user_key >> 10). The view unpacks only those chunks' packs, and the planner, which cannot
 * tell that packs unpack in key order, sorts only their rows (PostgresLayerEngine.pageByChunks widens
 * the range until the page is full).
 */
export interface IslandPage {
  afterUserKey?: number;
  limit: number;
  chunkLo: number;
  chunkHi: number;
}

function pageCondition(i: string, page: IslandPage, params: unknown[]): string {
  const range = `${i}.chunk BETWEEN $${params.push(page.chunkLo) + 2}::int AND $${params.push(page.chunkHi) + 2}::int`;
  return page.afterUserKey === undefined ? range : `${range} AND ${i}.user_key > $${params.push(page.afterUserKey) + 2}::int`;
}

/**
 * Every island meeting `where` (over alias i), in key order: for a whole list (an export), the unpacked
 * islands are sorted while they are narrow, then merge-joined with app_user's key; the planner, which
 * cannot tell how many islands a pack holds, would rather hash app_user and sort the finished rows
 * (EXPORT_PLANNER_SETTINGS hold it to this plan).
 */
function sortedIslands(latest: boolean, where: string): string {
  return `(SELECT i.* FROM ${islandsGoverning(latest)} i WHERE ${where} ORDER BY i.user_key)`;
}

/** Planner settings of the whole-list exports (see sortedIslands). */
export const EXPORT_PLANNER_SETTINGS = { enable_hashjoin: "off", work_mem: "256MB", max_parallel_workers_per_gather: "0", jit: "off" } as const;

export function statusQuery(g: number, filter: StatusFilter, page?: IslandPage, latest = false, datesAsDays = false) {
  const params: unknown[] = [];
  const where: string[] = [];
  if (filter.state) where.push(`state = $${params.push(filter.state) + 2}`);
  if (filter.transition_segment) where.push(`transition_segment = $${params.push(filter.transition_segment) + 2}`);
  let keyset = "";
  let limit = "";
  if (page) {
    keyset = `AND ${pageCondition("i", page, params)}`;
    limit = `LIMIT $${params.push(page.limit) + 2}`;
  }
  const islands = `i.fact_id = $1 AND i.grain = ${g} AND ${governs("i", "$2::int", latest)}`;
  const sql = `SELECT ${STATUS_OUT(g, datesAsDays)} FROM (
      SELECT i.user_key, u.external_id AS user_id, $2::int AS p, ${statusColumnsSql("i", "$2::int", g)}
      FROM ${page ? islandsGoverning(latest) : sortedIslands(latest, islands)} i
      JOIN app_user u ON u.user_key = i.user_key
      WHERE ${islands} ${keyset}
    ) s ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY user_key ${limit}`;
  return { sql, extraParams: params };
}

/** One user's status timeline over periods [from, to] (only periods from the user's first on). */
export function userTimelineQuery(g: number): string {
  // The user's islands unpacked once (from the packs of its chunk), then the one governing each period.
  return `WITH user_islands AS MATERIALIZED (
      SELECT * FROM layer_island x WHERE x.fact_id = $1 AND x.grain = ${g} AND x.chunk = ($2::int >> 10) AND x.user_key = $2)
    SELECT ${STATUS_OUT(g)} FROM (
      SELECT i.user_key, u.external_id AS user_id, gs.p, ${statusColumnsSql("i", "gs.p", g)}
      FROM generate_series($3::int, $4::int) AS gs(p)
      CROSS JOIN LATERAL (
        SELECT * FROM user_islands x WHERE x.start_p <= gs.p ORDER BY x.start_p DESC LIMIT 1) i
      JOIN app_user u ON u.user_key = i.user_key
    ) s ORDER BY p`;
}

/** Activation rows (active users) of period $2; optional state filter; keyset paged like status. */
export function activationQuery(g: number, state: string | undefined, page?: IslandPage) {
  const params: unknown[] = [];
  const cond = [`i.fact_id = $1 AND i.grain = ${g} AND i.start_p <= $2::int AND i.end_p >= $2::int AND (i.next_start IS NULL OR i.next_start > $2::int)`];
  if (state === "new") cond.push("i.start_p = $2::int AND i.prev_end IS NULL");
  else if (state === "reactivated") cond.push("i.start_p = $2::int AND i.prev_end IS NOT NULL");
  else if (state === "retained") cond.push("i.start_p < $2::int");
  const where = cond.join(" AND ");
  const keyset = page ? `AND ${pageCondition("i", page, params)}` : "";
  const limit = page ? `LIMIT $${params.push(page.limit) + 2}` : "";
  const sql = `SELECT i.user_key, u.external_id AS user_id, ${periodDateSql(g, "$2::int")} AS period,
      CASE WHEN i.start_p < $2::int THEN 'retained' WHEN i.prev_end IS NULL THEN 'new' ELSE 'reactivated' END AS state,
      CASE WHEN i.start_p < $2::int THEN 1 ELSE $2::int - i.prev_end END AS return_interval_periods
    FROM ${page ? "layer_island" : sortedIslands(false, where)} i JOIN app_user u ON u.user_key = i.user_key
    WHERE ${where} ${keyset}
    ORDER BY i.user_key ${limit}`;
  return { sql, extraParams: params };
}

/**
 * The FirstLast snapshot of date $2 (an integer day): first and last active dates from the governing
 * day island, the instants from those two activity rows. Optional user filter and keyset paging.
 */
export function firstLastQuery(opts: { userKey?: number; page?: IslandPage; latest?: boolean }) {
  const params: unknown[] = [];
  const latest = opts.latest ?? false;
  const cond = [`i.fact_id = $1 AND i.grain = 0 AND ${governs("i", "$2::int", latest)}`];
  if (opts.userKey !== undefined) {
    const k = `$${params.push(opts.userKey) + 2}::int`;
    // The chunk as well: the view unpacks only that chunk's packs.
    cond.push(`i.user_key = ${k} AND i.chunk = (${k} >> 10)`);
  }
  if (opts.page) cond.push(pageCondition("i", opts.page, params));
  const where = cond.join(" AND ");
  const limit = opts.page ? `LIMIT $${params.push(opts.page.limit) + 2}` : "";
  const whole = !opts.page && opts.userKey === undefined;
  const sql = `SELECT i.user_key, u.external_id AS user_id, DATE '1970-01-01' + $2::int AS snapshot_date,
      DATE '1970-01-01' + i.first_p AS first_active_date,
      DATE '1970-01-01' + LEAST($2::int, i.end_p) AS last_active_date,
      to_char(fa.first_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_event_at,
      to_char(la.last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_event_at
    FROM ${whole ? sortedIslands(latest, where) : islandsGoverning(latest)} i
    JOIN app_user u ON u.user_key = i.user_key
    JOIN activity_day fa ON fa.fact_id = i.fact_id AND fa.activity_date = DATE '1970-01-01' + i.first_p AND fa.user_key = i.user_key
    JOIN activity_day la ON la.fact_id = i.fact_id AND la.activity_date = DATE '1970-01-01' + LEAST($2::int, i.end_p) AND la.user_key = i.user_key
    WHERE ${where}
    ORDER BY i.user_key ${limit}`;
  return { sql, extraParams: params };
}

export async function metricsRange(client: pg.ClientBase | pg.Pool, factId: number, g: number, from: number, to: number) {
  const res = await client.query(
    `SELECT period AS p, ${periodDateSql(g, "period")} AS period, ${METRIC_COLUMNS.join(", ")}
     FROM layer_metric WHERE fact_id = $1 AND grain = ${g} AND period BETWEEN $2 AND $3 ORDER BY period`,
    [factId, from, to],
  );
  return res.rows as Array<Record<string, number | string>>;
}
