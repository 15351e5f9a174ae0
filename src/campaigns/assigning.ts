import { z } from "zod";
import type pg from "pg";
import type { AppContext } from "../context.js";
import type { Campaign } from "../generated/prisma/client.js";
import { dayToDate, isoDate as day } from "../activation/periods.js";
import { conflict, notFound } from "../http/problem.js";
import { withTransaction } from "../activation/postgres/tx.js";
import type { LockReason } from "./campaigns.js";
import { activityRanges, getCampaign, launchReason, launchWords, queueResultsRecomputation, timezoneOf } from "./campaigns.js";
import { emitEvent } from "../audiences/webhooks.js";
import { holdoutThreshold } from "./assignment.js";

/**
 * Freezing a campaign's assignments is a job (DESIGN.md principle 3: a list of a million members takes
 * seconds). Each request to (re)assign — creating the campaign, or a PATCH of an assignment field before
 * launch — bumps the campaign's assignment_version, sets its status to `assigning` and queues one job for
 * that version. The job computes every member's arm in one transaction under the campaign's row lock,
 * and applies the fields a PATCH asked for (pending_assignment) together with the assignments they give:
 * until it commits, the campaign keeps its fields and its assignments, and it keeps them when the job
 * fails. A job that finds another version, or no campaign, does nothing.
 */

/** The assignment fields a PATCH asked for, with what the new list brings (kept in pending_assignment). */
export const pendingAssignmentSchema = z
  .object({
    materialization_id: z.string().uuid(),
    audience_id: z.string().uuid(),
    as_of: z.string(),
    grain: z.string(),
    holdout_percent: z.number(),
    salt: z.string(),
    launch_date: z.string(),
  })
  .strict();
export type PendingAssignment = z.infer<typeof pendingAssignmentSchema>;

/** What the campaign's view shows of a PATCH being applied. */
export function pendingChanges(c: Campaign) {
  if (c.pendingAssignment === null) return null;
  const p = pendingAssignmentSchema.safeParse(c.pendingAssignment);
  if (!p.success) return null;
  return { materialization_id: p.data.materialization_id, holdout_percent: p.data.holdout_percent, salt: p.data.salt, launch_date: p.data.launch_date };
}

/**
 * Queues the job of one request to (re)assign. The campaign row is already committed: when Redis cannot
 * take the job now, the workers' recovery sweep queues it once Redis is back (src/jobs/recovery.ts).
 */
export async function queueAssignment(ctx: AppContext, campaignId: string, version: number): Promise<void> {
  await ctx.queues.enqueueCampaignAssignment({ campaignId, version }).catch(() => {});
}

/** A 409 for what needs the assignments while there are none to use (being computed, or failed). */
export function requireAssigned(c: Pick<Campaign, "id" | "status" | "assignedAt" | "assignmentError">, what: string) {
  if (c.status === "assigning")
    throw conflict(
      `Campaign ${c.id} is being assigned (its list is being split into arms${c.assignedAt ? " again" : ""}): ${what} once its status is ready.`,
      { campaign_status: c.status, headers: { "retry-after": "2" } },
    );
  if (c.status === "failed")
    throw conflict(
      `Campaign ${c.id} has no assignments: assigning its list failed (${c.assignmentError ?? "unknown error"}). ` +
        `Try again with POST /v1/campaigns/${c.id}/retry-assignment, change it with PATCH, or delete it.`,
      {
        campaign_status: c.status,
      },
    );
}

/**
 * requireAssigned under the campaign's row lock, first in a transaction that writes what is checked
 * against its assignments: a PATCH that would reassign them waits for the transaction (and then finds
 * the campaign launched), or has committed before it (409 here). Checked outside a lock, a batch could
 * pass the check, a reassignment commit meanwhile, and the batch be stored against assignments that
 * no longer stand (a send to a user now held out).
 *
 * FOR KEY SHARE: it keeps out what takes the row FOR UPDATE (a PATCH, the assignment job, a deletion)
 * but not other batches, nor their UPDATE of the campaign's data version and launch (FOR NO KEY
 * UPDATE), so batches of one campaign are stored side by side and meet only at that UPDATE.
 */
export async function lockAssigned(tx: pg.ClientBase, id: string, what: string): Promise<void> {
  const r = await tx.query<{ status: string; assigned_at: Date | null; assignment_error: string | null }>(
    `SELECT status, assigned_at, assignment_error FROM campaign WHERE id = $1 FOR KEY SHARE`,
    [id],
  );
  const row = r.rows[0];
  if (!row) throw notFound(`No campaign ${id}.`);
  requireAssigned({ id, status: row.status, assignedAt: row.assigned_at, assignmentError: row.assignment_error }, what);
}

/**
 * Queues the first assignment of a campaign whose assignment failed (status `failed`: a database that
 * was down on every attempt, say), with its fields as they are. Only a failed campaign: one that is
 * assigning has its job, and a ready one is reassigned by changing an assignment field (PATCH).
 * `onQueued` runs last in the transaction that bumps the version (the route records the request's
 * Idempotency-Key there).
 */
export async function retryCampaignAssignment(ctx: AppContext, id: string, onQueued?: (tx: pg.ClientBase) => Promise<void>): Promise<void> {
  const version = await withTransaction(ctx.db.pool, async (tx) => {
    const r = await tx.query<{ status: string }>(`SELECT status FROM campaign WHERE id = $1 FOR UPDATE`, [id]);
    const row = r.rows[0];
    if (!row) throw notFound(`No campaign ${id}.`);
    if (row.status === "assigning")
      throw conflict(`Campaign ${id} is being assigned already.`, { campaign_status: row.status, headers: { "retry-after": "2" } });
    if (row.status !== "failed")
      throw conflict(`Campaign ${id} has its assignments; to assign it again, change an assignment field with PATCH (before launch).`, { campaign_status: row.status });
    const v = await tx.query<{ assignment_version: number }>(
      `UPDATE campaign SET status = 'assigning', assignment_version = assignment_version + 1, assignment_error = NULL, updated_at = now()
       WHERE id = $1 RETURNING assignment_version`,
      [id],
    );
    await onQueued?.(tx);
    return v.rows[0]!.assignment_version;
  }, 1);
  await queueAssignment(ctx, id, version);
}

/** A request the job refuses for good (retrying changes nothing): recorded as the assignment's error. */
class AssignmentRefused extends Error {}
/** Another request (or a deletion) took over meanwhile: this job has nothing to do. */
class Superseded extends Error {}

export interface AssignmentOutcome {
  status: "ready" | "refused" | "superseded";
  error?: string;
}

/** The job's work for one assignment_version of a campaign (see the module comment). */
export async function executeCampaignAssignment(
  ctx: AppContext, campaignId: string, version: number, opts: { finalAttempt: boolean } = { finalAttempt: true },
): Promise<AssignmentOutcome> {
  const c = await ctx.db.prisma.campaign.findUnique({ where: { id: campaignId } });
  if (!c || c.assignmentVersion !== version || c.status !== "assigning") return { status: "superseded" };
  try {
    const pending = c.pendingAssignment === null ? null : pendingAssignmentSchema.parse(c.pendingAssignment);
    const target = pending ?? {
      materialization_id: c.materializationId, audience_id: c.audienceId, as_of: day(c.asOf), grain: c.grain,
      holdout_percent: c.holdoutPercent, salt: c.salt, launch_date: day(c.launchDate),
    };
    // The list may have been deleted since the request.
    const list = await ctx.db.prisma.materialization.findUnique({ where: { id: target.materialization_id }, select: { status: true } });
    if (list?.status !== "succeeded")
      throw new AssignmentRefused(`the list (materialization ${target.materialization_id}) was deleted before its members could be assigned`);
    const timezone = await timezoneOf(ctx, c.goalFactId);
    await ctx.engine.assignCampaign(
      {
        campaignId,
        materializationId: target.materialization_id,
        salt: target.salt,
        holdoutBuckets: holdoutThreshold(target.holdout_percent),
        // The global control group as it was when the campaign was created (later changes never reassign).
        globalSalt: c.globalControlPercent > 0 ? c.globalControlSalt : null,
        globalBuckets: holdoutThreshold(c.globalControlPercent),
        goal: activityRanges(c.goalFactId, target.launch_date, c.goalWindowPeriods),
      },
      {
        // Under the row lock: a deletion, a newer request, or an action that launched the campaign since
        // the request (a pull, a send, an outcome, or its launch date) wins over this job.
        before: async (tx) => {
          const r = await tx.query<{ status: string; assignment_version: number; locked_at: Date | null; locked_reason: LockReason | null; launch_date: string }>(
            `SELECT status, assignment_version, locked_at, locked_reason, launch_date::text FROM campaign WHERE id = $1 FOR UPDATE`,
            [campaignId],
          );
          const row = r.rows[0];
          if (!row || row.assignment_version !== version || row.status !== "assigning") throw new Superseded();
          if (c.assignedAt === null) return;
          const reason = launchReason(row.locked_at, row.locked_reason, row.launch_date, timezone);
          if (reason)
            throw new AssignmentRefused(`the campaign launched (${launchWords(reason, row.launch_date)}) before the change could be applied; it keeps its assignments`);
        },
        after: async (tx, counts, through) => {
          await tx.query(
            `UPDATE campaign SET materialization_id = $2, audience_id = $3, as_of = $4, grain = $5, holdout_percent = $6, salt = $7, launch_date = $8,
                    treatment_count = $9, control_count = $10, global_control_count = $11, metrics_through = $12,
                    metrics_pending_from = NULL, metrics_full_refresh = false, data_version = data_version + 1, results_version = NULL,
                    status = 'ready', pending_assignment = NULL, assignment_error = NULL, assigned_at = now(), updated_at = now()
             WHERE id = $1`,
            [
              campaignId, target.materialization_id, target.audience_id, target.as_of, target.grain, target.holdout_percent, target.salt, target.launch_date,
              counts.treatment, counts.control, counts.global_control, through === null ? null : dayToDate(through),
            ],
          );
          // Results of other assignments mean nothing for these.
          await tx.query(`DELETE FROM campaign_result WHERE campaign_id = $1`, [campaignId]);
        },
      },
    );
    await queueResultsRecomputation(ctx, [campaignId]);
    // The assignments stand whatever happens to the event: a failed emit is not retried by redoing them.
    await announce(ctx, campaignId, "campaign.assigned");
    return { status: "ready" };
  } catch (err) {
    if (err instanceof Superseded) return { status: "superseded" };
    const refused = err instanceof AssignmentRefused || err instanceof z.ZodError;
    const message = err instanceof z.ZodError ? `the requested change is unreadable (${err.issues[0]?.message ?? "invalid"})` : (err as Error).message;
    if (refused || opts.finalAttempt) {
      // A campaign that had assignments keeps them (and its fields); a new one has none: failed.
      const ended = await ctx.db.pool.query(
        `UPDATE campaign SET status = CASE WHEN assigned_at IS NULL THEN 'failed' ELSE 'ready' END, pending_assignment = NULL,
                assignment_error = $3, updated_at = now()
         WHERE id = $1 AND assignment_version = $2 AND status = 'assigning'`,
        [campaignId, version, message],
      );
      if (ended.rowCount) await announce(ctx, campaignId, "campaign.assignment_failed");
    }
    if (refused) return { status: "refused", error: message };
    throw err;
  }
}

/** The webhook event of an assignment's end, with the campaign as it now is (never fails the job). */
async function announce(ctx: AppContext, campaignId: string, event: "campaign.assigned" | "campaign.assignment_failed"): Promise<void> {
  try {
    await emitEvent(ctx, event, { campaign: await getCampaign(ctx, campaignId) });
  } catch {
    // Deleted meanwhile, or PostgreSQL/Redis unavailable: the campaign's record says how it ended.
  }
}
