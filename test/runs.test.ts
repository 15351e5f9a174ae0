import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeRun, processAllFactsThroughYesterday, requestRun, RUN_REQUEST_LOCK_NS } from "../src/activation/runs.js";
import { dateToDay } from "../src/activation/periods.js";
import { activityDateOf, referenceLayer } from "../src/activation/status-rules.js";
import type { RunningWorkers } from "../src/jobs/workers.js";
import { Worker } from "bullmq";
import { JOB_NAMES, QUEUE_NAMES } from "../src/jobs/payloads.js";
import { createRedis } from "../src/jobs/redis.js";
import { api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/** Processing runs: records, joining, serialisation, refusals, the scheduler, and the 409s of queries. */
let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

type Run = Record<string, unknown> & { id: string; status: string };
type Ev = { user_id: string; occurred_at: string };

/** Workers run only inside `fn`, so runs can be created and inspected while nothing executes them. */
async function withWorkers<T>(fn: () => Promise<T>): Promise<T> {
  const w: RunningWorkers = env.startWorkers();
  try {
    return await fn();
  } finally {
    await w.close();
  }
}

async function getRun(id: string): Promise<Run> {
  const res = await api(env).get(`/v1/runs/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

async function waitFor(id: string, done: (r: Run) => boolean, what: string): Promise<Run> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await getRun(id);
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`run ${id} never became ${what}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}
const finished = (r: Run) => r.status === "succeeded" || r.status === "failed";

async function factView(name: string) {
  const res = await api(env).get(`/v1/facts/${name}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Record<string, unknown>;
}

async function factRecord(name: string) {
  const f = await env.ctx.db.prisma.fact.findUnique({ where: { name } });
  return f!;
}

/** Events of `users` users on the given UTC days (noon). */
function daily(prefix: string, days: string[], users = 3): Ev[] {
  return days.flatMap((d, i) => Array.from({ length: users }, (_, u) => ({ user_id: `${prefix}-${(u + i) % (users + 1)}`, occurred_at: `${d}T12:00:00Z` })));
}

async function metricsSnapshot(fact: string) {
  const out: Record<string, unknown> = {};
  for (const grain of ["day", "week", "month"]) out[grain] = (await api(env).get(`/v1/facts/${fact}/metrics?grain=${grain}`)).json();
  return out;
}

/** A status row of `period` that could be true: no negative streak, nothing from after the period. */
function expectWellFormed(r: Record<string, unknown>, period: string) {
  const at = JSON.stringify(r);
  expect(String(r.first_active_period) <= period, at).toBe(true);
  expect(String(r.last_active_period) <= period, at).toBe(true);
  for (const k of ["inactivity_periods", "consecutive_active_periods", "tenure_periods"]) expect(r[k] as number, at).toBeGreaterThanOrEqual(0);
  for (const k of ["last_streak_periods", "active_periods_total"]) expect(r[k] as number, at).toBeGreaterThanOrEqual(1);
}

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json(): Record<string, unknown> }, status: number) {
  expect(res.statusCode).toBe(status);
  expect(String(res.headers["content-type"])).toContain("application/problem+json");
  const body = res.json();
  expect(body.status).toBe(status);
  expect(typeof body.detail).toBe("string");
  return body;
}

describe("requesting runs", () => {
  it("refuses a fact with no events (409), with or without a date, and records nothing", async () => {
    await createFact(env, "r_empty");
    expectProblem(await api(env).post("/v1/facts/r_empty/runs", {}), 409);
    expectProblem(await api(env).post("/v1/facts/r_empty/runs", { through: "2026-03-01" }), 409);
    const list = (await api(env).get("/v1/facts/r_empty/runs")).json();
    expect(list).toEqual({ data: [], next_cursor: null });
    expect((await factView("r_empty")).processed_through).toBeNull();
  });

  it("answers 202 with a Location and the queued record; the same date again joins it (200, same id)", async () => {
    await createFact(env, "r_join", "Asia/Seoul");
    // 16:00Z on 03-10 is 01:00 on 03-11 in Seoul: the latest activity date is 2026-03-11.
    await ingest(env, "r_join", [...daily("j", ["2026-03-02", "2026-03-05"]), { user_id: "j-late", occurred_at: "2026-03-10T16:00:00Z" }]);
    const first = await api(env).post("/v1/facts/r_join/runs", {});
    expect(first.statusCode, first.body).toBe(202);
    const run = first.json() as Run;
    expect(first.headers.location).toBe(`/v1/runs/${run.id}`);
    expect(run).toMatchObject({ fact: "r_join", status: "queued", through: "2026-03-11", trigger: "api", progress: 0, error: null, started_at: null, finished_at: null, duration_ms: null });
    expect(Date.parse(run.created_at as string)).not.toBeNaN();

    const again = await api(env).post("/v1/facts/r_join/runs", { through: "2026-03-11" });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().id).toBe(run.id);
    expect(again.headers.location).toBe(`/v1/runs/${run.id}`);
    const byDefault = await api(env).post("/v1/facts/r_join/runs");
    expect(byDefault.statusCode).toBe(200);
    expect(byDefault.json().id).toBe(run.id);
    // A different date is another run.
    const other = await api(env).post("/v1/facts/r_join/runs", { through: "2026-03-12" });
    expect(other.statusCode).toBe(202);
    expect(other.json().id).not.toBe(run.id);
    expect((await getRun(run.id)).status).toBe("queued");
    // Once workers run, both succeed (in either order: the earlier date may find itself overtaken).
    const [r1, r2] = await withWorkers(async () => [await waitFor(run.id, finished, "finished"), await waitFor(other.json().id, finished, "finished")]);
    expect(r2.status).toBe("succeeded");
    expect(r1.status, JSON.stringify(r1)).toBe("succeeded");
    if (r1.note !== null) expect(r1.note).toMatch(/already processed 'r_join' through 2026-03-12/);
    expect((await factView("r_join")).processed_through).toBe("2026-03-12");
  });

  it("an Idempotency-Key replays the first answer while the fact exists, and answers the fact's 404 once it is deleted", async () => {
    await createFact(env, "r_replay");
    await ingest(env, "r_replay", daily("rp", ["2026-03-02", "2026-03-03"]));
    const headers = { "idempotency-key": "run-replay-0001" };
    const first = await api(env).post("/v1/facts/r_replay/runs", { through: "2026-03-03" }, headers);
    expect(first.statusCode, first.body).toBe(202);
    const again = await api(env).post("/v1/facts/r_replay/runs", { through: "2026-03-03" }, headers);
    expect(again.statusCode, again.body).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.json().id).toBe(first.json().id);
    expect(again.headers.location).toBe(`/v1/runs/${first.json().id}`);
    await withWorkers(() => waitFor(first.json().id, finished, "finished"));
    expect((await api(env).delete("/v1/facts/r_replay")).statusCode).toBe(204);
    const afterDeletion = await api(env).post("/v1/facts/r_replay/runs", { through: "2026-03-03" }, headers);
    expect(afterDeletion.statusCode, afterDeletion.body).toBe(404);
    expect(afterDeletion.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(afterDeletion.headers["idempotent-replayed"]).toBeUndefined();
  });

  it("progresses queued → running → succeeded, with from, through, timings and duration", async () => {
    await createFact(env, "r_progress");
    await ingest(env, "r_progress", daily("p", ["2026-03-01", "2026-03-02", "2026-03-04"]));
    const created = (await api(env).post("/v1/facts/r_progress/runs", { through: "2026-03-04" })).json() as Run;
    expect(created.status).toBe("queued");
    const { id: factId } = await factRecord("r_progress");
    // Hold the metrics table: the run gets its fact and starts, then waits for us.
    const blocker = new pg.Client({ connectionString: env.ctx.config.DATABASE_URL });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE layer_metric IN ACCESS EXCLUSIVE MODE");
      await withWorkers(async () => {
        const running = await waitFor(created.id, (r) => r.status !== "queued", "running");
        expect(running.status).toBe("running");
        expect(running.started_at).not.toBeNull();
        expect(running.finished_at).toBeNull();
        expect(running.from).toBe("2026-03-01");
        await blocker.query("COMMIT");
        const done = await waitFor(created.id, finished, "finished");
        expect(done).toMatchObject({ status: "succeeded", from: "2026-03-01", through: "2026-03-04", progress: 1, error: null });
        const t = done.timings as Record<string, number>;
        for (const k of ["day_ms", "week_ms", "month_ms"]) expect(t[k], k).toBeGreaterThanOrEqual(0);
        const [c, s, f] = [done.created_at, done.started_at, done.finished_at].map((x) => Date.parse(x as string));
        expect(c).toBeLessThanOrEqual(s!);
        expect(s).toBeLessThanOrEqual(f!);
        expect(done.duration_ms).toBe(f! - s!);
      });
    } finally {
      await blocker.end();
    }
    expect(factId).toBeGreaterThan(0);
    expect((await factView("r_progress")).processed_through).toBe("2026-03-04");
  });

  it("requests for the same date that arrive together make one run: one 202, the others join it (200)", async () => {
    await createFact(env, "r_together");
    await ingest(env, "r_together", daily("g", ["2026-03-01", "2026-03-02"]));
    // Held at the fact's run-request lock until all of them wait for it, so they truly meet.
    const factId = (await factRecord("r_together")).id;
    const hold = await env.ctx.db.pool.connect();
    let pending: Promise<Array<{ statusCode: number; json(): { id: string } }>>;
    try {
      await hold.query("BEGIN");
      await hold.query(`SELECT pg_advisory_xact_lock($1, $2)`, [RUN_REQUEST_LOCK_NS, factId]);
      // Each waits on a connection of its own: well within the pool, with the holder and the poll.
      pending = Promise.all(Array.from({ length: 6 }, () => api(env).post("/v1/facts/r_together/runs", {})));
      await expect
        .poll(async () => (await env.ctx.db.pool.query(
          `SELECT count(*)::int AS n FROM pg_locks
           WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND classid = $1 AND objid = $2 AND objsubid = 2 AND NOT granted`, [RUN_REQUEST_LOCK_NS, factId],
        )).rows[0].n, { timeout: 10_000, interval: 10 })
        .toBe(6);
    } finally {
      await hold.query("ROLLBACK").catch(() => {});
      hold.release();
    }
    const answers = await pending!;
    expect(answers.map((a) => a.statusCode).sort()).toEqual([...Array(5).fill(200), 202]);
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(1);
    expect((await api(env).get("/v1/facts/r_together/runs")).json().data).toHaveLength(1);
  });

  it("a run request and the fact's deletion at once: either the run is kept and the deletion refused, or the fact is gone and the request finds none", async () => {
    for (let i = 0; i < 8; i++) {
      const name = `r_race_${i}`;
      await createFact(env, name);
      await ingest(env, name, daily("x", ["2026-03-01"]));
      const [run, del] = await Promise.all([api(env).post(`/v1/facts/${name}/runs`, {}), api(env).delete(`/v1/facts/${name}`)]);
      const pair = `${run.statusCode}/${del.statusCode}`;
      expect(["202/409", "404/204"], pair).toContain(pair);
      if (run.statusCode === 202) expect((await api(env).get(`/v1/runs/${run.json().id}`)).statusCode).toBe(200);
    }
  });

  it("never runs two runs of one fact at once, and ends processed through the later date with the right numbers", async () => {
    await createFact(env, "r_serial");
    const events = daily("s", ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-06", "2026-03-09", "2026-03-20"], 40);
    await ingest(env, "r_serial", events);
    const a = (await api(env).post("/v1/facts/r_serial/runs", { through: "2026-03-08" })).json() as Run;
    const b = (await api(env).post("/v1/facts/r_serial/runs", { through: "2026-03-21" })).json() as Run;
    expect(a.id).not.toBe(b.id);
    const [ra, rb] = await withWorkers(async () => [await waitFor(a.id, finished, "finished"), await waitFor(b.id, finished, "finished")]);
    expect(rb.status).toBe("succeeded");
    expect(ra.status).toBe("succeeded");
    if (ra.note === null) {
      // a ran first: it finished before b started.
      expect(Date.parse(ra.finished_at as string)).toBeLessThanOrEqual(Date.parse(rb.started_at as string));
    } else {
      // b got the fact first: a found nothing left to do, and started only after b finished.
      expect(ra.note).toMatch(/through 2026-03-21, so this run processed through that date instead of 2026-03-08; nothing was left to recompute/);
      expect(ra.from).toBeNull();
      expect(Date.parse(rb.finished_at as string)).toBeLessThanOrEqual(Date.parse(ra.started_at as string));
    }
    expect((await factView("r_serial")).processed_through).toBe("2026-03-21");
    const activity = events.map((e) => ({ user_id: e.user_id, date: activityDateOf(e.occurred_at, "UTC") }));
    for (const grain of ["day", "week", "month"] as const) {
      const got = (await api(env).get(`/v1/facts/r_serial/metrics?grain=${grain}`)).json().data;
      expect(got, grain).toEqual(referenceLayer(activity, grain, "2026-03-21").metrics);
    }
  });

  it("refuses a date before the watermark (409 naming it) and leaves the watermark alone", async () => {
    await withWorkers(() => processThrough(env, "r_progress", "2026-03-06"));
    const res = await api(env).post("/v1/facts/r_progress/runs", { through: "2026-03-05" });
    const body = expectProblem(res, 409);
    expect(body.processed_through).toBe("2026-03-06");
    expect(body.detail).toContain("2026-03-06");
    expect((await factView("r_progress")).processed_through).toBe("2026-03-06");
    // The same date as the watermark is allowed (it picks up late data, if any).
    expect((await api(env).post("/v1/facts/r_progress/runs", { through: "2026-03-06" })).statusCode).toBe(202);
    await withWorkers(async () => {
      const runs = (await api(env).get("/v1/facts/r_progress/runs?limit=1")).json().data as Run[];
      expect((await waitFor(runs[0]!.id, finished, "finished")).status).toBe("succeeded");
    });
  });

  it("refuses a date after the last date an event can have (400 naming through), recording nothing", async () => {
    await createFact(env, "r_future", "Pacific/Kiritimati");
    await ingest(env, "r_future", daily("f", ["2026-03-01"]));
    // UTC+14: its last possible date is today's there, plus the day events may run ahead.
    const lastPossible = new Intl.DateTimeFormat("en-CA", { timeZone: "Pacific/Kiritimati" }).format(new Date(Date.now() + 86_400_000));
    const next = new Date(Date.parse(`${lastPossible}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
    for (const through of [next, "2030-01-01", "9999-12-31"]) {
      const body = expectProblem(await api(env).post("/v1/facts/r_future/runs", { through }), 400);
      expect(body.errors).toEqual([{ path: "through", message: `must be on or before ${lastPossible}` }]);
    }
    expect((await api(env).get("/v1/facts/r_future/runs")).json().data).toEqual([]);
    expect((await factView("r_future")).processed_through).toBeNull();
    expect((await api(env).post("/v1/facts/r_future/runs", { through: lastPossible })).statusCode).toBe(202);
  });

  it("without a date, runs through the watermark when it is past the latest event: late data is reprocessed, not refused", async () => {
    await createFact(env, "r_idle");
    await ingest(env, "r_idle", daily("i", ["2026-03-01", "2026-03-02"]));
    // The daily runs went on through yesterday with no new events.
    await withWorkers(() => processThrough(env, "r_idle", "2026-03-05"));
    const late = [{ user_id: "i-late", occurred_at: "2026-03-01T08:00:00Z" }];
    await ingest(env, "r_idle", late);
    expect((await factView("r_idle")).dirty_from).toBe("2026-03-01");
    const res = await api(env).post("/v1/facts/r_idle/runs");
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json().through).toBe("2026-03-05");
    await withWorkers(async () => expect((await waitFor(res.json().id, finished, "finished")).status).toBe("succeeded"));
    expect(await factView("r_idle")).toMatchObject({ processed_through: "2026-03-05", dirty_from: null });
    const activity = [...daily("i", ["2026-03-01", "2026-03-02"]), ...late].map((e) => ({ user_id: e.user_id, date: activityDateOf(e.occurred_at, "UTC") }));
    const got = (await api(env).get(`/v1/facts/r_idle/metrics?grain=day`)).json().data;
    expect(got).toEqual(referenceLayer(activity, "day", "2026-03-05").metrics);
  });

  it("validates the body and the run id", async () => {
    expectProblem(await api(env).post("/v1/facts/r_progress/runs", { through: "2026-02-30" }), 400);
    expectProblem(await api(env).post("/v1/facts/r_progress/runs", { through: "yesterday" }), 400);
    expectProblem(await api(env).post("/v1/facts/r_progress/runs", { through: "2026-03-07", extra: 1 }), 400);
    expectProblem(await api(env).post("/v1/facts/r_nope/runs", {}), 404);
    expectProblem(await api(env).get("/v1/runs/00000000-0000-4000-8000-000000000000"), 404);
    expectProblem(await api(env).get("/v1/runs/not-a-uuid"), 400);
  });
});

describe("listing runs", () => {
  it("pages a fact's runs newest first, every run once", async () => {
    await createFact(env, "r_list");
    await ingest(env, "r_list", daily("l", ["2026-03-01"]));
    const ids: string[] = [];
    for (const d of ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]) {
      ids.push((await api(env).post("/v1/facts/r_list/runs", { through: d })).json().id);
    }
    const seen: Run[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api(env).get(`/v1/facts/r_list/runs?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      expect(res.statusCode, res.body).toBe(200);
      seen.push(...res.json().data);
      cursor = res.json().next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen.map((r) => r.id)).toEqual([...ids].reverse());
    const created = seen.map((r) => Date.parse(r.created_at as string));
    expect([...created].sort((x, y) => y - x)).toEqual(created);
    expect(seen.every((r) => r.fact === "r_list")).toBe(true);
    expectProblem(await api(env).get("/v1/facts/r_list/runs?cursor=garbage"), 400);
    await withWorkers(() => waitFor(ids[4]!, finished, "finished"));
  });
});

describe("overtaken runs", () => {
  it("a run that finds its date already passed succeeds, says so, changes nothing and refreshes nothing", async () => {
    await createFact(env, "r_stale");
    await ingest(env, "r_stale", daily("t", ["2026-03-01", "2026-03-02", "2026-03-03"]));
    await withWorkers(() => processThrough(env, "r_stale", "2026-03-02"));
    const stale = (await api(env).post("/v1/facts/r_stale/runs", { through: "2026-03-02" })).json() as Run;
    // Meanwhile another run (the CLI, another worker) goes further.
    const fact = await factRecord("r_stale");
    const ahead = await requestRun(env.ctx, fact, "2026-03-03", "cli");
    const aheadDone = await executeRun(env.ctx, ahead.run.id);
    expect(aheadDone).toMatchObject({ status: "succeeded", from: "2026-03-03", note: null });
    // An audience that refreshes on new data: the overtaken run brings none, so it asks for no refresh.
    const audience = await api(env).post("/v1/audiences", {
      name: "r_stale_on_new_data", fact: "r_stale", grain: "day", refresh: "on_new_data", filter: { field: "inactivity_periods", op: "gte", value: 1 },
    });
    expect(audience.statusCode, audience.body).toBe(201);
    const materializations = () => env.ctx.db.prisma.materialization.count({ where: { audienceId: audience.json().id } });
    const materializedBefore = await materializations();
    const before = await metricsSnapshot("r_stale");
    const r = await withWorkers(() => waitFor(stale.id, finished, "finished"));
    expect(r).toMatchObject({ status: "succeeded", through: "2026-03-02", from: null, error: null, progress: 1 });
    expect(r.note).toBe(
      "Overtaken: another run had already processed 'r_stale' through 2026-03-03, so this run processed through that date instead of 2026-03-02; nothing was left to recompute.",
    );
    expect((await factView("r_stale")).processed_through).toBe("2026-03-03");
    expect(await metricsSnapshot("r_stale")).toEqual(before);
    expect(await materializations()).toBe(materializedBefore);
  });

  it("the run's end and what it sets off commit together: when recording them fails, the retry does both", async () => {
    await createFact(env, "r_outbox");
    await ingest(env, "r_outbox", daily("ob", ["2026-03-01", "2026-03-02"]));
    const hook = await api(env).post("/v1/webhooks", { url: "http://127.0.0.1:9/outbox", events: ["run.succeeded"], secret: "outbox-secret-0123456789" });
    expect(hook.statusCode, hook.body).toBe(201);
    const audience = await api(env).post("/v1/audiences", {
      name: "r_outbox_on_new_data", fact: "r_outbox", grain: "day", refresh: "on_new_data", filter: { field: "inactivity_periods", op: "gte", value: 0 },
    });
    expect(audience.statusCode, audience.body).toBe(201);
    const { run } = await requestRun(env.ctx, await factRecord("r_outbox"), "2026-03-02", "cli");
    // The first attempt processes and commits the layer, then fails while recording the webhook's
    // delivery (as a worker killed there would): the run must not read succeeded with nothing set off.
    await env.ctx.db.pool.query(`
      CREATE FUNCTION refuse_delivery() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'worker gone'; END $$;
      CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_delivery FOR EACH ROW EXECUTE FUNCTION refuse_delivery()`);
    try {
      await expect(executeRun(env.ctx, run.id, { finalAttempt: false })).rejects.toThrow(/worker gone/);
    } finally {
      await env.ctx.db.pool.query(`DROP TRIGGER refuse_delivery ON webhook_delivery; DROP FUNCTION refuse_delivery()`);
    }
    expect((await factView("r_outbox")).processed_through).toBe("2026-03-02");
    expect((await api(env).get(`/v1/runs/${run.id}`)).json().status).toBe("queued");
    const deliveries = () => env.ctx.db.prisma.webhookDelivery.count({ where: { webhookId: hook.json().id, event: "run.succeeded" } });
    const lists = () => env.ctx.db.prisma.materialization.count({ where: { audienceId: audience.json().id, trigger: "on_new_data" } });
    expect([await deliveries(), await lists()]).toEqual([0, 0]);
    // The retry recomputes from the start the first attempt claimed, and ends the run with everything.
    const done = await executeRun(env.ctx, run.id, { finalAttempt: true });
    expect(done).toMatchObject({ status: "succeeded", from: "2026-03-01" });
    expect([await deliveries(), await lists()]).toEqual([1, 1]);
    await api(env).delete(`/v1/webhooks/${hook.json().id}`);
  });

  it("an overtaken run that finds late data recomputes it through the later watermark", async () => {
    await createFact(env, "r_overtaken_late");
    const early = daily("o", ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-05"]);
    await ingest(env, "r_overtaken_late", early);
    const fact = await factRecord("r_overtaken_late");
    const behind = await requestRun(env.ctx, fact, "2026-03-03", "cli");
    const ahead = await requestRun(env.ctx, fact, "2026-03-05", "cli");
    expect((await executeRun(env.ctx, ahead.run.id)).status).toBe("succeeded");
    // Late events for a date the watermark has passed: the fact is dirty from 03-02.
    const late = [{ user_id: "o-late", occurred_at: "2026-03-02T08:00:00Z" }, { user_id: "o-late", occurred_at: "2026-03-04T08:00:00Z" }];
    await ingest(env, "r_overtaken_late", late);
    expect((await factView("r_overtaken_late")).dirty_from).toBe("2026-03-02");
    const r = await executeRun(env.ctx, behind.run.id);
    expect(r).toMatchObject({ status: "succeeded", through: "2026-03-03", from: "2026-03-02", error: null });
    expect(r.note).toBe(
      "Overtaken: another run had already processed 'r_overtaken_late' through 2026-03-05, so this run processed through that date instead of 2026-03-03; it recomputed late data from 2026-03-02 through 2026-03-05.",
    );
    const view = await factView("r_overtaken_late");
    expect(view).toMatchObject({ processed_through: "2026-03-05", dirty_from: null });
    const activity = [...early, ...late].map((e) => ({ user_id: e.user_id, date: activityDateOf(e.occurred_at, "UTC") }));
    for (const grain of ["day", "week", "month"] as const) {
      const got = (await api(env).get(`/v1/facts/r_overtaken_late/metrics?grain=${grain}`)).json().data;
      expect(got, grain).toEqual(referenceLayer(activity, grain, "2026-03-05").metrics);
    }
  });
});

describe("failed runs leave earlier results intact", () => {

  /** A fact processed through 2026-03-05 (Thursday), then events late (03-04) and new (03-06, 03-07, 04-02). */
  async function failingSetup(fact: string) {
    await createFact(env, fact);
    const early = daily(fact, ["2026-03-02", "2026-03-03", "2026-03-05"]);
    await ingest(env, fact, early);
    await withWorkers(() => processThrough(env, fact, "2026-03-05"));
    const record = await factRecord(fact);
    const before = await metricsSnapshot(fact);
    const statusBefore: Record<string, unknown> = {};
    for (const [grain, period] of [["day", "2026-03-05"], ["week", "2026-03-02"], ["month", "2026-03-01"]])
      statusBefore[grain!] = (await api(env).get(`/v1/facts/${fact}/status?grain=${grain}&period=${period}`)).json();
    const more = [
      ...daily(fact, ["2026-03-06", "2026-04-02"]),
      { user_id: `${fact}-late`, occurred_at: "2026-03-04T12:00:00Z" },
      { user_id: `${fact}-new`, occurred_at: "2026-03-07T12:00:00Z" },
    ];
    await ingest(env, fact, more);
    // A real error inside PostgreSQL while the month grain is written: day and week are done by then.
    const pool = env.ctx.db.pool;
    const fn = `fail_${fact}`;
    await pool.query(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.grain = 2 AND NEW.fact_id = ${record.id} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$`);
    await pool.query(`CREATE TRIGGER ${fn} BEFORE INSERT OR UPDATE ON layer_latest_pack FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
    let runId: string;
    try {
      const { run } = await requestRun(env.ctx, record, "2026-04-05");
      runId = run.id;
      await expect(executeRun(env.ctx, run.id, { finalAttempt: true })).rejects.toThrow(/injected failure/);
    } finally {
      await pool.query(`DROP TRIGGER ${fn} ON layer_latest_pack; DROP FUNCTION ${fn}()`);
    }
    return { early, more, before, statusBefore, runId };
  }

  it("a run that fails mid-way (an error in its last grain) keeps the watermark, records why, and the next run completes it", async () => {
    const { early, more, runId } = await failingSetup("r_fail");
    const failed = await getRun(runId);
    expect(failed).toMatchObject({ status: "failed", from: "2026-03-04" });
    expect(failed.error).toMatch(/injected failure/);
    expect(failed.finished_at).not.toBeNull();
    const view = await factView("r_fail");
    expect(view.processed_through).toBe("2026-03-05");
    expect(view.dirty_from).toBe("2026-03-04");
    expectProblem(await api(env).get("/v1/facts/r_fail/status?grain=day&period=2026-03-06"), 409);
    // Whatever the failed run left behind, the rows of the watermark's periods are still well-formed
    // (islands beyond the watermark must not be read as the users' latest ones).
    for (const [grain, period] of [["day", "2026-03-05"], ["week", "2026-03-02"], ["month", "2026-03-01"]]) {
      const rows = (await api(env).get(`/v1/facts/r_fail/status?grain=${grain}&period=${period}`)).json().data as Array<Record<string, unknown>>;
      expect(rows.length, grain).toBeGreaterThanOrEqual(4);
      for (const r of rows) expectWellFormed(r, period!);
    }
    const fl = (await api(env).get("/v1/facts/r_fail/first-last?date=2026-03-05")).json().data as Array<Record<string, string>>;
    for (const u of new Set(early.map((e) => e.user_id))) expect(fl.find((r) => r.user_id === u), u).toBeDefined();
    for (const r of fl) expect(String(r.last_active_date) <= "2026-03-05", JSON.stringify(r)).toBe(true);

    // The next run starts where the failed one did and ends right.
    const next = await withWorkers(() => processThrough(env, "r_fail", "2026-04-05"));
    expect(next.from).toBe("2026-03-04");
    expect((await factView("r_fail")).dirty_from).toBeNull();
    const activity = [...early, ...more].map((e) => ({ user_id: e.user_id, date: activityDateOf(e.occurred_at, "UTC") }));
    for (const grain of ["day", "week", "month"] as const) {
      const got = (await api(env).get(`/v1/facts/r_fail/metrics?grain=${grain}`)).json().data;
      expect(got, grain).toEqual(referenceLayer(activity, grain, "2026-04-05").metrics);
    }
  });

  it("while a run is in progress, the watermark's day status and FirstLast stay as they were", async () => {
    await createFact(env, "r_inflight");
    // u-a active 03-02..03-05, u-b on 03-02 only, u-c on 03-03 and 03-05; watermark 03-05.
    const early = [
      ...["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"].map((d) => ({ user_id: "u-a", occurred_at: `${d}T10:00:00Z` })),
      { user_id: "u-b", occurred_at: "2026-03-02T10:00:00Z" },
      { user_id: "u-c", occurred_at: "2026-03-03T10:00:00Z" },
      { user_id: "u-c", occurred_at: "2026-03-05T10:00:00Z" },
    ];
    await ingest(env, "r_inflight", early);
    await withWorkers(() => processThrough(env, "r_inflight", "2026-03-05"));
    const read = async () => ({
      status: (await api(env).get("/v1/facts/r_inflight/status?grain=day&period=2026-03-05")).json().data,
      firstLast: (await api(env).get("/v1/facts/r_inflight/first-last?date=2026-03-05")).json().data,
      timeline: (await api(env).get("/v1/facts/r_inflight/users/u-b/status?grain=day")).json().data,
    });
    const before = await read();
    expect(before.status).toHaveLength(3);
    // New days only (no late data): u-b comes back on Monday 03-09, u-a goes on.
    await ingest(env, "r_inflight", [
      { user_id: "u-b", occurred_at: "2026-03-09T10:00:00Z" },
      { user_id: "u-a", occurred_at: "2026-03-06T10:00:00Z" },
    ]);
    const record = await factRecord("r_inflight");
    const pool = env.ctx.db.pool;
    // The run stops inside its week grain (its day grain already written in the same transaction)
    // until we let it go; we read meanwhile.
    const gate = new pg.Client({ connectionString: env.ctx.config.DATABASE_URL });
    await gate.connect();
    await gate.query("SELECT pg_advisory_lock(77001)");
    await pool.query(`CREATE FUNCTION hold_week() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.grain = 1 AND NEW.fact_id = ${record.id} THEN PERFORM pg_advisory_xact_lock(77001); END IF; RETURN NEW; END $$`);
    await pool.query(`CREATE TRIGGER hold_week BEFORE INSERT OR UPDATE ON layer_latest_pack FOR EACH ROW EXECUTE FUNCTION hold_week()`);
    let running: Promise<{ status: string }> | null = null;
    try {
      const { run } = await requestRun(env.ctx, record, "2026-03-09");
      running = executeRun(env.ctx, run.id);
      const deadline = Date.now() + 20_000;
      const held = async () => (await pool.query(
        `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 77001 AND NOT granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, // another run of the suite may wait on 77001 too
      )).rowCount! > 0;
      while (!(await held())) {
        if (Date.now() > deadline) throw new Error("the run never reached its week grain");
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await getRun(run.id)).status).toBe("running");
      expect(await read()).toEqual(before);
      await gate.query("SELECT pg_advisory_unlock(77001)");
      expect((await running).status).toBe("succeeded");
    } finally {
      await gate.end(); // lets a held run go even when an expectation failed
      await running?.catch(() => {});
      await pool.query(`DROP TRIGGER hold_week ON layer_latest_pack; DROP FUNCTION hold_week()`);
    }
    const after = await read();
    expect(after.status).toEqual(before.status); // 03-05 itself did not change
    expect(after.timeline.map((r: Record<string, unknown>) => r.state)).toEqual(["new", ...Array(6).fill("inactive"), "reactivated"]);
  });

  // Grains and the watermark commit together: after a failure in a later grain, no grain shows the
  // late events (day 03-05 would count the user late on 03-04) nor the days after the watermark inside
  // its partial week (week 03-02 would count the users of 03-06 and 03-07).
  it("a failed run leaves the answers as of the watermark exactly as they were", async () => {
    const { before, statusBefore } = await failingSetup("r_fail_answers");
    expect((await factView("r_fail_answers")).processed_through).toBe("2026-03-05");
    const statusAfter: Record<string, unknown> = {};
    for (const [grain, period] of [["day", "2026-03-05"], ["week", "2026-03-02"], ["month", "2026-03-01"]])
      statusAfter[grain!] = (await api(env).get(`/v1/facts/r_fail_answers/status?grain=${grain}&period=${period}`)).json();
    expect(statusAfter).toEqual(statusBefore);
    expect(await metricsSnapshot("r_fail_answers")).toEqual(before);
  });
});

describe("a run whose job ended without its record knowing", () => {
  /**
   * What a run's last attempt leaves when it fails while PostgreSQL is unreachable: the run had claimed
   * its fact (dirty_from cleared, its start date kept in the record), the failure could not be recorded
   * (the record still reads running, dirty_from is not put back), and its job has failed for good.
   */
  async function strandRun(fact: string, through: string): Promise<string> {
    const record = await factRecord(fact);
    const { run } = await requestRun(env.ctx, record, through);
    const from = record.dirtyFrom!.toISOString().slice(0, 10);
    await env.ctx.db.pool.query(`UPDATE fact SET dirty_from = NULL, running_through = $2 WHERE id = $1`, [record.id, through]);
    await env.ctx.db.prisma.processingRun.update({
      where: { id: run.id },
      data: { status: "running", startedAt: new Date(), fromDate: new Date(`${from}T00:00:00Z`), error: null },
    });
    // Its job, on its last attempt, fails in a stand-in worker.
    const { queues, config } = env.ctx;
    const jobId = queues.processRunJobId(run.id);
    await queues.processing.remove(jobId);
    await queues.processing.add(JOB_NAMES.processRun, { runId: run.id }, { jobId, attempts: 1 });
    const connection = createRedis(config.REDIS_URL, "worker");
    const standIn = new Worker(QUEUE_NAMES.processing, async () => { throw new Error("PostgreSQL unreachable"); }, { connection, prefix: config.REDIS_PREFIX });
    try {
      const deadline = Date.now() + 10_000;
      while ((await queues.processing.getJobState(jobId)) !== "failed") {
        if (Date.now() > deadline) throw new Error("the stand-in worker never failed the job");
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await standIn.close();
      connection.disconnect();
    }
    expect((await getRun(run.id)).status).toBe("running");
    return run.id;
  }

  /** Every grain's metrics, without the fact's name. */
  async function metricsRows(fact: string) {
    const all = (await metricsSnapshot(fact)) as Record<string, Record<string, unknown>>;
    return Object.fromEntries(Object.entries(all).map(([grain, { fact: _name, ...rest }]) => [grain, rest]));
  }

  /** Processed through 03-03, then a late event (03-02) and a new day (03-04); the reference gets it all at once. */
  async function lateSetup(fact: string) {
    const first = daily(fact, ["2026-03-01", "2026-03-03"]);
    const more = [...daily(fact, ["2026-03-04"]), { user_id: `${fact}-late`, occurred_at: "2026-03-02T12:00:00Z" }];
    await createFact(env, fact);
    await ingest(env, fact, first);
    await withWorkers(() => processThrough(env, fact, "2026-03-03"));
    await ingest(env, fact, more);
    const ref = `${fact}_ref`;
    await createFact(env, ref);
    await ingest(env, ref, [...first, ...more]);
    await withWorkers(() => processThrough(env, ref, "2026-03-04"));
    return ref;
  }

  it("is revived when the same run is asked for again (the request joins it), and ends as an undisturbed run", async () => {
    const ref = await lateSetup("r_strand_join");
    const runId = await strandRun("r_strand_join", "2026-03-04");
    const again = await api(env).post("/v1/facts/r_strand_join/runs", { through: "2026-03-04" });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().id).toBe(runId);
    expect(await env.ctx.queues.processing.getJobState(env.ctx.queues.processRunJobId(runId))).toBe("waiting");
    const run = await withWorkers(() => waitFor(runId, finished, "finished"));
    expect(run).toMatchObject({ status: "succeeded", from: "2026-03-02", through: "2026-03-04", error: null });
    expect((await factView("r_strand_join")).processed_through).toBe("2026-03-04");
    expect(await metricsRows("r_strand_join")).toEqual(await metricsRows(ref));
  });

  it("is revived by workers when they start, without anyone asking", async () => {
    const ref = await lateSetup("r_strand_sweep");
    const runId = await strandRun("r_strand_sweep", "2026-03-04");
    const run = await withWorkers(() => waitFor(runId, finished, "finished"));
    expect(run).toMatchObject({ status: "succeeded", from: "2026-03-02", through: "2026-03-04", error: null });
    expect(await metricsRows("r_strand_sweep")).toEqual(await metricsRows(ref));
  });
});

describe("queries and the watermark", () => {
  it("answers 409 naming the watermark for periods beyond it, at every grain and endpoint", async () => {
    // r_progress is processed through 2026-03-06 (a Friday).
    const a = api(env);
    const ok = [
      "/v1/facts/r_progress/status?grain=day&period=2026-03-06",
      "/v1/facts/r_progress/status?grain=week&period=2026-03-02",
      "/v1/facts/r_progress/status?grain=month&period=2026-03-01",
      "/v1/facts/r_progress/metrics?grain=day&to=2026-03-06",
      "/v1/facts/r_progress/first-last?date=2026-03-06",
    ];
    for (const url of ok) expect((await a.get(url)).statusCode, url).toBe(200);
    const beyond = [
      "/v1/facts/r_progress/status?grain=day&period=2026-03-07",
      "/v1/facts/r_progress/status?grain=week&period=2026-03-09",
      "/v1/facts/r_progress/status?grain=month&period=2026-04-01",
      "/v1/facts/r_progress/activation?grain=day&period=2026-03-07",
      "/v1/facts/r_progress/metrics?grain=day&to=2026-03-07",
      "/v1/facts/r_progress/metrics?grain=week&from=2026-03-09",
      "/v1/facts/r_progress/metrics/contribution?grain=day&base=2026-03-06&compare=2026-03-07",
      "/v1/facts/r_progress/first-last?date=2026-03-07",
      "/v1/facts/r_progress/users/p-0/status?grain=day&to=2026-03-07",
    ];
    for (const url of beyond) {
      const body = expectProblem(await a.get(url), 409);
      expect(body.processed_through, url).toBe("2026-03-06");
      expect(body.detail, url).toContain("2026-03-06");
    }
    // The CSV export of a period beyond it is refused the same way, not streamed empty.
    expectProblem(await a.get("/v1/facts/r_progress/status?grain=day&period=2026-03-07", { accept: "text/csv" }), 409);
  });

  it("a run through today gives today's numbers so far, marked partial until the day is over in the fact's timezone", async () => {
    const tz = "Pacific/Kiritimati";
    const today = new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(new Date());
    const yesterday = new Date(Date.parse(`${today}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
    await createFact(env, "r_today", tz);
    // Noon local is 22:00 the day before in UTC; both days' events lie in the past.
    await ingest(env, "r_today", [
      { user_id: "t-1", occurred_at: `${yesterday}T00:30:00+14:00` },
      { user_id: "t-1", occurred_at: new Date(Date.now() - 60_000).toISOString() },
    ]);
    await withWorkers(() => processThrough(env, "r_today", today));
    const days = (await api(env).get(`/v1/facts/r_today/metrics?grain=day&from=${yesterday}&to=${today}`)).json().data;
    expect(days.map((d: { period: string; period_complete: boolean }) => [d.period, d.period_complete])).toEqual([[yesterday, true], [today, false]]);
    const status = (await api(env).get(`/v1/facts/r_today/status?grain=day&period=${today}`)).json();
    expect(status.period_complete).toBe(false);
    for (const grain of ["week", "month"]) {
      const rows = (await api(env).get(`/v1/facts/r_today/metrics?grain=${grain}`)).json().data;
      expect(rows.at(-1).period_complete, grain).toBe(false);
    }
  });

  it("answers 409 before any run has processed the fact", async () => {
    await createFact(env, "r_unprocessed");
    await ingest(env, "r_unprocessed", daily("u", ["2026-03-01"]));
    for (const url of [
      "/v1/facts/r_unprocessed/metrics",
      "/v1/facts/r_unprocessed/status?period=2026-03-01",
      "/v1/facts/r_unprocessed/activation?period=2026-03-01",
      "/v1/facts/r_unprocessed/first-last?date=2026-03-01",
      "/v1/facts/r_unprocessed/users/u-0/status",
    ]) {
      const body = expectProblem(await api(env).get(url), 409);
      expect(body.processed_through, url).toBeNull();
    }
  });
});

describe("the daily scheduler", () => {
  it("requests runs through yesterday in each fact's own timezone, joins queued ones, and skips facts that are up to date", async () => {
    await createFact(env, "sch_seoul", "Asia/Seoul");
    await createFact(env, "sch_la", "America/Los_Angeles");
    await createFact(env, "sch_utc", "UTC");
    await createFact(env, "sch_none", "UTC"); // no events: never scheduled
    for (const f of ["sch_seoul", "sch_la", "sch_utc"]) await ingest(env, f, daily(f, ["2026-05-01", "2026-05-05"]));
    const ours = (runs: Array<{ fact: string; through: string; trigger: string; id: string }>) =>
      Object.fromEntries(runs.filter((r) => r.fact.startsWith("sch_")).map((r) => [r.fact, r]));

    // 23:59Z on 05-10: Seoul is at 08:59 on 05-11, Los Angeles at 16:59 on 05-10, UTC still on 05-10.
    const first = ours(await processAllFactsThroughYesterday(env.ctx, new Date("2026-05-10T23:59:00Z")));
    expect(Object.fromEntries(Object.entries(first).map(([f, r]) => [f, [r.through, r.trigger]]))).toEqual({
      sch_seoul: ["2026-05-10", "schedule"],
      sch_la: ["2026-05-09", "schedule"],
      sch_utc: ["2026-05-09", "schedule"],
    });
    // Two minutes later UTC is on 05-11: only the UTC fact's yesterday moved; the others are joined.
    const second = ours(await processAllFactsThroughYesterday(env.ctx, new Date("2026-05-11T00:01:00Z")));
    expect(second.sch_seoul!.id).toBe(first.sch_seoul!.id);
    expect(second.sch_la!.id).toBe(first.sch_la!.id);
    expect(second.sch_utc!.through).toBe("2026-05-10");
    expect(second.sch_utc!.id).not.toBe(first.sch_utc!.id);

    await withWorkers(async () => {
      for (const r of [...Object.values(first), ...Object.values(second)]) await waitFor(r.id, finished, "finished");
    });
    expect((await factView("sch_seoul")).processed_through).toBe("2026-05-10");
    expect((await factView("sch_la")).processed_through).toBe("2026-05-09");
    expect((await factView("sch_utc")).processed_through).toBe("2026-05-10");

    // Up to date: nothing requested.
    expect(ours(await processAllFactsThroughYesterday(env.ctx, new Date("2026-05-11T00:01:00Z")))).toEqual({});
    // A fact processed beyond its yesterday is skipped too (an earlier `now`).
    expect(ours(await processAllFactsThroughYesterday(env.ctx, new Date("2026-05-09T12:00:00Z")))).toEqual({});
    // Late data dated before the watermark makes a fact due again, through the same yesterday.
    await ingest(env, "sch_la", [{ user_id: "late", occurred_at: "2026-05-03T12:00:00-07:00" }]);
    const again = ours(await processAllFactsThroughYesterday(env.ctx, new Date("2026-05-11T00:01:00Z")));
    expect(Object.keys(again)).toEqual(["sch_la"]);
    expect(again.sch_la!.through).toBe("2026-05-09");
    const done = await withWorkers(() => waitFor(again.sch_la!.id, finished, "finished"));
    expect(done).toMatchObject({ status: "succeeded", from: "2026-05-03" });
    expect((await factView("sch_la")).dirty_from).toBeNull();
  });
});
