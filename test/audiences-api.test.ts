import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { spawn } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { allPages, api, createFact, ingest, processThrough } from "./helpers/api.js";
import { fixtureMeta, readFixtureCsv } from "./helpers/fixtures.js";
import { syncRefreshSchedules } from "../src/audiences/refresh.js";
import { whileTableLocked } from "./helpers/locks.js";
import { dateToDay, dayToDate } from "../src/activation/periods.js";

const FIXTURE = "la-dst-60d";
const meta = fixtureMeta(FIXTURE);
const FACT = "app_opened";
const events = readFixtureCsv(FIXTURE, "events.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const part1 = readFixtureCsv(FIXTURE, "events_part1.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const part2 = readFixtureCsv(FIXTURE, "events_part2.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));

let env: TestEnv;
beforeAll(async () => {
  // Short job locks so a killed worker's job is picked up again within seconds.
  env = await createTestEnv({ JOB_LOCK_MS: "2000", JOB_STALLED_CHECK_MS: "500" });
  env.startWorkers();
  await createFact(env, FACT, meta.fact_timezone);
  await ingest(env, FACT, events);
  await processThrough(env, FACT, meta.through);
});
afterAll(async () => env?.close());

const lapsed = {
  name: "Lapsed streakers",
  fact: FACT,
  grain: "day",
  filter: { all: [{ field: "inactivity_periods", op: "between", value: [3, 30] }, { field: "last_streak_periods", op: "gte", value: 2 }] },
};

async function waitFor(id: string) {
  const deadline = Date.now() + 45_000;
  for (;;) {
    const m = (await api(env).get(`/v1/materializations/${id}`)).json();
    if (m.status === "succeeded" || m.status === "failed") return m;
    if (Date.now() > deadline) throw new Error(`materialization ${id} did not finish: ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function materialize(audienceId: string, asOf?: string) {
  const res = await api(env).post(`/v1/audiences/${audienceId}/materializations`, asOf ? { as_of: asOf } : {});
  expect(res.statusCode, res.body).toBe(202);
  expect(res.headers.location).toBe(`/v1/materializations/${res.json().id}`);
  return waitFor(res.json().id);
}

describe("definition validation", () => {
  const bad = async (definition: unknown) => {
    const res = await api(env).post("/v1/audiences/preview", { definition });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    return res.json().errors as Array<{ path: string; message: string }>;
  };
  const withFilter = (filter: unknown) => ({ name: "x", fact: FACT, grain: "day", filter });

  it("names the path and the reason of each error", async () => {
    const errors = await bad(
      withFilter({
        all: [
          { field: "inactivity_periods", op: "between", value: [30, 7] },
          { field: "state", op: "eq", value: 3 },
          { field: "transition_segment", op: "in", value: ["retained_to_gone"] },
          { field: "nonsense", op: "eq", value: 1 },
          { field: "state", op: "gt", value: "new" },
          { field: "inactivity_periods", op: "eq", value: 1, within_periods: 3 },
          { field: "first_active_period", op: "gte", value: "2026-02-30" },
        ],
      }),
    );
    const byPath = Object.fromEntries(errors.map((e) => [e.path, e.message]));
    expect(byPath["definition.filter.all[0].value"]).toMatch(/reversed/);
    expect(byPath["definition.filter.all[1].value"]).toMatch(/expected one of/);
    expect(byPath["definition.filter.all[2].value[0]"]).toMatch(/unknown transition segment/);
    expect(byPath["definition.filter.all[3].field"]).toMatch(/unknown field/);
    expect(byPath["definition.filter.all[4].op"]).toMatch(/numbers and dates/);
    expect(byPath["definition.filter.all[5].within_periods"]).toMatch(/state, transition_segment, growth_state/);
    expect(byPath["definition.filter.all[6].value"]).toMatch(/date/);
  });

  it("limits depth to 6 and conditions to 50", async () => {
    let deep: unknown = { field: "state", op: "eq", value: "new" };
    for (let i = 0; i < 6; i++) deep = { not: deep };
    expect((await bad(withFilter(deep)))[0]!.message).toMatch(/deeper than 6/);
    const many = { any: Array.from({ length: 51 }, () => ({ field: "state", op: "eq", value: "new" })) };
    expect((await bad(withFilter(many))).some((e) => /more than 50 conditions/.test(e.message))).toBe(true);
  });

  it("rejects unknown facts, growth_state off day grain and unknown keys", async () => {
    expect((await bad({ ...withFilter({ field: "state", op: "eq", value: "new" }), fact: "no_such_fact" }))[0]!.path).toBe("definition.fact");
    // A definition that is the body (POST /v1/audiences) names the field without a prefix.
    const created = await api(env).post("/v1/audiences", { ...withFilter({ field: "state", op: "eq", value: "new", fact: "no_such_fact" }) });
    expect(created.statusCode).toBe(400);
    expect(created.json().errors).toEqual([{ path: "filter", message: "unknown fact 'no_such_fact'" }]);
    expect((await bad({ ...withFilter({ field: "growth_state", op: "eq", value: "new" }), grain: "week" }))[0]!.path).toBe("definition.filter.field");
    expect((await bad(withFilter({ field: "state", op: "eq", value: "new", colour: "red" })))[0]!.path).toBe("definition.filter.colour");
    const res = await api(env).post("/v1/audiences/preview", { definition: withFilter({ field: "state", op: "eq", value: "new" }), as_of: "2099-01-01" });
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toContain(meta.through);
  });
});

describe("audiences, versions and materializations", () => {
  it("previews with count, breakdowns, sample, as_of and timing", async () => {
    const res = await api(env, env.keys.read).post("/v1/audiences/preview", { definition: lapsed });
    expect(res.statusCode, res.body).toBe(200);
    const p = res.json();
    expect(p.as_of).toBe(meta.through);
    expect(p.count).toBeGreaterThan(0);
    expect(Object.values(p.by_state).reduce((a: number, b) => a + (b as number), 0)).toBe(p.count);
    expect(Object.values(p.by_growth_state).reduce((a: number, b) => a + (b as number), 0)).toBe(p.count);
    expect(p.sample.length).toBe(Math.min(20, p.count));
    expect(typeof p.took_ms).toBe("number");
  });

  it("versions every change of the definition and remembers the version in materializations", async () => {
    const created = await api(env).post("/v1/audiences", lapsed);
    expect(created.statusCode, created.body).toBe(201);
    const a = created.json();
    expect(a.version).toBe(1);
    const m1 = await materialize(a.id);
    expect(m1.status).toBe("succeeded");
    expect(m1.version).toBe(1);

    const patched = await api(env).patch(`/v1/audiences/${a.id}`, { filter: { field: "inactivity_periods", op: "gte", value: 1 } });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().version).toBe(2);
    // A refresh change alone is not a new version.
    const refreshOnly = await api(env).patch(`/v1/audiences/${a.id}`, { refresh: null });
    expect(refreshOnly.json().version).toBe(2);
    const versions = (await api(env).get(`/v1/audiences/${a.id}/versions`)).json().data;
    expect(versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    expect(versions[1].definition.filter).toEqual(lapsed.filter);

    const m2 = await materialize(a.id);
    expect(m2.version).toBe(2);
    expect(m2.member_count).toBeGreaterThanOrEqual(m1.member_count);

    // Bad patch changes nothing.
    const badPatch = await api(env).patch(`/v1/audiences/${a.id}`, { grain: "hour" });
    expect(badPatch.statusCode).toBe(400);
    expect((await api(env).get(`/v1/audiences/${a.id}`)).json().version).toBe(2);

    const list = await allPages(env, "/v1/audiences", 1);
    expect(list.some((x) => x.id === a.id)).toBe(true);
  });

  it("pages versions newest first with limit and an opaque cursor, and refuses a query parameter it does not take", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "many versions" })).json();
    for (const value of [1, 2, 3, 4]) {
      const res = await api(env).patch(`/v1/audiences/${a.id}`, { filter: { field: "inactivity_periods", op: "gte", value } });
      expect(res.statusCode, res.body).toBe(200);
    }
    const first = await api(env).get(`/v1/audiences/${a.id}/versions?limit=2`);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().data.map((v: { version: number }) => v.version)).toEqual([5, 4]);
    expect(first.json().next_cursor).toEqual(expect.any(String));
    expect((await allPages(env, `/v1/audiences/${a.id}/versions`, 2)).map((v) => v.version)).toEqual([5, 4, 3, 2, 1]);
    const bogus = await api(env).get(`/v1/audiences/${a.id}/versions?bogus=1`);
    expect(bogus.statusCode, bogus.body).toBe(400);
    expect(bogus.json().errors).toEqual([{ path: "bogus", message: "unknown field 'bogus'" }]);
  });

  it("materializes as of the default date when the POST has no body at all (curl -X POST)", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "no body" })).json();
    const res = await env.app.inject({ method: "POST", url: `/v1/audiences/${a.id}/materializations`, headers: env.auth() });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json().as_of).toBe(meta.through);
    expect((await waitFor(res.json().id)).status).toBe("succeeded");
  });

  it("pages members, streams them as CSV and NDJSON, and diffs two lists", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "diff" })).json();
    const early = await materialize(a.id, "2026-04-01");
    const late = await materialize(a.id, meta.through);
    expect(early.as_of).toBe("2026-04-01");

    const paged = await allPages(env, `/v1/materializations/${late.id}/members`, 3);
    expect(paged.length).toBe(late.member_count);
    expect(new Set(paged.map((r) => r.user_id)).size).toBe(paged.length);
    expect(paged[0]).toHaveProperty("inactivity_periods");

    const csv = await api(env).get(`/v1/materializations/${late.id}/members`, { accept: "text/csv" });
    expect(csv.headers["content-type"]).toContain("text/csv");
    const lines = csv.body.trim().split("\n");
    expect(lines[0]).toMatch(/^user_id,state,previous_state,transition_segment,is_active/);
    expect(lines.length - 1).toBe(late.member_count);
    expect(lines.slice(1).every((l) => /,(true|false),/.test(l))).toBe(true);

    const nd = await api(env).get(`/v1/materializations/${late.id}/members`, { accept: "application/x-ndjson" });
    const rows = nd.body.trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.map((r) => r.user_id).sort()).toEqual(paged.map((r) => r.user_id).sort());

    const earlyUsers = new Set((await allPages(env, `/v1/materializations/${early.id}/members`)).map((r) => r.user_id as string));
    const lateUsers = new Set(paged.map((r) => r.user_id as string));
    const entered = [...lateUsers].filter((u) => !earlyUsers.has(u)).sort();
    const exited = [...earlyUsers].filter((u) => !lateUsers.has(u)).sort();
    const changes = (await api(env).get(`/v1/materializations/${late.id}/changes?since=${early.id}&limit=2`)).json();
    expect(changes.counts).toEqual({ entered: entered.length, exited: exited.length, stayed: lateUsers.size - entered.length });
    const allEntered = await allPages(env, `/v1/materializations/${late.id}/changes?since=${early.id}&kind=entered`, 2);
    expect(allEntered.map((r) => r.user_id).sort()).toEqual(entered);
    const allExited = await allPages(env, `/v1/materializations/${late.id}/changes?since=${early.id}&kind=exited`, 2);
    expect(allExited.map((r) => r.user_id).sort()).toEqual(exited);
    const exitedCsv = await api(env).get(`/v1/materializations/${late.id}/changes?since=${early.id}&kind=exited`, { accept: "text/csv" });
    expect(exitedCsv.body.trim().split("\n").length - 1).toBe(exited.length);

    // Later data never changes a finished list.
    const before = (await api(env).get(`/v1/materializations/${early.id}/members`, { accept: "text/csv" })).body;
    const other = await api(env).post("/v1/facts", { name: "frozen_check", timezone: "UTC" });
    expect(other.statusCode).toBe(201);
    expect((await api(env).get(`/v1/materializations/${early.id}/members`, { accept: "text/csv" })).body).toBe(before);
  });

  it("keeps finished materializations readable after the audience is deleted, until they are deleted", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "to delete" })).json();
    const m = await materialize(a.id);
    expect((await api(env).delete(`/v1/audiences/${a.id}`)).statusCode).toBe(204);
    expect((await api(env).get(`/v1/audiences/${a.id}`)).statusCode).toBe(404);
    const members = await api(env).get(`/v1/materializations/${m.id}/members`);
    expect(members.statusCode).toBe(200);
    expect(members.json().data.length).toBe(Math.min(100, m.member_count));
    expect((await api(env).delete(`/v1/materializations/${m.id}`)).statusCode).toBe(204);
    expect((await api(env).get(`/v1/materializations/${m.id}/members`)).statusCode).toBe(404);
  });

  it("two deletions of one list at once: one answers 204, the other the list's 404, never a 500", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "deleted twice" })).json();
    const m = await materialize(a.id);
    const pool = env.ctx.db.pool;
    const waiting = async () =>
      (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'audience_member'::regclass AND NOT granted`)).rows[0]!.n;
    // Both deletions found the list and wait on its members' table; then both go on.
    const deletions = await whileTableLocked(pool, "audience_member", async () => {
      const both = [api(env).delete(`/v1/materializations/${m.id}`), api(env).delete(`/v1/materializations/${m.id}`)];
      for (let i = 0; (await waiting()) < 2; i++) {
        if (i > 500) throw new Error("the deletions never waited on audience_member");
        await new Promise((r) => setTimeout(r, 10));
      }
      return both;
    });
    const answers = await Promise.all(deletions);
    expect(answers.map((r) => r.statusCode).sort(), answers.map((r) => r.body).join(" | ")).toEqual([204, 404]);
    expect(answers.find((r) => r.statusCode === 404)!.json()).toMatchObject({ status: 404, detail: `No materialization ${m.id}.` });
    await api(env).delete(`/v1/audiences/${a.id}`);
  });

  it("refuses to delete a fact an audience reads", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "guard" })).json();
    const res = await api(env).delete(`/v1/facts/${FACT}`);
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toContain("guard");
    await api(env).delete(`/v1/audiences/${a.id}`);
  });

  it("runs two materializations at once, both right", async () => {
    // Two versions of one audience, the same filter: two lists (an identical request would join the first).
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "twins" })).json();
    const r1 = await api(env).post(`/v1/audiences/${a.id}/materializations`, {});
    expect((await api(env).patch(`/v1/audiences/${a.id}`, { name: "twins, renamed" })).statusCode).toBe(200);
    const r2 = await api(env).post(`/v1/audiences/${a.id}/materializations`, {});
    expect([r1.statusCode, r2.statusCode]).toEqual([202, 202]);
    const [m1, m2] = await Promise.all([waitFor(r1.json().id), waitFor(r2.json().id)]);
    expect([m1.version, m2.version]).toEqual([1, 2]);
    expect(m1.member_count).toBe(m2.member_count);
    const u1 = (await allPages(env, `/v1/materializations/${m1.id}/members`)).map((r) => r.user_id).sort();
    const u2 = (await allPages(env, `/v1/materializations/${m2.id}/members`)).map((r) => r.user_id).sort();
    expect(u1).toEqual(u2);
    expect(u1.length).toBe(m1.member_count);
  });

  it("a request for a list identical to one queued or running joins it (200, same list); once it has finished, the next request makes another", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "clicked twice" })).json();
    const post = (body: object) => api(env).post(`/v1/audiences/${a.id}/materializations`, body);
    const first = await env.withWorkersStopped(async () => {
      // Together: one queues the list, the other joins it.
      const together = await Promise.all([post({}), post({ as_of: meta.through }), post({})]);
      expect(together.map((r) => r.statusCode).sort(), together.map((r) => r.body).join(" | ")).toEqual([200, 200, 202]);
      const queued = together.find((r) => r.statusCode === 202)!.json() as { id: string };
      for (const r of together) {
        expect(r.json().id).toBe(queued.id);
        expect(r.headers.location).toBe(`/v1/materializations/${queued.id}`);
      }
      // Another date is another list.
      const other = await post({ as_of: dayToDate(dateToDay(meta.through) - 1) });
      expect(other.statusCode).toBe(202);
      expect(other.json().id).not.toBe(queued.id);
      const listed = (await api(env).get(`/v1/audiences/${a.id}/materializations`)).json().data as Array<{ id: string }>;
      expect(listed.length).toBe(2);
      return queued;
    });
    expect((await waitFor(first.id)).status).toBe("succeeded");
    const after = await post({});
    expect(after.statusCode).toBe(202);
    expect(after.json().id).not.toBe(first.id);
    await waitFor(after.json().id);
  });
});

describe("refresh", () => {
  it("schedules cron refreshes as one job scheduler per audience, removed with the audience", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "cron", refresh: { cron: "0 6 * * *", timezone: "Asia/Seoul" } })).json();
    expect(a.refresh).toEqual({ cron: "0 6 * * *", timezone: "Asia/Seoul" });
    const schedulers = await env.ctx.queues.schedules.getJobSchedulers();
    const mine = schedulers.filter((s) => s.key === `audience-refresh-${a.id}` || s.id === `audience-refresh-${a.id}`);
    expect(mine.length).toBe(1);
    expect(mine[0]!.pattern).toBe("0 6 * * *");
    expect(mine[0]!.tz).toBe("Asia/Seoul");
    // Saving again (as a restart would) keeps one scheduler.
    await api(env).patch(`/v1/audiences/${a.id}`, { refresh: { cron: "0 6 * * *", timezone: "Asia/Seoul" } });
    expect((await env.ctx.queues.schedules.getJobSchedulers()).filter((s) => (s.key ?? s.id) === `audience-refresh-${a.id}`).length).toBe(1);
    const badCron = await api(env).patch(`/v1/audiences/${a.id}`, { refresh: { cron: "every day", timezone: "UTC" } });
    expect(badCron.statusCode).toBe(400);
    expect(badCron.json().errors[0].path).toBe("refresh.cron");
    // Redis lost its schedulers (flushed, restored from an old backup): startup puts them back.
    await env.ctx.queues.removeScheduler(`audience-refresh-${a.id}`);
    await env.ctx.queues.upsertAudienceRefresh("audience-refresh-00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000", "0 1 * * *", "UTC");
    const synced = await syncRefreshSchedules(env.ctx);
    expect(synced.removed).toBe(1);
    const ids = (await env.ctx.queues.schedules.getJobSchedulers()).map((s) => s.key ?? s.id);
    expect(ids).toContain(`audience-refresh-${a.id}`);
    expect(ids).not.toContain("audience-refresh-00000000-0000-4000-8000-000000000000");
    await api(env).delete(`/v1/audiences/${a.id}`);
    expect((await env.ctx.queues.schedules.getJobSchedulers()).filter((s) => (s.key ?? s.id) === `audience-refresh-${a.id}`).length).toBe(0);
  });

  it("refuses a cron the scheduler could not run (400 naming refresh.cron, nothing stored); startup skips one stored earlier", async () => {
    const before = (await env.ctx.db.prisma.audience.count());
    for (const [cron, reason] of [
      ["99 99 * * *", /got value 99/],
      ["a b c d e", /Invalid characters/],
      ["0 0 30 2 *", /day of month/],
      ["* * * * * *", /less than 60 s apart/],
      ["0 6 * *", /5 fields/],
    ] as const) {
      const res = await api(env).post("/v1/audiences", { ...lapsed, name: `bad cron ${cron}`, refresh: { cron, timezone: "Asia/Seoul" } });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers["content-type"]).toContain("application/problem+json");
      expect(res.json().errors).toEqual([{ path: "refresh.cron", message: expect.stringMatching(reason) }]);
    }
    expect(await env.ctx.db.prisma.audience.count()).toBe(before);
    // An audience stored with a bad expression (by an older version): the sync skips it and keeps the rest.
    const good = (await api(env).post("/v1/audiences", { ...lapsed, name: "good cron", refresh: { cron: "0 7 * * *", timezone: "UTC" } })).json();
    const stale = (await api(env).post("/v1/audiences", { ...lapsed, name: "stale cron" })).json();
    await env.ctx.db.prisma.audience.update({ where: { id: stale.id }, data: { refresh: { cron: "99 99 * * *", timezone: "UTC" } } });
    await syncRefreshSchedules(env.ctx);
    const ids = (await env.ctx.queues.schedules.getJobSchedulers()).map((s) => s.key ?? s.id);
    expect(ids).toContain(`audience-refresh-${good.id}`);
    expect(ids).not.toContain(`audience-refresh-${stale.id}`);
    for (const a of [good, stale]) await api(env).delete(`/v1/audiences/${a.id}`);
  });

  it("materializes on_new_data audiences after each processing run of their fact", async () => {
    const fact = "refresh_fact";
    await createFact(env, fact, meta.fact_timezone);
    await ingest(env, fact, part1);
    await processThrough(env, fact, meta.part1_through);
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "fresh", fact, refresh: "on_new_data" })).json();
    await ingest(env, fact, part2);
    await processThrough(env, fact, meta.through);
    const deadline = Date.now() + 20_000;
    let list: Array<Record<string, unknown>> = [];
    while (Date.now() < deadline) {
      list = await allPages(env, `/v1/audiences/${a.id}/materializations`);
      if (list.some((m) => m.trigger === "on_new_data" && m.status === "succeeded")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const auto = list.find((m) => m.trigger === "on_new_data");
    expect(auto?.status).toBe("succeeded");
    expect(auto?.as_of).toBe(meta.through);
  });
});

describe("webhooks", () => {
  let server: Server;
  let url = "";
  const received: Array<{ headers: IncomingMessage["headers"]; body: string }> = [];
  let failuresLeft = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        if (failuresLeft > 0) {
          failuresLeft--;
          res.writeHead(500).end("boom");
          return;
        }
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("lists webhooks oldest first, paged with limit and an opaque cursor, and refuses a query parameter it does not take", async () => {
    const created: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await api(env).post("/v1/webhooks", { url: `http://127.0.0.1:9/listed-${i}`, events: ["run.failed"], secret: "0123456789abcdef" });
      expect(res.statusCode, res.body).toBe(201);
      created.push(res.json().id);
    }
    const first = await api(env).get("/v1/webhooks?limit=1");
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().data).toHaveLength(1);
    expect(first.json().next_cursor).toEqual(expect.any(String));
    const onePerPage = await allPages(env, "/v1/webhooks", 1);
    expect(onePerPage).toEqual((await api(env).get("/v1/webhooks")).json().data);
    expect(onePerPage.map((w) => w.id)).toEqual(expect.arrayContaining(created));
    const createdAt = onePerPage.map((w) => String(w.created_at));
    expect([...createdAt].sort()).toEqual(createdAt);
    const bogus = await api(env).get("/v1/webhooks?bogus=1&limit=1");
    expect(bogus.statusCode, bogus.body).toBe(400);
    expect(bogus.json().errors).toEqual([{ path: "bogus", message: "unknown field 'bogus'" }]);
    for (const id of created) expect((await api(env).delete(`/v1/webhooks/${id}`)).statusCode).toBe(204);
  });

  it("needs an admin key", async () => {
    const res = await api(env, env.keys.rw).post("/v1/webhooks", { url, events: ["materialization.succeeded"], secret: "0123456789abcdef" });
    expect(res.statusCode).toBe(403);
  });

  it("signs deliveries, retries a failing receiver with backoff and logs every attempt", async () => {
    const secret = "s3cret-s3cret-s3cret";
    const hook = await api(env).post("/v1/webhooks", { url, events: ["materialization.succeeded"], secret });
    expect(hook.statusCode, hook.body).toBe(201);
    expect(hook.json()).not.toHaveProperty("secret");
    failuresLeft = 1;
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "hooked" })).json();
    const m = await materialize(a.id);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !received.some((r) => r.body.includes(m.id))) await new Promise((r) => setTimeout(r, 100));
    const got = received.find((r) => r.body.includes(m.id));
    expect(got, "delivery after one failure").toBeDefined();
    const sig = String(got!.headers["x-aa-signature"]);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig)!;
    expect(createHmac("sha256", secret).update(`${t}.${got!.body}`).digest("hex")).toBe(v1);
    expect(JSON.parse(got!.body).event).toBe("materialization.succeeded");
    const deliveries = (await api(env).get(`/v1/webhooks/${hook.json().id}/deliveries`)).json().data;
    const d = deliveries.find((x: { status: string }) => x.status === "delivered");
    expect(d.attempts).toBe(2);
    expect(d.response_code).toBe(204);
  });
});

describe("a worker killed in the middle of a materialization", () => {
  it("is retried by another worker and the list ends exactly right", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "survivor" })).json();
    const reference = await materialize(a.id);
    // Hold a lock the materialization needs, so the job is certainly mid-way when its worker dies.
    const blocker = new pg.Client({ connectionString: env.childEnv.DATABASE_URL });
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE audience_member IN SHARE ROW EXCLUSIVE MODE");
    // Only the child worker may take the job: stop the in-process ones meanwhile.
    await env.stopWorkers();
    const child = spawn(process.execPath, ["--import", "tsx", "src/worker.ts"], {
      env: { ...process.env, ...env.childEnv, WORKERS: "1" },
      stdio: "ignore",
    });
    try {
      const res = await api(env).post(`/v1/audiences/${a.id}/materializations`, {});
      const id = res.json().id as string;
      // Wait until the child has started it (status running), blocked on the lock.
      const deadline = Date.now() + 30_000;
      while ((await api(env).get(`/v1/materializations/${id}`)).json().status !== "running") {
        if (Date.now() > deadline) throw new Error("never started");
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      await blocker.query("ROLLBACK");
      // A new worker finds the stalled job once the dead worker's lock expires, and redoes it.
      env.startWorkers();
      const done = await waitFor(id);
      expect(done.status).toBe("succeeded");
      expect(done.member_count).toBe(reference.member_count);
      const a1 = (await allPages(env, `/v1/materializations/${id}/members`)).map((r) => r.user_id).sort();
      const a0 = (await allPages(env, `/v1/materializations/${reference.id}/members`)).map((r) => r.user_id).sort();
      expect(a1).toEqual(a0);
    } finally {
      child.kill("SIGKILL");
      await blocker.end().catch(() => {});
    }
  });
});

describe("a list that has not finished", () => {
  it("answers 409 for its members and changes, with the HTTP status in `status` and the list's in `materialization_status`", async () => {
    const a = (await api(env).post("/v1/audiences", { ...lapsed, name: "unfinished" })).json();
    const earlier = await materialize(a.id);
    await env.withWorkersStopped(async () => {
      const res = await api(env).post(`/v1/audiences/${a.id}/materializations`, {});
      expect(res.statusCode, res.body).toBe(202);
      for (const url of [`/v1/materializations/${res.json().id}/members`, `/v1/materializations/${res.json().id}/changes?since=${earlier.id}`]) {
        const r = await api(env).get(url);
        expect(r.statusCode, url).toBe(409);
        expect(r.headers["content-type"]).toContain("application/problem+json");
        expect(r.json()).toMatchObject({ status: 409, title: "Conflict", materialization_status: "queued" });
      }
    });
  });
});
