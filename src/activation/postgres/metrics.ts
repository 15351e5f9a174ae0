import type pg from "pg";
import { END_COUNTS, START_COUNTS } from "./island-counts.js";

/**
 * Metrics as levels of a difference array. Each island adds +1/-1 at a few positions relative to its
 * start s or its end e (see the tables below), so the counts of a period are the counts of the previous
 * period plus the deltas at that period. A run recomputes periods [from, through] from the stored row
 * of from-1 and the counts of islands that start or end near that range: a new day costs that day.
 */
export const LEVELS = [
  "users_total", "active", "new", "reactivated", "retained", "churned",
  "seg_new_to_retained", "seg_new_to_inactive", "seg_retained_to_retained", "seg_retained_to_inactive",
  "seg_reactivated_to_retained", "seg_reactivated_to_inactive", "seg_inactive_to_inactive",
  "reactivated_within_6", "growth_reactivated", "growth_resurrected",
  "growth_at_risk_wau", "growth_at_risk_mau", "growth_dormant",
] as const;
type Level = (typeof LEVELS)[number];

/** [level, offset from the anchor, sign, aggregate column]: the aggregate counts islands by condition. */
type Event = [Level, number, 1 | -1, string];

// Events at an island's start s, by the layer_start_count column that counts the islands (island-counts.ts).
const START_EVENTS: Event[] = [
  ["users_total", 0, 1, "c_first"],
  ["active", 0, 1, "c_all"],
  ["new", 0, 1, "c_first"], ["new", 1, -1, "c_first"],
  ["reactivated", 0, 1, "c_react"], ["reactivated", 1, -1, "c_react"],
  ["retained", 1, 1, "c_len2"],
  ["seg_new_to_retained", 1, 1, "c_first_len2"], ["seg_new_to_retained", 2, -1, "c_first_len2"],
  ["seg_reactivated_to_retained", 1, 1, "c_react_len2"], ["seg_reactivated_to_retained", 2, -1, "c_react_len2"],
  ["seg_retained_to_retained", 2, 1, "c_len3"],
  // The return closes the inactive spell the previous island opened.
  ["seg_inactive_to_inactive", 0, -1, "c_gap_gt2"],
  ["reactivated_within_6", 0, 1, "c_gap_le6"], ["reactivated_within_6", 1, -1, "c_gap_le6"],
  ["growth_reactivated", 0, 1, "c_gap_7_29"], ["growth_reactivated", 1, -1, "c_gap_7_29"],
  ["growth_resurrected", 0, 1, "c_gap_ge30"], ["growth_resurrected", 1, -1, "c_gap_ge30"],
  ["growth_at_risk_wau", 0, -1, "c_gap_le7"],
  ["growth_at_risk_mau", 0, -1, "c_gap_8_30"],
  ["growth_dormant", 0, -1, "c_gap_ge31"],
];

// Events at an island's end e, by the layer_end_count column that counts the islands.
const END_EVENTS: Event[] = [
  ["active", 1, -1, "c_all"],
  ["retained", 1, -1, "c_len2"],
  ["seg_retained_to_retained", 1, -1, "c_len3"],
  ["churned", 1, 1, "c_all"], ["churned", 2, -1, "c_all"],
  ["seg_new_to_inactive", 1, 1, "c_first_single"], ["seg_new_to_inactive", 2, -1, "c_first_single"],
  ["seg_retained_to_inactive", 1, 1, "c_len2"], ["seg_retained_to_inactive", 2, -1, "c_len2"],
  ["seg_reactivated_to_inactive", 1, 1, "c_react_single"], ["seg_reactivated_to_inactive", 2, -1, "c_react_single"],
  ["seg_inactive_to_inactive", 2, 1, "c_gap_gt2"],
  ["growth_at_risk_wau", 1, 1, "c_all"], ["growth_at_risk_wau", 7, -1, "c_gap_gt7"],
  ["growth_at_risk_mau", 7, 1, "c_gap_gt7"], ["growth_at_risk_mau", 30, -1, "c_gap_gt30"],
  ["growth_dormant", 30, 1, "c_gap_gt30"],
];

/** Column order of layer_metric after (fact_id, grain, period). */
export const METRIC_COLUMNS = [
  "users_total", "active", "new", "retained", "reactivated", "inactive", "churned",
  "seg_new", "seg_new_to_retained", "seg_new_to_inactive", "seg_retained_to_retained", "seg_retained_to_inactive",
  "seg_reactivated_to_retained", "seg_reactivated_to_inactive", "seg_inactive_to_reactivated", "seg_inactive_to_inactive",
  "growth_new", "growth_current", "growth_reactivated", "growth_resurrected",
  "growth_at_risk_wau", "growth_at_risk_mau", "growth_dormant", "wau", "mau",
] as const;
export type MetricColumn = (typeof METRIC_COLUMNS)[number];

function levelsToRow(l: Record<Level, number>, day: boolean): Record<MetricColumn, number> {
  const g = (v: number) => (day ? v : 0);
  return {
    users_total: l.users_total, active: l.active, new: l.new, retained: l.retained, reactivated: l.reactivated,
    inactive: l.users_total - l.active, churned: l.churned,
    seg_new: l.new, seg_new_to_retained: l.seg_new_to_retained, seg_new_to_inactive: l.seg_new_to_inactive,
    seg_retained_to_retained: l.seg_retained_to_retained, seg_retained_to_inactive: l.seg_retained_to_inactive,
    seg_reactivated_to_retained: l.seg_reactivated_to_retained, seg_reactivated_to_inactive: l.seg_reactivated_to_inactive,
    seg_inactive_to_reactivated: l.reactivated, seg_inactive_to_inactive: l.seg_inactive_to_inactive,
    growth_new: g(l.new), growth_current: g(l.retained + l.reactivated_within_6),
    growth_reactivated: g(l.growth_reactivated), growth_resurrected: g(l.growth_resurrected),
    growth_at_risk_wau: g(l.growth_at_risk_wau), growth_at_risk_mau: g(l.growth_at_risk_mau), growth_dormant: g(l.growth_dormant),
    wau: g(l.active + l.growth_at_risk_wau), mau: g(l.active + l.growth_at_risk_wau + l.growth_at_risk_mau),
  };
}

function rowToLevels(r: Record<MetricColumn, number> | undefined): Record<Level, number> {
  const l = Object.fromEntries(LEVELS.map((k) => [k, 0])) as Record<Level, number>;
  if (!r) return l;
  for (const k of LEVELS) if (k in r) l[k] = (r as Record<string, number>)[k]!;
  l.reactivated_within_6 = r.growth_current - r.retained;
  return l;
}

/** Recomputes and stores the metric rows of periods [from, through] of one grain. */
export async function recomputeMetrics(client: pg.ClientBase, factId: number, grain: number, from: number, through: number): Promise<void> {
  if (through < from) return;
  const g = Number(grain) | 0;
  const day = g === 0;
  const events = (list: Event[]) => (day ? list : list.filter(([lvl]) => !lvl.startsWith("growth_") && lvl !== "reactivated_within_6"));
  const startEvents = events(START_EVENTS);
  const endEvents = events(END_EVENTS);
  const maxStartOffset = Math.max(...startEvents.map((e) => e[1]));
  const endRanges = [...new Set(endEvents.map((e) => e[1]))].map((o) => `end_p BETWEEN ${from - o} AND ${through - o}`).join(" OR ");

  const base = await client.query(`SELECT * FROM layer_metric WHERE fact_id = $1 AND grain = ${g} AND period = $2`, [factId, from - 1]);
  const starts = await client.query(
    `SELECT start_p AS pos, ${Object.keys(START_COUNTS).join(", ")} FROM layer_start_count
     WHERE fact_id = $1 AND grain = ${g} AND start_p BETWEEN $2 AND $3`,
    [factId, from - maxStartOffset, through],
  );
  const ends = await client.query(
    `SELECT end_p AS pos, ${Object.keys(END_COUNTS).join(", ")} FROM layer_end_count WHERE fact_id = $1 AND grain = ${g} AND (${endRanges})`,
    [factId],
  );

  const n = through - from + 1;
  const deltas = Object.fromEntries(LEVELS.map((k) => [k, new Float64Array(n)])) as Record<Level, Float64Array>;
  const apply = (rows: Array<Record<string, number>>, list: Event[]) => {
    for (const row of rows) {
      for (const [level, offset, sign, agg] of list) {
        const idx = row.pos! + offset - from;
        if (idx >= 0 && idx < n) deltas[level][idx]! += sign * row[agg]!;
      }
    }
  };
  apply(starts.rows, startEvents);
  apply(ends.rows, endEvents);

  const levels = rowToLevels(base.rows[0]);
  const periods: number[] = [];
  const columns = METRIC_COLUMNS.map(() => [] as number[]);
  for (let i = 0; i < n; i++) {
    for (const k of LEVELS) levels[k] += deltas[k][i]!;
    // Periods before the fact's first user have no row.
    if (levels.users_total === 0 && periods.length === 0) continue;
    periods.push(from + i);
    const row = levelsToRow(levels, day);
    METRIC_COLUMNS.forEach((c, j) => columns[j]!.push(row[c]));
  }
  await client.query(`DELETE FROM layer_metric WHERE fact_id = $1 AND grain = ${g} AND period >= $2`, [factId, from]);
  if (periods.length === 0) return;
  await client.query(
    `INSERT INTO layer_metric (fact_id, grain, period, ${METRIC_COLUMNS.join(", ")})
     SELECT $1, ${g}, * FROM unnest($2::int[], ${METRIC_COLUMNS.map((_, j) => `$${j + 3}::int[]`).join(", ")})`,
    [factId, periods, ...columns],
  );
}
