import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, hashApiKey, revokeApiKey } from "../src/keys/api-keys.js";
import { api, createFact } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { REDIS_URL } from "./helpers/databases.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const KEY_FORMAT = /^aak_[A-Za-z0-9_-]{32}$/;

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  await createFact(env, "auth_fact");
});
afterAll(async () => env?.close());

function expectUnauthorized(res: { statusCode: number; headers: Record<string, unknown>; json(): any }) {
  expect(res.statusCode).toBe(401);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(res.headers["www-authenticate"]).toMatch(/^Bearer realm=/);
  expect(res.json()).toMatchObject({ status: 401, title: "Unauthorized" });
}

describe("API keys on /v1", () => {
  it("401 with WWW-Authenticate without a key, with a malformed header, with an unknown key", async () => {
    expectUnauthorized(await env.app.inject({ method: "GET", url: "/v1/facts" }));
    expectUnauthorized(await env.app.inject({ method: "GET", url: "/v1/facts", headers: { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` } }));
    expectUnauthorized(await env.app.inject({ method: "GET", url: "/v1/facts", headers: { authorization: "Bearer" } }));
    expectUnauthorized(await api(env, "aak_" + "x".repeat(32)).get("/v1/facts"));
    expectUnauthorized(await api(env, "not-even-our-format").get("/v1/facts"));
    // A valid key with one character changed.
    const k = env.keys.admin;
    expectUnauthorized(await api(env, k.slice(0, -1) + (k.endsWith("A") ? "B" : "A")).get("/v1/facts"));
  });

  it("401 on writes and on parametrised routes too, and nothing is written", async () => {
    expectUnauthorized(await env.app.inject({ method: "POST", url: "/v1/facts", payload: { name: "sneaky" } }));
    expectUnauthorized(await env.app.inject({ method: "DELETE", url: "/v1/facts/auth_fact" }));
    expectUnauthorized(
      await env.app.inject({ method: "POST", url: "/v1/facts/auth_fact/events", payload: { events: [{ user_id: "u", occurred_at: "2026-01-01T00:00:00Z" }] } }),
    );
    expect(await env.ctx.db.prisma.fact.count({ where: { name: "sneaky" } })).toBe(0);
    expect((await api(env).get("/v1/facts/auth_fact")).statusCode).toBe(200);
  });

  it("a route cannot be reached under another spelling of its path without a key", async () => {
    for (const url of ["/v1/facts/", "/%761/facts", "/v1/%66acts", "/v1/facts?x=1", "/v1//facts", "/V1/facts"]) {
      const res = await env.app.inject({ method: "GET", url });
      expect([401, 404], `${url} → ${res.statusCode}`).toContain(res.statusCode);
    }
  });

  it("403 for the wrong scope: a read key cannot write, a write key cannot read", async () => {
    const read = api(env, env.keys.read);
    const write = api(env, env.keys.write);
    for (const res of [
      await read.post("/v1/facts", { name: "by_reader" }),
      await read.patch("/v1/facts/auth_fact", { description: "x" }),
      await read.delete("/v1/facts/auth_fact"),
      await read.post("/v1/facts/auth_fact/events", { events: [{ user_id: "u", occurred_at: "2026-01-01T00:00:00Z" }] }),
    ]) {
      expect(res.statusCode, res.body).toBe(403);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.json().detail).toMatch(/'write' scope/);
    }
    for (const url of ["/v1/facts", "/v1/facts/auth_fact"]) {
      const res = await write.get(url);
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json().detail).toMatch(/'read' scope/);
    }
    expect(await env.ctx.db.prisma.fact.count({ where: { name: "by_reader" } })).toBe(0);
    expect((await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: "auth_fact" } })).description).toBeNull();
  });

  it("each scope does what it grants: read reads, write writes, read+write both", async () => {
    expect((await api(env, env.keys.read).get("/v1/facts")).statusCode).toBe(200);
    expect((await api(env, env.keys.write).post("/v1/facts", { name: "by_writer" })).statusCode).toBe(201);
    expect((await api(env, env.keys.rw).patch("/v1/facts/by_writer", { description: "rw" })).statusCode).toBe(200);
    expect((await api(env, env.keys.rw).get("/v1/facts/by_writer")).json().description).toBe("rw");
  });

  it("admin implies every scope", async () => {
    const admin = api(env, env.keys.admin);
    expect((await admin.post("/v1/facts", { name: "by_admin" })).statusCode).toBe(201);
    expect((await admin.get("/v1/facts/by_admin")).statusCode).toBe(200);
    expect((await admin.patch("/v1/facts/by_admin", { service: "billing" })).statusCode).toBe(200);
    expect((await admin.post("/v1/facts/by_admin/events", { events: [{ user_id: "u1", occurred_at: "2026-01-01T00:00:00Z" }] })).statusCode).toBe(202);
    expect((await admin.get("/v1/facts/by_admin/runs")).statusCode).toBe(200);
    expect((await api(env, env.keys.admin).delete("/v1/facts/by_writer")).statusCode).toBe(204);
  });

  it("revocation takes effect on the very next request", async () => {
    const { key, summary } = await createApiKey(env.ctx.db.prisma, { name: "short-lived", scopes: ["read"] });
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(200);
    expect(await revokeApiKey(env.ctx.db.prisma, summary.id)).toBe(1);
    expectUnauthorized(await api(env, key).get("/v1/facts"));
    // Revoking again changes nothing; revoking by prefix works as well.
    expect(await revokeApiKey(env.ctx.db.prisma, summary.id)).toBe(0);
    const other = await createApiKey(env.ctx.db.prisma, { name: "by-prefix", scopes: ["write"] });
    expect(await revokeApiKey(env.ctx.db.prisma, other.summary.prefix)).toBe(1);
    expectUnauthorized(await api(env, other.key).post("/v1/facts", { name: "after_revoke" }));
    // As `keys list` shows it (with "…"), by a shorter prefix, or by the key itself; never by too short a prefix.
    for (const name of ["listed", "shorter", "whole"]) {
      const k = await createApiKey(env.ctx.db.prisma, { name, scopes: ["read"] });
      const given = name === "listed" ? `${k.summary.prefix}…` : name === "shorter" ? k.key.slice(0, 9) : k.key;
      expect(await revokeApiKey(env.ctx.db.prisma, given), name).toBe(1);
      expectUnauthorized(await api(env, k.key).get("/v1/facts"));
    }
    const keep = await createApiKey(env.ctx.db.prisma, { name: "kept", scopes: ["read"] });
    await expect(revokeApiKey(env.ctx.db.prisma, "aak_")).rejects.toThrow(/at least 8 characters/);
    await expect(revokeApiKey(env.ctx.db.prisma, keep.key.slice(0, 7))).rejects.toThrow(/at least 8 characters/);
    expect((await api(env, keep.key).get("/v1/facts")).statusCode).toBe(200);
    // A prefix two live keys share revokes neither.
    for (const suffix of ["0001", "0002"])
      await env.ctx.db.prisma.apiKey.create({ data: { id: crypto.randomUUID(), name: `twin ${suffix}`, prefix: `aak_ZZ_Z${suffix}`, hash: hashApiKey(`twin-${suffix}-${Date.now()}`), scopes: ["read"] } });
    await expect(revokeApiKey(env.ctx.db.prisma, "aak_ZZ_Z")).rejects.toThrow(/matches 2 live keys/);
    expect(await env.ctx.db.prisma.apiKey.count({ where: { name: { startsWith: "twin " }, revokedAt: null } })).toBe(2);
    expect(await revokeApiKey(env.ctx.db.prisma, "aak_ZZ_Z0002")).toBe(1);
  });

  it("/health, /ready, /openapi.json and /docs need no key", async () => {
    for (const url of ["/health", "/ready", "/openapi.json"]) {
      const res = await env.app.inject({ method: "GET", url });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
    }
    expect((await env.app.inject({ method: "GET", url: "/ready" })).json()).toEqual({ status: "ready", postgres: true, redis: true });
    expect([200, 301, 302]).toContain((await env.app.inject({ method: "GET", url: "/docs" })).statusCode);
  });
});

describe("keys are stored hashed", () => {
  it("the database holds the sha256 of each key and never the key itself", async () => {
    const { key, summary } = await createApiKey(env.ctx.db.prisma, { name: "stored", scopes: ["read", "write"] });
    expect(key).toMatch(KEY_FORMAT);
    const row = await env.ctx.db.pool.query<{ hash: string; prefix: string }>(`SELECT hash, prefix FROM api_key WHERE id = $1`, [summary.id]);
    expect(row.rows[0]!.hash).toBe(hashApiKey(key));
    expect(row.rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(key.startsWith(row.rows[0]!.prefix)).toBe(true);
    expect(row.rows[0]!.prefix.length).toBeLessThan(key.length / 2);
    // No column of any key row (nor any other table's text) contains a plain key.
    const everyKey = [key, env.keys.admin, env.keys.read, env.keys.write, env.keys.rw];
    const dump = await env.ctx.db.pool.query<{ t: string }>(`SELECT a::text AS t FROM api_key a`);
    expect(dump.rows.length).toBeGreaterThanOrEqual(5);
    for (const r of dump.rows) for (const k of everyKey) expect(r.t.includes(k)).toBe(false);
    // The summary handed back to callers carries no secret either.
    expect(JSON.stringify(summary)).not.toContain(key);
  });
});

describe("`keys create` on the command line", () => {
  it("prints only the key on stdout, and that key works against the API", async () => {
    const res = spawnSync("npx", ["tsx", "src/cli.ts", "keys", "create", "--name", "t", "--scopes", "read"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: env.ctx.config.DATABASE_URL, REDIS_URL, LOG_LEVEL: "silent" },
      encoding: "utf8",
      timeout: 90_000,
    });
    expect(res.status, res.stderr).toBe(0);
    const lines = res.stdout.split("\n");
    expect(lines, `stdout: ${JSON.stringify(res.stdout)}`).toHaveLength(2);
    expect(lines[1]).toBe("");
    const key = lines[0]!;
    expect(key).toMatch(KEY_FORMAT);
    const row = await env.ctx.db.prisma.apiKey.findUnique({ where: { hash: hashApiKey(key) } });
    expect(row).toMatchObject({ name: "t", scopes: ["read"], revokedAt: null });
    expect((await api(env, key).get("/v1/facts")).statusCode).toBe(200);
    expect((await api(env, key).post("/v1/facts", { name: "from_cli_key" })).statusCode).toBe(403);
  }, 120_000);
});
