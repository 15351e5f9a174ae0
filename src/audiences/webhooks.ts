import { createHmac, randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { z } from "zod";
import { isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { PrismaClientOrTransaction } from "../db/client.js";
import type { Webhook, WebhookDelivery } from "../generated/prisma/client.js";
import { Prisma } from "../generated/prisma/client.js";
import { badRequest, notFound } from "../http/problem.js";
import { afterCreatedAtId, createdAtIdCursor, decodeCursor, toPage, type PageQuery } from "../http/pagination.js";
import { ForbiddenAddressError, forbiddenAddressReason, guardedLookup, hostOf, webhookUrlProblem } from "./webhook-addresses.js";

export const WEBHOOK_EVENTS = [
  "materialization.succeeded", "materialization.failed", "run.succeeded", "run.failed", "campaign.assigned", "campaign.assignment_failed",
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export const createWebhookSchema = z
  .object({
    url: z.string().url().max(2000).refine((u) => /^https?:\/\//i.test(u), "must be an http(s) URL"),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1),
    secret: z.string().min(16, "at least 16 characters").max(200).describe("Shared secret for the HMAC-SHA256 signature"),
  })
  .strict();

export const webhookSchema = z
  .object({ id: z.string().uuid(), url: z.string(), events: z.array(z.enum(WEBHOOK_EVENTS)), created_at: isoInstant })
  .meta({ id: "Webhook" });

export const deliverySchema = z
  .object({
    id: z.string().uuid(),
    event: z.enum(WEBHOOK_EVENTS),
    status: z.enum(["pending", "delivered", "failed"]),
    attempts: z.number().int(),
    response_code: z.number().int().nullable(),
    error: z.string().nullable(),
    created_at: isoInstant,
    last_attempt_at: isoInstant.nullable(),
    delivered_at: isoInstant.nullable(),
  })
  .meta({ id: "WebhookDelivery" });

// Stored from requests checked against WEBHOOK_EVENTS.
const view = (w: Webhook) => ({ id: w.id, url: w.url, events: w.events as WebhookEvent[], created_at: w.createdAt.toISOString() });
const deliveryView = (d: WebhookDelivery) => ({
  id: d.id,
  event: d.event as WebhookEvent,
  status: d.status as "pending" | "delivered" | "failed",
  attempts: d.attempts,
  response_code: d.responseCode,
  error: d.error,
  created_at: d.createdAt.toISOString(),
  last_attempt_at: d.lastAttemptAt?.toISOString() ?? null,
  delivered_at: d.deliveredAt?.toISOString() ?? null,
});

export async function createWebhook(ctx: AppContext, input: z.infer<typeof createWebhookSchema>) {
  const problem = webhookUrlProblem(input.url, ctx.config.WEBHOOK_ALLOW_NETWORKS);
  if (problem) throw badRequest(`Invalid body: url: ${problem}.`, [{ path: "url", message: problem }]);
  const w = await ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url: input.url, events: [...new Set(input.events)], secret: input.secret } });
  return view(w);
}

export async function listWebhooks(ctx: AppContext, q: PageQuery) {
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  const rows = await ctx.db.prisma.webhook.findMany({
    where: { disabledAt: null, ...afterCreatedAtId(after, "asc") },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], view);
}

async function getWebhookRecord(ctx: AppContext, id: string) {
  const w = await ctx.db.prisma.webhook.findUnique({ where: { id } });
  if (!w || w.disabledAt) throw notFound(`No webhook ${id}.`);
  return w;
}

export async function getWebhook(ctx: AppContext, id: string) {
  return view(await getWebhookRecord(ctx, id));
}

/** Why a delivery that was waiting for a retry was never sent. */
const WEBHOOK_DELETED = "not sent: the webhook was deleted";

export async function deleteWebhook(ctx: AppContext, id: string) {
  await getWebhookRecord(ctx, id);
  await ctx.db.prisma.$transaction([
    ctx.db.prisma.webhook.update({ where: { id }, data: { disabledAt: new Date() } }),
    // Its deliveries waiting for a retry end here; a retry already under way finds the webhook deleted.
    ctx.db.prisma.webhookDelivery.updateMany({ where: { webhookId: id, status: "pending" }, data: { status: "failed", error: WEBHOOK_DELETED } }),
  ]);
}

export async function listDeliveries(ctx: AppContext, id: string, q: PageQuery) {
  await getWebhookRecord(ctx, id);
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  const rows = await ctx.db.prisma.webhookDelivery.findMany({
    where: {
      webhookId: id,
      ...afterCreatedAtId(after, "desc"),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], deliveryView);
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the receiver recomputes it and checks t is recent. */
export function signPayload(secret: string, body: string, timestamp: number): string {
  const mac = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

/** Records one delivery per subscribed webhook and queues it; delivery happens in a job with retries. */
export async function emitEvent(ctx: AppContext, event: WebhookEvent, data: Record<string, unknown>) {
  await queueDeliveries(ctx, await recordEvent(ctx.db.prisma, event, data));
}

/**
 * The deliveries of an event, one per webhook that listens, recorded on `db` (a transaction when the
 * event must commit with what it announces); returns their ids, for queueDeliveries after the commit.
 */
export async function recordEvent(db: PrismaClientOrTransaction, event: WebhookEvent, data: Record<string, unknown>): Promise<string[]> {
  const hooks = await db.webhook.findMany({ where: { disabledAt: null, events: { has: event } } });
  const ids: string[] = [];
  for (const h of hooks) {
    const id = randomUUID();
    const payload = { id, event, created_at: new Date().toISOString(), data };
    await db.webhookDelivery.create({ data: { id, webhookId: h.id, event, payload: payload as unknown as Prisma.InputJsonValue, status: "pending" } });
    ids.push(id);
  }
  return ids;
}

/** Queues recorded deliveries; one Redis could not take is queued by the workers' recovery sweep. */
export async function queueDeliveries(ctx: AppContext, ids: string[]): Promise<void> {
  for (const id of ids) await ctx.queues.enqueueWebhookDelivery({ deliveryId: id });
}

/** A delivery failure no later attempt can change (the job is not retried). */
export class FinalDeliveryError extends Error {}

/** One attempt; throws (so the job retries with backoff) unless the receiver answered 2xx. */
export async function attemptDelivery(ctx: AppContext, deliveryId: string, finalAttempt: boolean, timeoutMs = 10_000) {
  const d = await ctx.db.prisma.webhookDelivery.findUnique({ where: { id: deliveryId }, include: { webhook: true } });
  // Delivered, or failed for good: ended. A job revived by the recovery sweep (which read the delivery
  // as pending just before its last attempt failed) must not send it again.
  if (!d || d.status !== "pending") return;
  // A deleted webhook's endpoint gets nothing more, not even the retries of what it was sent before.
  if (d.webhook.disabledAt) {
    await ctx.db.prisma.webhookDelivery.updateMany({ where: { id: deliveryId, status: "pending" }, data: { status: "failed", error: WEBHOOK_DELETED } });
    return;
  }
  const body = JSON.stringify(d.payload);
  const ts = Math.floor(Date.now() / 1000);
  let code: number | null = null;
  let error: string | null = null;
  // A refusal of an address written in the URL is the same at every attempt: final at once. A name's
  // may change with what DNS answers, so that one is retried like any failure.
  let final = finalAttempt;
  try {
    code = await postJson(d.webhook.url, body, {
      "user-agent": "activation-audiences-webhooks",
      "webhook-id": d.id,
      "webhook-event": d.event,
      "x-aa-signature": signPayload(d.webhook.secret, body, ts),
    }, timeoutMs, ctx.config.WEBHOOK_ALLOW_NETWORKS);
    if (code < 200 || code >= 300) error = `receiver answered ${code}`;
  } catch (err) {
    if (err instanceof ForbiddenAddressError) {
      error = `not sent: ${err.message}`;
      if (err.inUrl) final = true;
    }
    else error = (err as Error).name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : `request failed: ${(err as Error).message}`;
  }
  await ctx.db.prisma.webhookDelivery.update({
    where: { id: deliveryId },
    data: {
      attempts: { increment: 1 },
      lastAttemptAt: new Date(),
      responseCode: code,
      error,
      status: error === null ? "delivered" : final ? "failed" : "pending",
      deliveredAt: error === null ? new Date() : null,
    },
  });
  if (error !== null) throw final && !finalAttempt ? new FinalDeliveryError(error) : new Error(error);
}

/**
 * POSTs a delivery and answers the receiver's status code (a redirect is not followed: it is the
 * receiver's answer). The connection only goes to addresses WEBHOOK_ALLOW_NETWORKS permits: an address
 * in the URL is checked as it is, a name on the very addresses it resolves to for this connection.
 */
function postJson(rawUrl: string, body: string, headers: Record<string, string>, timeoutMs: number, allowed: readonly string[]): Promise<number> {
  const url = new URL(rawUrl);
  const host = hostOf(url);
  if (isIP(host)) {
    const why = forbiddenAddressReason(host, allowed);
    if (why) return Promise.reject(new ForbiddenAddressError(why, true));
  }
  const transport = url.protocol === "https:" ? https : http;
  const signal = AbortSignal.timeout(timeoutMs);
  return new Promise<number>((resolve, reject) => {
    const req = transport.request(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        lookup: guardedLookup(allowed),
        // A connection of its own per attempt: nothing is reused from a connection checked earlier.
        agent: false,
        signal,
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        // The answer's body is not read: the status is what counts.
        res.destroy();
      },
    );
    req.on("error", (err) => reject(signal.aborted ? Object.assign(new Error("timeout"), { name: "TimeoutError" }) : err));
    req.end(body);
  });
}
