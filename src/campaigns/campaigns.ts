import { randomUUID } from "node:crypto";
import type pg from "pg";
import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { Campaign, Fact } from "../generated/prisma/client.js";
import { badRequest, conflict, notFound } from "../http/problem.js";
import { afterCreatedAtId, createdAtIdCursor, decodeCursor, toPage, userKeyCursor, type PageQuery } from "../http/pagination.js";
import { dateToDay, dayToDate, isoDate as day, parseDate } from "../activation/periods.js";
import { localDate } from "../facts/timezones.js";
import type { ExportFormat } from "../activation/postgres/copy-out.js";
import type { ActivityRanges, CampaignArm } from "../activation/postgres/campaigns.js";
import { withTransaction } from "../activation/postgres/tx.js";
import { holdFacts } from "../facts/lifecycle-lock.js";
import { isWholeBuckets } from "./assignment.js";
import { pendingChanges, queueAssignment, requireAssigned, type PendingAssignment } from "./assigning.js";
import { getControlGroupSettings } from "./control-group.js";
import type { AudienceDefinition } from "../audiences/definition.js";

/**
 * Campaigns on frozen lists (materializations): a holdout split by the spec's assignment hash, frozen
 * in campaign_assignment by a job when the campaign is created (and again when an assignment field
 * changes before launch: ./assigning.ts), sends and outcomes the CRM reports (./recording.ts), and results
 * (./results.ts).
 *
 * Launch: a campaign is launched once its launch_date has come (today in the goal fact's timezone is
 * on or after it) or once anything was done with its assignments: the first pull of the assignments,
 * the first send or the first outcome recorded (locked_at/locked_reason). From then on the fields that
 * decide who is in which arm — materialization_id, holdout_percent, salt, launch_date — are immutable
 * (409); name and goal stay editable (the goal decides what is measured, not who is treated).
 */

export const GOAL_METRICS = ["returned", "active_periods"] as const;
export type GoalMetric = (typeof GOAL_METRICS)[number];
export const LOCK_REASONS = ["launch_date_reached", "assignments_pulled", "sends_recorded", "outcomes_recorded"] as const;
export type LockReason = (typeof LOCK_REASONS)[number];
export const ASSIGNMENT_FIELDS = ["materialization_id", "holdout_percent", "salt", "launch_date"] as const;
export const CAMPAIGN_STATUSES = ["assigning", "ready", "failed"] as const;

export const MAX_HOLDOUT_PERCENT = 50;
export const MAX_WINDOW_PERIODS = 365;

const dateSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date YYYY-MM-DD")
  .refine((s) => parseDate(s) !== null, "must be a calendar date");
const percentSchema = z
  .number()
  .min(0)
  .max(MAX_HOLDOUT_PERCENT)
  .refine(isWholeBuckets, "at most two decimals (a whole number of the 10,000 buckets)");

export const goalSchema = z
  .object({
    fact: z.string().min(1).max(63).describe("The fact whose layer measures the goal (must exist)"),
    window_periods: z.number().int().min(1).max(MAX_WINDOW_PERIODS).describe("Days in the window, starting at launch_date (launch day included)"),
    metric: z.enum(GOAL_METRICS).describe("`returned`: 1 when active on any day of the window; `active_periods`: active days in the window"),
  })
  .strict()
  .meta({ id: "CampaignGoal" });

export const createCampaignSchema = z
  .object({
    name: z.string().min(1).max(200),
    materialization_id: z.string().uuid().describe("A succeeded materialization: the list the campaign targets"),
    holdout_percent: percentSchema.default(10).describe("Share of the list held out as control, 0–50 (two decimals at most)"),
    launch_date: dateSchema.optional().describe("First day of the window; default the day after the list's as_of; must be after as_of, and at most 366 days after today"),
    goal: goalSchema,
    salt: z.string().min(1).max(200).optional().describe("Salt of the assignment hash; default the campaign id"),
  })
  .strict();

export const updateCampaignSchema = z
  .object({
    name: z.string().min(1).max(200).optional(),
    materialization_id: z.string().uuid().optional(),
    holdout_percent: percentSchema.optional(),
    launch_date: dateSchema.optional(),
    goal: goalSchema.optional(),
    salt: z.string().min(1).max(200).optional(),
  })
  .strict();
export type CreateCampaignBody = z.infer<typeof createCampaignSchema>;
export type UpdateCampaignBody = z.infer<typeof updateCampaignSchema>;

const countsSchema = z.object({ treatment: z.number().int(), control: z.number().int(), global_control: z.number().int(), total: z.number().int() });

export const campaignSchema = z
  .object({
    id: z.string().uuid(),
    name: z.string(),
    materialization_id: z.string().uuid(),
    audience_id: z.string().uuid(),
    as_of: isoDate.describe("The list's as_of"),
    grain: z.enum(["day", "week", "month"]).describe("Grain of the list's status columns (inactivity_periods is in its unit)"),
    goal: z.object({ fact: z.string(), window_periods: z.number().int(), metric: z.enum(GOAL_METRICS) }),
    holdout_percent: z.number(),
    salt: z.string(),
    launch_date: isoDate,
    window: z.object({ start: isoDate, end: isoDate }).describe("The goal window: window_periods days from launch_date"),
    global_control: z
      .object({ percent: z.number(), salt: z.string() })
      .nullable()
      .describe("The global control group as it was when the assignments were made; its members are held out"),
    status: z
      .enum(CAMPAIGN_STATUSES)
      .describe(
        "`assigning`: a job is splitting the list into arms (assignments, sends, outcomes and results answer 409 until it is done); " +
          "`ready`; `failed`: the first assignment failed and the campaign has none (see assignment_error)",
      ),
    assignment_error: z.string().nullable().describe("Why the last assignment failed (a failed change leaves the campaign as it was); null once one succeeds"),
    pending_changes: z
      .object({ materialization_id: z.string().uuid(), holdout_percent: z.number(), salt: z.string(), launch_date: isoDate })
      .nullable()
      .describe("The assignment fields a PATCH asked for while they are being applied (status assigning); the fields above stay as they are until then"),
    assigned_at: isoInstant.nullable().describe("When the assignments were last frozen (null: not yet)"),
    counts: countsSchema,
    launched: z.boolean().describe("Assignment fields are immutable once launched"),
    locked_reason: z.enum(LOCK_REASONS).nullable(),
    locked_at: isoInstant.nullable(),
    created_at: isoInstant,
    updated_at: isoInstant,
  })
  .meta({ id: "Campaign" });
export type CampaignView = z.infer<typeof campaignSchema>;

/**
 * Why a campaign has launched, or null: an action on its assignments (locked_at, the first reason
 * kept), else its launch date (YYYY-MM-DD) having come in the goal fact's timezone, whose calendar
 * decides the window too. Read from the record, or from its row under the row lock.
 */
export function launchReason(lockedAt: Date | null, lockedReason: LockReason | null, launchDate: string, timezone: string | undefined): LockReason | null {
  if (lockedAt) return lockedReason ?? "assignments_pulled";
  return launchDate <= localDate(timezone ?? "UTC") ? "launch_date_reached" : null;
}

export function launchState(c: Campaign, timezone: string | undefined): { launched: boolean; reason: LockReason | null } {
  const reason = launchReason(c.lockedAt, c.lockedReason as LockReason | null, day(c.launchDate), timezone);
  return { launched: reason !== null, reason };
}

/** What launched a campaign, in words. */
export function launchWords(reason: LockReason, launchDate: string): string {
  const why: Record<LockReason, string> = {
    launch_date_reached: `its launch date ${launchDate} has come`,
    assignments_pulled: "its assignments have been pulled",
    sends_recorded: "sends have been recorded",
    outcomes_recorded: "outcomes have been recorded",
  };
  return why[reason];
}

export function campaignView(c: Campaign, timezone: string | undefined): CampaignView {
  const launch = day(c.launchDate);
  const state = launchState(c, timezone);
  return {
    id: c.id,
    name: c.name,
    materialization_id: c.materializationId,
    audience_id: c.audienceId,
    as_of: day(c.asOf),
    grain: c.grain as CampaignView["grain"],
    goal: { fact: c.goalFact, window_periods: c.goalWindowPeriods, metric: c.goalMetric as GoalMetric },
    holdout_percent: c.holdoutPercent,
    salt: c.salt,
    launch_date: launch,
    window: { start: launch, end: dayToDate(dateToDay(launch) + c.goalWindowPeriods - 1) },
    global_control: c.globalControlPercent > 0 && c.globalControlSalt !== null ? { percent: c.globalControlPercent, salt: c.globalControlSalt } : null,
    status: c.status as CampaignView["status"],
    assignment_error: c.assignmentError,
    pending_changes: pendingChanges(c),
    assigned_at: c.assignedAt?.toISOString() ?? null,
    counts: {
      treatment: c.treatmentCount,
      control: c.controlCount,
      global_control: c.globalControlCount,
      total: c.treatmentCount + c.controlCount + c.globalControlCount,
    },
    launched: state.launched,
    locked_reason: state.reason,
    locked_at: c.lockedAt?.toISOString() ?? null,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
  };
}

export async function timezoneOf(ctx: AppContext, factId: number): Promise<string | undefined> {
  return (await ctx.db.prisma.fact.findUnique({ where: { id: factId }, select: { timezone: true } }))?.timezone;
}

export async function getCampaignRecord(ctx: AppContext, id: string): Promise<Campaign> {
  const c = await ctx.db.prisma.campaign.findUnique({ where: { id } });
  if (!c) throw notFound(`No campaign ${id}.`);
  return c;
}

export async function getCampaign(ctx: AppContext, id: string): Promise<CampaignView> {
  const c = await getCampaignRecord(ctx, id);
  return campaignView(c, await timezoneOf(ctx, c.goalFactId));
}

const unknownGoalFact = (name: string) => badRequest(`goal.fact: no fact named '${name}'.`, [{ path: "goal.fact", message: `unknown fact '${name}'` }]);

async function goalFact(ctx: AppContext, name: string): Promise<Fact> {
  const f = await ctx.db.prisma.fact.findUnique({ where: { name } });
  if (!f) throw unknownGoalFact(name);
  return f;
}

/**
 * First in the transaction that makes a fact a campaign's goal: keeps it from being deleted until the
 * transaction commits (a deletion then sees the campaign and refuses), and refuses as goalFact does
 * a fact whose deletion committed since it was looked up.
 */
async function holdGoalFact(tx: pg.ClientBase, fact: Fact): Promise<void> {
  if (!(await holdFacts(tx, [fact.id])).has(fact.id)) throw unknownGoalFact(fact.name);
}

/** The list a campaign targets: a succeeded materialization (400 when unknown, 409 when not finished). */
async function targetList(ctx: AppContext, materializationId: string) {
  const m = await ctx.db.prisma.materialization.findUnique({ where: { id: materializationId } });
  if (!m) throw badRequest(`materialization_id: no materialization ${materializationId}.`, [{ path: "materialization_id", message: "unknown materialization" }]);
  if (m.status !== "succeeded")
    throw conflict(`Materialization ${m.id} is ${m.status}; a campaign needs a list that has succeeded.`, { materialization_status: m.status });
  // The grain of the version the list was drawn with: the audience may have changed grain since.
  const version = await ctx.db.prisma.audienceVersion.findUniqueOrThrow({ where: { audienceId_version: { audienceId: m.audienceId, version: m.version } } });
  return { id: m.id, audienceId: m.audienceId, asOf: day(m.asOf), grain: (version.definition as unknown as AudienceDefinition).grain };
}

/** How far ahead of today (in the goal fact's timezone) a campaign may be planned. */
export const MAX_LAUNCH_AHEAD_DAYS = 366;

function checkLaunchDate(launch: string, asOf: string, timezone: string | undefined) {
  if (launch <= asOf)
    throw badRequest(`launch_date ${launch} must be after the list's as_of (${asOf}): the window starts after the list was drawn.`, [
      { path: "launch_date", message: `must be after ${asOf}` },
    ]);
  const latest = dayToDate(dateToDay(localDate(timezone ?? "UTC")) + MAX_LAUNCH_AHEAD_DAYS);
  if (launch > latest)
    throw badRequest(`launch_date ${launch} is more than ${MAX_LAUNCH_AHEAD_DAYS} days ahead; a campaign may be planned at most that far.`, [
      { path: "launch_date", message: `must be on or before ${latest}` },
    ]);
}

/** Days of the CUPED covariate: active days on the goal fact in this many days before launch_date. */
export const COVARIATE_DAYS = 28;

/** The goal's day ranges: the window (window_periods days from launch) and the covariate period before it. */
export function activityRanges(factId: number, launchDate: string, windowPeriods: number): ActivityRanges {
  const L = dateToDay(launchDate);
  return { factId, windowStart: L, windowEnd: L + windowPeriods - 1, covariateStart: L - COVARIATE_DAYS, covariateEnd: L - 1 };
}

/**
 * Queues the recomputation of campaigns' results after a change that bumped their data version (and
 * committed); one Redis cannot take now is queued by the workers' recovery sweep (src/jobs/recovery.ts).
 */
export async function queueResultsRecomputation(ctx: AppContext, campaignIds: string[], delayMs = 0): Promise<void> {
  for (const id of campaignIds) await ctx.queues.enqueueCampaignResults({ campaignId: id }, delayMs).catch(() => {});
}

/**
 * Creates a campaign, status `assigning`, and queues the job that freezes its assignments
 * (./assigning.ts); `onCreated` runs last in the creating transaction (the route records the request's
 * Idempotency-Key there). Returns the campaign's id and the assignment version its job carries.
 */
export async function createCampaign(
  ctx: AppContext, body: CreateCampaignBody, onCreated?: (tx: pg.ClientBase, id: string) => Promise<void>,
): Promise<{ id: string; version: number }> {
  const list = await targetList(ctx, body.materialization_id);
  const fact = await goalFact(ctx, body.goal.fact);
  const launch = body.launch_date ?? dayToDate(dateToDay(list.asOf) + 1);
  checkLaunchDate(launch, list.asOf, fact.timezone);
  const global = await getControlGroupSettings(ctx);
  const id = randomUUID();
  const salt = body.salt ?? id;
  const holdout = body.holdout_percent ?? 10;
  const version = 1;
  await withTransaction(ctx.db.pool, async (tx) => {
    await holdGoalFact(tx, fact);
    await tx.query(
      `INSERT INTO campaign (id, name, materialization_id, audience_id, as_of, grain, goal_fact_id, goal_fact, goal_metric, goal_window_periods,
                             holdout_percent, salt, launch_date, global_control_percent, global_control_salt, status, assignment_version)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'assigning', $16)`,
      [
        id, body.name, list.id, list.audienceId, list.asOf, list.grain, fact.id, fact.name, body.goal.metric, body.goal.window_periods,
        holdout, salt, launch, global?.percent ?? 0, global?.salt ?? null, version,
      ],
    );
    await onCreated?.(tx, id);
  }, 1);
  await queueAssignment(ctx, id, version);
  return { id, version };
}

export async function listCampaigns(ctx: AppContext, q: PageQuery) {
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  const rows = await ctx.db.prisma.campaign.findMany({
    where: afterCreatedAtId(after, "desc"),
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: q.limit + 1,
  });
  const facts = await ctx.db.prisma.fact.findMany({ where: { id: { in: [...new Set(rows.map((r) => r.goalFactId))] } }, select: { id: true, timezone: true } });
  const tz = new Map(facts.map((f) => [f.id, f.timezone]));
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], (r) => campaignView(r, tz.get(r.goalFactId)));
}

function launchedConflict(c: Campaign, reason: LockReason, fields: string[]) {
  return conflict(`Campaign ${c.id} has launched (${launchWords(reason, day(c.launchDate))}): ${fields.join(", ")} can no longer change.`, {
    launched: true, locked_reason: reason, fields,
  });
}

/** What decides the assignments, or what the assignment job computes from (the goal), waits for the job. */
const changeWhileAssigning = (id: string) =>
  conflict(`Campaign ${id} is being assigned: change it once its status is ready.`, { campaign_status: "assigning", headers: { "retry-after": "2" } });

/**
 * Changes a campaign. Name and goal change at once. A change of an assignment field (before launch only)
 * is recorded as pending and queued (./assigning.ts): the answer's `queued` is then the version its job
 * carries, and the campaign is `assigning` until the job has applied it with the new assignments.
 */
export async function updateCampaign(ctx: AppContext, id: string, body: UpdateCampaignBody): Promise<{ campaign: CampaignView; queued: number | null }> {
  const c = await getCampaignRecord(ctx, id);
  const tz = await timezoneOf(ctx, c.goalFactId);
  const current = { materialization_id: c.materializationId, holdout_percent: c.holdoutPercent, salt: c.salt, launch_date: day(c.launchDate) };
  const changed = ASSIGNMENT_FIELDS.filter((f) => body[f] !== undefined && body[f] !== current[f]);
  const fact = body.goal && body.goal.fact !== c.goalFact ? await goalFact(ctx, body.goal.fact) : null;
  const goalChanged = body.goal !== undefined && (body.goal.fact !== c.goalFact || body.goal.metric !== c.goalMetric || body.goal.window_periods !== c.goalWindowPeriods);
  if (c.status === "assigning" && (changed.length || goalChanged)) throw changeWhileAssigning(id);

  let pending: PendingAssignment | null = null;
  if (changed.length) {
    const state = launchState(c, tz);
    if (state.launched) throw launchedConflict(c, state.reason!, changed);
    const list = body.materialization_id !== undefined && body.materialization_id !== c.materializationId
      ? await targetList(ctx, body.materialization_id)
      : { id: c.materializationId, audienceId: c.audienceId, asOf: day(c.asOf), grain: c.grain };
    const launch = body.launch_date ?? current.launch_date;
    checkLaunchDate(launch, list.asOf, tz);
    pending = {
      materialization_id: list.id, audience_id: list.audienceId, as_of: list.asOf, grain: list.grain,
      holdout_percent: body.holdout_percent ?? c.holdoutPercent, salt: body.salt ?? c.salt, launch_date: launch,
    };
  }
  const goalTz = fact?.timezone ?? tz;
  const queued = await withTransaction(ctx.db.pool, async (tx) => {
    if (fact) await holdGoalFact(tx, fact);
    // Under the row lock, so a pull, a send or an assignment that got there first wins.
    const r = await tx.query<{ status: string; locked_at: Date | null; locked_reason: LockReason | null; launch_date: string }>(
      `SELECT status, locked_at, locked_reason, launch_date::text FROM campaign WHERE id = $1 FOR UPDATE`,
      [id],
    );
    const row = r.rows[0];
    if (!row) throw notFound(`No campaign ${id}.`);
    if (row.status === "assigning" && (pending || goalChanged)) throw changeWhileAssigning(id);
    const launched = pending && launchReason(row.locked_at, row.locked_reason, row.launch_date, goalTz);
    if (launched) throw launchedConflict(c, launched, changed);
    if (body.name !== undefined) await tx.query(`UPDATE campaign SET name = $2, updated_at = now() WHERE id = $1`, [id, body.name]);
    if (goalChanged) {
      // Another fact or window: every member's figures are recomputed (the metric alone needs none).
      const refigure = body.goal!.fact !== c.goalFact || body.goal!.window_periods !== c.goalWindowPeriods;
      await tx.query(
        `UPDATE campaign SET goal_fact_id = $2, goal_fact = $3, goal_metric = $4, goal_window_periods = $5, data_version = data_version + 1,
                metrics_full_refresh = metrics_full_refresh OR $6, updated_at = now()
         WHERE id = $1`,
        [id, fact?.id ?? c.goalFactId, body.goal!.fact, body.goal!.metric, body.goal!.window_periods, refigure],
      );
    }
    if (!pending) return null;
    const v = await tx.query<{ assignment_version: number }>(
      `UPDATE campaign SET status = 'assigning', assignment_version = assignment_version + 1, pending_assignment = $2, assignment_error = NULL, updated_at = now()
       WHERE id = $1 RETURNING assignment_version`,
      [id, JSON.stringify(pending)],
    );
    return v.rows[0]!.assignment_version;
  }, 1);
  if (queued !== null) await queueAssignment(ctx, id, queued);
  else if (goalChanged) await queueResultsRecomputation(ctx, [id]);
  return { campaign: await getCampaign(ctx, id), queued };
}

export async function deleteCampaign(ctx: AppContext, id: string): Promise<void> {
  await getCampaignRecord(ctx, id);
  await ctx.engine.deleteCampaignData(id, async (tx) => {
    await tx.query(`DELETE FROM campaign WHERE id = $1`, [id]);
  });
}

/** Marks a campaign launched by an action on its assignments (first one wins; later ones keep the first reason). */
export async function lockCampaign(db: pg.ClientBase | pg.Pool, id: string, reason: LockReason): Promise<void> {
  await db.query(`UPDATE campaign SET locked_at = now(), locked_reason = $2 WHERE id = $1 AND locked_at IS NULL`, [id, reason]);
}

// ---------------------------------------------------------------- assignments

export const assignmentRowSchema = z
  .object({
    user_id: z.string(),
    group: z.enum(["treatment", "control", "global_control"]),
    bucket: z.number().int().describe("0–9999: first 4 bytes of sha256(salt:user_id), big-endian, mod 10000"),
    action: z.enum(["send", "hold_out"]).describe("`send` for treatment; control and global control are held out (they would have been sent)"),
  })
  .meta({ id: "CampaignAssignment" });

/**
 * A page of the frozen assignments. Pulling them launches the campaign: from the first pull on, both
 * arms are fixed, and control members are on record as held out ("would have been sent"), so the
 * results compare all assigned users of both arms alike (intent to treat).
 */
export async function assignmentsPage(ctx: AppContext, id: string, q: PageQuery & { group?: CampaignArm }) {
  // Before the lock: a refused cursor launches nothing.
  const after = decodeCursor(q.cursor, userKeyCursor);
  const c = await getCampaignRecord(ctx, id);
  requireAssigned(c, "pull its assignments");
  await lockCampaign(ctx.db.pool, id, "assignments_pulled");
  const rows = await ctx.engine.assignmentPage(id, q.group, { afterUserKey: after?.[0], limit: q.limit + 1 });
  return {
    campaign_id: id,
    counts: { treatment: c.treatmentCount, control: c.controlCount, global_control: c.globalControlCount, total: c.treatmentCount + c.controlCount + c.globalControlCount },
    ...toPage(rows, q.limit, (r) => [r.user_key], ({ user_key: _k, ...rest }) => rest),
  };
}

export async function assignmentsExport(ctx: AppContext, id: string, group: CampaignArm | undefined, format: ExportFormat) {
  requireAssigned(await getCampaignRecord(ctx, id), "pull its assignments");
  await lockCampaign(ctx.db.pool, id, "assignments_pulled");
  return ctx.engine.assignmentExport(id, group, format);
}
