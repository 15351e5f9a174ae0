import type { Queue } from "bullmq";
import type { AppContext } from "../context.js";

// Webhook deliveries still pending are looked at up to this age (their failed jobs are kept as long).
const DELIVERY_RECOVERY_AGE_MS = 7 * 86_400_000;
// At most this many pending deliveries per sweep, oldest first: a receiver down for a day leaves many.
const DELIVERY_RECOVERY_BATCH = 1_000;

/**
 * Makes sure the job of an unfinished record will run. Job ids are the record ids, so:
 * - no job (Redis lost its data, or the job was never added): it is queued again;
 * - a job that has ended (its last attempt failed, or it completed, while PostgreSQL could not take the
 *   outcome): it is retried with its attempts reset; the job reads its record and resumes or does nothing;
 * - a job waiting, delayed or running: left alone.
 * Returns whether the job was revived.
 */
export async function reviveJob(
  queue: Queue, jobId: string, enqueue: () => Promise<void>, stillUnfinished?: () => Promise<boolean>,
): Promise<boolean> {
  const state = await queue.getJobState(jobId);
  if (state !== "unknown" && state !== "failed" && state !== "completed") return false;
  // The record was read unfinished before the job's state: a job that ended since wrote its outcome first.
  if (stillUnfinished && !(await stillUnfinished())) return false;
  const job = state === "unknown" ? undefined : await queue.getJob(jobId);
  if (!job) {
    await enqueue();
    return true;
  }
  try {
    await job.retry(state as "failed" | "completed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    return true;
  } catch {
    // It moved meanwhile (another sweep retried it, or it expired): the next sweep sees where it is.
    return false;
  }
}

/** Revives the job of one processing run (see reviveJob). */
export function reviveRunJob(ctx: AppContext, runId: string): Promise<boolean> {
  return reviveJob(ctx.queues.processing, ctx.queues.processRunJobId(runId), () => ctx.queues.enqueueProcessRun({ runId }));
}

/**
 * Queues the recomputation of a campaign's results unless one is waiting, delayed or running (a running
 * one asks for another itself when it finds its data version overtaken). Returns whether it queued one.
 */
export async function reviveResultsJob(ctx: AppContext, campaignId: string): Promise<boolean> {
  const { queues } = ctx;
  const jobId = await queues.campaigns.getDeduplicationJobId(queues.campaignResultsDeduplicationId(campaignId));
  const state = jobId ? await queues.campaigns.getJobState(jobId) : "unknown";
  if (state !== "unknown" && state !== "failed" && state !== "completed") return false;
  await queues.enqueueCampaignResults({ campaignId });
  return true;
}

/**
 * The campaigns whose stored results are behind their data version (none stored yet included), but not
 * a version whose recomputation failed on its last attempt. The condition is the partial index's
 * (campaign_results_behind_idx, migration 20261128004000), written the same way so that the planner
 * uses it: a sweep reads the campaigns behind, not every campaign.
 */
async function campaignsWithResultsBehind(ctx: AppContext): Promise<string[]> {
  const rows = await ctx.db.prisma.$queryRaw<Array<{ id: string }>>`
    SELECT id::text AS id FROM campaign
    WHERE status = 'ready' AND data_version > COALESCE(results_version, -1) AND data_version > COALESCE(results_failed_version, -1)
    ORDER BY created_at`;
  return rows.map((r) => r.id);
}

/**
 * Revives the job of every processing run and materialisation still queued or running, of every
 * campaign still assigning or whose results are behind its data, and of every recent webhook delivery
 * still pending. Without this, a Redis that lost its data, or a last attempt whose outcome PostgreSQL
 * could not record, would leave those records waiting forever (results stale until someone reads them),
 * and new requests for the same run would join them. Returns how many jobs were revived.
 */
export async function reviveUnfinishedJobs(ctx: AppContext): Promise<number> {
  const { prisma } = ctx.db;
  const { queues } = ctx;
  // Each read is answered by a partial index on just these records (migrations 20261127150000, 20261127180000).
  const unfinished = { where: { status: { in: ["queued", "running"] } }, select: { id: true }, orderBy: { createdAt: "asc" as const } };
  // Oldest first within each kind; each entry revives one record's job.
  const revivals: Array<() => Promise<boolean>> = [
    ...(await prisma.processingRun.findMany(unfinished)).map(({ id }) => () => reviveRunJob(ctx, id)),
    ...(await prisma.materialization.findMany(unfinished)).map(
      ({ id }) => () => reviveJob(queues.materializations, queues.materializationJobId(id), () => queues.enqueueMaterialization({ materializationId: id })),
    ),
    // A campaign's job is that of its latest request to (re)assign (its assignment_version).
    ...(await prisma.campaign.findMany({ where: { status: "assigning" }, select: { id: true, assignmentVersion: true }, orderBy: { createdAt: "asc" } })).map(
      ({ id, assignmentVersion: version }) =>
        () => reviveJob(queues.campaigns, queues.campaignAssignmentJobId(id, version), () => queues.enqueueCampaignAssignment({ campaignId: id, version })),
    ),
    // A change that bumped a campaign's data version (a run's end, sends, outcomes) is the record of its
    // request for new results: committed first, its job queued after.
    ...(await campaignsWithResultsBehind(ctx)).map((id) => () => reviveResultsJob(ctx, id)),
    ...(
      await prisma.webhookDelivery.findMany({
        where: { status: "pending", createdAt: { gte: new Date(Date.now() - DELIVERY_RECOVERY_AGE_MS) } },
        select: { id: true },
        orderBy: { createdAt: "asc" },
        take: DELIVERY_RECOVERY_BATCH,
      })
    ).map(({ id }) => () =>
      reviveJob(queues.webhooks, queues.webhookDeliveryJobId(id), () => queues.enqueueWebhookDelivery({ deliveryId: id }), async () =>
        (await prisma.webhookDelivery.count({ where: { id, status: "pending" } })) > 0,
      ),
    ),
  ];
  let revived = 0;
  for (const revive of revivals) if (await revive()) revived++;
  return revived;
}
