import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { createApiKey, hashApiKey } from "../src/keys/api-keys.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { waitOutWindowEnd } from "./helpers/fixed-window.js";

const LIMIT = 4;
// A long window, so the count cannot roll over in the middle of a test (see waitOutWindowEnd).
const WINDOW_MS = 3_600_000;

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv({ AUTH_FAILURE_LIMIT: String(LIMIT), AUTH_FAILURE_WINDOW_MS: String(WINDOW_MS) });
});
afterAll(async () => env?.close());


let addressCounter = 0;
/** An address no other test has used, so each test starts from a count of zero. */
const freshAddress = () => `10.20.${Math.floor(++addressCounter / 250)}.${(addressCounter % 250) + 1}`;
const freshKey = async (scopes: Array<"read" | "write" | "admin"> = ["read"]) =>
  (await createApiKey(env.ctx.db.prisma, { name: "auth-failures", scopes })).key;
const lastUsedAt = async (key: string) =>
  (await env.ctx.db.prisma.apiKey.findUniqueOrThrow({ where: { hash: hashApiKey(key) }, select: { lastUsedAt: true } })).lastUsedAt;

type Inject = { remoteAddress: string; key?: string; headers?: Record<string, string>; app?: TestEnv["app"] };
const get = ({ remoteAddress, key, headers = {}, app = env.app }: Inject) =>
  app.inject({ method: "GET", url: "/v1/facts", remoteAddress, headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
// Shaped like real keys, so each one is looked up (and fails) as a guess would be.
const badKey = (i: number) => `aak_${"x".repeat(28)}${i}`;

describe("failed authentications by client address", () => {
  it(`${LIMIT} unknown keys from one address, then 429 for it, before any key of its is looked up; other addresses are unaffected`, async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const attacker = freshAddress();
    for (let i = 0; i < LIMIT; i++) {
      const res = await get({ remoteAddress: attacker, key: badKey(i) });
      expect(res.statusCode, res.body).toBe(401);
    }
    const good = await freshKey();
    const refused = await get({ remoteAddress: attacker, key: good });
    expect(refused.statusCode).toBe(429);
    expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({ status: 429, detail: expect.stringMatching(/failed authentications from this address/) });
    const retryAfter = Number(refused.headers["retry-after"]);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= WINDOW_MS / 1000).toBe(true);
    // The valid key was never looked up: a successful lookup records when the key was last used.
    expect(await lastUsedAt(good)).toBeNull();
    expect((await get({ remoteAddress: attacker, key: badKey(99) })).statusCode).toBe(429);

    const bystander = freshAddress();
    expect((await get({ remoteAddress: bystander, key: good })).statusCode).toBe(200);
    expect(await lastUsedAt(good)).not.toBeNull();
  });

  it("only keys that fail count: missing headers, a key lacking a scope and valid keys do not", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const client = freshAddress();
    const readOnly = await freshKey(["read"]);
    for (let i = 0; i < 3 * LIMIT; i++) {
      expect((await get({ remoteAddress: client })).statusCode).toBe(401);
      const forbidden = await env.app.inject({ method: "POST", url: "/v1/facts", remoteAddress: client, headers: { authorization: `Bearer ${readOnly}` }, payload: { name: `x_${i}` } });
      expect(forbidden.statusCode).toBe(403);
      expect((await get({ remoteAddress: client, key: readOnly })).statusCode).toBe(200);
    }
    // Failures below the limit leave the address working.
    for (let i = 0; i < LIMIT - 1; i++) expect((await get({ remoteAddress: client, key: badKey(i) })).statusCode).toBe(401);
    expect((await get({ remoteAddress: client, key: readOnly })).statusCode).toBe(200);
  });

  it("without TRUST_PROXY an X-Forwarded-For header is ignored: a client cannot pick a new address per guess", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const client = freshAddress();
    for (let i = 0; i < LIMIT; i++)
      expect((await get({ remoteAddress: client, key: badKey(i), headers: { "x-forwarded-for": `203.0.113.${i + 1}` } })).statusCode).toBe(401);
    expect((await get({ remoteAddress: client, key: await freshKey(), headers: { "x-forwarded-for": "203.0.113.200" } })).statusCode).toBe(429);
  });

  it("behind a proxy named in TRUST_PROXY each client is counted by its forwarded address; others reaching the API directly cannot forge one", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const proxy = "10.99.0.1";
    const ctx = createContext({ ...env.ctx.config, TRUST_PROXY: "10.99.0.0/24" });
    const app = await buildApp(ctx);
    try {
      const key = await freshKey();
      for (let i = 0; i < LIMIT; i++)
        expect((await get({ app, remoteAddress: proxy, key: badKey(i), headers: { "x-forwarded-for": "198.51.100.7" } })).statusCode).toBe(401);
      expect((await get({ app, remoteAddress: proxy, key, headers: { "x-forwarded-for": "198.51.100.7" } })).statusCode).toBe(429);
      // Another client behind the same proxy, and the proxy itself, are not.
      expect((await get({ app, remoteAddress: proxy, key, headers: { "x-forwarded-for": "198.51.100.8" } })).statusCode).toBe(200);
      expect((await get({ app, remoteAddress: proxy, key })).statusCode).toBe(200);
      // A peer outside the trusted range is counted by its own address, whatever it forwards.
      const direct = freshAddress();
      for (let i = 0; i < LIMIT; i++)
        expect((await get({ app, remoteAddress: direct, key: badKey(i), headers: { "x-forwarded-for": `198.51.100.${20 + i}` } })).statusCode).toBe(401);
      expect((await get({ app, remoteAddress: direct, key, headers: { "x-forwarded-for": "198.51.100.99" } })).statusCode).toBe(429);
    } finally {
      await app.close();
      await ctx.close();
    }
  });

  it("is shared by every API process on the same Redis", async () => {
    await waitOutWindowEnd(WINDOW_MS);
    const second = createContext(env.ctx.config);
    const secondApp = await buildApp(second);
    try {
      const client = freshAddress();
      for (let i = 0; i < LIMIT; i++) expect((await get({ app: i % 2 ? secondApp : env.app, remoteAddress: client, key: badKey(i) })).statusCode).toBe(401);
      const key = await freshKey();
      for (const app of [env.app, secondApp]) expect((await get({ app, remoteAddress: client, key })).statusCode).toBe(429);
    } finally {
      await secondApp.close();
      await second.close();
    }
  });

  it("when Redis cannot be reached nothing is counted: bad keys keep getting 401, good ones 200", async () => {
    const ctx = createContext({ ...env.ctx.config, REDIS_URL: "redis://127.0.0.1:1", AUTH_FAILURE_LIMIT: 1 });
    const app = await buildApp(ctx);
    try {
      const client = freshAddress();
      for (let i = 0; i < 3; i++) expect((await get({ app, remoteAddress: client, key: badKey(i) })).statusCode).toBe(401);
      expect((await get({ app, remoteAddress: client, key: await freshKey() })).statusCode).toBe(200);
    } finally {
      await app.close();
      await ctx.close();
    }
  });

  it("AUTH_FAILURE_LIMIT=0 turns it off", async () => {
    const ctx = createContext({ ...env.ctx.config, AUTH_FAILURE_LIMIT: 0 });
    const app = await buildApp(ctx);
    try {
      const client = freshAddress();
      for (let i = 0; i < 3 * LIMIT; i++) expect((await get({ app, remoteAddress: client, key: badKey(i) })).statusCode).toBe(401);
      expect((await get({ app, remoteAddress: client, key: await freshKey() })).statusCode).toBe(200);
    } finally {
      await app.close();
      await ctx.close();
    }
  });
});
