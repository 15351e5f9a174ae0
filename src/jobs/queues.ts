import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import {
  JOB_NAMES, QUEUE_NAMES, audienceRefreshPayload, campaignAssignmentPayload, campaignResultsPayload, materializationPayload, processRunPayload,
  scheduledProcessingPayload, webhookDeliveryPayload, type CampaignAssignmentPayload, type CampaignResultsPayload, type MaterializationPayload,
  type ProcessRunPayload, type WebhookDeliveryPayload,
} from "./payloads.js";

/** The producer side of every queue, shared by routes, the CLI and schedulers. */
export class JobQueues {
  readonly processing: Queue;
  readonly materializations: Queue;
  readonly webhooks: Queue;
  readonly schedules: Queue;
  readonly campaigns: Queue;

  constructor(readonly connection: Redis, readonly prefix: string) {
    this.processing = new Queue(QUEUE_NAMES.processing, { connection, prefix });
    this.materializations = new Queue(QUEUE_NAMES.materializations, { connection, prefix });
    this.webhooks = new Queue(QUEUE_NAMES.webhooks, { connection, prefix });
    this.schedules = new Queue(QUEUE_NAMES.schedules, { connection, prefix });
    this.campaigns = new Queue(QUEUE_NAMES.campaigns, { connection, prefix });
    for (const q of this.all()) q.on("error", () => {});
  }

  all(): Queue[] {
    return [this.processing, this.materializations, this.webhooks, this.schedules, this.campaigns];
  }

  // One job per record, its id derived from the record's: enqueueing the same record twice is a no-op.
  processRunJobId = (runId: string) => `run-${runId}`;
  materializationJobId = (materializationId: string) => `mat-${materializationId}`;
  webhookDeliveryJobId = (deliveryId: string) => `hook-${deliveryId}`;
  campaignAssignmentJobId = (campaignId: string, version: number) => `campaign-assign-${campaignId}-${version}`;

  async enqueueProcessRun(payload: ProcessRunPayload): Promise<void> {
    const data = processRunPayload.parse(payload);
    await this.processing.add(JOB_NAMES.processRun, data, {
      jobId: this.processRunJobId(data.runId),
      attempts: 5,
      backoff: { type: "exponential", delay: 2000 },
      removeOnComplete: { age: 86_400, count: 10_000 },
      removeOnFail: { age: 7 * 86_400 },
    });
  }

  async enqueueMaterialization(payload: MaterializationPayload): Promise<void> {
    const data = materializationPayload.parse(payload);
    await this.materializations.add(JOB_NAMES.materialize, data, {
      jobId: this.materializationJobId(data.materializationId),
      attempts: 5,
      backoff: { type: "exponential", delay: 2000 },
      removeOnComplete: { age: 86_400, count: 10_000 },
      removeOnFail: { age: 7 * 86_400 },
    });
  }

  async enqueueWebhookDelivery(payload: WebhookDeliveryPayload): Promise<void> {
    const data = webhookDeliveryPayload.parse(payload);
    await this.webhooks.add(JOB_NAMES.deliverWebhook, data, {
      jobId: this.webhookDeliveryJobId(data.deliveryId),
      // About 1 s, 2 s, 4 s … up to ~2 min between the 8 attempts.
      attempts: 8,
      backoff: { type: "exponential", delay: 1000 },
      removeOnComplete: { age: 86_400, count: 10_000 },
      removeOnFail: { age: 7 * 86_400 },
    });
  }

  async enqueueCampaignAssignment(payload: CampaignAssignmentPayload): Promise<void> {
    const data = campaignAssignmentPayload.parse(payload);
    await this.campaigns.add(JOB_NAMES.assignCampaign, data, {
      jobId: this.campaignAssignmentJobId(data.campaignId, data.version),
      attempts: 5,
      backoff: { type: "exponential", delay: 2000 },
      removeOnComplete: { age: 86_400, count: 10_000 },
      removeOnFail: { age: 7 * 86_400 },
    });
  }

  /**
   * Recomputes a campaign's results. One job per campaign at a time: while one waits, adding another is
   * a no-op (it will read the newest data anyway); finished jobs are removed so the next add queues again.
   * A change that lands while a job runs is caught by the job itself (it compares data versions).
   */
  async enqueueCampaignResults(payload: CampaignResultsPayload, delayMs = 0): Promise<void> {
    const data = campaignResultsPayload.parse(payload);
    await this.campaigns.add(JOB_NAMES.campaignResults, data, {
      jobId: `campaign-results-${data.campaignId}`,
      delay: delayMs,
      attempts: 3,
      backoff: { type: "exponential", delay: 2000 },
      removeOnComplete: true,
      removeOnFail: true,
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

  async upsertAudienceRefresh(schedulerId: string, audienceId: string, cron: string, timezone: string): Promise<void> {
    await this.schedules.upsertJobScheduler(
      schedulerId,
      { pattern: cron, tz: timezone },
      { name: JOB_NAMES.refreshAudience, data: audienceRefreshPayload.parse({ audienceId }), opts: { attempts: 3, backoff: { type: "exponential", delay: 5000 } } },
    );
  }

  async removeScheduler(schedulerId: string): Promise<void> {
    await this.schedules.removeJobScheduler(schedulerId);
  }

  async isReachable(): Promise<boolean> {
    try {
      return (await this.connection.ping()) === "PONG";
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.all().map((q) => q.close()));
  }
}
