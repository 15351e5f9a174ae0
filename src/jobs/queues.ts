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
  // A campaign's results recomputations are many jobs over time (BullMQ numbers them), one at a time.
  campaignResultsDeduplicationId = (campaignId: string) => `campaign-results-${campaignId}`;

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
   * Asks for a recomputation of a campaign's results. While one waits (or is delayed), a request joins
   * it: it reads the newest data anyway. While one runs, it may have read the data before the change
   * that asks: the request is kept and queued as the next job when the running one ends (BullMQ's
   * keepLastIfActive; several such requests make one). So a campaign has at most one recomputation
   * running and one waiting, and a change is never left to the next read.
   */
  async enqueueCampaignResults(payload: CampaignResultsPayload, delayMs = 0): Promise<void> {
    const data = campaignResultsPayload.parse(payload);
    await this.campaigns.add(JOB_NAMES.campaignResults, data, {
      deduplication: { id: this.campaignResultsDeduplicationId(data.campaignId), keepLastIfActive: true },
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
