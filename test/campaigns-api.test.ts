// Campaigns end to end through the HTTP API on the seoul-70d fixture: part 1 of the events is loaded
// and processed, a list is materialized as of its last day, campaigns launch the day after; part 2
// (with late events) is ingested and processed so the window completes, and the results are checked
// against a straightforward computation from the fixture's raw events.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { allPages, api, createFact, failCampaignAssignment, ingest, processThrough, waitForCampaign } from "./helpers/api.js";
import { fixtureMeta, parseCsv, readFixtureCsv } from "./helpers/fixtures.js";
import { assign } from "../src/campaigns/assignment.js";
import { dateToDay, dayToDate } from "../src/activation/periods.js";
import { localDate } from "../src/facts/timezones.js";
import { executeCampaignResults } from "../src/campaigns/results.js";
import { compareGroups, EMPTY_SUMS, type GroupSums } from "../src/campaigns/statistics.js";
import { whileTableLocked } from "./helpers/locks.js";

const FIXTURE = "seoul-70d";
const meta = fixtureMeta(FIXTURE);
const FACT = "app_opened";
const events = readFixtureCsv(FIXTURE, "events.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const part1 = readFixtureCsv(FIXTURE, "events_part1.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const part2 = readFixtureCsv(FIXTURE, "events_part2.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const AS_OF = meta.part1_through; // 2026-04-16
const LAUNCH = "2026-04-17";
const WINDOW_END = "2026-04-30";
const COV_START = "2026-03-20";
// A launch date that has not come: half a year from today.
const LATER = dayToDate(dateToDay(localDate(meta.fact_timezone)) + 180);

let env: TestEnv;
let listId: string;
let memberCount: number;
let members: Array<Record<string, unknown>>;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  await createFact(env, FACT, meta.fact_timezone);
  await ingest(env, FACT, part1);
  await processThrough(env, FACT, AS_OF);
  const a = await api(env).post("/v1/audiences", { name: "Everyone", fact: FACT, grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
  expect(a.statusCode, a.body).toBe(201);
  const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, { as_of: AS_OF });
  expect(m.statusCode, m.body).toBe(202);
  for (;;) {
    const s = (await api(env).get(`/v1/materializations/${m.json().id}`)).json();
    if (s.status === "succeeded") {
      listId = s.id;
      memberCount = s.member_count;
      break;
    }
    if (s.status === "failed") throw new Error(s.error);
    await new Promise((r) => setTimeout(r, 50));
  }
  members = await allPages(env, `/v1/materializations/${listId}/members`);
});
afterAll(async () => env?.close());

const goal = (metric: "returned" | "active_periods" = "active_periods") => ({ fact: FACT, window_periods: 14, metric });

/** Creates a campaign (202: a job assigns its list) and waits until it is ready. */
async function createCampaign(body: Record<string, unknown>) {
  const res = await api(env).post("/v1/campaigns", { name: "Win back", materialization_id: listId, goal: goal(), ...body });
  expect(res.statusCode, res.body).toBe(202);
  expect(res.headers.location).toBe(`/v1/campaigns/${res.json().id}`);
  const ready = await waitForCampaign(env, res.json().id);
  expect(ready.status, JSON.stringify(ready)).toBe("ready");
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a campaign's JSON, as res.json() gives it
  return ready as any;
}

/** Seoul has no DST: the activity date is the UTC+9 calendar date. Computed here without the service's code. */
const seoulDate = (occurredAt: string) => new Date(Date.parse(occurredAt) + 9 * 3600_000).toISOString().slice(0, 10);
const activeDays = new Map<string, Set<string>>();
for (const e of events) {
  let s = activeDays.get(e.user_id);
  if (!s) activeDays.set(e.user_id, (s = new Set()));
  s.add(seoulDate(e.occurred_at));
}
const daysIn = (user: string, from: string, to: string) => [...(activeDays.get(user) ?? [])].filter((d) => d >= from && d <= to).length;

describe("validation", () => {
  const bad = async (body: Record<string, unknown>, status = 400) => {
    const res = await api(env).post("/v1/campaigns", { name: "x", materialization_id: listId, goal: goal(), ...body });
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    return res.json();
  };

  it("names goal.fact when the fact does not exist", async () => {
    const p = await bad({ goal: { ...goal(), fact: "no_such_fact" } });
    expect(p.errors[0].path).toBe("goal.fact");
  });

  it("rejects bad holdouts, launch dates, goals and unknown fields with their paths", async () => {
    expect((await bad({ holdout_percent: 60 })).errors[0].path).toBe("holdout_percent");
    expect((await bad({ holdout_percent: 10.125 })).errors[0].path).toBe("holdout_percent");
    expect((await bad({ launch_date: AS_OF })).errors[0].path).toBe("launch_date");
    expect((await bad({ launch_date: "2026-02-30" })).errors[0].path).toBe("launch_date");
    expect((await bad({ goal: { ...goal(), metric: "revenue" } })).errors[0].path).toBe("goal.metric");
    expect((await bad({ goal: { ...goal(), window_periods: 0 } })).errors[0].path).toBe("goal.window_periods");
    expect((await bad({ colour: "red" })).errors[0].path).toBe("colour");
  });

  it("refuses a launch date more than a year ahead (400 naming launch_date), on creation and on change", async () => {
    const latest = dayToDate(dateToDay(localDate(meta.fact_timezone)) + 366);
    const next = dayToDate(dateToDay(latest) + 1);
    for (const launch of [next, "9999-12-31"]) {
      const res = await api(env).post("/v1/campaigns", { name: "Too far", materialization_id: listId, goal: goal(), launch_date: launch });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().errors).toEqual([{ path: "launch_date", message: `must be on or before ${latest}` }]);
    }
    expect((await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM campaign WHERE name = 'Too far'`)).rows[0].n).toBe(0);
    const c = await createCampaign({ launch_date: latest, name: "Far but allowed" });
    const patched = await api(env).patch(`/v1/campaigns/${c.id}`, { launch_date: next });
    expect(patched.statusCode).toBe(400);
    expect(patched.json().errors[0].path).toBe("launch_date");
    expect((await api(env).get(`/v1/campaigns/${c.id}`)).json()).toMatchObject({ launch_date: latest, status: "ready" });
  });

  it("needs a list that exists and has succeeded", async () => {
    expect((await bad({ materialization_id: "00000000-0000-4000-8000-000000000000" })).errors[0].path).toBe("materialization_id");
    const m = await env.ctx.db.prisma.materialization.findUniqueOrThrow({ where: { id: listId } });
    const failed = await env.ctx.db.prisma.materialization.create({
      data: { id: "11111111-1111-4111-8111-111111111111", audienceId: m.audienceId, version: 1, asOf: m.asOf, status: "failed", error: "boom" },
    });
    const p = await bad({ materialization_id: failed.id }, 409);
    expect(p.detail).toMatch(/failed/);
  });

  it("needs the write scope", async () => {
    const res = await api(env, env.keys.read).post("/v1/campaigns", { name: "x", materialization_id: listId, goal: goal() });
    expect(res.statusCode).toBe(403);
  });
});

describe("campaigns, assignments and immutability", () => {
  it("creates a campaign whose frozen split follows the assignment hash", async () => {
    const c = await createCampaign({ holdout_percent: 50, salt: "e2e-salt" });
    expect(c).toMatchObject({
      materialization_id: listId,
      as_of: AS_OF,
      launch_date: LAUNCH,
      window: { start: LAUNCH, end: WINDOW_END },
      holdout_percent: 50,
      salt: "e2e-salt",
      goal: goal(),
      global_control: null,
      launched: true,
      locked_reason: "launch_date_reached",
    });
    expect(c.counts.total).toBe(memberCount);
    expect(c.counts.treatment + c.counts.control).toBe(memberCount);
    const rows = await allPages(env, `/v1/campaigns/${c.id}/assignments`, 7);
    expect(rows.length).toBe(memberCount);
    for (const r of rows) {
      const want = assign(r.user_id as string, { salt: "e2e-salt", holdoutPercent: 50 });
      expect(r, r.user_id as string).toEqual({ user_id: r.user_id, group: want.arm, bucket: want.bucket, action: want.arm === "treatment" ? "send" : "hold_out" });
    }
    expect(new Set(rows.map((r) => r.user_id))).toEqual(new Set(members.map((m) => m.user_id)));
  });

  it("takes its grain from the audience version the list was drawn with, not the audience's current one", async () => {
    const a = (await api(env).post("/v1/audiences", { name: "Regrained", fact: FACT, grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } })).json();
    const m = await api(env).post(`/v1/audiences/${a.id}/materializations`, { as_of: AS_OF });
    expect(m.statusCode, m.body).toBe(202);
    await expect.poll(async () => (await api(env).get(`/v1/materializations/${m.json().id}`)).json().status).toBe("succeeded");
    expect((await api(env).patch(`/v1/audiences/${a.id}`, { grain: "week" })).statusCode).toBe(200);
    const res = await api(env).post("/v1/campaigns", { name: "Regrained", materialization_id: m.json().id, goal: goal() });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json().grain).toBe("day");
    expect((await waitForCampaign(env, res.json().id)).grain).toBe("day");
  });

  it("the salt defaults to the campaign id", async () => {
    const c = await createCampaign({});
    expect(c.salt).toBe(c.id);
    expect(c.holdout_percent).toBe(10);
    const rows = await allPages(env, `/v1/campaigns/${c.id}/assignments`);
    for (const r of rows) expect(r.group).toBe(assign(r.user_id as string, { salt: c.id, holdoutPercent: 10 }).arm);
  });

  it("streams assignments as CSV and NDJSON, whole or one arm", async () => {
    const c = await createCampaign({ holdout_percent: 30, salt: "stream" });
    const csv = await api(env).get(`/v1/campaigns/${c.id}/assignments`, { accept: "text/csv" });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers["content-type"]).toContain("text/csv");
    const parsed = parseCsv(csv.body);
    expect(csv.body.split("\n")[0]).toBe("user_id,group,bucket,action");
    expect(parsed.length).toBe(memberCount);
    const paged = await allPages(env, `/v1/campaigns/${c.id}/assignments`, 5);
    expect(parsed.map((r) => `${r.user_id},${r.group},${r.bucket},${r.action}`)).toEqual(paged.map((r) => `${r.user_id},${r.group},${r.bucket},${r.action}`));
    const nd = await api(env).get(`/v1/campaigns/${c.id}/assignments?group=control`, { accept: "application/x-ndjson" });
    expect(nd.headers["content-type"]).toContain("application/x-ndjson");
    const control = nd.body.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(control.length).toBe(c.counts.control);
    expect(control.every((r) => r.group === "control" && r.action === "hold_out" && typeof r.bucket === "number")).toBe(true);
    const page = (await api(env).get(`/v1/campaigns/${c.id}/assignments?group=treatment&limit=3`)).json();
    expect(page.data.length).toBe(3);
    expect(page.counts).toEqual(c.counts);
    expect(page.data.every((r: { group: string }) => r.group === "treatment")).toBe(true);
  });

  it("assignment fields are immutable once launched (409); name and goal are not", async () => {
    const c = await createCampaign({ holdout_percent: 20 });
    for (const patch of [{ holdout_percent: 30 }, { salt: "other" }, { launch_date: "2026-04-20" }]) {
      const res = await api(env).patch(`/v1/campaigns/${c.id}`, patch);
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json().fields).toEqual(Object.keys(patch));
      expect(res.json().locked_reason).toBe("launch_date_reached");
    }
    // The same value is no change.
    expect((await api(env).patch(`/v1/campaigns/${c.id}`, { holdout_percent: 20 })).statusCode).toBe(200);
    const renamed = await api(env).patch(`/v1/campaigns/${c.id}`, { name: "Renamed", goal: goal("returned") });
    expect(renamed.statusCode, renamed.body).toBe(200);
    expect(renamed.json()).toMatchObject({ name: "Renamed", goal: goal("returned"), holdout_percent: 20 });
  });

  it("before launch an assignment field may change (reassigned); the first pull locks it", async () => {
    const c = await createCampaign({ launch_date: LATER, holdout_percent: 10, salt: "future" });
    expect(c).toMatchObject({ launched: false, locked_reason: null });
    const patched = await api(env).patch(`/v1/campaigns/${c.id}`, { holdout_percent: 40 });
    expect(patched.statusCode, patched.body).toBe(202);
    // Until the job has applied it, the change is pending and the campaign keeps its fields.
    expect(patched.json()).toMatchObject({ status: "assigning", holdout_percent: 10, pending_changes: { holdout_percent: 40, salt: "future" } });
    const reassigned = await waitForCampaign(env, c.id as string);
    expect(reassigned).toMatchObject({ status: "ready", holdout_percent: 40, pending_changes: null, assignment_error: null });
    const rows = await allPages(env, `/v1/campaigns/${c.id}/assignments`);
    for (const r of rows) expect(r.group).toBe(assign(r.user_id as string, { salt: "future", holdoutPercent: 40 }).arm);
    expect((reassigned.counts as { control: number }).control).toBe(rows.filter((r) => r.group === "control").length);
    const after = (await api(env).get(`/v1/campaigns/${c.id}`)).json();
    expect(after).toMatchObject({ launched: true, locked_reason: "assignments_pulled" });
    const res = await api(env).patch(`/v1/campaigns/${c.id}`, { salt: "again" });
    expect(res.statusCode).toBe(409);
    expect(res.json().locked_reason).toBe("assignments_pulled");
  });

  it("holdout 0: everyone is treated; lift, CI, p-value and SRM are null with reasons", async () => {
    const c = await createCampaign({ holdout_percent: 0, salt: "no-holdout" });
    expect(c.counts).toMatchObject({ treatment: memberCount, control: 0 });
    const r = (await api(env).get(`/v1/campaigns/${c.id}/results`)).json();
    expect(r.goal.groups.control).toEqual({ n: 0, mean: null });
    for (const k of ["absolute_lift", "absolute_ci95", "relative_lift", "relative_ci95", "p_value"]) {
      expect(r.goal[k], k).toBeNull();
      expect(r.goal.reasons[k], k).toMatch(/control group has no users/);
    }
    expect(r.goal.cuped).toMatchObject({ absolute_lift: null, theta: null });
    expect(r.srm).toMatchObject({ p_value: null, flagged: false, reason: expect.stringMatching(/one arm/) });
    expect(JSON.stringify(r)).not.toMatch(/NaN|Infinity/);
  });

  it("lists campaigns newest first, paged; deletes one", async () => {
    const all = await allPages(env, "/v1/campaigns", 2);
    expect(all.length).toBeGreaterThanOrEqual(5);
    const created = all.map((c) => c.created_at as string);
    expect([...created].sort().reverse()).toEqual(created);
    const victim = all[0]!.id as string;
    expect((await api(env).delete(`/v1/campaigns/${victim}`)).statusCode).toBe(204);
    expect((await api(env).get(`/v1/campaigns/${victim}`)).statusCode).toBe(404);
    expect((await api(env).get(`/v1/campaigns/${victim}/assignments`)).statusCode).toBe(404);
    const left = await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM campaign_assignment WHERE campaign_id = $1`, [victim]);
    expect(left.rows[0].n).toBe(0);
  });
});

describe("assigning is a job", () => {
  const assignedRows = async (id: string) =>
    (await env.ctx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM campaign_assignment WHERE campaign_id = $1`, [id])).rows[0]!.n;
  /** Holds the assignment jobs back: their writes to campaign_assignment wait for this transaction. */
  const holdAssignments = <T,>(work: () => Promise<T>) => whileTableLocked(env.ctx.db.pool, "campaign_assignment", work);
  // Where the assignment job's webhook events go (nobody listens: the deliveries' payloads are read).
  beforeAll(async () => {
    const hook = await api(env).post("/v1/webhooks", { url: "http://127.0.0.1:9/campaigns", events: ["campaign.assigned", "campaign.assignment_failed"], secret: "campaign-events-0123456789" });
    expect(hook.statusCode, hook.body).toBe(201);
  });
  const eventsOf = async (campaignId: string) =>
    (await env.ctx.db.prisma.webhookDelivery.findMany({ orderBy: { createdAt: "asc" } }))
      .map((d) => d.payload as { event: string; data: { campaign: { id: string; status: string; assignment_error: string | null } } })
      .filter((p) => p.data.campaign?.id === campaignId)
      .map((p) => ({ event: p.event, status: p.data.campaign.status, error: p.data.campaign.assignment_error }));
  /** A materialization of the same list, to be deleted under a campaign. */
  async function anotherList(): Promise<string> {
    const m = await env.ctx.db.prisma.materialization.findUniqueOrThrow({ where: { id: listId } });
    const res = await api(env).post(`/v1/audiences/${m.audienceId}/materializations`, { as_of: AS_OF });
    expect(res.statusCode, res.body).toBe(202);
    let s;
    do {
      await new Promise((r) => setTimeout(r, 50));
      s = (await api(env).get(`/v1/materializations/${res.json().id}`)).json();
    } while (s.status !== "succeeded" && s.status !== "failed");
    expect(s.status).toBe("succeeded");
    return s.id as string;
  }

  it("answers 202 assigning; until the job is done, assignments, sends, outcomes, results and changes answer 409 with Retry-After", async () => {
    const created = await holdAssignments(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "Held", materialization_id: listId, goal: goal(), launch_date: LATER, salt: "held" });
      expect(res.statusCode, res.body).toBe(202);
      expect(res.json()).toMatchObject({ status: "assigning", assigned_at: null, assignment_error: null, pending_changes: null, counts: { total: 0 } });
      const id = res.json().id as string;
      const user = String(members[0]!.user_id);
      const attempts = [
        () => api(env).get(`/v1/campaigns/${id}/assignments`),
        () => api(env).get(`/v1/campaigns/${id}/assignments`, { accept: "text/csv" }),
        () => api(env).post(`/v1/campaigns/${id}/sends`, { sends: [{ user_id: user, sent_at: new Date().toISOString(), channel: "push", status: "sent" }] }),
        () => api(env).post(`/v1/campaigns/${id}/outcomes`, { outcomes: [{ outcome_id: "o-held", user_id: user, occurred_at: new Date().toISOString(), name: "purchase" }] }),
        () => api(env).get(`/v1/campaigns/${id}/results`),
        () => api(env).patch(`/v1/campaigns/${id}`, { holdout_percent: 30 }),
      ];
      for (const attempt of attempts) {
        const r = await attempt();
        expect(r.statusCode, r.body).toBe(409);
        expect(r.headers["content-type"]).toContain("application/problem+json");
        expect(r.headers["retry-after"]).toBe("2");
        expect(r.json()).toMatchObject({ status: 409, campaign_status: "assigning", detail: expect.stringMatching(/being assigned/) });
      }
      expect((await api(env).get(`/v1/campaigns/${id}`)).json().status).toBe("assigning");
      return id;
    });
    const ready = await waitForCampaign(env, created);
    expect(ready).toMatchObject({ status: "ready", counts: { total: memberCount }, launched: false, locked_reason: null });
    expect(ready.assigned_at).toEqual(expect.any(String));
    // Nothing the refused requests asked for happened: no send, no outcome, no lock, the holdout as created.
    expect(ready.holdout_percent).toBe(10);
    const kept = await env.ctx.db.pool.query(`SELECT (SELECT count(*) FROM campaign_send WHERE campaign_id = $1)::int + (SELECT count(*) FROM campaign_outcome WHERE campaign_id = $1)::int AS n`, [created]);
    expect(kept.rows[0].n).toBe(0);
    expect(await assignedRows(created)).toBe(memberCount);
    await expect.poll(() => eventsOf(created)).toEqual([{ event: "campaign.assigned", status: "ready", error: null }]);
  });

  it("a change the job cannot apply (its list was deleted meanwhile) leaves the campaign and its assignments as they were, with the reason", async () => {
    const c = await createCampaign({ launch_date: LATER, holdout_percent: 10, salt: "kept" });
    // Pulling would launch it: the stored rows are read instead.
    const rowsBefore = (await env.ctx.db.pool.query(`SELECT user_key, arm FROM campaign_assignment WHERE campaign_id = $1 ORDER BY user_key`, [c.id])).rows;
    const other = await anotherList();
    await env.withWorkersStopped(async () => {
      const patched = await api(env).patch(`/v1/campaigns/${c.id}`, { materialization_id: other, holdout_percent: 40 });
      expect(patched.statusCode, patched.body).toBe(202);
      expect(patched.json()).toMatchObject({ status: "assigning", materialization_id: listId, pending_changes: { materialization_id: other, holdout_percent: 40 } });
      expect((await api(env).delete(`/v1/materializations/${other}`)).statusCode).toBe(204);
    });
    const after = await waitForCampaign(env, c.id as string);
    expect(after).toMatchObject({ status: "ready", materialization_id: listId, holdout_percent: 10, pending_changes: null, counts: c.counts });
    expect(after.assignment_error).toMatch(/deleted/);
    const rowsAfter = (await env.ctx.db.pool.query(`SELECT user_key, arm FROM campaign_assignment WHERE campaign_id = $1 ORDER BY user_key`, [c.id])).rows;
    expect(rowsAfter).toEqual(rowsBefore);
    await expect.poll(async () => (await eventsOf(c.id as string)).at(-1)).toEqual({ event: "campaign.assignment_failed", status: "ready", error: after.assignment_error });
  });

  it("a batch being stored when a PATCH reassigns is stored against the assignments that stand, and the PATCH then finds the campaign launched", async () => {
    const c = await createCampaign({ launch_date: LATER, holdout_percent: 10, salt: "batch-race" });
    const pool = env.ctx.db.pool;
    // A treated user whom a 50% holdout would hold out (read from the table: a pull would launch it).
    const user = (await pool.query<{ user_key: number; user_id: string }>(
      `SELECT a.user_key, u.external_id AS user_id FROM campaign_assignment a JOIN app_user u ON u.user_key = a.user_key
       WHERE a.campaign_id = $1 AND a.arm = 'treatment' AND a.bucket < 5000 ORDER BY a.user_key LIMIT 1`,
      [c.id],
    )).rows[0]!;
    const send = { user_id: user.user_id, channel: "push", status: "sent", sent_at: "2026-04-17T09:00:00Z" };
    const lockWaiters = async () =>
      (await pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n as number;
    // The same send, inserted and not committed: the batch, past its checks, waits for it on its insert.
    const hold = await pool.connect();
    let patched: { statusCode: number; body: string } | null = null;
    let recorded: Promise<{ statusCode: number; body: string }>, patching: Promise<{ statusCode: number; body: string }>;
    try {
      await hold.query("BEGIN");
      await hold.query(`INSERT INTO campaign_send (campaign_id, user_key, channel, status, sent_at) VALUES ($1, $2, 'push', 'sent', $3)`, [c.id, user.user_key, send.sent_at]);
      recorded = api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [send] });
      await expect.poll(lockWaiters).toBe(1);
      patching = api(env).patch(`/v1/campaigns/${c.id}`, { holdout_percent: 50 });
      void patching.then((r) => (patched = r));
      // The PATCH either waits for the batch's transaction, or is answered and its job reassigns meanwhile.
      await expect.poll(async () => patched !== null || (await lockWaiters()) === 2).toBe(true);
      if (patched) await waitForCampaign(env, c.id as string);
    } finally {
      await hold.query("ROLLBACK");
      hold.release();
    }
    const [r, p] = await Promise.all([recorded, patching]);
    expect(r.statusCode, r.body).toBe(200);
    expect(p.statusCode, p.body).toBe(409);
    const after = await waitForCampaign(env, c.id as string);
    expect(after).toMatchObject({ status: "ready", holdout_percent: 10, launched: true, locked_reason: "sends_recorded" });
    const heldOutSends = await pool.query(
      `SELECT count(*)::int AS n FROM campaign_send s JOIN campaign_assignment a ON a.campaign_id = s.campaign_id AND a.user_key = s.user_key
       WHERE s.campaign_id = $1 AND a.arm <> 'treatment'`,
      [c.id],
    );
    expect(heldOutSends.rows[0].n).toBe(0);
  });

  it("batches of one campaign are stored side by side: one waiting on its insert does not hold up another", async () => {
    const c = await createCampaign({ launch_date: LATER, holdout_percent: 10, salt: "side-by-side" });
    const pool = env.ctx.db.pool;
    const [first, second] = (await pool.query<{ user_key: number; user_id: string }>(
      `SELECT a.user_key, u.external_id AS user_id FROM campaign_assignment a JOIN app_user u ON u.user_key = a.user_key
       WHERE a.campaign_id = $1 AND a.arm = 'treatment' ORDER BY a.user_key LIMIT 2`,
      [c.id],
    )).rows;
    const send = (user: string) => ({ user_id: user, channel: "push", status: "sent", sent_at: "2026-04-17T09:00:00Z" });
    const hold = await pool.connect();
    let waiting: Promise<{ statusCode: number; body: string }> | undefined;
    try {
      // The first batch's send, inserted and not committed here: the batch waits for it on its insert.
      await hold.query("BEGIN");
      await hold.query(`INSERT INTO campaign_send (campaign_id, user_key, channel, status, sent_at) VALUES ($1, $2, 'push', 'sent', $3)`, [c.id, first!.user_key, "2026-04-17T09:00:00Z"]);
      waiting = api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [send(first!.user_id)] });
      await expect.poll(async () => (await pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n).toBe(1);
      let other: { statusCode: number; body: string } | null = null;
      void api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [send(second!.user_id)] }).then((r) => (other = r));
      await expect.poll(() => other !== null, { timeout: 5_000 }).toBe(true);
      expect(other!.statusCode, other!.body).toBe(200);
    } finally {
      await hold.query("ROLLBACK");
      hold.release();
    }
    const res = await waiting!;
    expect(res.statusCode, res.body).toBe(200);
    expect((await pool.query(`SELECT count(*)::int AS n FROM campaign_send WHERE campaign_id = $1`, [c.id])).rows[0].n).toBe(2);
  });

  it("a batch being stored when the campaign is deleted leaves nothing behind", async () => {
    const c = await createCampaign({ launch_date: LATER, holdout_percent: 10, salt: "deleted-under-batch" });
    const pool = env.ctx.db.pool;
    const user = (await pool.query<{ user_key: number; user_id: string }>(
      `SELECT a.user_key, u.external_id AS user_id FROM campaign_assignment a JOIN app_user u ON u.user_key = a.user_key
       WHERE a.campaign_id = $1 AND a.arm = 'treatment' ORDER BY a.user_key LIMIT 1`,
      [c.id],
    )).rows[0]!;
    const lockWaiters = async () =>
      (await pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n as number;
    const hold = await pool.connect();
    let recorded: Promise<{ statusCode: number }> | undefined, deleting: Promise<{ statusCode: number }> | undefined;
    try {
      // The batch's send, inserted and not committed here: the batch, past its checks, waits for it.
      await hold.query("BEGIN");
      await hold.query(`INSERT INTO campaign_send (campaign_id, user_key, channel, status, sent_at) VALUES ($1, $2, 'push', 'sent', $3)`, [c.id, user.user_key, "2026-04-17T09:00:00Z"]);
      recorded = api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [{ user_id: user.user_id, channel: "push", status: "sent", sent_at: "2026-04-17T09:00:00Z" }] });
      await expect.poll(lockWaiters).toBe(1);
      let deleted = false;
      deleting = api(env).delete(`/v1/campaigns/${c.id}`);
      void deleting.then(() => (deleted = true));
      // The deletion either waits for the batch, or is done before the batch commits.
      await expect.poll(async () => deleted || (await lockWaiters()) === 2).toBe(true);
    } finally {
      await hold.query("ROLLBACK");
      hold.release();
    }
    await recorded;
    expect((await deleting!).statusCode).toBe(204);
    const left = await pool.query(`SELECT (SELECT count(*) FROM campaign_send WHERE campaign_id = $1)::int + (SELECT count(*) FROM campaign_assignment WHERE campaign_id = $1)::int AS n`, [c.id]);
    expect(left.rows[0].n).toBe(0);
  });

  it("a new campaign whose list is deleted before the job runs is failed, with no assignments and a clear 409", async () => {
    const other = await anotherList();
    const id = await env.withWorkersStopped(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "Orphaned", materialization_id: other, goal: goal() });
      expect(res.statusCode, res.body).toBe(202);
      expect((await api(env).delete(`/v1/materializations/${other}`)).statusCode).toBe(204);
      return res.json().id as string;
    });
    const failed = await waitForCampaign(env, id);
    expect(failed).toMatchObject({ status: "failed", assigned_at: null, counts: { total: 0 } });
    expect(failed.assignment_error).toMatch(/deleted/);
    const pull = await api(env).get(`/v1/campaigns/${id}/assignments`);
    expect(pull.statusCode).toBe(409);
    expect(pull.json().detail).toMatch(/failed/);
    expect(await assignedRows(id)).toBe(0);
    await expect.poll(() => eventsOf(id)).toEqual([{ event: "campaign.assignment_failed", status: "failed", error: failed.assignment_error }]);
  });

  it("a failed campaign can be tried again as it is: 202, then ready; only a failed one (409 otherwise)", async () => {
    // Every attempt of the job fails (a database refusing the writes), so the new campaign is failed.
    const id = await env.withWorkersStopped(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "Failed then tried again", materialization_id: listId, goal: goal(), salt: "retried" });
      expect(res.statusCode, res.body).toBe(202);
      const created = res.json().id as string;
      await failCampaignAssignment(env, created);
      return created;
    });
    const failed = await waitForCampaign(env, id);
    expect(failed).toMatchObject({ status: "failed", assignment_error: "disk full", counts: { total: 0 } });
    expect((await api(env).get(`/v1/campaigns/${id}/assignments`)).json().detail).toMatch(/retry-assignment/);

    const retried = await api(env).post(`/v1/campaigns/${id}/retry-assignment`, undefined, { "idempotency-key": `retry-${id}` });
    expect(retried.statusCode, retried.body).toBe(202);
    expect(retried.headers.location).toBe(`/v1/campaigns/${id}`);
    expect(retried.json()).toMatchObject({ status: "assigning", assignment_error: null });
    const ready = await waitForCampaign(env, id);
    expect(ready).toMatchObject({ status: "ready", assignment_error: null, salt: "retried", counts: { total: memberCount } });
    expect(await assignedRows(id)).toBe(memberCount);
    await expect.poll(() => eventsOf(id)).toEqual([
      { event: "campaign.assignment_failed", status: "failed", error: "disk full" },
      { event: "campaign.assigned", status: "ready", error: null },
    ]);

    // The same key replays (the campaign as it is now); without it, a ready campaign is not assigned again.
    const replay = await api(env).post(`/v1/campaigns/${id}/retry-assignment`, undefined, { "idempotency-key": `retry-${id}` });
    expect(replay.statusCode).toBe(202);
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.json()).toMatchObject({ status: "ready" });
    const again = await api(env).post(`/v1/campaigns/${id}/retry-assignment`);
    expect(again.statusCode, again.body).toBe(409);
    expect(again.json()).toMatchObject({ status: 409, campaign_status: "ready", detail: expect.stringMatching(/PATCH/) });
    const version = (await env.ctx.db.prisma.campaign.findUniqueOrThrow({ where: { id } })).assignmentVersion;
    expect(version).toBe(2);
    expect((await api(env).post(`/v1/campaigns/00000000-0000-4000-8000-000000000000/retry-assignment`)).statusCode).toBe(404);
  });

  it("a job Redis lost is queued again by the workers' recovery sweep", async () => {
    const id = await env.withWorkersStopped(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "Lost job", materialization_id: listId, goal: goal() });
      expect(res.statusCode, res.body).toBe(202);
      const created = res.json().id as string;
      await env.ctx.queues.campaigns.obliterate({ force: true });
      expect(await env.ctx.queues.campaigns.getJobState(env.ctx.queues.campaignAssignmentJobId(created, 1))).toBe("unknown");
      return created;
    });
    expect(await waitForCampaign(env, id)).toMatchObject({ status: "ready", counts: { total: memberCount } });
  });

  it("deleting a campaign while its job writes the assignments leaves none behind", async () => {
    let id: string;
    let deleted: Promise<{ statusCode: number }>;
    await holdAssignments(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "Deleted while assigning", materialization_id: listId, goal: goal() });
      expect(res.statusCode, res.body).toBe(202);
      id = res.json().id;
      // The job takes the campaign's row lock, then waits on the held table.
      const jobId = env.ctx.queues.campaignAssignmentJobId(id, 1);
      await expect.poll(() => env.ctx.queues.campaigns.getJobState(jobId), { timeout: 20_000 }).toBe("active");
      await new Promise((r) => setTimeout(r, 200));
      deleted = api(env).delete(`/v1/campaigns/${id}`);
      await new Promise((r) => setTimeout(r, 200));
    });
    expect((await deleted!).statusCode).toBe(204);
    const jobId = env.ctx.queues.campaignAssignmentJobId(id!, 1);
    await expect.poll(() => env.ctx.queues.campaigns.getJobState(jobId), { timeout: 20_000 }).toBe("completed");
    expect((await api(env).get(`/v1/campaigns/${id!}`)).statusCode).toBe(404);
    expect(await assignedRows(id!)).toBe(0);
  });
});

describe("creating with an Idempotency-Key", () => {
  const body = (name: string) => ({ name, materialization_id: listId, goal: goal(), holdout_percent: 25 });
  const post = (b: unknown, key?: string) => api(env).post("/v1/campaigns", b, key ? { "idempotency-key": key } : {});
  const campaignsNamed = async (name: string) =>
    (await env.ctx.db.pool.query<{ id: string }>(`SELECT id FROM campaign WHERE name = $1`, [name])).rows.map((r) => r.id);
  const assigned = async (id: string) =>
    (await env.ctx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM campaign_assignment WHERE campaign_id = $1`, [id])).rows[0]!.n;

  it("a retry creates nothing more and answers with the campaign the first request created", async () => {
    const first = await post(body("Retried"), "create-retried");
    expect(first.statusCode, first.body).toBe(202);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    await waitForCampaign(env, first.json().id);
    const again = await post(body("Retried"), "create-retried");
    expect(again.statusCode, again.body).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.headers.location).toBe(`/v1/campaigns/${first.json().id}`);
    // The campaign as it is now: assigned since the first answer.
    expect(again.json()).toMatchObject({ id: first.json().id, name: "Retried", status: "ready", counts: { total: memberCount } });
    expect(await campaignsNamed("Retried")).toEqual([first.json().id]);
    // The same body under another key, or none, is another campaign.
    expect((await post(body("Retried"), "create-retried-2")).json().id).not.toBe(first.json().id);
    expect((await post(body("Retried"))).json().id).not.toBe(first.json().id);
    expect(await campaignsNamed("Retried")).toHaveLength(3);
  });

  it("refuses the key with a different request (422) and a malformed key (400), creating nothing", async () => {
    expect((await post(body("Keyed"), "create-keyed")).statusCode).toBe(202);
    const other = await post({ ...body("Keyed"), holdout_percent: 30 }, "create-keyed");
    expect(other.statusCode, other.body).toBe(422);
    expect(other.headers["content-type"]).toContain("application/problem+json");
    const malformed = await post(body("Malformed key"), "bad key with spaces");
    expect(malformed.statusCode, malformed.body).toBe(400);
    expect(await campaignsNamed("Keyed")).toHaveLength(1);
    expect(await campaignsNamed("Malformed key")).toHaveLength(0);
  });

  it("two requests racing with one key make one campaign, and both answer with it", async () => {
    const [a, b] = await Promise.all([post(body("Raced"), "create-raced"), post(body("Raced"), "create-raced")]);
    expect([a.statusCode, b.statusCode], a.body + b.body).toEqual([202, 202]);
    expect(a.json().id).toBe(b.json().id);
    expect([a.headers["idempotent-replayed"], b.headers["idempotent-replayed"]].filter(Boolean)).toEqual(["true"]);
    expect(await campaignsNamed("Raced")).toEqual([a.json().id]);
    expect((await waitForCampaign(env, a.json().id)).status).toBe("ready");
    expect(await assigned(a.json().id)).toBe(memberCount);
  });

  it("replays as 404 once the campaign it created is deleted", async () => {
    const first = await post(body("Deleted later"), "create-deleted");
    expect((await api(env).delete(`/v1/campaigns/${first.json().id}`)).statusCode).toBe(204);
    const again = await post(body("Deleted later"), "create-deleted");
    expect(again.statusCode, again.body).toBe(404);
    expect(await campaignsNamed("Deleted later")).toHaveLength(0);
  });
});

describe("the goal fact", () => {
  it("cannot be deleted while a campaign measures its goal on it (409 naming the campaign), and can once the campaign is gone", async () => {
    // A fact only this campaign's goal reads (no audience does).
    await createFact(env, "goal_only", meta.fact_timezone);
    await ingest(env, "goal_only", part1.slice(0, 50));
    await processThrough(env, "goal_only", AS_OF);
    const c = await createCampaign({ name: "Measured elsewhere", goal: { fact: "goal_only", window_periods: 7, metric: "returned" } });
    const refused = await api(env).delete("/v1/facts/goal_only");
    expect(refused.statusCode, refused.body).toBe(409);
    expect(refused.headers["content-type"]).toContain("application/problem+json");
    expect(refused.json().references).toEqual([`the goal of campaign(s) 'Measured elsewhere' (${c.id})`]);
    expect((await api(env).get("/v1/facts/goal_only")).statusCode).toBe(200);
    expect((await api(env).get(`/v1/campaigns/${c.id}/results`)).statusCode).toBe(200);
    expect((await api(env).delete(`/v1/campaigns/${c.id}`)).statusCode).toBe(204);
    expect((await api(env).delete("/v1/facts/goal_only")).statusCode).toBe(204);
  });
});

describe("a campaign measured through the window", () => {
  let c: { id: string; counts: { treatment: number; control: number } };
  let arms: Map<string, string>;
  const treated = () => [...arms].filter(([, g]) => g === "treatment").map(([u]) => u);
  const held = () => [...arms].filter(([, g]) => g === "control").map(([u]) => u);
  const sentAt = "2026-04-17T10:00:00+09:00";

  beforeAll(async () => {
    c = await createCampaign({ name: "Measured", holdout_percent: 40, salt: "measured" });
    arms = new Map((await allPages(env, `/v1/campaigns/${c.id}/assignments`)).map((r) => [r.user_id as string, r.group as string]));
  });

  it("records sends idempotently per (user, channel, status)", async () => {
    const t = treated();
    const sends = [
      ...t.map((u) => ({ user_id: u, sent_at: sentAt, channel: "push", status: "sent" })),
      ...t.slice(0, 5).map((u) => ({ user_id: u, sent_at: sentAt, channel: "push", status: "delivered" })),
      ...t.slice(0, 2).map((u) => ({ user_id: u, sent_at: "2026-04-17T10:05:00+09:00", channel: "email", status: "opened" })),
    ];
    const first = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({ received: sends.length, inserted: sends.length, duplicates: 0 });
    const again = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: sends.slice(0, 4) });
    expect(again.json()).toEqual({ received: 4, inserted: 0, duplicates: 4 });
    const keyed = { "idempotency-key": "sends-1" };
    const k1 = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [{ user_id: t[0], sent_at: sentAt, channel: "sms", status: "failed" }] }, keyed);
    const k2 = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [{ user_id: t[0], sent_at: sentAt, channel: "sms", status: "failed" }] }, keyed);
    expect(k1.json()).toEqual({ received: 1, inserted: 1, duplicates: 0 });
    expect(k2.json()).toEqual(k1.json());
    expect(k2.headers["idempotent-replayed"]).toBe("true");
    // The same content with its keys in another order is the same request: a replay, not a 422.
    const k3 = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [{ status: "failed", channel: "sms", sent_at: sentAt, user_id: t[0] }] }, keyed);
    expect(k3.statusCode, k3.body).toBe(200);
    expect(k3.headers["idempotent-replayed"]).toBe("true");
  });

  it("rejects a whole batch naming held-out and unknown users, and bad items", async () => {
    const t = treated(), h = held();
    const before = await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM campaign_send WHERE campaign_id = $1`, [c.id]);
    const res = await api(env).post(`/v1/campaigns/${c.id}/sends`, {
      sends: [
        { user_id: t[1], sent_at: sentAt, channel: "push", status: "clicked" },
        { user_id: h[0], sent_at: sentAt, channel: "push", status: "sent" },
        { user_id: t[2], sent_at: sentAt, channel: "push", status: "clicked" },
        { user_id: "nobody-at-all", sent_at: sentAt, channel: "push", status: "sent" },
      ],
    });
    expect(res.statusCode, res.body).toBe(400);
    const errors = res.json().errors;
    expect(errors).toEqual([
      { index: 1, path: "sends[1].user_id", message: expect.stringMatching(/control group \(held out\)/) },
      { index: 3, path: "sends[3].user_id", message: expect.stringMatching(/not in the campaign's list/) },
    ]);
    const shape = await api(env).post(`/v1/campaigns/${c.id}/sends`, {
      sends: [
        { user_id: t[1], sent_at: "2026-04-17T10:00:00", channel: "push", status: "sent" },
        { user_id: t[1], sent_at: sentAt, channel: "push", status: "bounced" },
        { user_id: t[1], sent_at: sentAt, channel: "", status: "sent" },
        { user_id: t[1], sent_at: sentAt, channel: "push", status: "sent", extra: 1 },
      ],
    });
    expect(shape.statusCode).toBe(400);
    expect(shape.json().errors.map((e: { path: string }) => e.path)).toEqual(["sends[0].sent_at", "sends[1].status", "sends[2].channel", "sends[3].extra"]);
    expect((await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [] })).statusCode).toBe(400);
    // Instants within the bounds events have: not more than a day ahead, not before 1970.
    const when = await api(env).post(`/v1/campaigns/${c.id}/sends`, {
      sends: [
        { user_id: t[0], sent_at: new Date(Date.now() + 2 * 86_400_000).toISOString(), channel: "push", status: "sent" },
        { user_id: t[1], sent_at: "1969-12-31T23:59:59Z", channel: "push", status: "sent" },
        // Lengths count characters: 64 emoji are a valid channel, 65 are not.
        { user_id: t[2], sent_at: sentAt, channel: "📣".repeat(64), status: "sent" },
        { user_id: t[3], sent_at: sentAt, channel: "📣".repeat(65), status: "sent" },
      ],
    });
    expect(when.statusCode).toBe(400);
    expect(when.json().errors).toEqual([
      { index: 0, path: "sends[0].sent_at", message: "sent_at is more than 1 day in the future" },
      { index: 1, path: "sends[1].sent_at", message: "sent_at is before 1970-01-01T00:00:00Z" },
      { index: 3, path: "sends[3].channel", message: "channel must be 1–64 characters" },
    ]);
    const after = await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM campaign_send WHERE campaign_id = $1`, [c.id]);
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it("records outcomes idempotently by outcome_id; unassigned users reject the batch", async () => {
    const t = treated(), h = held();
    const outcomes = [
      { outcome_id: "o1", user_id: t[0], occurred_at: "2026-04-18T12:00:00+09:00", name: "purchase", value: 30 },
      { outcome_id: "o2", user_id: t[1], occurred_at: "2026-04-20T12:00:00+09:00", name: "purchase", value: 10 },
      { outcome_id: "o3", user_id: t[1], occurred_at: "2026-04-21T12:00:00+09:00", name: "purchase", value: 5 },
      { outcome_id: "o4", user_id: h[0], occurred_at: "2026-04-22T12:00:00+09:00", name: "purchase", value: 20 },
      { outcome_id: "o5", user_id: t[2], occurred_at: "2026-04-22T12:00:00+09:00", name: "signup" },
      // Outside the window (before launch, in Seoul): not counted.
      { outcome_id: "o6", user_id: t[3], occurred_at: "2026-04-16T23:30:00+09:00", name: "purchase", value: 99 },
    ];
    const res = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ received: 6, inserted: 6, duplicates: 0, conflicting: 0, conflicts: [] });
    // The same outcome again is a duplicate; its id with another value is a conflict: reported, not stored.
    const again = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcomes[1], { ...outcomes[0], value: 1000 }] });
    expect(again.json()).toEqual({
      received: 2, inserted: 0, duplicates: 1, conflicting: 1,
      conflicts: [{ index: 1, path: "outcomes[1].outcome_id", message: expect.stringMatching(/recorded with other values.*the stored record stands/) }],
    });
    const stored = await env.ctx.db.pool.query(`SELECT value FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o1'`, [c.id]);
    expect(stored.rows).toEqual([{ value: 30 }]);
    const badUser = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, {
      outcomes: [{ outcome_id: "o7", user_id: "stranger", occurred_at: "2026-04-22T12:00:00Z", name: "purchase" }],
    });
    expect(badUser.statusCode).toBe(400);
    expect(badUser.json().errors).toEqual([{ index: 0, path: "outcomes[0].user_id", message: expect.stringMatching(/not assigned/) }]);
    const badValue = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, {
      outcomes: [{ outcome_id: "o8", user_id: t[0], occurred_at: "2026-04-22T12:00:00Z", name: "purchase", value: "ten" }],
    });
    expect(badValue.json().errors[0].path).toBe("outcomes[0].value");
    // Values whose sums (and sums of squares) over the arms could overflow are refused when they come in.
    const huge = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, {
      outcomes: [{ outcome_id: "o9", user_id: t[0], occurred_at: "2026-04-22T12:00:00Z", name: "purchase", value: 1e308 }],
    });
    expect(huge.statusCode).toBe(400);
    expect(huge.json().errors).toEqual([{ index: 0, path: "outcomes[0].value", message: "value must be between -1e+15 and 1e+15" }]);
  });

  async function results(predicate: (r: Record<string, any>) => boolean) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await api(env).get(`/v1/campaigns/${c.id}/results`);
      expect(res.statusCode, res.body).toBe(200);
      const r = res.json();
      if (predicate(r)) return r;
      if (Date.now() > deadline) throw new Error(`results never matched: ${JSON.stringify(r).slice(0, 500)}`);
      await new Promise((x) => setTimeout(x, 100));
    }
  }

  it("before the window's data: results computed on demand, window incomplete", async () => {
    const r = await results(() => true);
    expect(r.window).toEqual({ start: LAUNCH, end: WINDOW_END, processed_through: AS_OF, days_total: 14, days_observed: 0, complete: false });
    expect(r.goal.groups.treatment.mean).toBe(0);
    expect(r.goal.absolute_ci95).toBeNull();
    expect(r.goal.reasons.absolute_ci95).toMatch(/zero variance/);
  });

  it("mid-window, after a run with late data, the results follow the processed days", async () => {
    await ingest(env, FACT, part2);
    await processThrough(env, FACT, "2026-04-24");
    const r = await results((x) => x.window.processed_through === "2026-04-24" && !x.stale);
    expect(r.window).toMatchObject({ days_observed: 8, complete: false });
    for (const arm of ["treatment", "control"] as const) {
      const users = [...arms].filter(([, g]) => g === arm).map(([u]) => u);
      const ys = users.map((u) => daysIn(u, LAUNCH, "2026-04-24"));
      expect(r.goal.groups[arm].mean, arm).toBeCloseTo(ys.reduce((a, b) => a + b, 0) / users.length, 12);
    }
  });

  it("after processing the rest of the data, a job recomputes the results: numbers match the raw events", async () => {
    await processThrough(env, FACT, meta.through);
    const r = await results((x) => x.window.complete && !x.stale && x.funnel.treatment.reached > 0);
    expect(r.window).toEqual({ start: LAUNCH, end: WINDOW_END, processed_through: meta.through, days_total: 14, days_observed: 14, complete: true });
    expect(r.covariate).toMatchObject({ start: COV_START, end: AS_OF });

    // The straightforward computation: per assigned user, from the fixture's events (late ones included).
    const sums: Record<string, GroupSums> = { treatment: { ...EMPTY_SUMS }, control: { ...EMPTY_SUMS } };
    const byBucket = new Map<string, Record<string, GroupSums>>();
    const bucketOf = (n: number) => (n <= 0 ? "0" : n <= 6 ? "1-6" : n <= 29 ? "7-29" : "30+");
    const add = (s: GroupSums, y: number, x: number) => {
      s.n++; s.sy += y; s.syy += y * y; s.sx += x; s.sxx += x * x; s.sxy += x * y;
    };
    for (const m of members) {
      const u = m.user_id as string;
      const arm = arms.get(u)!;
      const y = daysIn(u, LAUNCH, WINDOW_END), x = daysIn(u, COV_START, AS_OF);
      add(sums[arm]!, y, x);
      for (const key of [`inactivity_periods:${bucketOf(m.inactivity_periods as number)}`, `state:${m.state}`]) {
        if (!byBucket.has(key)) byBucket.set(key, { treatment: { ...EMPTY_SUMS }, control: { ...EMPTY_SUMS } });
        add(byBucket.get(key)![arm]!, y, x);
      }
    }
    const want = compareGroups(sums.treatment!, sums.control!, "mean");
    expect(sums.treatment!.sy).toBeGreaterThan(0);
    const g = r.goal;
    expect(g).toMatchObject({ fact: FACT, metric: "active_periods", window_periods: 14, global_control: null });
    expect(g.groups.treatment.n).toBe(c.counts.treatment);
    expect(g.groups.control.n).toBe(c.counts.control);
    expect(g.groups.treatment.mean).toBeCloseTo(want.groups.treatment.mean!, 12);
    expect(g.groups.control.mean).toBeCloseTo(want.groups.control.mean!, 12);
    for (const k of ["absolute_lift", "relative_lift", "p_value"] as const) expect(g[k], k).toBeCloseTo(want[k]!, 10);
    expect(g.absolute_ci95[0]).toBeCloseTo(want.absolute_ci95![0], 10);
    expect(g.relative_ci95[1]).toBeCloseTo(want.relative_ci95![1], 10);
    expect(g.cuped.theta).toBeCloseTo(want.cuped.theta!, 10);
    expect(g.cuped.absolute_lift).toBeCloseTo(want.cuped.absolute_lift!, 10);
    expect(g.cuped.p_value).toBeCloseTo(want.cuped.p_value!, 10);

    // Breakdowns by the member's frozen status at as_of.
    for (const dim of ["inactivity_periods", "state"] as const) {
      for (const row of r.breakdowns[dim]) {
        const s = byBucket.get(`${dim}:${row.bucket}`) ?? { treatment: EMPTY_SUMS, control: EMPTY_SUMS };
        expect(row.groups.treatment.n, `${dim} ${row.bucket}`).toBe(s.treatment!.n);
        expect(row.groups.control.n, `${dim} ${row.bucket}`).toBe(s.control!.n);
        if (s.treatment!.n) expect(row.groups.treatment.mean).toBeCloseTo(s.treatment!.sy / s.treatment!.n, 12);
      }
      expect(r.breakdowns[dim].reduce((a: number, b: { groups: { treatment: { n: number } } }) => a + b.groups.treatment.n, 0)).toBe(c.counts.treatment);
    }
    expect(r.breakdowns.inactivity_periods.map((b: { bucket: string }) => b.bucket)).toEqual(["0", "1-6", "7-29", "30+"]);

    // A fair split is not flagged.
    expect(r.srm).toMatchObject({ expected_control_share: 0.4, n_treatment: c.counts.treatment, n_control: c.counts.control, flagged: false });
    expect(r.srm.p_value).toBeGreaterThan(0.001);

    // Funnel: distinct users per status and channel, per arm; control members are held out.
    const t = treated();
    expect(r.funnel.treatment).toEqual({
      assigned: c.counts.treatment,
      held_out: 0,
      reached: t.length,
      by_status: { sent: t.length, delivered: 5, failed: 1, opened: 2, clicked: 0 },
      by_channel: { push: { sent: t.length, delivered: 5 }, email: { opened: 2 }, sms: { failed: 1 } },
    });
    expect(r.funnel.control).toMatchObject({ assigned: c.counts.control, held_out: c.counts.control, reached: 0 });

    // Outcomes in the window: purchase by 2 treatment users (30, 15) and 1 control user (20).
    const purchase = r.outcomes.find((o: { name: string }) => o.name === "purchase");
    expect(purchase.conversion.groups.treatment.mean).toBeCloseTo(2 / c.counts.treatment, 12);
    expect(purchase.conversion.groups.control.mean).toBeCloseTo(1 / c.counts.control, 12);
    expect(purchase.value.groups.treatment.mean).toBeCloseTo(45 / c.counts.treatment, 12);
    expect(purchase.value.groups.control.mean).toBeCloseTo(20 / c.counts.control, 12);
    const conv = compareGroups(
      { ...EMPTY_SUMS, n: c.counts.treatment, sy: 2, syy: 2 },
      { ...EMPTY_SUMS, n: c.counts.control, sy: 1, syy: 1 },
      "rate",
    );
    expect(purchase.conversion.p_value).toBeCloseTo(conv.p_value!, 12);
    const signup = r.outcomes.find((o: { name: string }) => o.name === "signup");
    expect(signup.conversion.groups.control.mean).toBe(0);
    expect(signup.conversion.relative_lift).toBeNull();
    expect(signup.conversion.reasons.relative_lift).toMatch(/control mean is 0/);
  });

  it("the returned metric (a rate) after a goal change", async () => {
    expect((await api(env).patch(`/v1/campaigns/${c.id}`, { goal: goal("returned") })).statusCode).toBe(200);
    const r = (await api(env).get(`/v1/campaigns/${c.id}/results?refresh=true`)).json();
    expect(r.goal.metric).toBe("returned");
    const count = (arm: string) => [...arms].filter(([u, g]) => g === arm && daysIn(u, LAUNCH, WINDOW_END) > 0).length;
    expect(r.goal.groups.treatment.mean).toBeCloseTo(count("treatment") / c.counts.treatment, 12);
    expect(r.goal.groups.control.mean).toBeCloseTo(count("control") / c.counts.control, 12);
    const want = compareGroups(
      { ...EMPTY_SUMS, n: c.counts.treatment, sy: count("treatment"), syy: count("treatment") },
      { ...EMPTY_SUMS, n: c.counts.control, sy: count("control"), syy: count("control") },
      "rate",
    );
    expect(r.goal.p_value).toBeCloseTo(want.p_value!, 12);
    expect(r.goal.absolute_ci95[1]).toBeCloseTo(want.absolute_ci95![1], 12);
  });

  it("a recomputation that fails is reported beside the stale results, and cleared once one succeeds", async () => {
    const fresh = await results((x) => !x.stale);
    expect(fresh.recomputation_error).toBeNull();
    // Stored before values were bounded: the sum of squares overflows.
    const t = treated();
    await env.ctx.db.pool.query(
      `INSERT INTO campaign_outcome (campaign_id, outcome_id, user_key, occurred_at, name, value)
       SELECT $1, 'o-overflow', user_key, '2026-04-22T12:00:00Z', 'purchase', 1e308 FROM app_user WHERE external_id = $2`,
      [c.id, t[4]],
    );
    await env.ctx.db.pool.query(`UPDATE campaign SET data_version = data_version + 1 WHERE id = $1`, [c.id]);
    await expect(executeCampaignResults(env.ctx, c.id)).rejects.toThrow(/out of range/);
    const failed = (await api(env).get(`/v1/campaigns/${c.id}/results`)).json();
    expect(failed).toMatchObject({ stale: true, data_version: fresh.data_version, recomputation_error: { message: expect.stringMatching(/out of range/) } });
    expect(Date.parse(failed.recomputation_error.failed_at)).toBeGreaterThan(Date.parse(fresh.computed_at));
    await env.ctx.db.pool.query(`DELETE FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o-overflow'`, [c.id]);
    const ok = await results((x) => !x.stale);
    expect(ok.recomputation_error).toBeNull();
  });

  it("another window recomputes every member's days from the layer", async () => {
    expect((await api(env).patch(`/v1/campaigns/${c.id}`, { goal: { ...goal("active_periods"), window_periods: 7 } })).statusCode).toBe(200);
    const r = (await api(env).get(`/v1/campaigns/${c.id}/results?refresh=true`)).json();
    expect(r.window).toMatchObject({ start: LAUNCH, end: "2026-04-23", days_total: 7, days_observed: 7, complete: true });
    for (const arm of ["treatment", "control"] as const) {
      const users = [...arms].filter(([, g]) => g === arm).map(([u]) => u);
      const mean = users.reduce((a, u) => a + daysIn(u, LAUNCH, "2026-04-23"), 0) / users.length;
      expect(r.goal.groups[arm].mean, arm).toBeCloseTo(mean, 12);
    }
  });
});

describe("the global control group", () => {
  it("holds its members out of new campaigns, reports them apart, and never reassigns existing ones", async () => {
    expect((await api(env).get("/v1/control-group")).json()).toMatchObject({ enabled: false, percent: 0 });
    const put = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: env.auth(), payload: { percent: 30, salt: "global-salt" } });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toMatchObject({ enabled: true, percent: 30, salt: "global-salt" });
    const forbidden = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: env.auth(env.keys.rw), payload: { percent: 1, salt: "x" } });
    expect(forbidden.statusCode).toBe(403);
    // What GET answers can be sent back as it is; enabled must agree with percent.
    const roundTrip = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: env.auth(), payload: (await api(env).get("/v1/control-group")).json() });
    expect(roundTrip.statusCode, roundTrip.body).toBe(200);
    expect(roundTrip.json()).toMatchObject({ enabled: true, percent: 30, salt: "global-salt" });
    const contradicts = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: env.auth(), payload: { enabled: false, percent: 30, salt: "global-salt" } });
    expect(contradicts.statusCode).toBe(400);
    expect(contradicts.json().errors[0].path).toBe("enabled");

    const c = await createCampaign({ holdout_percent: 20, salt: "with-global" });
    expect(c.global_control).toEqual({ percent: 30, salt: "global-salt" });
    expect(c.counts.global_control).toBeGreaterThan(0);
    const rows = await allPages(env, `/v1/campaigns/${c.id}/assignments`);
    for (const r of rows) expect(r.group).toBe(assign(r.user_id as string, { salt: "with-global", holdoutPercent: 20 }, { salt: "global-salt", percent: 30 }).arm);
    const g = rows.find((r) => r.group === "global_control")!;
    expect(g.action).toBe("hold_out");
    const send = await api(env).post(`/v1/campaigns/${c.id}/sends`, { sends: [{ user_id: g.user_id, sent_at: "2026-04-17T10:00:00Z", channel: "push", status: "sent" }] });
    expect(send.statusCode).toBe(400);
    expect(send.json().errors[0].message).toMatch(/global control group/);
    const r = (await api(env).get(`/v1/campaigns/${c.id}/results`)).json();
    expect(r.goal.global_control.n).toBe(c.counts.global_control);
    expect(r.funnel.global_control.held_out).toBe(c.counts.global_control);
    expect(r.assignment.global_control_percent).toBe(30);

    const off = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: env.auth(), payload: { percent: 0, salt: "global-salt" } });
    expect(off.json().enabled).toBe(false);
    const again = (await api(env).get(`/v1/campaigns/${c.id}`)).json();
    expect(again.counts).toEqual(c.counts);
    expect(again.global_control).toEqual({ percent: 30, salt: "global-salt" });
    expect(await allPages(env, `/v1/campaigns/${c.id}/assignments`)).toEqual(rows);
    expect((await createCampaign({ salt: "after-off" })).counts.global_control).toBe(0);
  });
});

describe("exports of unusual user ids", () => {
  it("stream as valid NDJSON and CSV", async () => {
    // The longest id of 4-byte characters: 256 characters, 512 UTF-16 units, 1,024 bytes.
    const longest = "😀".repeat(256);
    const ids = ['quote"d', "back\\slash", "comma,id", "한국어 사용자", "🙂👩‍👩‍👧", "it's", "{\"json\":1}", "12345", longest];
    await createFact(env, "odd_ids", "UTC");
    await ingest(env, "odd_ids", ids.map((u) => ({ user_id: u, occurred_at: "2026-04-01T10:00:00Z" })));
    await processThrough(env, "odd_ids", "2026-04-01");
    const a = await api(env).post("/v1/audiences", { name: "Odd", fact: "odd_ids", grain: "day", filter: { field: "state", op: "eq", value: "new" } });
    const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, {});
    let list;
    do {
      await new Promise((r) => setTimeout(r, 50));
      list = (await api(env).get(`/v1/materializations/${m.json().id}`)).json();
    } while (list.status !== "succeeded");
    const c = await api(env).post("/v1/campaigns", { name: "Odd", materialization_id: list.id, holdout_percent: 50, goal: { fact: "odd_ids", window_periods: 3, metric: "returned" } });
    expect(c.statusCode, c.body).toBe(202);
    await waitForCampaign(env, c.json().id);
    const nd = await api(env).get(`/v1/campaigns/${c.json().id}/assignments`, { accept: "application/x-ndjson" });
    const rows = nd.body.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(rows.map((r) => r.user_id).sort()).toEqual([...ids].sort());
    for (const r of rows) expect(r.group).toBe(assign(r.user_id, { salt: c.json().id, holdoutPercent: 50 }).arm);
    const paged = await allPages(env, `/v1/campaigns/${c.json().id}/assignments`, 3);
    expect(paged).toEqual(rows);
    const csv = (await api(env).get(`/v1/campaigns/${c.json().id}/assignments`, { accept: "text/csv" })).body;
    expect(csv.trim().split("\n")).toHaveLength(ids.length + 1);
    expect(csv).toContain('"comma,id"');
    expect(csv).toContain('"quote""d"');
    // Sends and outcomes check user ids as ingestion does: in characters.
    const outcome = await api(env).post(`/v1/campaigns/${c.json().id}/outcomes`, { outcomes: [{ outcome_id: "longest-1", user_id: longest, occurred_at: "2026-04-02T10:00:00Z", name: "purchase" }] });
    expect(outcome.statusCode, outcome.body).toBe(200);
    expect(outcome.json()).toMatchObject({ inserted: 1 });
  });
});

describe("a window that ends today", () => {
  it("counts today's activity so far but not as an observed day; once a day has ended since, the results are recomputed", async () => {
    const tz = "Pacific/Kiritimati";
    const today = dateToDay(localDate(tz));
    const at = (d: number) => `${dayToDate(d)}T12:00:00+14:00`;
    const users = Array.from({ length: 20 }, (_, i) => `w-${i}`);
    await createFact(env, "goal_today", tz);
    await ingest(env, "goal_today", [
      ...users.flatMap((u) => [at(today - 10), at(today - 6)].map((occurred_at) => ({ user_id: u, occurred_at }))),
      // Today's events so far (a minute ago is today there: UTC+14).
      ...users.slice(0, 8).map((u) => ({ user_id: u, occurred_at: new Date(Date.now() - 60_000).toISOString() })),
    ]);
    await processThrough(env, "goal_today", dayToDate(today));
    const a = await api(env).post("/v1/audiences", { name: "Goal today", fact: "goal_today", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
    const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, { as_of: dayToDate(today - 3) });
    await expect.poll(async () => (await api(env).get(`/v1/materializations/${m.json().id}`)).json().status).toBe("succeeded");
    const c = await api(env).post("/v1/campaigns", {
      name: "Window ends today", materialization_id: m.json().id, holdout_percent: 50, launch_date: dayToDate(today - 2),
      goal: { fact: "goal_today", window_periods: 3, metric: "returned" },
    });
    expect(c.statusCode, c.body).toBe(202);
    await waitForCampaign(env, c.json().id);
    const first = (await api(env).get(`/v1/campaigns/${c.json().id}/results`)).json();
    expect(first.window).toEqual({ start: dayToDate(today - 2), end: dayToDate(today), processed_through: dayToDate(today), days_total: 3, days_observed: 2, complete: false });
    // Today's returners count already.
    expect(first.goal.groups.treatment.n * first.goal.groups.treatment.mean + first.goal.groups.control.n * first.goal.groups.control.mean).toBeCloseTo(8, 9);
    expect(first.stale).toBe(false);
    // No recomputation left to run (the assignment's may still be queued behind the read's): one that ran
    // after the line below would store the results afresh and leave nothing stale to see.
    const queues = env.ctx.queues;
    await expect.poll(() => queues.campaigns.getDeduplicationJobId(queues.campaignResultsDeduplicationId(c.json().id)), { timeout: 20_000 }).toBeFalsy();
    // As if computed yesterday: a day has ended since, so the incomplete window is recomputed.
    await env.ctx.db.pool.query(`UPDATE campaign_result SET computed_at = computed_at - interval '1 day' WHERE campaign_id = $1`, [c.json().id]);
    expect((await api(env).get(`/v1/campaigns/${c.json().id}/results`)).json().stale).toBe(true);
    await expect.poll(async () => (await api(env).get(`/v1/campaigns/${c.json().id}/results`)).json().stale, { timeout: 20_000 }).toBe(false);
  });
});
