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
export async function reviveJob(queue: Queue, jobId: string, enqueue: () => Promise<void>): Promise<boolean> {
  const state = await queue.getJobState(jobId);
  if (state !== "unknown" && state !== "failed" && state !== "completed") return false;
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
 * Revives the job of every processing run and materialisation still queued or running, and of every
 * recent webhook delivery still pending. Without this, a Redis that lost its data, or a last attempt
 * whose outcome PostgreSQL could not record, would leave those records waiting forever, and new
 * requests for the same run would join them. Returns how many jobs were revived.
 */
export async function reviveUnfinishedJobs(ctx: AppContext): Promise<number> {
  const unfinished = { status: { in: ["queued", "running"] } };
  const runs = await ctx.db.prisma.processingRun.findMany({ where: unfinished, select: { id: true }, orderBy: { createdAt: "asc" } });
  const materializations = await ctx.db.prisma.materialization.findMany({ where: unfinished, select: { id: true }, orderBy: { createdAt: "asc" } });
  const deliveries = await ctx.db.prisma.webhookDelivery.findMany({
    where: { status: "pending", createdAt: { gte: new Date(Date.now() - DELIVERY_RECOVERY_AGE_MS) } },
    select: { id: true },
    orderBy: { createdAt: "asc" },
    take: DELIVERY_RECOVERY_BATCH,
  });
  const { queues } = ctx;
  let revived = 0;
  for (const r of runs) if (await reviveRunJob(ctx, r.id)) revived++;
  for (const m of materializations)
    if (await reviveJob(queues.materializations, queues.materializationJobId(m.id), () => queues.enqueueMaterialization({ materializationId: m.id })))
      revived++;
  for (const d of deliveries)
    if (await reviveJob(queues.webhooks, queues.webhookDeliveryJobId(d.id), () => queues.enqueueWebhookDelivery({ deliveryId: d.id })))
      revived++;
  return revived;
}
