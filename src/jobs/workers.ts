import { Worker, type Job } from "bullmq";
import type { AppContext } from "../context.js";
import { executeRun, processAllFactsThroughYesterday } from "../activation/runs.js";
import { createRedis } from "./redis.js";
import { JOB_NAMES, QUEUE_NAMES, processRunPayload, scheduledProcessingPayload } from "./payloads.js";

export interface RunningWorkers {
  close(): Promise<void>;
}

/** Thin processors: validate the payload, call the domain function. */
export function startWorkers(ctx: AppContext, log: { info(o: object, m?: string): void; error(o: object, m?: string): void }): RunningWorkers {
  const connection = createRedis(ctx.config.REDIS_URL, "worker");
  const prefix = ctx.config.REDIS_PREFIX;
  const processing = new Worker(
    QUEUE_NAMES.processing,
    async (job: Job) => {
      const { runId } = processRunPayload.parse(job.data);
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const run = await executeRun(ctx, runId, { finalAttempt, progress: (f) => job.updateProgress(Math.round(f * 100)) });
      return { status: run.status };
    },
    // Runs of one fact serialise in the engine; two facts may process at once.
    { connection, prefix, concurrency: Math.max(1, ctx.config.WORKERS) * 2, lockDuration: 60_000 },
  );
  const schedules = new Worker(
    QUEUE_NAMES.schedules,
    async (job: Job) => {
      if (job.name === JOB_NAMES.processAllFacts) {
        scheduledProcessingPayload.parse(job.data);
        const runs = await processAllFactsThroughYesterday(ctx);
        return { runs: runs.map((r) => r.id) };
      }
      throw new Error(`unknown scheduled job ${job.name}`);
    },
    { connection, prefix, concurrency: 1 },
  );
  for (const w of [processing, schedules]) {
    w.on("failed", (job, err) => log.error({ job: job?.id, queue: w.name, err: err.message }, "job failed"));
    w.on("error", () => {});
  }
  return {
    async close() {
      // close() waits for in-flight jobs to finish: graceful shutdown.
      await Promise.allSettled([processing.close(), schedules.close()]);
      connection.disconnect();
    },
  };
}
