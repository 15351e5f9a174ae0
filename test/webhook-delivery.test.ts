import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type ServerResponse, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attemptDelivery } from "../src/audiences/webhooks.js";
import { reviveUnfinishedJobs } from "../src/jobs/recovery.js";
import { api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

const TIMEOUT_MS = 300;

let env: TestEnv;
beforeAll(async () => {
  // Some tests drive attempts on records without a job: no periodic sweep may queue those meanwhile.
  env = await createTestEnv({ WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS), JOB_RECOVERY_INTERVAL_MS: "3600000" });
  env.startWorkers();
});
afterAll(async () => env?.close());

type Behaviour = "hang" | number;
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
  /** When a hung request's connection closed: the sender gave up on it. */
  closedAt?: number;
  /** The delivery's record as it stood when this attempt arrived. */
  recordBefore?: { attempts: number; status: string; error: string | null; responseCode: number | null };
}

/** A real HTTP receiver that answers each request by the next behaviour in its script (the last one repeats). */
async function receiver(script: Behaviour[]) {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", async () => {
      const entry: Received = { headers: req.headers, body, at: Date.now() };
      const id = req.headers["webhook-id"];
      if (typeof id === "string") {
        const d = await env.ctx.db.prisma.webhookDelivery.findUnique({ where: { id } });
        if (d) entry.recordBefore = { attempts: d.attempts, status: d.status, error: d.error, responseCode: d.responseCode };
      }
      received.push(entry);
      const behaviour = script[Math.min(received.length - 1, script.length - 1)]!;
      if (behaviour === "hang") {
        hanging.push(res);
        res.on("close", () => (entry.closedAt ??= Date.now()));
      }
      else res.writeHead(behaviour).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    received,
    close: () =>
      new Promise<void>((r) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The documented check a receiver makes: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, t recent. */
function verifySignature(header: string | undefined, body: string, secret: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(nowSeconds - t) > 300) return false;
  const expected = createHmac("sha256", secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2]!, "hex"));
}

async function deliveryOf(webhookId: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = (await api(env).get(`/v1/webhooks/${webhookId}/deliveries`)).json().data;
    if (list[0] && list[0].status !== "pending") return list[0];
    if (Date.now() > deadline) throw new Error(`delivery still pending: ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("webhook deliveries", () => {
  it("a receiver that times out, then answers 500, is retried with growing backoff; each failure is recorded; the third attempt lands", async () => {
    const rx = await receiver(["hang", 500, 204]);
    const secret = "retry-secret-0123456789";
    try {
      const hook = await api(env).post("/v1/webhooks", { url: rx.url, events: ["run.succeeded"], secret });
      expect(hook.statusCode, hook.body).toBe(201);
      await createFact(env, "hooked_fact");
      await ingest(env, "hooked_fact", [{ user_id: "u1", occurred_at: "2026-03-01T10:00:00Z" }]);
      const run = await processThrough(env, "hooked_fact", "2026-03-02");
      const d = await deliveryOf(hook.json().id);
      expect(d).toMatchObject({ event: "run.succeeded", status: "delivered", attempts: 3, response_code: 204, error: null });
      expect(rx.received).toHaveLength(3);
      // What was recorded after each failed attempt, as seen when the next one arrived.
      expect(rx.received[1]!.recordBefore).toEqual({ attempts: 1, status: "pending", error: `no answer within ${TIMEOUT_MS} ms`, responseCode: null });
      expect(rx.received[2]!.recordBefore).toEqual({ attempts: 2, status: "pending", error: "receiver answered 500", responseCode: 500 });
      // Backoff: about 1 s after the timed-out attempt gave up, then about 2 s after the 500. "Gave up"
      // is when the sender closed the hung connection: the request's arrival trails the sender's timer
      // by however long sending took, which on a busy machine eats into any margin.
      const [a, b, c] = rx.received as [Received, Received, Received];
      expect(a.closedAt! - a.at).toBeGreaterThan(TIMEOUT_MS / 2);
      expect(b.at - a.closedAt!).toBeGreaterThanOrEqual(900);
      expect(c.at - b.at).toBeGreaterThanOrEqual(1900);
      // Every attempt carries the same delivery: same id, same body, each signed verifiably.
      for (const r of rx.received) {
        expect(r.headers["webhook-id"]).toBe(d.id);
        expect(r.headers["webhook-event"]).toBe("run.succeeded");
        expect(r.body).toBe(a.body);
        expect(verifySignature(r.headers["x-aa-signature"] as string, r.body, secret)).toBe(true);
      }
      const payload = JSON.parse(a.body);
      expect(payload).toMatchObject({ id: d.id, event: "run.succeeded", data: { run: { id: run.id, status: "succeeded" } } });
      expect((await api(env).delete(`/v1/webhooks/${hook.json().id}`)).statusCode).toBe(204);
    } finally {
      await rx.close();
    }
  }, 60_000);

  it("the signature fails verification for a changed body, another secret or a stale timestamp", async () => {
    const rx = await receiver([204]);
    const secret = "verify-secret-0123456789";
    try {
      const hook = await api(env).post("/v1/webhooks", { url: rx.url, events: ["run.succeeded"], secret });
      await createFact(env, "signed_fact");
      await ingest(env, "signed_fact", [{ user_id: "u1", occurred_at: "2026-03-01T10:00:00Z" }]);
      await processThrough(env, "signed_fact", "2026-03-02");
      expect((await deliveryOf(hook.json().id)).status).toBe("delivered");
      const { headers, body } = rx.received.find((r) => r.body.includes("signed_fact"))!;
      const sig = headers["x-aa-signature"] as string;
      expect(verifySignature(sig, body, secret)).toBe(true);
      expect(verifySignature(sig, body.replace("signed_fact", "signed_fakt"), secret)).toBe(false);
      expect(verifySignature(sig, body, "another-secret-0123456789")).toBe(false);
      expect(verifySignature(sig, body, secret, Math.floor(Date.now() / 1000) + 3600)).toBe(false);
      expect((await api(env).delete(`/v1/webhooks/${hook.json().id}`)).statusCode).toBe(204);
    } finally {
      await rx.close();
    }
  }, 60_000);

  it("the final attempt records the failure for good: 'failed', with the receiver's answer or the timeout", async () => {
    for (const [script, code, error] of [
      [[500], 500, "receiver answered 500"],
      [["hang"], null, `no answer within ${TIMEOUT_MS} ms`],
    ] as const) {
      const rx = await receiver([...script]);
      try {
        const hook = (await api(env).post("/v1/webhooks", { url: rx.url, events: ["run.failed"], secret: "final-secret-0123456789" })).json();
        // A delivery record without a queued job: the attempts are driven here, as the worker would.
        const id = randomUUID();
        await env.ctx.db.prisma.webhookDelivery.create({ data: { id, webhookId: hook.id, event: "run.failed", payload: { id, event: "run.failed", data: {} }, status: "pending" } });
        await expect(attemptDelivery(env.ctx, id, false, TIMEOUT_MS)).rejects.toThrow(error);
        expect((await api(env).get(`/v1/webhooks/${hook.id}/deliveries`)).json().data[0]).toMatchObject({ status: "pending", attempts: 1, response_code: code, error });
        await expect(attemptDelivery(env.ctx, id, true, TIMEOUT_MS)).rejects.toThrow(error);
        const d = (await api(env).get(`/v1/webhooks/${hook.id}/deliveries`)).json().data[0];
        expect(d).toMatchObject({ status: "failed", attempts: 2, response_code: code, error, delivered_at: null });
        expect(d.last_attempt_at).not.toBeNull();
        expect(rx.received).toHaveLength(2);
      } finally {
        await rx.close();
      }
    }
  });

  it("a deleted webhook's endpoint gets nothing more: its pending deliveries end as not sent", async () => {
    const rx = await receiver([503]);
    try {
      const hook = (await api(env).post("/v1/webhooks", { url: rx.url, events: ["run.succeeded"], secret: "deleted-secret-0123456789" })).json();
      await createFact(env, "deleted_hook_fact");
      await ingest(env, "deleted_hook_fact", [{ user_id: "u1", occurred_at: "2026-03-01T10:00:00Z" }]);
      await processThrough(env, "deleted_hook_fact", "2026-03-02");
      // The first attempt failed; the delivery waits for its retry (about 1 s later).
      await expect.poll(() => rx.received.length, { timeout: 20_000 }).toBe(1);
      // The receiver sees the attempt before the worker has recorded its answer: wait for the record.
      const attempted = () => env.ctx.db.prisma.webhookDelivery.findMany({ where: { webhookId: hook.id, attempts: 1 } });
      await expect.poll(async () => (await attempted()).length, { timeout: 20_000 }).toBe(1);
      const [pending] = await attempted();
      expect(pending).toMatchObject({ status: "pending", attempts: 1 });
      expect((await api(env).delete(`/v1/webhooks/${hook.id}`)).statusCode).toBe(204);
      expect(await env.ctx.db.prisma.webhookDelivery.findUnique({ where: { id: pending!.id } })).toMatchObject({ status: "failed", attempts: 1, error: "not sent: the webhook was deleted" });
      // Past the retry's time: nothing arrived, and a retry that was already due sends nothing either.
      await new Promise((r) => setTimeout(r, 2500));
      await attemptDelivery(env.ctx, pending!.id, false, TIMEOUT_MS);
      expect(rx.received).toHaveLength(1);
    } finally {
      await rx.close();
    }
  }, 60_000);

  it("a pending delivery whose job was lost (Redis lost its data) is queued again by the recovery sweep and lands once", async () => {
    const rx = await receiver([204]);
    try {
      const hook = (await api(env).post("/v1/webhooks", { url: rx.url, events: ["run.failed"], secret: "lost-secret-0123456789" })).json();
      const id = randomUUID();
      await env.ctx.db.prisma.webhookDelivery.create({ data: { id, webhookId: hook.id, event: "run.failed", payload: { id, event: "run.failed", data: {} }, status: "pending" } });
      expect(await env.ctx.queues.webhooks.getJobState(env.ctx.queues.webhookDeliveryJobId(id))).toBe("unknown");
      expect(await reviveUnfinishedJobs(env.ctx)).toBeGreaterThanOrEqual(1);
      expect(await deliveryOf(hook.id)).toMatchObject({ id, status: "delivered", attempts: 1, response_code: 204, error: null });
      // A second sweep finds its job completed and its record delivered: nothing is sent again.
      await reviveUnfinishedJobs(env.ctx);
      await new Promise((r) => setTimeout(r, 300));
      expect(rx.received).toHaveLength(1);
    } finally {
      await rx.close();
    }
  });
});

describe("the workers' periodic recovery sweep", () => {
  let sweepEnv: TestEnv;
  beforeAll(async () => {
    sweepEnv = await createTestEnv({ WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS), JOB_RECOVERY_INTERVAL_MS: "300" });
  });
  afterAll(async () => sweepEnv?.close());

  it("queues a pending delivery that has no job while the workers run, without anyone asking", async () => {
    const workers = sweepEnv.startWorkers();
    const rx = await receiver([204]);
    try {
      // Well after the sweep the workers make on connecting.
      await new Promise((r) => setTimeout(r, 500));
      const hook = (await api(sweepEnv).post("/v1/webhooks", { url: rx.url, events: ["run.failed"], secret: "sweep-secret-0123456789" })).json();
      const id = randomUUID();
      await sweepEnv.ctx.db.prisma.webhookDelivery.create({ data: { id, webhookId: hook.id, event: "run.failed", payload: { id, event: "run.failed", data: {} }, status: "pending" } });
      const deadline = Date.now() + 10_000;
      let d: { status: string } | undefined;
      while (Date.now() < deadline && (d = (await api(sweepEnv).get(`/v1/webhooks/${hook.id}/deliveries`)).json().data[0])?.status !== "delivered")
        await new Promise((r) => setTimeout(r, 50));
      expect(d).toMatchObject({ id, status: "delivered", attempts: 1 });
      expect(rx.received).toHaveLength(1);
    } finally {
      await rx.close();
      await workers.close();
    }
  });
});
