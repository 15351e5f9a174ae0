import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorkers } from "../src/jobs/workers.js";
import { api, createFact, ingest, processThrough, waitForRecord } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { dateAfter, layerSnapshot, memberIds, syntheticEvents } from "./helpers/layer-snapshot.js";
import { PrivateRedis } from "./helpers/private-services.js";

/**
 * Redis restarted (killed, then started again on its append-only file) while a processing run is in
 * flight. The Redis is this test's own: the shared one on 6379 is never touched.
 */
let env: TestEnv;
let redis: PrivateRedis;
let workers: RunningWorkers | null = null;
const FIRST = "2026-04-01";
const LAST = dateAfter(FIRST, 29);
const events = syntheticEvents(11, 120, FIRST, 30);

beforeAll(async () => {
  redis = await PrivateRedis.start();
  env = await createTestEnv({ REDIS_URL: redis.url, JOB_LOCK_MS: "1500", JOB_STALLED_CHECK_MS: "500" });
  for (const f of ["q_ref", "q_fault", "q_other"]) {
    await createFact(env, f);
    await ingest(env, f, events);
  }
  workers = env.startWorkers();
  await processThrough(env, "q_ref", LAST);
});
afterAll(async () => {
  await workers?.close();
  await env?.close();
  await redis?.stop();
});


function expect503(res: { statusCode: number; headers: Record<string, unknown>; body: string }, what: string) {
  expect(res.statusCode, `${what}: ${res.body}`).toBe(503);
  expect(String(res.headers["content-type"]), what).toContain("application/problem+json");
  expect(Number(res.headers["retry-after"]), what).toBeGreaterThan(0);
  const body = JSON.parse(res.body);
  expect(body).toMatchObject({ status: 503, title: "Service Unavailable" });
  // Which dependency is down is said; nothing of its internals (hosts, ports, driver messages).
  expect(res.body).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|ioredis|maxRetriesPerRequest|stack/i);
}

describe("Redis restarted during a job", () => {
  it("keeps the API up (job endpoints 503 with Retry-After), then resumes: the run ends once, equal to an undisturbed one", async () => {
    // Hold the run in the middle (islands written, metrics waiting) while Redis goes away; EXCLUSIVE
    // mode stops writes to layer_metric and lets reads through.
    const blocker = new pg.Client({ connectionString: env.childEnv.DATABASE_URL });
    await blocker.connect();
    let runId: string;
    let finishedAt = "";
    const created = await api(env).post("/v1/audiences", { name: "during the outage", fact: "q_ref", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 1 } });
    expect(created.statusCode, created.body).toBe(201);
    const audience = created.json();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE layer_metric IN EXCLUSIVE MODE");
      const res = await api(env).post("/v1/facts/q_fault/runs", { through: LAST });
      expect(res.statusCode, res.body).toBe(202);
      runId = res.json().id;
      await waitForRecord(env, `/v1/runs/${runId}`, (r) => r.status === "running", "running");
      await redis.kill();
      // The API stays up: health, reads from PostgreSQL, and readiness saying what is missing.
      expect((await env.app.inject({ method: "GET", url: "/health" })).statusCode).toBe(200);
      const ready = await env.app.inject({ method: "GET", url: "/ready" });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ status: "unavailable", postgres: true, redis: false });
      expect((await api(env).get(`/v1/runs/${runId}`)).json().status).toBe("running");
      expect((await api(env).get("/v1/facts/q_ref/metrics?grain=week")).statusCode).toBe(200);
      expect((await api(env).post("/v1/facts/q_ref/events", { events: [{ user_id: "late", occurred_at: `${LAST}T23:00:00Z` }] })).statusCode).toBe(202);
      // Job endpoints answer 503 problem+json with Retry-After, quickly (no hanging request).
      const t0 = Date.now();
      const run = await api(env).post("/v1/facts/q_other/runs", { through: LAST });
      expect503(run, "POST runs");
      expect503(await api(env).post(`/v1/audiences/${audience.id}/materializations`, { as_of: LAST }), "POST materializations");
      expect(Date.now() - t0, "503s answered within seconds").toBeLessThan(10_000);
      // The run the 503 refused is recorded as failed, not left queued forever.
      const refused = (await api(env).get("/v1/facts/q_other/runs")).json().data;
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ status: "failed", error: "job queue unavailable" });
      // The run finishes its PostgreSQL work while Redis is away.
      await blocker.query("COMMIT");
      finishedAt = (await waitForRecord(env, `/v1/runs/${runId}`, (r) => r.status === "succeeded", "succeeded", 30_000)).finished_at as string;
    } finally {
      await blocker.end().catch(() => {});
      await redis.start();
    }
      // Redis is back: the job is settled in the queue, the run did not run again to another result.
    const deadline = Date.now() + 30_000;
    let state = "";
    while (Date.now() < deadline && (state = await env.ctx.queues.processing.getJobState(env.ctx.queues.processRunJobId(runId))) !== "completed")
      await new Promise((r) => setTimeout(r, 100));
    expect(state).toBe("completed");
      const record = (await api(env).get(`/v1/runs/${runId}`)).json();
    // The stalled job ran again once Redis was back and found the run finished: it left it as it was.
    expect(record).toMatchObject({ status: "succeeded", from: FIRST, through: LAST, error: null, finished_at: finishedAt });
    const auth = env.auth().authorization;
    const faultSnapshot = await layerSnapshot(env.app, auth, "q_fault", FIRST, LAST);
    expect(faultSnapshot).toEqual(await layerSnapshot(env.app, auth, "q_ref", FIRST, LAST));
      // New jobs run again: a run refused during the outage, requested again, and a materialisation.
    await processThrough(env, "q_other", LAST);
    expect(await layerSnapshot(env.app, auth, "q_other", FIRST, LAST)).toEqual(faultSnapshot);
      const lists: string[][] = [];
    for (const fact of ["q_fault", "q_other"]) {
      const a = (await api(env).post("/v1/audiences", { name: `lapsed ${fact}`, fact, grain: "day", filter: { field: "inactivity_periods", op: "between", value: [1, 9] } })).json();
      const m = await api(env).post(`/v1/audiences/${a.id}/materializations`, { as_of: LAST });
      expect(m.statusCode, m.body).toBe(202);
      const done = await waitForRecord(env, `/v1/materializations/${m.json().id}`, (r) => r.status === "succeeded" || r.status === "failed", "finished");
      expect(done.status).toBe("succeeded");
      lists.push(await memberIds(env.app, auth, done.id as string));
    }
    expect(lists[0]!.length).toBeGreaterThan(0);
    expect(lists[0]).toEqual(lists[1]);
  });
});

describe("Redis restarted with its data lost", () => {
  let lostEnv: TestEnv;
  let volatile: PrivateRedis;
  let lostWorkers: RunningWorkers | null = null;
  beforeAll(async () => {
    volatile = await PrivateRedis.start({ persistent: false });
    lostEnv = await createTestEnv({ REDIS_URL: volatile.url, JOB_LOCK_MS: "1500", JOB_STALLED_CHECK_MS: "500" });
    await createFact(lostEnv, "v_fault");
    await ingest(lostEnv, "v_fault", events);
  });
  afterAll(async () => {
    await lostWorkers?.close();
    await lostEnv?.close();
    await volatile?.stop();
  });

  it("queues the lost jobs again from their records once Redis is back; the run ends once, equal to an undisturbed one", async () => {
    // The run's job is taken but waits for its fact (another run holds it): its record is queued.
    const { id: factId } = (await lostEnv.ctx.db.prisma.fact.findUnique({ where: { name: "v_fault" } }))!;
    const holder = new pg.Client({ connectionString: lostEnv.childEnv.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query("SELECT pg_advisory_lock(4271, $1)", [factId]);
      lostWorkers = lostEnv.startWorkers();
      const res = await api(lostEnv).post("/v1/facts/v_fault/runs", { through: LAST });
      expect(res.statusCode, res.body).toBe(202);
      const runId = res.json().id as string;
      await new Promise((r) => setTimeout(r, 500));
      await volatile.kill();
      await volatile.start(); // empty: every queue and job is gone
      const deadline = Date.now() + 20_000;
      let state = "unknown";
      while (Date.now() < deadline && (state = await lostEnv.ctx.queues.processing.getJobState(lostEnv.ctx.queues.processRunJobId(runId)).catch(() => "unknown")) === "unknown")
        await new Promise((r) => setTimeout(r, 100));
      expect(state, "the job is queued again after Redis came back empty").not.toBe("unknown");
      await holder.query("SELECT pg_advisory_unlock(4271, $1)", [factId]);
      const deadline2 = Date.now() + 30_000;
      let run: Record<string, unknown> = {};
      while (Date.now() < deadline2 && (run = (await api(lostEnv).get(`/v1/runs/${runId}`)).json()).status !== "succeeded")
        await new Promise((r) => setTimeout(r, 100));
      expect(run).toMatchObject({ status: "succeeded", from: FIRST, through: LAST, error: null });
      // Both jobs of the run (the one Redis forgot, still in its worker, and the one queued again)
      // are done once the new one completes; the record is still the first finish's.
      const deadline3 = Date.now() + 30_000;
      while (Date.now() < deadline3 && (state = await lostEnv.ctx.queues.processing.getJobState(lostEnv.ctx.queues.processRunJobId(runId))) !== "completed")
        await new Promise((r) => setTimeout(r, 100));
      expect(state).toBe("completed");
      await new Promise((r) => setTimeout(r, 500));
      expect((await api(lostEnv).get(`/v1/runs/${runId}`)).json()).toEqual(run);
      const auth = lostEnv.auth().authorization;
      expect(await layerSnapshot(lostEnv.app, auth, "v_fault", FIRST, LAST)).toEqual(await layerSnapshot(env.app, env.auth().authorization, "q_ref", FIRST, LAST));
    } finally {
      await holder.end().catch(() => {});
    }
  });
});
