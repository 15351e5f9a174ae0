import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attemptDelivery, FinalDeliveryError, queueDeliveries, recordEvent } from "../src/audiences/webhooks.js";
import { api } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/**
 * Webhooks are the one place the service makes requests to URLs its clients choose. An admin key must
 * not be able to point them at the network the service runs in: loopback (its own API, Redis,
 * PostgreSQL), private ranges, link-local (cloud metadata at 169.254.169.254), whatever the URL's
 * spelling, and whatever a name resolves to when the delivery connects.
 */

let env: TestEnv;
let allowing: TestEnv;
beforeAll(async () => {
  // What production runs with: no private network allowed.
  env = await createTestEnv({ WEBHOOK_ALLOW_NETWORKS: "" });
  allowing = await createTestEnv({ WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8,::1" });
});
afterAll(async () => {
  await env?.close();
  await allowing?.close();
});

/** A receiver on loopback, standing for a service inside the network: it counts what reaches it. */
async function internalService() {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on("end", () => res.writeHead(204).end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

const secret = "ssrf-secret-0123456789";

describe("registering a webhook", () => {
  it("refuses a URL whose address is loopback, private, link-local, metadata or reserved, in every spelling the URL parser reads as one", async () => {
    const refused = [
      "http://127.0.0.1/hook",
      "http://127.1/hook",
      "http://2130706433/hook", // decimal
      "http://017700000001/hook", // octal
      "http://0x7f.0.0.1/hook", // hex
      "http://0x7f.1:6379/",
      "http://0/hook", // 0.0.0.0 reaches the local host
      "http://[::1]/hook",
      "http://[::]/hook",
      "http://[::ffff:127.0.0.1]/hook", // IPv4-mapped
      "http://[0:0:0:0:0:ffff:7f00:1]/hook",
      "http://[64:ff9b::a9fe:a9fe]/hook", // NAT64 of 169.254.169.254
      "http://169.254.169.254/latest/meta-data/",
      "http://[fe80::1]/hook",
      "http://[fd00::1]/hook",
      "http://[3fff::1]/hook", // documentation (RFC 9637)
      "http://[5f00::1]/hook", // SRv6 (RFC 9602)
      "http://10.0.0.5:8080/hook",
      "http://172.16.3.4/hook",
      "http://192.168.1.1/hook",
      "http://100.64.0.1/hook",
      "http://224.0.0.1/hook",
      "http://255.255.255.255/hook",
      "http://localhost:3000/hook",
      "http://LOCALHOST./hook",
      "https://api.localhost/hook",
    ];
    for (const url of refused) {
      const res = await api(env).post("/v1/webhooks", { url, events: ["run.succeeded"], secret });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
      expect(res.json().errors, url).toEqual([{ path: "url", message: expect.stringMatching(/private, loopback, link-local or reserved|local host/) }]);
    }
    expect(await env.ctx.db.prisma.webhook.count()).toBe(0);
    for (const url of ["https://hooks.example.com/crm", "http://93.184.216.34/hook", "http://[2606:4700:4700::1111]/hook", "http://[::ffff:8.8.8.8]/hook"]) {
      const res = await api(env).post("/v1/webhooks", { url, events: ["run.succeeded"], secret });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(201);
      expect((await api(env).delete(`/v1/webhooks/${res.json().id}`)).statusCode).toBe(204);
    }
  });

  it("WEBHOOK_ALLOW_NETWORKS lets the networks it lists through (an in-cluster receiver), and only those", async () => {
    expect((await api(allowing).post("/v1/webhooks", { url: "http://127.0.0.1:9/hook", events: ["run.succeeded"], secret })).statusCode).toBe(201);
    expect((await api(allowing).post("/v1/webhooks", { url: "http://[::ffff:127.0.0.1]:9/hook", events: ["run.succeeded"], secret })).statusCode).toBe(201);
    expect((await api(allowing).post("/v1/webhooks", { url: "http://169.254.169.254/", events: ["run.succeeded"], secret })).statusCode).toBe(400);
    expect((await api(allowing).post("/v1/webhooks", { url: "http://10.0.0.1/", events: ["run.succeeded"], secret })).statusCode).toBe(400);
  });
});

describe("delivering", () => {
  it("never connects to a private address: one written in a stored URL, or the addresses a name resolves to when the attempt connects", async () => {
    const service = await internalService();
    try {
      for (const url of [
        `http://127.0.0.1:${service.port}/`,
        `http://2130706433:${service.port}/`,
        `http://[::ffff:127.0.0.1]:${service.port}/`,
        // A name is only known by what it resolves to when the connection is made (DNS may answer
        // differently at every lookup): localhost resolves to loopback.
        `http://localhost:${service.port}/`,
      ]) {
        // Stored as it is: a webhook registered before URLs were checked.
        const webhook = await env.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url, events: ["run.failed"], secret } });
        const [deliveryId] = await recordEvent(env.ctx.db.prisma, "run.failed", { url });
        await expect(attemptDelivery(env.ctx, deliveryId!, true, 2000), url).rejects.toThrow(/not sent: .*(private, loopback, link-local or reserved)/);
        const d = await env.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } });
        expect(d, url).toMatchObject({ status: "failed", attempts: 1, responseCode: null });
        expect(service.hits(), `${url} reached the internal service`).toBe(0);
        await env.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
      }
    } finally {
      await service.close();
    }
  });

  it("a refused address written in the URL fails the delivery for good at its first attempt; a name's refusal is retried (DNS may answer otherwise later)", async () => {
    for (const [url, status] of [["http://10.1.2.3:9/", "failed"], ["http://localhost:9/", "pending"]] as const) {
      const webhook = await env.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url, events: ["run.failed"], secret } });
      const [deliveryId] = await recordEvent(env.ctx.db.prisma, "run.failed", { url });
      // Not the last attempt: only a refusal that cannot change ends the delivery now.
      const attempt = attemptDelivery(env.ctx, deliveryId!, false, 2000);
      await expect(attempt, url).rejects.toThrow(/not sent: /);
      await expect(attempt.catch((e: unknown) => e instanceof FinalDeliveryError), url).resolves.toBe(status === "failed");
      const d = await env.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } });
      expect(d, url).toMatchObject({ status, attempts: 1, responseCode: null });
      await env.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
    }
    // Through the workers: the job of the refused literal address fails at once, with no retry waiting.
    const webhook = await env.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url: "http://10.1.2.3:9/", events: ["run.failed"], secret } });
    const workers = env.startWorkers();
    try {
      const [deliveryId] = await recordEvent(env.ctx.db.prisma, "run.failed", {});
      await queueDeliveries(env.ctx, [deliveryId!]);
      const queues = env.ctx.queues;
      await expect.poll(async () => (await queues.webhooks.getJob(queues.webhookDeliveryJobId(deliveryId!)))?.getState(), { timeout: 10_000 }).toBe("failed");
      expect((await queues.webhooks.getJob(queues.webhookDeliveryJobId(deliveryId!)))!.attemptsMade).toBe(1);
      expect(await env.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } })).toMatchObject({ status: "failed", attempts: 1 });
    } finally {
      await workers.close();
      await env.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
    }
  });

  it("does not attempt a delivery that has already failed for good (a job the recovery sweep revived late)", async () => {
    const webhook = await env.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url: "http://10.1.2.3:9/", events: ["run.failed"], secret } });
    try {
      const [deliveryId] = await recordEvent(env.ctx.db.prisma, "run.failed", {});
      await expect(attemptDelivery(env.ctx, deliveryId!, false, 2000)).rejects.toThrow(/not sent: /);
      const ended = await env.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } });
      expect(ended).toMatchObject({ status: "failed", attempts: 1 });
      await attemptDelivery(env.ctx, deliveryId!, true, 2000);
      expect(await env.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } })).toEqual(ended);
    } finally {
      await env.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
    }
  });

  it("reaches a private receiver that WEBHOOK_ALLOW_NETWORKS lists, by address and by name", async () => {
    const service = await internalService();
    try {
      for (const url of [`http://127.0.0.1:${service.port}/`, `http://localhost:${service.port}/`]) {
        const webhook = await allowing.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url, events: ["run.failed"], secret } });
        const [deliveryId] = await recordEvent(allowing.ctx.db.prisma, "run.failed", { url });
        await attemptDelivery(allowing.ctx, deliveryId!, true, 2000);
        const d = await allowing.ctx.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId! } });
        expect(d, url).toMatchObject({ status: "delivered", responseCode: 204, error: null });
        await allowing.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
      }
      expect(service.hits()).toBe(2);
    } finally {
      await service.close();
    }
  });

  it("does not follow a redirect: a public receiver cannot bounce a delivery to an internal address", async () => {
    const internal = await internalService();
    const redirecting: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(307, { location: `http://127.0.0.1:${internal.port}/` }).end());
    });
    await new Promise<void>((r) => redirecting.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(redirecting.address() as { port: number }).port}/`;
      const webhook = await allowing.ctx.db.prisma.webhook.create({ data: { id: randomUUID(), url, events: ["run.failed"], secret } });
      const [deliveryId] = await recordEvent(allowing.ctx.db.prisma, "run.failed", { url });
      await expect(attemptDelivery(allowing.ctx, deliveryId!, true, 2000)).rejects.toThrow("receiver answered 307");
      expect(internal.hits()).toBe(0);
      await allowing.ctx.db.prisma.webhook.update({ where: { id: webhook.id }, data: { disabledAt: new Date() } });
    } finally {
      redirecting.closeAllConnections();
      await new Promise<void>((r) => redirecting.close(() => r()));
      await internal.close();
    }
  });
});
