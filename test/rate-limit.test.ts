import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { countRequest } from "../src/http/rate-limit.js";
import { createApiKey } from "../src/keys/api-keys.js";
import { api } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { waitOutWindowEnd } from "./helpers/fixed-window.js";

const MAX = 5;
// A long window, so the count cannot roll over in the middle of a test (see waitOutWindowEnd).
const WINDOW_MS = 3_600_000;

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv({ RATE_LIMIT_MAX: String(MAX), RATE_LIMIT_WINDOW_MS: String(WINDOW_MS) });
});
afterAll(async () => env?.close());


const freshKey = async (scopes: Array<"read" | "write" | "admin"> = ["admin"]) => (await createApiKey(env.ctx.db.prisma, { name: "limited", scopes })).key;

describe("per-key rate limit", () => {
  it(`${MAX} requests per window per key, then 429 problem+json with Retry-After; another key is unaffected`, async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const key = await freshKey();
    for (let i = 1; i <= MAX; i++) {
      const res = await api(env, key).get("/v1/facts");
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers["x-ratelimit-limit"]).toBe(String(MAX));
      expect(res.headers["x-ratelimit-remaining"]).toBe(String(MAX - i));
    }
    const limited = await api(env, key).get("/v1/facts");
    expect(limited.statusCode).toBe(429);
    expect(limited.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(limited.json()).toMatchObject({ status: 429, title: "Too Many Requests", detail: expect.stringMatching(/more than 5 requests/) });
    const retryAfter = Number(limited.headers["retry-after"]);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(WINDOW_MS / 1000);
    expect(limited.headers["x-ratelimit-remaining"]).toBe("0");
    // Every client here has the same address: the count is the key's, not the address's.
    expect((await api(env, await freshKey()).get("/v1/facts")).statusCode).toBe(200);
  });

  it("a throttled write changes nothing", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const key = await freshKey(["write"]);
    for (let i = 0; i < MAX; i++) expect((await api(env, key).post("/v1/facts", { name: `limited_${i}` })).statusCode).toBe(201);
    const res = await api(env, key).post("/v1/facts", { name: "one_too_many" });
    expect(res.statusCode).toBe(429);
    expect(await env.ctx.db.prisma.fact.count({ where: { name: "one_too_many" } })).toBe(0);
  });

  it("is shared by every API process on the same Redis", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const key = await freshKey();
    const second = createContext(env.ctx.config);
    const secondApp = await buildApp(second);
    try {
      for (let i = 0; i < MAX; i++) {
        const app = i % 2 ? secondApp : env.app;
        expect((await app.inject({ method: "GET", url: "/v1/facts", headers: env.auth(key) })).statusCode).toBe(200);
      }
      for (const app of [env.app, secondApp]) expect((await app.inject({ method: "GET", url: "/v1/facts", headers: env.auth(key) })).statusCode).toBe(429);
    } finally {
      await secondApp.close();
      await second.close();
    }
  });

  it("/health and /ready are never limited, with or without a key", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const key = await freshKey();
    for (let i = 0; i < MAX + 1; i++) await api(env, key).get("/v1/facts");
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(429);
    for (let i = 0; i < 3 * MAX; i++) {
      for (const url of ["/health", "/ready"]) {
        expect((await env.app.inject({ method: "GET", url })).statusCode).toBe(200);
        expect((await env.app.inject({ method: "GET", url, headers: env.auth(key) })).statusCode).toBe(200);
      }
    }
  });

  it("requests without a valid key are answered 401, not counted against anyone", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const key = await freshKey();
    for (let i = 0; i < 3 * MAX; i++) expect((await api(env, `${key}x`).get("/v1/facts")).statusCode).toBe(401);
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(200);
  });

  it("counts in fixed windows that expire on their own", async () => {
    const redis = env.ctx.queues.connection;
    const prefix = env.ctx.config.REDIS_PREFIX;
    const windowMs = 10_000;
    const start = Math.floor(Date.now() / windowMs) * windowMs;
    const counts = [];
    for (let i = 0; i < 3; i++) counts.push(await countRequest(redis, prefix, "window-test", windowMs, start + i));
    expect(counts.map((c) => c.count)).toEqual([1, 2, 3]);
    expect(counts.every((c) => c.resetAtMs === start + windowMs)).toBe(true);
    const next = await countRequest(redis, prefix, "window-test", windowMs, start + windowMs);
    expect(next).toEqual({ count: 1, resetAtMs: start + 2 * windowMs });
    const ttl = await redis.pttl(`${prefix}:rate-limit:window-test:${start / windowMs}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(windowMs);
  });

  it("when Redis cannot be reached, requests are let through rather than refused", async () => {
    const ctx = createContext({ ...env.ctx.config, REDIS_URL: "redis://127.0.0.1:1", RATE_LIMIT_MAX: 1 });
    const app = await buildApp(ctx);
    try {
      const key = await freshKey();
      for (let i = 0; i < 3; i++) expect((await app.inject({ method: "GET", url: "/v1/facts", headers: env.auth(key) })).statusCode).toBe(200);
    } finally {
      await app.close();
      await ctx.close();
    }
  });

  it("the OpenAPI document lists the 429 on every /v1 operation, and not on /health or /ready", async () => {
    const doc = env.app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, { description: string; content?: object }> }>> };
    let operations = 0;
    for (const [path, methods] of Object.entries(doc.paths))
      for (const op of Object.values(methods)) {
        if (path.startsWith("/v1/")) {
          operations++;
          expect(op.responses["429"], path).toMatchObject({ description: expect.stringMatching(/Retry-After/), content: { "application/problem+json": expect.any(Object) } });
        } else expect(op.responses["429"], path).toBeUndefined();
      }
    expect(operations).toBeGreaterThan(30);
  });

  it("RATE_LIMIT_MAX=0 turns the limit off", async () => {
    const ctx = createContext({ ...env.ctx.config, RATE_LIMIT_MAX: 0 });
    const app = await buildApp(ctx);
    try {
      const key = await freshKey();
      for (let i = 0; i < 3 * MAX; i++) {
        const res = await app.inject({ method: "GET", url: "/v1/facts", headers: env.auth(key) });
        expect(res.statusCode).toBe(200);
        expect(res.headers["x-ratelimit-limit"]).toBeUndefined();
      }
    } finally {
      await app.close();
      await ctx.close();
    }
  });
});
