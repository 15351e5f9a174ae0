import { z } from "zod";

/** Job payloads: validated when enqueued and again when processed (a queue outlives code versions). */
export const processRunPayload = z.object({ runId: z.string().uuid() }).strict();
export type ProcessRunPayload = z.infer<typeof processRunPayload>;

export const scheduledProcessingPayload = z.object({}).strict();

export const QUEUE_NAMES = { processing: "processing", schedules: "schedules" } as const;
export const JOB_NAMES = { processRun: "process-run", processAllFacts: "process-all-facts" } as const;
