/**
 * The full activation layer recomputed from the plain (user, date) activity table, written the way a
 * team without this service would write its nightly job: per grain,
 *   1. activation: distinct (user, period), lag/lead/row_number over each user's periods (state, return
 *      interval, first period, active total) and the gaps-and-islands trick (p - row_number) for the
 *      streak length;
 *   2. status: one row per user per period from the first active period through T, every field of the
 *      spec, by expanding each active period over the inactive periods that follow it (generate_series);
 *   3. metrics: one GROUP BY period over the status rows.
 * The same SQL runs in PostgreSQL and in DuckDB; only the few dialect bits below differ.
 */
export type Dialect = "postgres" | "duckdb";

export const BASELINE_GRAINS = [
  { grain: "day", g: 0 },
  { grain: "week", g: 1 },
  { grain: "month", g: 2 },
] as const;

/** Period number of the activity row (same numbering as src/activation/periods.ts). */
function periodExpr(d: Dialect, g: number): string {
  if (d === "postgres") {
    if (g === 0) return "activity_date - DATE '1970-01-01'";
    if (g === 1) return "(activity_date - DATE '1970-01-01' + 3) / 7";
    return "(extract(year FROM activity_date)::int - 1970) * 12 + extract(month FROM activity_date)::int - 1";
  }
  if (g === 0) return "day";
  if (g === 1) return "(day + 3) // 7";
  return "(year(DATE '1970-01-01' + day) - 1970) * 12 + month(DATE '1970-01-01' + day) - 1";
}

export interface BaselineStep {
  name: "activation" | "status" | "metrics";
  sql: string;
}

/**
 * Statements computing grain g through period Tp into tables bl_activation_<grain>, bl_status_<grain>,
 * bl_metric_<grain>. `source` is the activity relation with `activity_date` (postgres) or `day` (duckdb).
 */
export function baselineSteps(d: Dialect, g: number, grain: string, Tp: number, source: string): BaselineStep[] {
  const create = d === "postgres" ? "CREATE UNLOGGED TABLE" : "CREATE TABLE";
  const T = Number(Tp) | 0;
  const distinct = g === 0 ? "" : "DISTINCT"; // (user, day) is already unique in the activity table
  const act = `bl_activation_${grain}`, st = `bl_status_${grain}`, mt = `bl_metric_${grain}`;
  const activation = `${create} ${act} AS
    SELECT user_key, p, prev_p, next_p, first_p, n AS active_total,
           CASE WHEN prev_p IS NULL THEN 'new' WHEN prev_p = p - 1 THEN 'retained' ELSE 'reactivated' END AS state,
           p - prev_p AS return_interval,
           row_number() OVER (PARTITION BY user_key, p - n ORDER BY p) AS streak
    FROM (
      SELECT user_key, p, lag(p) OVER w AS prev_p, lead(p) OVER w AS next_p,
             first_value(p) OVER w AS first_p, row_number() OVER w AS n
      FROM (SELECT ${distinct} user_key, ${periodExpr(d, g)} AS p FROM ${source}) ap
      WINDOW w AS (PARTITION BY user_key ORDER BY p)
    ) l`;
  // Each active period governs itself and the inactive periods up to the next active one (or T).
  const expand =
    d === "postgres"
      ? `SELECT a.*, q FROM ${act} a CROSS JOIN LATERAL generate_series(a.p, COALESCE(a.next_p - 1, ${T})) AS gs(q)`
      : `SELECT a.*, unnest(generate_series(a.p, COALESCE(a.next_p - 1, ${T}))) AS q FROM ${act} a`;
  const growth =
    g === 0
      ? `, CASE WHEN q = p THEN CASE WHEN prev_p IS NULL THEN 'new' WHEN streak > 1 OR return_interval <= 6 THEN 'current'
                                    WHEN return_interval <= 29 THEN 'reactivated' ELSE 'resurrected' END
              WHEN q - p <= 6 THEN 'at_risk_wau' WHEN q - p <= 29 THEN 'at_risk_mau' ELSE 'dormant' END AS growth_state`
      : "";
  const status = `${create} ${st} AS
    SELECT user_key, period, state, previous_state,
           CASE WHEN period = first_active_period THEN 'new' ELSE previous_state || '_to_' || state END AS transition_segment,
           is_active, first_active_period, last_active_period, inactivity_periods, consecutive_active_periods,
           last_streak_periods, return_interval_periods, last_active_state, active_periods_total, tenure_periods${g === 0 ? ", growth_state" : ""}
    FROM (
      SELECT user_key, q AS period,
             CASE WHEN q = p THEN state ELSE 'inactive' END AS state,
             CASE WHEN q = p THEN CASE WHEN prev_p IS NULL THEN NULL
                                       WHEN streak = 1 THEN 'inactive'
                                       WHEN streak = 2 THEN CASE WHEN p - 1 = first_p THEN 'new' ELSE 'reactivated' END
                                       ELSE 'retained' END
                  WHEN q = p + 1 THEN state
                  ELSE 'inactive' END AS previous_state,
             q = p AS is_active, first_p AS first_active_period, p AS last_active_period,
             q - p AS inactivity_periods, CASE WHEN q = p THEN streak ELSE 0 END AS consecutive_active_periods,
             streak AS last_streak_periods, CASE WHEN q = p THEN return_interval END AS return_interval_periods,
             state AS last_active_state, active_total AS active_periods_total, q - first_p AS tenure_periods${growth}
      FROM (${expand}) x
    ) s`;
  const c = (cond: string) => `count(*) FILTER (WHERE ${cond})`;
  const segs = [
    "new", "new_to_retained", "new_to_inactive", "retained_to_retained", "retained_to_inactive",
    "reactivated_to_retained", "reactivated_to_inactive", "inactive_to_reactivated", "inactive_to_inactive",
  ];
  const growthStates = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"];
  const metricCols = [
    "count(*) AS users_total",
    `${c("is_active")} AS active`,
    `${c("state = 'new'")} AS new`,
    `${c("state = 'retained'")} AS retained`,
    `${c("state = 'reactivated'")} AS reactivated`,
    `${c("NOT is_active")} AS inactive`,
    `${c("transition_segment IN ('new_to_inactive', 'retained_to_inactive', 'reactivated_to_inactive')")} AS churned`,
    ...segs.map((s) => `${c(`transition_segment = '${s}'`)} AS seg_${s}`),
    ...(g === 0
      ? [
          ...growthStates.map((s) => `${c(`growth_state = '${s}'`)} AS growth_${s}`),
          `${c("inactivity_periods <= 6")} AS wau`,
          `${c("inactivity_periods <= 29")} AS mau`,
        ]
      : []),
  ];
  const metrics = `${create} ${mt} AS SELECT period, ${metricCols.join(", ")} FROM ${st} GROUP BY period`;
  return [
    { name: "activation", sql: activation },
    { name: "status", sql: status },
    { name: "metrics", sql: metrics },
  ];
}

/** Metric columns compared with the layer (growth, wau and mau exist at day grain only). */
export function comparedColumns(g: number): string[] {
  const base = [
    "users_total", "active", "new", "retained", "reactivated", "inactive", "churned",
    "seg_new", "seg_new_to_retained", "seg_new_to_inactive", "seg_retained_to_retained", "seg_retained_to_inactive",
    "seg_reactivated_to_retained", "seg_reactivated_to_inactive", "seg_inactive_to_reactivated", "seg_inactive_to_inactive",
  ];
  return g === 0
    ? [...base, "growth_new", "growth_current", "growth_reactivated", "growth_resurrected", "growth_at_risk_wau", "growth_at_risk_mau", "growth_dormant", "wau", "mau"]
    : base;
}

export function dropSql(grain: string): string[] {
  return [`DROP TABLE IF EXISTS bl_metric_${grain}`, `DROP TABLE IF EXISTS bl_status_${grain}`, `DROP TABLE IF EXISTS bl_activation_${grain}`];
}

/** Status fields compared user by user with the layer's (growth_state exists at day grain only). */
export function statusCompareColumns(g: number): string[] {
  const cols = [
    "state", "previous_state", "transition_segment", "is_active", "first_active_period", "last_active_period",
    "inactivity_periods", "consecutive_active_periods", "last_streak_periods", "return_interval_periods",
    "last_active_state", "active_periods_total", "tenure_periods",
  ];
  return g === 0 ? [...cols, "growth_state"] : cols;
}
