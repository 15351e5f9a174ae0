import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { JOB_NAMES, QUEUE_NAMES, processRunPayload, scheduledProcessingPayload, type ProcessRunPayload } from "./payloads.js";

/** The producer side of every queue, shared by routes, the CLI and schedulers. */
export class JobQueues {
  readonly processing: Queue;
  readonly schedules: Queue;

  constructor(readonly connection: Redis, readonly prefix: string) {
    this.processing = new Queue(QUEUE_NAMES.processing, { connection, prefix });
    this.schedules = new Queue(QUEUE_NAMES.schedules, { connection, prefix });
    for (const q of [this.processing, this.schedules]) q.on("error", () => {});
  }

  async enqueueProcessRun(payload: ProcessRunPayload): Promise<void> {
    const data = processRunPayload.parse(payload);
    await this.processing.add(JOB_NAMES.processRun, data, {
      // One job per run record: enqueueing the same run twice is a no-op.
      jobId: `run-${data.runId}`,
      attempts: 5,
      backoff: { type: "exponential", delay: 2000 },
      removeOnComplete: { age: 86_400, count: 10_000 },
      removeOnFail: { age: 7 * 86_400 },
    });
  }

  /** The daily processing of every fact; upsert keeps one scheduler however often the service restarts. */
  async upsertDailyProcessing(cron: string): Promise<void> {
    await this.schedules.upsertJobScheduler(
      "daily-processing",
      { pattern: cron, tz: "UTC" },
      { name: JOB_NAMES.processAllFacts, data: scheduledProcessingPayload.parse({}), opts: { attempts: 3, backoff: { type: "exponential", delay: 5000 } } },
    );
  }

  async isReachable(): Promise<boolean> {
    try {
      return (await this.connection.ping()) === "PONG";
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.processing.close(), this.schedules.close()]);
  }
}
