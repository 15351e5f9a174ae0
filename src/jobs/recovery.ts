import type { AppContext } from "../context.js";

/**
 * Queues again the job of every processing run and materialisation whose record is still queued or
 * running. A Redis that lost its data (restarted without persistence, failed over) would otherwise
 * leave those records waiting forever, and new requests for the same run would join them. Job ids are
 * the record ids, so a job that still exists is left as it is; a job finding its record finished does
 * nothing. Returns how many records were looked at.
 */
export async function requeueUnfinishedJobs(ctx: AppContext): Promise<number> {
  const unfinished = { status: { in: ["queued", "running"] } };
  const runs = await ctx.db.prisma.processingRun.findMany({ where: unfinished, select: { id: true }, orderBy: { createdAt: "asc" } });
  const materializations = await ctx.db.prisma.materialization.findMany({ where: unfinished, select: { id: true }, orderBy: { createdAt: "asc" } });
  for (const r of runs) await ctx.queues.enqueueProcessRun({ runId: r.id });
  for (const m of materializations) await ctx.queues.enqueueMaterialization({ materializationId: m.id });
  return runs.length + materializations.length;
}
