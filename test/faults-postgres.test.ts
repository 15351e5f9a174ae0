import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { buildApp, type App } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { loadConfig } from "../src/config.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { startWorkers, type RunningWorkers } from "../src/jobs/workers.js";
import { createApiKey } from "../src/keys/api-keys.js";
import { REDIS_URL } from "./helpers/databases.js";
import { dateAfter, layerSnapshot, syntheticEvents } from "./helpers/layer-snapshot.js";
import { PrivatePostgres } from "./helpers/private-services.js";

/**
 * PostgreSQL restarted under a running service: a PostgreSQL cluster of this test's own (initdb into
 * a temp directory, its own port), never the shared server. During the outage requests fail fast with
 * 503; afterwards the same process serves again, and a run caught by the restart is retried to the
 * same result as an undisturbed one.
 */
let server: PrivatePostgres;
let ctx: ReturnType<typeof createContext>;
let app: App;
let workers: RunningWorkers;
let auth: string;
let refSnapshot: Record<string, unknown>;
const FIRST = "2026-05-01";
const LAST = dateAfter(FIRST, 29);
const events = syntheticEvents(23, 100, FIRST, 30);

beforeAll(async () => {
  server = await PrivatePostgres.start();
  const url = server.url("aa_faults_pg");
  await migrateDatabase(url);
  const config = loadConfig({
    DATABASE_URL: url,
    REDIS_URL,
    REDIS_PREFIX: `aa-test-${inject("runId")}-pgfault-${process.pid}-${Date.now().toString(36)}`,
    LOG_LEVEL: "silent",
    WORKERS: "1",
    JOB_LOCK_MS: "1500",
    JOB_STALLED_CHECK_MS: "500",
  });
  ctx = createContext(config);
  app = await buildApp(ctx);
  workers = startWorkers(ctx, { info() {}, error() {} });
  auth = `Bearer ${(await createApiKey(ctx.db.prisma, { name: "t", scopes: ["admin"] })).key}`;
  for (const f of ["p_ref", "p_fault"]) {
    expect((await call("POST", "/v1/facts", { name: f, timezone: "UTC" })).statusCode).toBe(201);
    expect((await call("POST", `/v1/facts/${f}/events`, { events })).statusCode).toBe(202);
  }
  const ref = await call("POST", "/v1/facts/p_ref/runs", { through: LAST });
  expect(ref.statusCode, ref.body).toBe(202);
  await waitForRun(ref.json().id, (r) => r.status === "succeeded");
  refSnapshot = await layerSnapshot(app, auth, "p_ref", FIRST, LAST);
}, 120_000);

afterAll(async () => {
  await workers?.close();
  await app?.close();
  await ctx?.queues.processing.obliterate({ force: true }).catch(() => {});
  await ctx?.close();
  await server?.destroy();
});

function call(method: "GET" | "POST", url: string, payload?: object) {
  return app.inject({ method, url, headers: { authorization: auth }, ...(payload ? { payload } : {}) });
}

async function waitForRun(id: string, done: (r: Record<string, unknown>) => boolean, timeoutMs = 45_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await call("GET", `/v1/runs/${id}`);
    // During an outage this is a 503; keep asking.
    const r = res.statusCode === 200 ? (res.json() as Record<string, unknown>) : { status: `http ${res.statusCode}` };
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`run ${id}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe("PostgreSQL restarted", () => {
  it("answers 503 fast during the outage and recovers without a restart; a run caught by it ends as an undisturbed one", async () => {
    // A run stuck mid-way (islands written, metrics not) when the server goes down.
    const blocker = new pg.Client({ connectionString: server.url("aa_faults_pg") });
    blocker.on("error", () => {});
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE layer_metric IN EXCLUSIVE MODE");
    const res = await call("POST", "/v1/facts/p_fault/runs", { through: LAST });
    expect(res.statusCode, res.body).toBe(202);
    const runId = res.json().id as string;
    await waitForRun(runId, (r) => r.status === "running");

    await server.stopServer("fast");
    await blocker.end().catch(() => {});
    try {
      const requests: Array<[string, "GET" | "POST", string, object?]> = [
        ["list facts (Prisma)", "GET", "/v1/facts"],
        ["metrics (the layer engine's SQL)", "GET", "/v1/facts/p_ref/metrics?grain=day"],
        ["ingest", "POST", "/v1/facts/p_ref/events", { events: [{ user_id: "outage", occurred_at: `${LAST}T12:00:00Z` }] }],
        ["request a run", "POST", "/v1/facts/p_ref/runs", { through: LAST }],
        ["a run record", "GET", `/v1/runs/${runId}`],
      ];
      for (const [what, method, url, payload] of requests) {
        const t0 = Date.now();
        const r = await call(method, url, payload);
        const ms = Date.now() - t0;
        expect(r.statusCode, `${what}: ${r.body}`).toBe(503);
        expect(String(r.headers["content-type"]), what).toContain("application/problem+json");
        expect(Number(r.headers["retry-after"]), what).toBeGreaterThan(0);
        expect(r.body, what).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|pg_|prisma/i);
        // Fail fast: a refused connection is an answer now, not after the pool's connect timeout.
        expect(ms, `${what} answered in ${ms} ms`).toBeLessThan(2_000);
      }
      expect((await app.inject({ method: "GET", url: "/health" })).statusCode).toBe(200);
      const ready = await app.inject({ method: "GET", url: "/ready" });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ status: "unavailable", postgres: false });
    } finally {
      await server.start();
    }

    // The same process serves again, with no restart of its own.
    const facts = await call("GET", "/v1/facts");
    expect(facts.statusCode, facts.body).toBe(200);
    expect((await app.inject({ method: "GET", url: "/ready" })).statusCode).toBe(200);
    // Nothing of the refused ingestion was stored: the user is unknown to the layer's tables.
    const late = await ctx.db.pool.query(`SELECT count(*)::int AS n FROM app_user WHERE external_id = 'outage'`);
    expect(late.rows[0].n).toBe(0);
    const ingest = await call("POST", "/v1/facts/p_ref/events", { events: [{ user_id: "after", occurred_at: `${LAST}T12:00:00Z` }] });
    expect(ingest.statusCode, ingest.body).toBe(202);

    // The run whose connections the restart cut is retried by the job queue and ends right.
    const run = await waitForRun(runId, (r) => r.status === "succeeded" || r.status === "failed");
    expect(run, JSON.stringify(run)).toMatchObject({ status: "succeeded", from: FIRST, through: LAST, error: null });
    // p_ref got one more event after its run; compare the layer as the undisturbed run left it.
    expect(await layerSnapshot(app, auth, "p_fault", FIRST, LAST)).toEqual(refSnapshot);
  });
});

