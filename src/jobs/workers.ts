import { UnrecoverableError, Worker, type Job } from "bullmq";
import type { AppContext } from "../context.js";
import { executeRun, processAllFactsThroughYesterday } from "../activation/runs.js";
import { executeMaterialization, requestMaterialization } from "../audiences/materializations.js";
import { attemptDelivery, FinalDeliveryError } from "../audiences/webhooks.js";
import { executeCampaignResults } from "../campaigns/results.js";
import { executeCampaignAssignment } from "../campaigns/assigning.js";
import { createRedis } from "./redis.js";
import { reviveUnfinishedJobs } from "./recovery.js";
import { deleteExpiredIdempotencyRecords } from "../http/idempotency.js";
import {
  JOB_NAMES, QUEUE_NAMES, audienceRefreshPayload, campaignAssignmentPayload, campaignResultsPayload, materializationPayload, processRunPayload,
  scheduledProcessingPayload, webhookDeliveryPayload,
} from "./payloads.js";

export interface RunningWorkers {
  close(): Promise<void>;
}

const isFinalAttempt = (job: Job) => job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

/** Thin processors: validate the payload, call the domain function. */
export function startWorkers(ctx: AppContext, log: { info(o: object, m?: string): void; error(o: object, m?: string): void }): RunningWorkers {
  const connection = createRedis(ctx.config.REDIS_URL, "worker");
  const prefix = ctx.config.REDIS_PREFIX;
  const scale = Math.max(1, ctx.config.WORKERS);
  const lock = { lockDuration: ctx.config.JOB_LOCK_MS, stalledInterval: ctx.config.JOB_STALLED_CHECK_MS };
  const workers = [
    new Worker(
      QUEUE_NAMES.processing,
      async (job: Job) => {
        const { runId } = processRunPayload.parse(job.data);
        // Progress in Redis is informative only (the run record has it too): never wait for it, so a
        // Redis outage does not hold the run's PostgreSQL transactions open.
        const progress = (f: number) => void job.updateProgress(Math.round(f * 100)).catch(() => {});
        const run = await executeRun(ctx, runId, { finalAttempt: isFinalAttempt(job), progress });
        return { status: run.status };
      },
      // Runs of one fact serialise in the engine; two facts may process at once.
      { connection, prefix, concurrency: 2 * scale, ...lock },
    ),
    new Worker(
      QUEUE_NAMES.materializations,
      async (job: Job) => {
        const { materializationId } = materializationPayload.parse(job.data);
        const m = await executeMaterialization(ctx, materializationId, { finalAttempt: isFinalAttempt(job) });
        return { status: m.status, member_count: m.member_count };
      },
      { connection, prefix, concurrency: 2 * scale, ...lock },
    ),
    new Worker(
      QUEUE_NAMES.webhooks,
      async (job: Job) => {
        const { deliveryId } = webhookDeliveryPayload.parse(job.data);
        try {
          await attemptDelivery(ctx, deliveryId, isFinalAttempt(job), ctx.config.WEBHOOK_TIMEOUT_MS);
        } catch (err) {
          throw err instanceof FinalDeliveryError ? new UnrecoverableError(err.message) : err;
        }
      },
      { connection, prefix, concurrency: 4 * scale, ...lock },
    ),
    new Worker(
      QUEUE_NAMES.campaigns,
      async (job: Job) => {
        if (job.name === JOB_NAMES.assignCampaign) {
          const { campaignId, version } = campaignAssignmentPayload.parse(job.data);
          return executeCampaignAssignment(ctx, campaignId, version, { finalAttempt: isFinalAttempt(job) });
        }
        const { campaignId } = campaignResultsPayload.parse(job.data);
        return executeCampaignResults(ctx, campaignId, { finalAttempt: isFinalAttempt(job) });
      },
      { connection, prefix, concurrency: scale, ...lock },
    ),
    new Worker(
      QUEUE_NAMES.schedules,
      async (job: Job) => {
        if (job.name === JOB_NAMES.processAllFacts) {
          scheduledProcessingPayload.parse(job.data);
          const runs = await processAllFactsThroughYesterday(ctx);
          return { runs: runs.map((r) => r.id) };
        }
        if (job.name === JOB_NAMES.refreshAudience) {
          const { audienceId } = audienceRefreshPayload.parse(job.data);
          const { materialization } = await requestMaterialization(ctx, audienceId, undefined, "schedule");
          return { materialization: materialization.id };
        }
        throw new Error(`unknown scheduled job ${job.name}`);
      },
      { connection, prefix, concurrency: 1, ...lock },
    ),
  ];
  for (const w of workers) {
    w.on("failed", (job, err) => log.error({ job: job?.id, queue: w.name, err: err.message }, "job failed"));
    w.on("error", () => {});
  }
  // Whenever Redis is (re)connected, and every JOB_RECOVERY_INTERVAL_MS, jobs that were lost or ended
  // without their record knowing are revived; the queue's own connection may come back a moment later
  // than this one, hence a few tries.
  let closing = false;
  let sweeping = false;
  // A sweep asked for while one runs (Redis back during a periodic sweep) runs right after it.
  let askedTries = 0;
  const reviveJobs = async (tries: number): Promise<void> => {
    if (sweeping) {
      askedTries = Math.max(askedTries, tries);
      return;
    }
    sweeping = true;
    try {
      for (let attempt = 1; attempt <= tries && !closing; attempt++) {
        try {
          const n = await reviveUnfinishedJobs(ctx);
          if (n > 0) log.info({ jobs: n }, "jobs of unfinished records revived");
          return;
        } catch {
          if (attempt < tries) await new Promise((r) => setTimeout(r, 1000 * attempt));
        }
      }
    } finally {
      sweeping = false;
      const again = askedTries;
      askedTries = 0;
      if (again > 0 && !closing) void reviveJobs(again);
    }
  };
  connection.on("ready", () => void reviveJobs(5));
  const expireIdempotencyRecords = () =>
    deleteExpiredIdempotencyRecords(ctx.db.pool, ctx.config.IDEMPOTENCY_KEY_RETENTION_HOURS)
      .then((n) => n > 0 && log.info({ records: n }, "expired Idempotency-Key records deleted"))
      .catch((err: Error) => log.error({ err: err.message }, "could not delete expired Idempotency-Key records"));
  const sweep = setInterval(() => {
    void reviveJobs(1);
    void expireIdempotencyRecords();
  }, ctx.config.JOB_RECOVERY_INTERVAL_MS);
  sweep.unref();
  return {
    async close() {
      closing = true;
      clearInterval(sweep);
      // close() waits for in-flight jobs to finish: graceful shutdown.
      await Promise.allSettled(workers.map((w) => w.close()));
      connection.disconnect();
    },
  };
}
