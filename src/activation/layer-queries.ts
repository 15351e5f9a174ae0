import type { Readable } from "node:stream";
import { z } from "zod";
import type { AppContext } from "../context.js";
import type { Fact } from "../generated/prisma/client.js";
import { conflict, notFound, badRequest } from "../http/problem.js";
import { isoDate } from "../http/formats.js";
import { decodeCursor, toPage, userKeyCursor, type PageQuery } from "../http/pagination.js";
import { GRAIN_CODE, dateToDay, parseDate, periodEndDay, periodOfDay, periodToDate, type Grain } from "./periods.js";
import type { ExportFormat } from "./postgres/copy-out.js";
import { localDate } from "../facts/timezones.js";
import { METRIC_COLUMNS, type MetricColumn } from "./postgres/metrics.js";

export const STATES = ["new", "retained", "reactivated", "inactive"] as const;
export const ACTIVE_STATES = ["new", "retained", "reactivated"] as const;
export const TRANSITION_SEGMENTS = [
  "new", "new_to_retained", "new_to_inactive", "retained_to_retained", "retained_to_inactive",
  "reactivated_to_retained", "reactivated_to_inactive", "inactive_to_reactivated", "inactive_to_inactive",
] as const;
export const GROWTH_STATES = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"] as const;

/**
 * The Activation Status columns every answer that carries a user's status has (a status row, a list's
 * member, a preview's sample), as a zod shape; `period` is the schema of a period's first day.
 */
export function statusColumnsShape(period: z.ZodType<string>) {
  return {
    user_id: z.string(),
    state: z.enum(STATES),
    previous_state: z.enum(STATES).nullable(),
    transition_segment: z.enum(TRANSITION_SEGMENTS),
    is_active: z.boolean(),
    first_active_period: period,
    last_active_period: period,
    inactivity_periods: z.number().int(),
    consecutive_active_periods: z.number().int(),
    last_streak_periods: z.number().int(),
    return_interval_periods: z.number().int().nullable(),
    last_active_state: z.enum(ACTIVE_STATES),
    active_periods_total: z.number().int(),
    tenure_periods: z.number().int(),
  };
}

const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : null);

/** The watermark's period; 409 when the fact was never processed or `date` lies beyond it. */
export function processedPeriod(fact: Fact, grain: Grain): { T: string; tp: number } {
  const T = day(fact.processedThrough);
  if (!T) throw conflict(`'${fact.name}' has not been processed yet: start a run (POST /v1/facts/${fact.name}/runs).`, { processed_through: null });
  return { T, tp: periodOfDay(grain, dateToDay(T)) };
}

/** The period of a date parameter; 400 naming the parameter when it is no calendar date (2026-02-30). */
function datePeriod(grain: Grain, date: string, field: string): number {
  const d = parseDate(date);
  if (d === null) throw badRequest(`${field} must be a date (YYYY-MM-DD).`, [{ path: field, message: "invalid date" }]);
  return periodOfDay(grain, d);
}

export function periodParam(fact: Fact, grain: Grain, date: string, field: string): number {
  const p = datePeriod(grain, date, field);
  const { T, tp } = processedPeriod(fact, grain);
  if (p > tp) throw conflict(`${field} ${date} is beyond what '${fact.name}' is processed through (${T}).`, { processed_through: T });
  return p;
}

/**
 * Whether p is the watermark's period and its governing islands are then the latest ones. Not while a
 * run is in progress or after one failed (dirty_from is then set): each grain commits before the
 * watermark moves, so islands beyond the watermark may exist, and a user's latest island may start
 * after p (its status row would come out with negative streaks, and FirstLast would lose the user).
 */
function isLatest(fact: Fact, grain: Grain, p: number): boolean {
  if (fact.runningThrough !== null || fact.dirtyFrom !== null) return false;
  return p === processedPeriod(fact, grain).tp;
}

function assertFromNotAfterTo(from: number, to: number) {
  if (from > to) throw badRequest("from must not be after to.", [{ path: "from", message: "after to" }]);
}

/**
 * Whether period p is whole: its last day is processed and has ended in the fact's timezone. A run may
 * go through today (its numbers so far); today's period stays partial until the day is over.
 */
export function isComplete(fact: Fact, grain: Grain, p: number): boolean {
  const last = periodEndDay(grain, p);
  return last <= dateToDay(day(fact.processedThrough)!) && last < dateToDay(localDate(fact.timezone));
}

function strip<T extends { user_key: number }>(row: T): Omit<T, "user_key"> {
  const { user_key: _k, ...rest } = row;
  return rest;
}

export async function statusOfPeriod(ctx: AppContext, fact: Fact, q: { grain: Grain; period: string; state?: string; transition_segment?: string } & PageQuery) {
  const p = periodParam(fact, q.grain, q.period, "period");
  const after = decodeCursor(q.cursor, userKeyCursor);
  const rows = await ctx.engine.statusPage(fact.id, GRAIN_CODE[q.grain], p, q, { afterUserKey: after?.[0], limit: q.limit + 1 }, isLatest(fact, q.grain, p));
  return { ...toPage(rows, q.limit, (r) => [r.user_key], strip), period: periodToDate(q.grain, p), period_complete: isComplete(fact, q.grain, p) };
}

export function exportStatus(ctx: AppContext, fact: Fact, q: { grain: Grain; period: string; state?: string; transition_segment?: string }, format: ExportFormat): Promise<Readable> {
  const p = periodParam(fact, q.grain, q.period, "period");
  return ctx.engine.statusExport(fact.id, GRAIN_CODE[q.grain], p, q, format, isLatest(fact, q.grain, p));
}

export async function activationOfPeriod(ctx: AppContext, fact: Fact, q: { grain: Grain; period: string; state?: string } & PageQuery) {
  const p = periodParam(fact, q.grain, q.period, "period");
  const after = decodeCursor(q.cursor, userKeyCursor);
  const rows = await ctx.engine.activationPage(fact.id, GRAIN_CODE[q.grain], p, q.state, { afterUserKey: after?.[0], limit: q.limit + 1 });
  return { ...toPage(rows, q.limit, (r) => [r.user_key], strip), period: periodToDate(q.grain, p), period_complete: isComplete(fact, q.grain, p) };
}

export function exportActivation(ctx: AppContext, fact: Fact, q: { grain: Grain; period: string; state?: string }, format: ExportFormat) {
  const p = periodParam(fact, q.grain, q.period, "period");
  return ctx.engine.activationExport(fact.id, GRAIN_CODE[q.grain], p, q.state, format);
}

async function userKeyFilter(ctx: AppContext, userId: string | undefined): Promise<number | undefined | null> {
  if (userId === undefined) return undefined;
  return ctx.engine.userKeyOf(userId);
}

export async function firstLastOfDate(ctx: AppContext, fact: Fact, q: { date: string; user_id?: string } & PageQuery) {
  const d = periodParam(fact, "day", q.date, "date");
  const key = await userKeyFilter(ctx, q.user_id);
  if (key === null) return { data: [], next_cursor: null, date: q.date };
  const after = decodeCursor(q.cursor, userKeyCursor);
  const rows = await ctx.engine.firstLastPage(fact.id, d, key, { afterUserKey: after?.[0], limit: q.limit + 1 }, isLatest(fact, "day", d));
  return { ...toPage(rows, q.limit, (r) => [r.user_key], strip), date: periodToDate("day", d) };
}

export async function exportFirstLast(ctx: AppContext, fact: Fact, q: { date: string; user_id?: string }, format: ExportFormat) {
  const d = periodParam(fact, "day", q.date, "date");
  const key = await userKeyFilter(ctx, q.user_id);
  return ctx.engine.firstLastExport(fact.id, d, key === null ? -1 : key, format, isLatest(fact, "day", d));
}

export async function userStatusTimeline(ctx: AppContext, fact: Fact, userId: string, q: { grain: Grain; from?: string; to?: string }) {
  const { T, tp } = processedPeriod(fact, q.grain);
  const key = await ctx.engine.userKeyOf(userId);
  const to = q.to ? periodParam(fact, q.grain, q.to, "to") : tp;
  const from = q.from ? periodParam(fact, q.grain, q.from, "from") : Number.MIN_SAFE_INTEGER;
  assertFromNotAfterTo(from, to);
  // The timeline starts at the user's first active period: the range walked is the user's, not
  // everything since a far-away default (which cost a million-period scan per request).
  const first = key === null ? undefined : (await ctx.engine.firstLastPage(fact.id, dateToDay(T), key, { limit: 1 }))[0];
  const firstP = first ? periodOfDay(q.grain, dateToDay(String(first.first_active_date))) : null;
  const rows = key === null || firstP === null || Math.max(from, firstP) > to ? [] : await ctx.engine.userTimeline(fact.id, GRAIN_CODE[q.grain], key, Math.max(from, firstP), to);
  if (rows.length === 0) throw notFound(`User '${userId}' has no activity on '${fact.name}' up to ${periodToDate(q.grain, to)}.`);
  return { user_id: userId, fact: fact.name, grain: q.grain, data: rows.map(strip) };
}

/** The growth lens (growth states, WAU, MAU) exists at day grain only. */
const isDayOnlyMetric = (c: MetricColumn) => c.startsWith("growth_") || c === "wau" || c === "mau";
/** A metric's name in answers. */
const metricName = (c: MetricColumn) => c.replace(/^seg_/, "segment_");

export const metricsRowSchema = z
  .object({
    period: isoDate.describe("First day of the period"),
    period_complete: z
      .boolean()
      .describe("The period's last day is processed and over in the fact's timezone (a run through today gives today's numbers so far, partial)"),
    ...(Object.fromEntries(
      METRIC_COLUMNS.map((c) => [metricName(c), isDayOnlyMetric(c) ? z.number().int().optional().describe("Day grain only") : z.number().int()]),
    ) as Record<string, z.ZodOptional<z.ZodNumber>>),
  })
  .meta({
    id: "MetricsRow",
    description:
      "Every count of the spec for one period: users_total, active, new, retained, reactivated, inactive, churned, segment_<each transition " +
      "segment>; at day grain also growth_<each growth state>, wau and mau.",
  });
/** A row of metricsRowSchema: the counts by metric name. */
export type MetricsOut = { period: string; period_complete: boolean; [metric: string]: string | number | boolean | undefined };

function metricRow(fact: Fact, grain: Grain, r: Record<string, number | string>): MetricsOut {
  const out: MetricsOut = { period: r.period as string, period_complete: isComplete(fact, grain, r.p as number) };
  for (const c of METRIC_COLUMNS) if (grain === "day" || !isDayOnlyMetric(c)) out[metricName(c)] = r[c] as number;
  return out;
}

export async function metricsOf(ctx: AppContext, fact: Fact, q: { grain: Grain; from?: string; to?: string }) {
  const { tp, T } = processedPeriod(fact, q.grain);
  const to = q.to ? periodParam(fact, q.grain, q.to, "to") : tp;
  const from = q.from ? periodParam(fact, q.grain, q.from, "from") : Number.MIN_SAFE_INTEGER;
  assertFromNotAfterTo(from, to);
  const rows = await ctx.engine.metrics(fact.id, GRAIN_CODE[q.grain], Math.max(from, -1_000_000), to);
  return { fact: fact.name, grain: q.grain, processed_through: T, data: rows.map((r) => metricRow(fact, q.grain, r)) };
}

const ENDS_ACTIVE = ["new", "new_to_retained", "retained_to_retained", "reactivated_to_retained", "inactive_to_reactivated"] as const;
const ENDS_INACTIVE = ["new_to_inactive", "retained_to_inactive", "reactivated_to_inactive", "inactive_to_inactive"] as const;

/** Why active users moved between two periods: the change decomposed by state and by segment. */
export async function contributionOf(ctx: AppContext, fact: Fact, q: { grain: Grain; base: string; compare: string }) {
  const b = periodParam(fact, q.grain, q.base, "base");
  const c = periodParam(fact, q.grain, q.compare, "compare");
  const g = GRAIN_CODE[q.grain];
  const rows = await ctx.engine.metrics(fact.id, g, Math.min(b, c), Math.max(b, c));
  const zero = Object.fromEntries(METRIC_COLUMNS.map((k) => [k, 0])) as Record<string, number>;
  const at = (p: number) => (rows.find((r) => r.p === p) as Record<string, number> | undefined) ?? zero;
  const B = at(b), C = at(c);
  const deltaActive = C.active! - B.active!;
  const share = (d: number) => (deltaActive === 0 ? null : d / deltaActive);
  const item = (name: string, col: string) => {
    const delta = C[col]! - B[col]!;
    return { name, base: B[col]!, compare: C[col]!, delta, share: share(delta) };
  };
  return {
    fact: fact.name,
    grain: q.grain,
    base: { period: periodToDate(q.grain, b), active: B.active!, period_complete: isComplete(fact, q.grain, b) },
    compare: { period: periodToDate(q.grain, c), active: C.active!, period_complete: isComplete(fact, q.grain, c) },
    delta_active: deltaActive,
    by_state: ACTIVE_STATES.map((s) => item(s, s)),
    by_segment: ENDS_ACTIVE.map((s) => item(s, `seg_${s}`)),
    outflow: {
      churned: item("churned", "churned"),
      segments: ENDS_INACTIVE.map((s) => item(s, `seg_${s}`)),
    },
  };
}

export async function coreActionsOf(ctx: AppContext, service: string, q: { grain: Grain; from?: string; to?: string }) {
  const facts = await ctx.db.prisma.fact.findMany({ where: { service }, orderBy: { name: "asc" } });
  if (facts.length === 0) throw notFound(`No fact belongs to service '${service}'.`);
  // Checked as metrics checks them, once for all the facts (processed or not).
  const to = q.to ? datePeriod(q.grain, q.to, "to") : undefined;
  const from = q.from ? datePeriod(q.grain, q.from, "from") : -1_000_000;
  if (to !== undefined) assertFromNotAfterTo(from, to);
  const out = [];
  for (const fact of facts) {
    if (!fact.processedThrough) {
      out.push({ fact: fact.name, processed_through: null, data: [] as MetricsOut[] });
      continue;
    }
    // Each fact through its own watermark rather than metrics' 409 beyond it: a service's facts are
    // processed apart, so one lagging fact must not refuse the whole comparison (see the route).
    const tp = periodOfDay(q.grain, dateToDay(day(fact.processedThrough)!));
    const rows = await ctx.engine.metrics(fact.id, GRAIN_CODE[q.grain], from, Math.min(to ?? tp, tp));
    out.push({ fact: fact.name, processed_through: day(fact.processedThrough), data: rows.map((r) => metricRow(fact, q.grain, r)) });
  }
  return { service, grain: q.grain, facts: out };
}
