import type pg from "pg";
import { statusColumnsSql } from "./status-sql.js";
import { METRIC_COLUMNS } from "./metrics.js";
import { governs } from "./audience-sql.js";

/** SQL of the first day of period `expr` (an integer expression) at grain g. */
export function periodDateSql(g: number, expr: string): string {
  if (g === 0) return `(DATE '1970-01-01' + (${expr}))`;
  if (g === 1) return `(DATE '1970-01-01' + ((${expr}) * 7 - 3))`;
  return `aa_period_start(2::smallint, ${expr})`;
}

const STATUS_OUT = (g: number) => `user_key, user_id, ${periodDateSql(g, "p")} AS period, state, previous_state, transition_segment,
  is_active, ${periodDateSql(g, "first_active_period")} AS first_active_period,
  ${periodDateSql(g, "last_active_period")} AS last_active_period, inactivity_periods, consecutive_active_periods,
  last_streak_periods, return_interval_periods, last_active_state, active_periods_total, tenure_periods${g === 0 ? ", growth_state" : ""}`;

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

export function statusQuery(g: number, filter: StatusFilter, page?: { afterUserKey?: number; limit: number }, latest = false) {
  const params: unknown[] = [];
  const where: string[] = [];
  if (filter.state) where.push(`state = $${params.push(filter.state) + 2}`);
  if (filter.transition_segment) where.push(`transition_segment = $${params.push(filter.transition_segment) + 2}`);
  let keyset = "";
  let limit = "";
  if (page) {
    if (page.afterUserKey !== undefined) keyset = `AND i.user_key > $${params.push(page.afterUserKey) + 2}`;
    limit = `LIMIT $${params.push(page.limit) + 2}`;
  }
  const sql = `SELECT ${STATUS_OUT(g)} FROM (
      SELECT i.user_key, u.external_id AS user_id, $2::int AS p, ${statusColumnsSql("i", "$2::int", g)}
      FROM layer_island i JOIN app_user u ON u.user_key = i.user_key
      WHERE i.fact_id = $1 AND i.grain = ${g} AND ${governs("i", "$2::int", latest)} ${keyset}
      ORDER BY i.user_key
    ) s ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY user_key ${limit}`;
  return { sql, extraParams: params };
}

/** One user's status timeline over periods [from, to] (only periods from the user's first on). */
export function userTimelineQuery(g: number): string {
  return `SELECT ${STATUS_OUT(g)} FROM (
      SELECT i.user_key, u.external_id AS user_id, gs.p, ${statusColumnsSql("i", "gs.p", g)}
      FROM generate_series($3::int, $4::int) AS gs(p)
      CROSS JOIN LATERAL (
        SELECT * FROM layer_island x
        WHERE x.fact_id = $1 AND x.grain = ${g} AND x.user_key = $2 AND x.start_p <= gs.p
        ORDER BY x.start_p DESC LIMIT 1) i
      JOIN app_user u ON u.user_key = i.user_key
    ) s ORDER BY p`;
}

/** Activation rows (active users) of period $2; optional state filter; keyset paged like status. */
export function activationQuery(g: number, state: string | undefined, page?: { afterUserKey?: number; limit: number }) {
  const params: unknown[] = [];
  const cond: string[] = [];
  if (state === "new") cond.push("i.start_p = $2::int AND i.prev_end IS NULL");
  else if (state === "reactivated") cond.push("i.start_p = $2::int AND i.prev_end IS NOT NULL");
  else if (state === "retained") cond.push("i.start_p < $2::int");
  if (page?.afterUserKey !== undefined) cond.push(`i.user_key > $${params.push(page.afterUserKey) + 2}`);
  const limit = page ? `LIMIT $${params.push(page.limit) + 2}` : "";
  const sql = `SELECT i.user_key, u.external_id AS user_id, ${periodDateSql(g, "$2::int")} AS period,
      CASE WHEN i.start_p < $2::int THEN 'retained' WHEN i.prev_end IS NULL THEN 'new' ELSE 'reactivated' END AS state,
      CASE WHEN i.start_p < $2::int THEN 1 ELSE $2::int - i.prev_end END AS return_interval_periods
    FROM layer_island i JOIN app_user u ON u.user_key = i.user_key
    WHERE i.fact_id = $1 AND i.grain = ${g} AND i.start_p <= $2::int AND i.end_p >= $2::int
      ${cond.length ? `AND ${cond.join(" AND ")}` : ""}
    ORDER BY i.user_key ${limit}`;
  return { sql, extraParams: params };
}

/**
 * The FirstLast snapshot of date $2 (an integer day): first and last active dates from the governing
 * day island, the instants from those two activity rows. Optional user filter and keyset paging.
 */
export function firstLastQuery(opts: { userKey?: number; page?: { afterUserKey?: number; limit: number }; latest?: boolean }) {
  const params: unknown[] = [];
  const cond: string[] = [];
  if (opts.userKey !== undefined) cond.push(`i.user_key = $${params.push(opts.userKey) + 2}`);
  if (opts.page?.afterUserKey !== undefined) cond.push(`i.user_key > $${params.push(opts.page.afterUserKey) + 2}`);
  const limit = opts.page ? `LIMIT $${params.push(opts.page.limit) + 2}` : "";
  const sql = `SELECT i.user_key, u.external_id AS user_id, DATE '1970-01-01' + $2::int AS snapshot_date,
      DATE '1970-01-01' + i.first_p AS first_active_date,
      DATE '1970-01-01' + LEAST($2::int, i.end_p) AS last_active_date,
      to_char(fa.first_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_event_at,
      to_char(la.last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_event_at
    FROM layer_island i
    JOIN app_user u ON u.user_key = i.user_key
    JOIN activity_day fa ON fa.fact_id = i.fact_id AND fa.activity_date = DATE '1970-01-01' + i.first_p AND fa.user_key = i.user_key
    JOIN activity_day la ON la.fact_id = i.fact_id AND la.activity_date = DATE '1970-01-01' + LEAST($2::int, i.end_p) AND la.user_key = i.user_key
    WHERE i.fact_id = $1 AND i.grain = 0 AND ${governs("i", "$2::int", opts.latest ?? false)}
      ${cond.length ? `AND ${cond.join(" AND ")}` : ""}
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
