import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { PrismaClientOrTransaction } from "../db/client.js";
import type { Campaign } from "../generated/prisma/client.js";
import { conflict } from "../http/problem.js";
import { dateToDay, dayToDate } from "../activation/periods.js";
import { INACTIVITY_BUCKETS, type CampaignArm, type GoalAggregateRow } from "../activation/postgres/campaigns.js";
import type { RunView } from "../activation/runs.js";
import { activityRanges, COVARIATE_DAYS, getCampaignRecord, queueResultsRecomputation, timezoneOf, type GoalMetric } from "./campaigns.js";
import { localDate } from "../facts/timezones.js";
import { SEND_STATUSES } from "./recording.js";
import { requireAssigned } from "./assigning.js";
import { compareGroups, EMPTY_SUMS, sampleRatioMismatch, SRM_ALPHA, type GroupSums, type MetricComparison, type MetricKind } from "./statistics.js";

/**
 * A campaign's results: the goal metric per assigned user over the window, read from the goal fact's
 * layer (set-based per-arm aggregates, see the engine's campaign methods), each outcome the CRM
 * reported, the sample-ratio check, window completeness, the send funnel and the lift by breakdown.
 * Computed by a job after each processing run of the goal fact (and after sends and outcomes), stored
 * with computed_at; reading them returns the stored copy.
 *
 * The analysis is intent to treat: every assigned user counts in its arm, whether or not it was sent
 * anything, so control members (held out, "would have been sent") and treatment members are measured
 * alike.
 */

const STATES = ["new", "retained", "reactivated", "inactive"] as const;

// ---------------------------------------------------------------- response schema

const nullableNumber = z.number().nullable();
const ci95 = z.tuple([z.number(), z.number()]).nullable();
const groupStat = z.object({ n: z.number().int(), mean: nullableNumber });

export const metricResultSchema = z
  .object({
    groups: z.object({ treatment: groupStat, control: groupStat }),
    global_control: groupStat.nullable().describe("Members of the global control group, reported apart (null when the campaign has none)"),
    absolute_lift: nullableNumber,
    absolute_ci95: ci95,
    relative_lift: nullableNumber,
    relative_ci95: ci95,
    p_value: nullableNumber,
    cuped: z.object({
      absolute_lift: nullableNumber,
      absolute_ci95: ci95,
      p_value: nullableNumber,
      theta: nullableNumber,
      reasons: z.record(z.string(), z.string()),
    }),
    reasons: z.record(z.string(), z.string()).describe("Why a statistic is null, by field name"),
  })
  .meta({ id: "CampaignMetricResult", description: "For a rate (returned, conversion) the mean is the rate." });

const breakdownRow = metricResultSchema.extend({ bucket: z.string() });
const funnelArm = z.object({
  assigned: z.number().int(),
  held_out: z.number().int().describe("Members logged as held out: they would have been sent"),
  reached: z.number().int().describe("Users with any send record"),
  by_status: z.record(z.string(), z.number().int()).describe("Distinct users per send status"),
  by_channel: z.record(z.string(), z.record(z.string(), z.number().int())).describe("Distinct users per channel and status"),
});

export const campaignResultSchema = z
  .object({
    campaign_id: z.string().uuid(),
    computed_at: isoInstant,
    duration_ms: z.number().int(),
    data_version: z.number().int(),
    stale: z.boolean().describe("Newer data exists than these results were computed from; a recomputation is queued"),
    recomputation_error: z
      .object({ message: z.string(), failed_at: isoInstant })
      .nullable()
      .describe("Why the last recomputation failed, when it did after these results were computed (they are then stale until one succeeds)"),
    analysis: z.string(),
    goal: metricResultSchema.extend({
      fact: z.string(),
      metric: z.enum(["returned", "active_periods"]),
      window_periods: z.number().int(),
    }),
    window: z.object({
      start: isoDate,
      end: isoDate,
      processed_through: isoDate.nullable(),
      days_total: z.number().int(),
      days_observed: z.number().int(),
      complete: z.boolean().describe("The goal fact is processed through the window's last day, and that day is over in the fact's timezone"),
    }),
    covariate: z.object({ start: isoDate, end: isoDate, description: z.string() }),
    assignment: z.object({
      holdout_percent: z.number(),
      global_control_percent: z.number(),
      treatment: z.number().int(),
      control: z.number().int(),
      global_control: z.number().int(),
    }),
    srm: z.object({
      expected_control_share: z.number(),
      n_treatment: z.number().int(),
      n_control: z.number().int(),
      chi_square: nullableNumber,
      p_value: nullableNumber,
      flagged: z.boolean().describe(`p < ${SRM_ALPHA}`),
      reason: z.string().nullable(),
    }),
    breakdowns: z.object({
      inactivity_periods: z.array(breakdownRow).describe("By the member's inactivity_periods at the list's as_of: 0, 1-6, 7-29, 30+"),
      state: z.array(breakdownRow).describe("By the member's state at the list's as_of"),
    }),
    outcomes: z.array(
      z.object({
        name: z.string(),
        conversion: metricResultSchema.describe("Share of assigned users with this outcome in the window"),
        value: metricResultSchema.describe("Mean summed value per assigned user in the window"),
      }),
    ),
    funnel: z.object({ treatment: funnelArm, control: funnelArm, global_control: funnelArm }),
  })
  .meta({ id: "CampaignResults" });
export type CampaignResults = z.infer<typeof campaignResultSchema>;
type StoredResults = Omit<CampaignResults, "stale" | "computed_at" | "duration_ms" | "data_version" | "recomputation_error">;

// ---------------------------------------------------------------- computation

const dayOf = (d: Date | null) => (d ? dateToDay(d.toISOString().slice(0, 10)) : null);

type ArmSums = Record<CampaignArm, GroupSums>;
const emptyArms = (): ArmSums => ({ treatment: { ...EMPTY_SUMS }, control: { ...EMPTY_SUMS }, global_control: { ...EMPTY_SUMS } });

function metricResult(s: ArmSums, kind: MetricKind, hasGlobal: boolean): z.infer<typeof metricResultSchema> {
  const cmp: MetricComparison = compareGroups(s.treatment, s.control, kind);
  const g = s.global_control;
  return { ...cmp, global_control: hasGlobal ? { n: g.n, mean: g.n > 0 ? g.sy / g.n : null } : null };
}

/** The last day that is over at `at` in a timezone (yesterday there), as a day number. */
const lastEndedDay = (timezone: string, at: Date = new Date()) => dateToDay(localDate(timezone, at)) - 1;

/** Whether a day has ended in the goal fact's timezone since `since`. */
async function dayEndedSinceIn(ctx: AppContext, factId: number, since: Date): Promise<boolean> {
  const timezone = (await timezoneOf(ctx, factId)) ?? "UTC";
  return lastEndedDay(timezone) > lastEndedDay(timezone, since);
}

export async function computeCampaignResults(ctx: AppContext, c: Campaign): Promise<StoredResults> {
  const fact = await ctx.db.prisma.fact.findUnique({ where: { id: c.goalFactId } });
  if (!fact) throw conflict(`The goal fact '${c.goalFact}' of campaign ${c.id} no longer exists.`);
  const launch = c.launchDate.toISOString().slice(0, 10);
  const L = dateToDay(launch);
  const W = c.goalWindowPeriods;
  // The day the members' figures are as of (the goal fact's watermark when they were last brought up to date).
  const T = dayOf(c.metricsThrough);
  const kind: MetricKind = c.goalMetric === "returned" ? "rate" : "mean";
  const hasGlobal = c.globalControlPercent > 0;

  const rows = await ctx.engine.campaignGoalAggregates(c.id, c.goalMetric as GoalMetric);
  const all = emptyArms();
  const byBucket = new Map<string, ArmSums>();
  const bucketKey = (r: GoalAggregateRow) => `${r.dimension}:${r.bucket}`;
  for (const r of rows) {
    const sums: GroupSums = { n: r.n, sy: r.sy, syy: r.syy, sx: r.sx, sxx: r.sxx, sxy: r.sxy };
    if (r.dimension === "all") all[r.arm] = sums;
    else {
      const k = bucketKey(r);
      if (!byBucket.has(k)) byBucket.set(k, emptyArms());
      byBucket.get(k)![r.arm] = sums;
    }
  }
  const breakdown = (dimension: string, buckets: readonly string[]) =>
    buckets.map((b) => ({ bucket: b, ...metricResult(byBucket.get(`${dimension}:${b}`) ?? emptyArms(), kind, hasGlobal) }));

  // Outcomes in the window, by the goal fact's calendar: [launch 00:00, end + 1 00:00) in its timezone.
  const bounds = await ctx.db.pool.query<{ from: Date; to: Date }>(
    `SELECT ($1::date)::timestamp AT TIME ZONE $3 AS "from", ($2::date)::timestamp AT TIME ZONE $3 AS "to"`,
    [launch, dayToDate(L + W), fact.timezone],
  );
  const oRows = await ctx.engine.campaignOutcomeAggregates({ campaignId: c.id, from: bounds.rows[0]!.from, to: bounds.rows[0]!.to });
  const names = [...new Set(oRows.map((r) => r.name))].sort();
  const outcomes = names.map((name) => {
    const conv = emptyArms(), value = emptyArms();
    for (const arm of ["treatment", "control", "global_control"] as const) {
      const base = all[arm];
      const r = oRows.find((x) => x.name === name && x.arm === arm);
      conv[arm] = { n: base.n, sy: r?.converters ?? 0, syy: r?.converters ?? 0, sx: base.sx, sxx: base.sxx, sxy: r?.sx ?? 0 };
      value[arm] = { n: base.n, sy: r?.sv ?? 0, syy: r?.svv ?? 0, sx: base.sx, sxx: base.sxx, sxy: r?.sxv ?? 0 };
    }
    return { name, conversion: metricResult(conv, "rate", hasGlobal), value: metricResult(value, "mean", hasGlobal) };
  });

  const fRows = await ctx.engine.campaignSendFunnel(c.id);
  const funnelOf = (arm: CampaignArm) => {
    const assigned = all[arm].n;
    const by_status: Record<string, number> = Object.fromEntries(SEND_STATUSES.map((s) => [s, 0]));
    const by_channel: Record<string, Record<string, number>> = {};
    let reached = 0;
    for (const r of fRows.filter((x) => x.arm === arm)) {
      if (r.status === null) reached = r.users;
      else if (r.channel === null) by_status[r.status] = r.users;
      else (by_channel[r.channel] ??= {})[r.status] = r.users;
    }
    return { assigned, held_out: arm === "treatment" ? 0 : assigned, reached, by_status, by_channel };
  };

  // Days of the window that are observed whole: processed, and over in the goal fact's timezone (a run
  // through today gives today's activity so far, which counts in the figures but not as a whole day).
  const observed = T === null ? null : Math.min(T, lastEndedDay(fact.timezone));
  const daysObserved = observed === null ? 0 : Math.max(0, Math.min(W, observed - L + 1));
  return {
    campaign_id: c.id,
    analysis:
      "Intent to treat: every assigned user counts in its arm whether or not it was sent anything; control members are held out (they would have been sent). " +
      `Goal and covariate are read from the '${fact.name}' layer at day grain.`,
    goal: { fact: fact.name, metric: c.goalMetric as GoalMetric, window_periods: W, ...metricResult(all, kind, hasGlobal) },
    window: {
      start: launch,
      end: dayToDate(L + W - 1),
      processed_through: T === null ? null : dayToDate(T),
      days_total: W,
      days_observed: daysObserved,
      complete: observed !== null && observed >= L + W - 1,
    },
    covariate: {
      start: dayToDate(L - COVARIATE_DAYS),
      end: dayToDate(L - 1),
      description: `Active days on '${fact.name}' in the ${COVARIATE_DAYS} days before launch_date (CUPED covariate)`,
    },
    assignment: {
      holdout_percent: c.holdoutPercent,
      global_control_percent: c.globalControlPercent,
      treatment: all.treatment.n,
      control: all.control.n,
      global_control: all.global_control.n,
    },
    srm: sampleRatioMismatch(all.treatment.n, all.control.n, c.holdoutPercent / 100),
    breakdowns: { inactivity_periods: breakdown("inactivity_periods", INACTIVITY_BUCKETS), state: breakdown("state", STATES) },
    outcomes,
    funnel: { treatment: funnelOf("treatment"), control: funnelOf("control"), global_control: funnelOf("global_control") },
  };
}

/**
 * Brings the members' window and covariate days up to date with the goal fact's layer. The plan is
 * decided under the campaign's row lock (so two computations never add the same days twice) from
 * what the figures are as of (metrics_through) and what runs reported since (metrics_pending_from).
 */
export async function refreshMemberActivity(ctx: AppContext, c: Campaign) {
  const launch = c.launchDate.toISOString().slice(0, 10);
  return ctx.engine.refreshCampaignActivity(c.id, activityRanges(c.goalFactId, launch, c.goalWindowPeriods), {
    plan: async (tx) => {
      const r = await tx.query<{ metrics_through: string | null; metrics_pending_from: string | null; metrics_full_refresh: boolean; t: string | null }>(
        `SELECT c.metrics_through, c.metrics_pending_from, c.metrics_full_refresh, f.processed_through AS t
         FROM campaign c LEFT JOIN fact f ON f.id = c.goal_fact_id WHERE c.id = $1 FOR UPDATE OF c`,
        [c.id],
      );
      const row = r.rows[0];
      if (!row || row.t === null) return null;
      const through = dateToDay(row.t);
      const done = row.metrics_through === null ? null : dateToDay(row.metrics_through);
      const pending = row.metrics_pending_from === null ? null : dateToDay(row.metrics_pending_from);
      if (row.metrics_full_refresh || done === null) return { mode: "full", from: null, through };
      if (pending === null) return null;
      if (pending > done) return { mode: "delta", from: pending, through };
      return { mode: "recompute", from: pending, through };
    },
    done: async (tx, plan) => {
      await tx.query(
        `UPDATE campaign SET metrics_through = $2, metrics_pending_from = NULL, metrics_full_refresh = false WHERE id = $1`,
        [c.id, dayToDate(plan.through)],
      );
    },
  });
}

/**
 * Computes and stores a campaign's results; an older computation never overwrites a newer one. A
 * failure is recorded beside the stored results; on a job's last attempt, also the data version it
 * failed for, which the recovery sweep then leaves alone.
 */
export async function computeAndStoreResults(ctx: AppContext, campaignId: string, opts: { finalAttempt?: boolean } = {}): Promise<CampaignResults | null> {
  const c = await ctx.db.prisma.campaign.findUnique({ where: { id: campaignId } });
  // Without assignments (being computed, or failed) there is nothing to measure yet: the assignment job
  // asks for results once it is done.
  if (!c || c.status !== "ready") return null;
  const t0 = performance.now();
  const computedAt = new Date();
  try {
    // Fold the goal fact's newly processed days into the members' figures (only the users they touch).
    let current = c;
    if (c.metricsFullRefresh || c.metricsPendingFrom || !c.metricsThrough) {
      await refreshMemberActivity(ctx, c);
      current = (await ctx.db.prisma.campaign.findUnique({ where: { id: campaignId } })) ?? c;
    }
    const result = await computeCampaignResults(ctx, current);
    const duration = Math.round(performance.now() - t0);
    const stored = await ctx.db.pool.query(
      `INSERT INTO campaign_result (campaign_id, result, data_version, computed_at, duration_ms)
       SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM campaign WHERE id = $1)
       ON CONFLICT (campaign_id) DO UPDATE SET result = EXCLUDED.result, data_version = EXCLUDED.data_version, computed_at = EXCLUDED.computed_at,
              duration_ms = EXCLUDED.duration_ms, error = NULL, failed_at = NULL
       WHERE campaign_result.data_version <= EXCLUDED.data_version`,
      [campaignId, JSON.stringify(result), c.dataVersion, computedAt, duration],
    );
    // The stored version, on the campaign for the recovery sweep's index. Written once the results are
    // committed, in a statement of its own: it never holds the results' row while waiting for the
    // campaign's (an assignment takes them the other way round), and should it be lost, the campaign
    // only looks behind, and the recomputation the sweep then asks for writes it again.
    if (stored.rowCount)
      await ctx.db.pool.query(`UPDATE campaign SET results_version = GREATEST(results_version, $2) WHERE id = $1`, [campaignId, c.dataVersion]);
    return { ...result, computed_at: computedAt.toISOString(), duration_ms: duration, data_version: c.dataVersion, stale: false, recomputation_error: null };
  } catch (err) {
    await ctx.db.pool
      .query(`UPDATE campaign_result SET error = $2, failed_at = now() WHERE campaign_id = $1`, [campaignId, (err as Error).message])
      .catch(() => {});
    if (opts.finalAttempt)
      await ctx.db.pool
        .query(`UPDATE campaign SET results_failed_version = GREATEST(results_failed_version, $2) WHERE id = $1`, [campaignId, c.dataVersion])
        .catch(() => {});
    throw err;
  }
}

/**
 * The job: computes the results once. Data that changed while it ran was asked for by its change,
 * whose request the queue keeps until this job ends (see enqueueCampaignResults); should that request
 * not have reached Redis, the job asks itself, seeing its data version overtaken.
 */
export async function executeCampaignResults(
  ctx: AppContext, campaignId: string, opts: { finalAttempt: boolean } = { finalAttempt: true },
): Promise<{ data_version: number | null }> {
  const r = await computeAndStoreResults(ctx, campaignId, opts);
  if (!r) return { data_version: null };
  const now = await ctx.db.prisma.campaign.findUnique({ where: { id: campaignId }, select: { dataVersion: true } });
  if (now && now.dataVersion > r.data_version) await queueResultsRecomputation(ctx, [campaignId]);
  return { data_version: r.data_version };
}

/**
 * The stored results (computed now the first time, or when `refresh` asks). Results older than the
 * campaign's data are served with stale: true while a recomputation is queued.
 */
export async function getCampaignResults(ctx: AppContext, id: string, opts: { refresh?: boolean } = {}): Promise<CampaignResults> {
  const c = await getCampaignRecord(ctx, id);
  requireAssigned(c, "ask for its results");
  const stored = opts.refresh ? null : await ctx.db.prisma.campaignResult.findUnique({ where: { campaignId: id } });
  if (!stored) {
    const fresh = await computeAndStoreResults(ctx, id);
    if (!fresh) return getCampaignResults(ctx, id, opts);
    return fresh;
  }
  const result = stored.result as unknown as StoredResults;
  // Stale too when computed before the end of a day the window was waiting for: completeness moves on
  // with the clock even when no new data comes.
  const dayEndedSince = !result.window.complete && (await dayEndedSinceIn(ctx, c.goalFactId, stored.computedAt));
  const stale = stored.dataVersion < c.dataVersion || dayEndedSince;
  if (stale) await queueResultsRecomputation(ctx, [id]);
  return {
    ...result,
    computed_at: stored.computedAt.toISOString(),
    duration_ms: stored.durationMs,
    data_version: stored.dataVersion,
    stale,
    recomputation_error: stored.error && stored.failedAt ? { message: stored.error, failed_at: stored.failedAt.toISOString() } : null,
  };
}

/**
 * After a processing run of a fact: the campaigns whose goal it is and whose covariate period or
 * window the run recomputed get a new data version, on `db` (the transaction that ends the run). Those
 * are the campaigns whose results the run changed: a window still open gets each new day, a closed one
 * only late data in it, and other campaigns are not touched (one range test on the goal fact's
 * campaigns). Returns their ids, for queueResultsRecomputation after the commit; the new data version
 * is the outbox record the recovery sweep revives the recomputation from, should Redis not take it.
 */
export async function markCampaignsChangedByRun(db: PrismaClientOrTransaction, factId: number, run: RunView): Promise<string[]> {
  const from = run.from ?? run.through;
  const rows = await db.$queryRaw<Array<{ id: string }>>`
    UPDATE campaign SET data_version = data_version + 1, metrics_pending_from = LEAST(metrics_pending_from, ${from}::date)
    WHERE goal_fact_id = ${factId} AND launch_date - ${COVARIATE_DAYS}::int <= ${run.through}::date AND launch_date + goal_window_periods - 1 >= ${from}::date
    RETURNING id::text AS id`;
  return rows.map((r) => r.id);
}
