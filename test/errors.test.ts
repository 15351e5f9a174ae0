import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { buildApp } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { api, createFact, ingest } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { REDIS_URL } from "./helpers/databases.js";
import { loadConfig } from "../src/config.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  await createFact(env, "err_fact");
  await ingest(env, "err_fact", [{ user_id: "u1", occurred_at: "2026-01-01T00:00:00Z" }]);
});
afterAll(async () => env?.close());

type Res = { statusCode: number; headers: Record<string, unknown>; body: string; json(): any };

function expectProblem(res: Res, status: number) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json();
  expect(body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
  return body;
}

/** A 500 (or 503) tells the client that something failed, and nothing about what or where. */
function expectNoInternals(res: Res, status: 500 | 503) {
  const body = expectProblem(res, status);
  expect(Object.keys(body).sort()).toEqual(["detail", "instance", "status", "title", "type"]);
  expect(body.detail).toBe(
    status === 500 ? "An unexpected error occurred; it has been logged." : "A backing service (PostgreSQL or Redis) is unavailable; retry shortly.",
  );
  // The 503 names the kind of dependency on purpose; nothing more.
  const text = `${body.type} ${body.title} ${body.detail}`.replace("(PostgreSQL or Redis)", "");
  for (const leak of [/stack/i, /\bat .*\(/, /\.ts\b/, /\.js\b/, /node_modules/, /select|insert|update|delete\s/i, /relation/i, /column/i, /activity_day/, /\bfact\b\./, /prisma/i, /postgres/i, /ECONN/, /127\.0\.0\.1/, /:\d{1,5}\b/])
    expect(text, `${leak} in ${res.body}`).not.toMatch(leak);
  return body;
}

describe("problem+json everywhere", () => {
  it("404 for unknown routes, with or without a key, inside /v1 or not", async () => {
    for (const [method, url] of [
      ["GET", "/nope"],
      ["GET", "/v1"],
      ["GET", "/v1/nope"],
      ["POST", "/v1/nope"],
      ["GET", "/v1/facts/err_fact/nope"],
    ] as const) {
      const plain = await env.app.inject({ method, url });
      expect(expectProblem(plain, 404).detail, `${method} ${url}`).toContain(url);
      expect(plain.json().instance).toBe(url);
      expectProblem(await env.app.inject({ method, url, headers: env.auth() }), 404);
    }
  });

  it("405 with Allow for a path that exists and a method it does not answer, with or without a key", async () => {
    for (const [method, url, allow] of [
      ["PUT", "/v1/facts/err_fact", "DELETE, GET, HEAD, PATCH"],
      ["DELETE", "/v1/runs/00000000-0000-4000-8000-000000000000", "GET, HEAD"],
      ["POST", "/v1/facts/err_fact/metrics", "GET, HEAD"],
      ["PATCH", "/v1/campaigns", "GET, HEAD, POST"],
    ] as const) {
      for (const headers of [{}, env.auth()]) {
        const res = await env.app.inject({ method, url, headers });
        const body = expectProblem(res, 405);
        expect(res.headers.allow, `${method} ${url}`).toBe(allow);
        expect(body).toMatchObject({ title: "Method Not Allowed", instance: url });
        expect(body.detail).toContain(allow);
      }
    }
  });

  it("404 for an unknown resource names it", async () => {
    const body = expectProblem(await api(env).get("/v1/facts/missing_fact"), 404);
    expect(body).toMatchObject({ title: "Not Found", instance: "/v1/facts/missing_fact" });
    expect(body.detail).toContain("missing_fact");
  });

  it("400 naming a query parameter the endpoint does not take (a misspelt one is never silently ignored)", async () => {
    const misspelt = expectProblem(await api(env).get("/v1/facts/err_fact/metrics?grian=week"), 400);
    expect(misspelt.errors).toEqual([{ path: "grian", message: "unknown field 'grian'" }]);
    expect(misspelt.detail).toContain("grian");
    // On a paginated list too, beside valid ones; the same request without it answers.
    const listed = expectProblem(await api(env).get("/v1/facts?limit=5&sort=name&servce=x"), 400);
    expect(listed.errors.map((e: { path: string }) => e.path).sort()).toEqual(["servce", "sort"]);
    expect((await api(env).get("/v1/facts?limit=5")).statusCode).toBe(200);
    expect((await api(env).get("/v1/facts/err_fact/metrics?grain=week")).statusCode).not.toBe(400);
    // Endpoints that take no query parameters at all refuse every one, whatever the method.
    for (const [method, url] of [
      ["GET", "/v1/facts/err_fact?verbose=1"],
      ["GET", "/v1/runs/00000000-0000-4000-8000-000000000000?verbose=1"],
      ["GET", "/v1/control-group?verbose=1"],
      ["DELETE", "/v1/facts/err_fact?verbose=1"],
    ] as const) {
      const res = await env.app.inject({ method, url, headers: env.auth() });
      expect(expectProblem(res, 400).errors, `${method} ${url}`).toEqual([{ path: "verbose", message: "unknown field 'verbose'" }]);
    }
    expect((await api(env).get("/v1/facts/err_fact")).statusCode).toBe(200);
  });

  it("400 for a body that is not JSON, or empty", async () => {
    for (const payload of ['{"name": "x",', "name=x", "[1, 2", ""]) {
      const res = await env.app.inject({ method: "POST", url: "/v1/facts", headers: { ...env.auth(), "content-type": "application/json" }, payload });
      const body = expectProblem(res, 400);
      expect(body.detail, payload).toMatch(/JSON|body/i);
    }
    expect(await env.ctx.db.prisma.fact.count({ where: { name: "x" } })).toBe(0);
  });

  it("an empty body sent with Content-Type: application/json is no body (clients that send the header on every request)", async () => {
    await createFact(env, "empty_body_delete");
    const json = { ...env.auth(), "content-type": "application/json" };
    // A DELETE, with Content-Length: 0 and without any length.
    const del = await env.app.inject({ method: "DELETE", url: "/v1/facts/empty_body_delete", headers: json, payload: "" });
    expect(del.statusCode, del.body).toBe(204);
    // A POST whose body is optional takes its defaults; one whose body is required names it.
    await createFact(env, "empty_body_run");
    await ingest(env, "empty_body_run", [{ user_id: "u1", occurred_at: "2026-01-01T10:00:00Z" }]);
    const run = await env.app.inject({ method: "POST", url: "/v1/facts/empty_body_run/runs", headers: json, payload: "" });
    expect(run.statusCode, run.body).toBe(202);
    const fact = await env.app.inject({ method: "POST", url: "/v1/facts", headers: json, payload: "" });
    expect(expectProblem(fact, 400).detail).toMatch(/body/i);
  });

  it("415 for an unsupported content type", async () => {
    const res = await env.app.inject({ method: "POST", url: "/v1/facts", headers: { ...env.auth(), "content-type": "application/xml" }, payload: "<fact/>" });
    expectProblem(res, 415);
  });

  it("415 naming application/json for a JSON text sent as text/plain, on every kind of body-taking route; nothing is read", async () => {
    for (const [method, url, body] of [
      ["POST", "/v1/facts", { name: "plain_text_fact" }],
      ["PATCH", "/v1/facts/err_fact", { description: "sent as text/plain" }],
      ["POST", "/v1/facts/err_fact/runs", {}],
      ["POST", "/v1/audiences/preview", { definition: { name: "n", fact: "err_fact", filter: { field: "is_active", op: "eq", value: true } } }],
      ["PUT", "/v1/control-group", { percent: 5, salt: "plain" }],
    ] as const) {
      const res = await env.app.inject({ method, url, headers: { ...env.auth(), "content-type": "text/plain" }, payload: JSON.stringify(body) });
      const problem = expectProblem(res, 415);
      expect(problem.detail, `${method} ${url}`).toBe("Unsupported Content-Type: text/plain. This route accepts application/json.");
      expect(problem.accepted_media_types).toEqual(["application/json"]);
    }
    expect(await env.ctx.db.prisma.fact.count({ where: { name: "plain_text_fact" } })).toBe(0);
    expect((await api(env).get("/v1/facts/err_fact")).json().description).not.toBe("sent as text/plain");
  });

  it("413 for a body over the general 1 MB limit", async () => {
    const res = await api(env).post("/v1/facts", { name: "huge", description: "d".repeat(1_100_000) });
    expectProblem(res, 413);
  });
});

describe("failures inside the service show no internals", () => {
  it("500 when SQL fails in the layer engine (a table is missing), and the service recovers", async () => {
    await env.ctx.db.pool.query(`ALTER TABLE activity_day RENAME TO activity_day_gone`);
    try {
      const res = await api(env).post("/v1/facts/err_fact/events", { events: [{ user_id: "u2", occurred_at: "2026-01-02T00:00:00Z" }] });
      expectNoInternals(res, 500);
    } finally {
      await env.ctx.db.pool.query(`ALTER TABLE activity_day_gone RENAME TO activity_day`);
    }
    const res = await api(env).post("/v1/facts/err_fact/events", { events: [{ user_id: "u2", occurred_at: "2026-01-02T00:00:00Z" }] });
    expect(res.statusCode, res.body).toBe(202);
  });

  it("500 when a Prisma query fails (a column is missing), and the service recovers", async () => {
    await env.ctx.db.pool.query(`ALTER TABLE fact RENAME COLUMN description TO description_gone`);
    try {
      expectNoInternals(await api(env).get("/v1/facts"), 500);
      expectNoInternals(await api(env).get("/v1/facts/err_fact"), 500);
    } finally {
      await env.ctx.db.pool.query(`ALTER TABLE fact RENAME COLUMN description_gone TO description`);
    }
    expect((await api(env).get("/v1/facts/err_fact")).statusCode).toBe(200);
  });

  it("503 with Retry-After when PostgreSQL cannot be reached", async () => {
    // A real pool pointed at a port where nothing listens: every connection is refused.
    const config = loadConfig({ DATABASE_URL: "postgresql://postgres@127.0.0.1:1/nowhere", REDIS_URL, REDIS_PREFIX: `aa-test-${inject("runId")}-unreachable-${process.pid}`, LOG_LEVEL: "silent" });
    const ctx = createContext(config);
    const app = await buildApp(ctx);
    try {
      const res = await app.inject({ method: "GET", url: "/v1/facts", headers: env.auth() });
      expectNoInternals(res, 503);
      expect(res.headers["retry-after"]).toBe("5");
      const ready = await app.inject({ method: "GET", url: "/ready" });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ status: "unavailable", postgres: false, redis: true });
      expect((await app.inject({ method: "GET", url: "/health" })).statusCode).toBe(200);
    } finally {
      await app.close();
      await ctx.close();
    }
  });
});
