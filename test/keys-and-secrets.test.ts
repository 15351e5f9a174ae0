import { createServer, type Server } from "node:http";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type App } from "../src/app.js";
import { startWorkers } from "../src/jobs/workers.js";
import { createApiKey, hashApiKey, LAST_USED_RESOLUTION_MS, revokeApiKey } from "../src/keys/api-keys.js";
import { api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  await createFact(env, "keyed_fact");
});
afterAll(async () => env?.close());

const PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000";

/** Every operation of the published API, read from the OpenAPI document the routes generate. */
function operations(app: App): Array<{ method: string; url: string; path: string }> {
  const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const ops = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    if (!path.startsWith("/v1/")) continue;
    const url = path.replace("{name}", "keyed_fact").replace("{user_id}", "u1").replace("{service}", "svc").replace(/\{[a-z_]+\}/g, PLACEHOLDER_ID);
    for (const method of Object.keys(methods)) ops.push({ method: method.toUpperCase(), url, path });
  }
  return ops;
}

async function tableCounts() {
  const r = await env.ctx.db.pool.query<{ t: string; n: string }>(
    `SELECT 'fact' AS t, count(*) AS n FROM fact UNION ALL SELECT 'activity_day', count(*) FROM activity_day UNION ALL SELECT 'audience', count(*) FROM audience
     UNION ALL SELECT 'webhook', count(*) FROM webhook UNION ALL SELECT 'campaign', count(*) FROM campaign UNION ALL SELECT 'processing_run', count(*) FROM processing_run UNION ALL SELECT 'control_group', count(*) FROM control_group UNION ALL SELECT 'materialization', count(*) FROM materialization`,
  );
  return Object.fromEntries(r.rows.map((x) => [x.t, Number(x.n)]));
}

describe("scopes on every route", () => {
  it("a read key gets 403 from every route that writes (all but GET and the read-only preview), and nothing changes", async () => {
    const before = await tableCounts();
    const writes = operations(env.app).filter((o) => o.method !== "GET" && o.path !== "/v1/audiences/preview");
    expect(writes.length).toBeGreaterThanOrEqual(15);
    for (const { method, url } of writes) {
      const res = await env.app.inject({ method: method as "POST", url, headers: env.auth(env.keys.read), payload: {} });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(403);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
    expect(await tableCounts()).toEqual(before);
  });

  it("a read+write key gets 403 from every webhook route (admin only)", async () => {
    const hooks = operations(env.app).filter((o) => o.path.startsWith("/v1/webhooks"));
    expect(hooks.length).toBeGreaterThanOrEqual(4);
    for (const { method, url } of hooks) {
      const res = await env.app.inject({ method: method as "POST", url, headers: env.auth(env.keys.rw), ...(method === "GET" ? {} : { payload: {} }) });
      expect(res.statusCode, `${method} ${url}`).toBe(403);
    }
  });

  it("every GET answers 401 without a key and never 403 to a read key", async () => {
    for (const { method, url, path } of operations(env.app).filter((o) => o.method === "GET" && !o.path.startsWith("/v1/webhooks"))) {
      expect((await env.app.inject({ method: "GET", url })).statusCode, url).toBe(401);
      const res = await env.app.inject({ method: "GET", url, headers: env.auth(env.keys.read) });
      expect(res.statusCode, `${method} ${path}: ${res.body}`).not.toBe(403);
      expect(res.statusCode, `${method} ${path}: ${res.body}`).toBeLessThan(500);
    }
  });
});

describe("key lifecycle", () => {
  it("revocation through the repository is effective on the very next request, also for a key in use a moment ago", async () => {
    const { key, summary } = await createApiKey(env.ctx.db.prisma, { name: "to revoke", scopes: ["read", "write"] });
    const client = api(env, key);
    for (let i = 0; i < 3; i++) expect((await client.get("/v1/facts")).statusCode).toBe(200);
    await revokeApiKey(env.ctx.db.prisma, summary.id);
    expect((await client.get("/v1/facts")).statusCode).toBe(401);
    expect((await client.post("/v1/facts", { name: "after_revoke" })).statusCode).toBe(401);
  });

  it("last_used_at is set on first use and written at most once a minute after that", async () => {
    const { key, summary } = await createApiKey(env.ctx.db.prisma, { name: "used", scopes: ["read"] });
    const row = () => env.ctx.db.prisma.apiKey.findUniqueOrThrow({ where: { id: summary.id } });
    expect((await row()).lastUsedAt).toBeNull();
    const t0 = Date.now();
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(200);
    const first = (await row()).lastUsedAt!;
    expect(first.getTime()).toBeGreaterThanOrEqual(t0 - 1000);
    for (let i = 0; i < 5; i++) await api(env, key).get("/v1/facts");
    expect((await row()).lastUsedAt).toEqual(first);
    // A minute later (moved back in the database rather than waited for), the next request writes it again.
    const old = new Date(Date.now() - LAST_USED_RESOLUTION_MS - 1000);
    await env.ctx.db.prisma.apiKey.update({ where: { id: summary.id }, data: { lastUsedAt: old } });
    await api(env, key).get("/v1/facts");
    expect((await row()).lastUsedAt!.getTime()).toBeGreaterThan(old.getTime() + LAST_USED_RESOLUTION_MS);
    // A refused key is not "used".
    await revokeApiKey(env.ctx.db.prisma, summary.id);
    await env.ctx.db.prisma.apiKey.update({ where: { id: summary.id }, data: { lastUsedAt: old } });
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(401);
    expect((await row()).lastUsedAt).toEqual(old);
  });
});

describe("no key or secret in the logs", () => {
  let receiver: Server;
  let hookUrl = "";
  beforeAll(async () => {
    // A receiver that always fails, so deliveries are retried and failures logged.
    receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(500).end("no"));
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
  });
  afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

  it("at trace level, across successes, 401s, 403s, 400s, 500s, webhook creation and failing deliveries", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const ctx = { ...env.ctx, config: { ...env.ctx.config, LOG_LEVEL: "trace" as const } };
    const app = await buildApp(ctx, { logStream: sink });
    expect(app.log.level).toBe("trace");
    const workers = startWorkers(ctx, app.log);
    const secrets: string[] = [];
    try {
      const { key: admin } = await createApiKey(env.ctx.db.prisma, { name: "logged admin", scopes: ["admin"] });
      const { key: reader } = await createApiKey(env.ctx.db.prisma, { name: "logged reader", scopes: ["read"] });
      const revoked = await createApiKey(env.ctx.db.prisma, { name: "logged revoked", scopes: ["read"] });
      await revokeApiKey(env.ctx.db.prisma, revoked.summary.id);
      const unknownKey = `aak_${"Z".repeat(32)}`;
      secrets.push(admin, reader, revoked.key, unknownKey);
      const as = (key: string) => ({ authorization: `Bearer ${key}` });
      const call = (method: string, url: string, headers: Record<string, string>, payload?: unknown) =>
        app.inject({ method: method as "POST", url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

      const secret = "whsec-do-not-log-0123456789";
      const shortSecret = "tooshort-secret";
      secrets.push(secret, shortSecret);
      expect((await call("POST", "/v1/webhooks", as(admin), { url: hookUrl, events: ["run.succeeded"], secret })).statusCode).toBe(201);
      expect((await call("POST", "/v1/webhooks", as(admin), { url: hookUrl, events: ["run.succeeded"], secret: shortSecret })).statusCode).toBe(400);
      expect((await call("POST", "/v1/webhooks", as(admin), { url: hookUrl, events: ["run.succeeded"], secret, extra: secret })).statusCode).toBe(400);
      expect((await call("GET", "/v1/facts", as(reader))).statusCode).toBe(200);
      expect((await call("POST", "/v1/facts", as(reader), { name: "denied" })).statusCode).toBe(403);
      expect((await call("GET", "/v1/facts", as(revoked.key))).statusCode).toBe(401);
      expect((await call("GET", "/v1/facts", as(unknownKey))).statusCode).toBe(401);
      expect((await call("GET", "/v1/facts", { authorization: `Bearer ${admin} trailing` })).statusCode).toBe(401);
      expect((await call("GET", "/v1/facts", { authorization: `Basic ${Buffer.from(`x:${admin}`).toString("base64")}` })).statusCode).toBe(401);
      expect(
        (await call("POST", "/v1/facts/keyed_fact/events", { ...as(admin), "idempotency-key": "log-test-1" }, { events: [{ user_id: "u1", occurred_at: "2026-03-01T10:00:00Z" }] })).statusCode,
      ).toBe(202);
      expect((await call("POST", "/v1/facts/keyed_fact/events", as(admin), { events: [{ user_id: "u1" }] })).statusCode).toBe(400);
      // A failure inside: the error is logged with its request; the key must not be.
      await env.ctx.db.pool.query(`ALTER TABLE fact RENAME COLUMN description TO description_gone`);
      try {
        expect((await call("GET", "/v1/facts", as(admin))).statusCode).toBe(500);
      } finally {
        await env.ctx.db.pool.query(`ALTER TABLE fact RENAME COLUMN description_gone TO description`);
      }
      // A processing run emits run.succeeded; its delivery fails and is retried, in the workers logging here.
      await processThrough(env, "keyed_fact", "2026-03-02");
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !lines.some((l) => l.includes("job failed") && l.includes("receiver answered 500"))) await new Promise((r) => setTimeout(r, 100));
    } finally {
      await workers.close();
      await app.close();
    }
    const log = lines.join("");
    // The capture works: requests, errors and failed deliveries are all in it.
    for (const expected of ["incoming request", "request completed", "unhandled error", "receiver answered 500"])
      expect(log, `log should contain ${expected}`).toContain(expected);
    for (const s of secrets) {
      expect(log.includes(s), `a secret appears in the log: ${s.slice(0, 8)}…`).toBe(false);
      // Nor its random part on its own, nor the stored hash of a key.
      if (s.startsWith("aak_")) {
        expect(log.includes(s.slice(4))).toBe(false);
        expect(log.includes(hashApiKey(s))).toBe(false);
      }
    }
  }, 60_000);
});

describe("the stored form of keys and secrets", () => {
  it("keys only as sha256; webhooks are listed, read and reported without their secret", async () => {
    const { key } = await createApiKey(env.ctx.db.prisma, { name: "hashed", scopes: ["read"] });
    const row = await env.ctx.db.prisma.apiKey.findUniqueOrThrow({ where: { hash: hashApiKey(key) } });
    expect(JSON.stringify(row)).not.toContain(key);
    const secret = "secret-of-the-listing-hook";
    const created = await api(env).post("/v1/webhooks", { url: "http://127.0.0.1:9/x", events: ["run.failed"], secret });
    expect(created.statusCode).toBe(201);
    for (const res of [created, await api(env).get("/v1/webhooks"), await api(env).get(`/v1/webhooks/${created.json().id}`), await api(env).get(`/v1/webhooks/${created.json().id}/deliveries`)])
      expect(res.body).not.toContain(secret);
  });
});
