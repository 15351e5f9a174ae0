import { z } from "zod";

/** Job payloads: validated when enqueued and again when processed (a queue outlives code versions). */
export const processRunPayload = z.object({ runId: z.string().uuid() }).strict();
export type ProcessRunPayload = z.infer<typeof processRunPayload>;

export const materializationPayload = z.object({ materializationId: z.string().uuid() }).strict();
export type MaterializationPayload = z.infer<typeof materializationPayload>;

export const webhookDeliveryPayload = z.object({ deliveryId: z.string().uuid() }).strict();
export type WebhookDeliveryPayload = z.infer<typeof webhookDeliveryPayload>;

export const campaignResultsPayload = z.object({ campaignId: z.string().uuid() }).strict();
export type CampaignResultsPayload = z.infer<typeof campaignResultsPayload>;

/** Freezes a campaign's assignments for one request to (re)assign it (its assignment_version). */
export const campaignAssignmentPayload = z.object({ campaignId: z.string().uuid(), version: z.number().int().positive() }).strict();
export type CampaignAssignmentPayload = z.infer<typeof campaignAssignmentPayload>;

export const scheduledProcessingPayload = z.object({}).strict();
export const audienceRefreshPayload = z.object({ audienceId: z.string().uuid() }).strict();

export const QUEUE_NAMES = { processing: "processing", materializations: "materializations", webhooks: "webhooks", schedules: "schedules", campaigns: "campaigns" } as const;
export const JOB_NAMES = {
  processRun: "process-run",
  materialize: "materialize",
  deliverWebhook: "deliver-webhook",
  processAllFacts: "process-all-facts",
  refreshAudience: "refresh-audience",
  campaignResults: "campaign-results",
  assignCampaign: "assign-campaign",
} as const;
