// A fact's deletion against the writers that would leave something of the fact behind: ingestion
// (HTTP batches, the bulk loader), run requests, audiences and campaigns that reference the fact.
// Interleavings are made deterministic by holding the fact's lifecycle lock from the test (as a
// deletion does) and releasing it once the contenders wait in the order wanted: PostgreSQL grants
// queued lock requests in their order.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELETION_WAIT_MS, FACT_LIFECYCLE_LOCK_NS, holdFact } from "../src/facts/lifecycle-lock.js";
import { bulkLoadFile } from "../src/facts/bulk-load.js";
import { ingestEventBatch } from "../src/activation/postgres/ingest.js";
import { executeCampaignAssignment } from "../src/campaigns/assigning.js";
import { api, createFact, ingest, processThrough, waitForRecord } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

let env: TestEnv;
let listId: string;
const AS_OF = "2026-03-05";

beforeAll(async () => {
  env = await createTestEnv();
  // A list for campaigns to target. Workers only for it: afterwards runs and campaigns stay queued,
  // so a deletion finds them as they were recorded.
  const workers = env.startWorkers();
  try {
    await createFact(env, "list_base");
    await ingest(env, "list_base", [1, 2, 3, 4, 5].map((d) => ({ user_id: `m${d}`, occurred_at: `2026-03-0${d}T10:00:00Z` })));
    await processThrough(env, "list_base", AS_OF);
    const a = await api(env).post("/v1/audiences", { name: "Everyone", fact: "list_base", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
    expect(a.statusCode, a.body).toBe(201);
    const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, { as_of: AS_OF });
    expect(m.statusCode, m.body).toBe(202);
    listId = (await waitForRecord(env, `/v1/materializations/${m.json().id}`, (r) => r.status === "succeeded", "succeeded")).id as string;
  } finally {
    await workers.close();
  }
});
afterAll(async () => env?.close());

type Answer = Awaited<ReturnType<ReturnType<typeof api>["post"]>>;

function expectProblem(res: Answer, status: number) {
  expect(res.statusCode, res.body).toBe(status);
  expect(String(res.headers["content-type"])).toMatch(/^application\/problem\+json/);
  return res.json() as { detail: string; errors?: Array<{ path: string; message: string }>; references?: string[] };
}

/** The 400 an unknown fact in an audience's definition gets, naming the field. */
function expectUnknownFact(res: Answer, field: "fact" | "filter", message: string) {
  const errors = expectProblem(res, 400).errors!;
  expect(errors).toHaveLength(1);
  expect(errors[0]!.path).toBe(field);
  expect(errors[0]!.message).toBe(message);
}

async function factId(name: string): Promise<number> {
  return (await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name } })).id;
}

async function activityRows(id: number): Promise<number> {
  return (await env.ctx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM activity_day WHERE fact_id = $1`, [id])).rows[0]!.n;
}

/** Modes of the requests waiting for the fact's lifecycle lock (ShareLock: a writer; ExclusiveLock: a deletion), this database's only. */
async function waiting(id: number): Promise<string[]> {
  const r = await env.ctx.db.pool.query<{ mode: string }>(
    `SELECT mode FROM pg_locks
     WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid = $1 AND objid = $2 AND objsubid = 2 AND NOT granted
     ORDER BY mode`,
    [FACT_LIFECYCLE_LOCK_NS, id],
  );
  return r.rows.map((x) => x.mode);
}

const untilWaiting = (id: number, modes: string[]) => expect.poll(() => waiting(id), { timeout: 10_000, interval: 10 }).toEqual(modes);

/**
 * Holds the fact's lifecycle lock as a deletion does, on a connection of the test's own, while the
 * contenders `first` then `second` (each started once the one before waits for the lock) queue behind
 * it; then lets them go. Answers both outcomes.
 */
async function contend<A, B>(id: number, first: { start: () => Promise<A>; mode: string }, second: { start: () => Promise<B>; mode: string }) {
  const holder = await env.ctx.db.pool.connect();
  let a: Promise<A> | undefined;
  let b: Promise<B> | undefined;
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock($1, $2)", [FACT_LIFECYCLE_LOCK_NS, id]);
    a = first.start();
    await untilWaiting(id, [first.mode]);
    b = second.start();
    await untilWaiting(id, [first.mode, second.mode].sort());
  } finally {
    await holder.query("ROLLBACK").catch(() => {});
    holder.release();
  }
  const settled = await Promise.allSettled([a!, b!]);
  const value = <T>(s: PromiseSettledResult<T>) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  };
  return [value(settled[0]) as A, value(settled[1]) as B] as const;
}

const deletion = (name: string) => ({ start: () => api(env).delete(`/v1/facts/${name}`), mode: "ExclusiveLock" });
const writer = <T>(start: () => Promise<T>) => ({ start, mode: "ShareLock" });

/**
 * The fact's deletion asked for while `start`'s transaction is stopped right after it inserted a row
 * of `table` (one for which `when` holds, NEW being the row), by a trigger the test releases once the
 * deletion waits (or, were nothing to stop it, is done). Answers the writer's and the deletion's outcome.
 */
async function deletionMidway(name: string, id: number, start: () => Promise<Answer>, table: string, when: string) {
  const pool = env.ctx.db.pool;
  const GATE = 77_002;
  const gate = new pg.Client({ connectionString: env.ctx.config.DATABASE_URL });
  await gate.connect();
  await gate.query("SELECT pg_advisory_lock($1)", [GATE]);
  await pool.query(`CREATE FUNCTION hold_writer() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(${GATE}); RETURN NEW; END $$`);
  await pool.query(`CREATE TRIGGER hold_writer AFTER INSERT ON ${table} FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION hold_writer()`);
  try {
    const written = start();
    const gated = async () =>
      (await pool.query(
        `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = 0 AND objid = $1 AND objsubid = 1 AND NOT granted`, [GATE],
      )).rowCount;
    await expect.poll(gated, { timeout: 10_000, interval: 10 }).toBe(1);
    let deleted = false;
    const del = api(env).delete(`/v1/facts/${name}`).finally(() => (deleted = true));
    await expect.poll(async () => deleted || (await waiting(id)).includes("ExclusiveLock"), { timeout: 10_000, interval: 10 }).toBe(true);
    await gate.query("SELECT pg_advisory_unlock($1)", [GATE]);
    return [await written, await del] as const;
  } finally {
    await gate.end();
    await pool.query(`DROP TRIGGER hold_writer ON ${table}; DROP FUNCTION hold_writer()`);
  }
}

const EVENTS = [
  { user_id: "e1", occurred_at: "2026-03-01T10:00:00Z" },
  { user_id: "e2", occurred_at: "2026-03-02T10:00:00Z" },
];
const postEvents = (name: string) => () => api(env).post(`/v1/facts/${name}/events`, { events: EVENTS });

describe("ingestion and a fact's deletion", () => {
  it("a batch that waits for the deletion answers 404 and stores nothing of the deleted fact", async () => {
    await createFact(env, "ing_deleted_first");
    await ingest(env, "ing_deleted_first", EVENTS);
    const id = await factId("ing_deleted_first");
    const [del, batch] = await contend(id, deletion("ing_deleted_first"), writer(postEvents("ing_deleted_first")));
    expect(del.statusCode, del.body).toBe(204);
    expect(expectProblem(batch, 404).detail).toBe("No fact named 'ing_deleted_first'.");
    expect(await activityRows(id)).toBe(0);
  });

  it("a batch caught mid-way by a deletion is waited for and deleted with the fact: no activity is left behind", async () => {
    await createFact(env, "ing_midway");
    await ingest(env, "ing_midway", EVENTS);
    const id = await factId("ing_midway");
    const batch = () => api(env).post("/v1/facts/ing_midway/events", { events: [{ user_id: "midway", occurred_at: "2026-03-03T10:00:00Z" }] });
    const [ingested, del] = await deletionMidway("ing_midway", id, batch, "activity_day", `NEW.fact_id = ${id}`);
    expect(ingested.statusCode, ingested.body).toBe(202);
    expect(del.statusCode, del.body).toBe(204);
    expect(await activityRows(id)).toBe(0);
  });

  it("a batch that goes first commits, and the deletion then deletes its activity", async () => {
    await createFact(env, "ing_batch_first");
    const id = await factId("ing_batch_first");
    const [batch, del] = await contend(id, writer(postEvents("ing_batch_first")), deletion("ing_batch_first"));
    expect(batch.statusCode, batch.body).toBe(202);
    expect(del.statusCode, del.body).toBe(204);
    expect(await activityRows(id)).toBe(0);
  });

  it("ingestions of one fact do not wait for each other's hold on it", async () => {
    await createFact(env, "ing_side_by_side");
    const id = await factId("ing_side_by_side");
    const open = await env.ctx.db.pool.connect();
    try {
      // What an ingestion holds from its start to its commit (a bulk load: for minutes).
      await open.query("BEGIN");
      await holdFact(open, { id, name: "ing_side_by_side" });
      const batch = await api(env).post("/v1/facts/ing_side_by_side/events", { events: EVENTS });
      expect(batch.statusCode, batch.body).toBe(202);
    } finally {
      await open.query("ROLLBACK").catch(() => {});
      open.release();
    }
    expect(await activityRows(id)).toBe(2);
  });

  it("a deletion that writers keep waiting past DELETION_WAIT_MS answers 409 with Retry-After and deletes nothing", async () => {
    await createFact(env, "del_kept_waiting");
    const id = await factId("del_kept_waiting");
    expect((await api(env).post("/v1/facts/del_kept_waiting/events", { events: EVENTS })).statusCode).toBe(202);
    const open = await env.ctx.db.pool.connect();
    try {
      // A bulk load holds the fact from its start to its commit, for minutes.
      await open.query("BEGIN");
      await holdFact(open, { id, name: "del_kept_waiting" });
      const t0 = performance.now();
      const del = await api(env).delete("/v1/facts/del_kept_waiting");
      expect(performance.now() - t0).toBeGreaterThanOrEqual(DELETION_WAIT_MS - 50);
      const problem = expectProblem(del, 409);
      expect(problem.detail).toContain("is being written to");
      expect(del.headers["retry-after"]).toBe(String(DELETION_WAIT_MS / 1000));
    } finally {
      await open.query("ROLLBACK").catch(() => {});
      open.release();
    }
    expect(await activityRows(id)).toBe(2);
    // Once the writer is done, the deletion goes through.
    expect((await api(env).delete("/v1/facts/del_kept_waiting")).statusCode).toBe(204);
    expect(await activityRows(id)).toBe(0);
  });

  describe("the bulk loader", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "aa-lifecycle-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const csv = (name: string) => {
      const p = path.join(dir, `${name}.csv`);
      writeFileSync(p, `user_id,occurred_at\n${EVENTS.map((e) => `${e.user_id},${e.occurred_at}`).join("\n")}\n`);
      return p;
    };
    const scratchTables = async () =>
      (await env.ctx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'bulk\\_day\\_%'`)).rows[0]!.n;

    it("a load that waits for the deletion fails with the 404 and stores nothing", async () => {
      await createFact(env, "load_deleted_first");
      const id = await factId("load_deleted_first");
      const file = csv("load_deleted_first");
      const [del, load] = await contend(
        id,
        deletion("load_deleted_first"),
        writer(() => bulkLoadFile(env.ctx, "load_deleted_first", file).then(() => "loaded", (err: { status?: number; message: string }) => ({ status: err.status, message: err.message }))),
      );
      expect(del.statusCode, del.body).toBe(204);
      expect(load).toEqual({ status: 404, message: "No fact named 'load_deleted_first'." });
      expect(await activityRows(id)).toBe(0);
      expect(await scratchTables()).toBe(0);
    });

    it("a load that goes first commits, and the deletion then deletes its activity", async () => {
      await createFact(env, "load_first");
      const id = await factId("load_first");
      const file = csv("load_first");
      const [load, del] = await contend(id, writer(() => bulkLoadFile(env.ctx, "load_first", file)), deletion("load_first"));
      expect(load.rows).toBe(2);
      expect(del.statusCode, del.body).toBe(204);
      expect(await activityRows(id)).toBe(0);
    });
  });
});

describe("run requests and a fact's deletion", () => {
  it("a run request that waits for the deletion answers 404 and records no run", async () => {
    await createFact(env, "run_deleted_first");
    await ingest(env, "run_deleted_first", EVENTS);
    const id = await factId("run_deleted_first");
    const [del, run] = await contend(id, deletion("run_deleted_first"), writer(() => api(env).post("/v1/facts/run_deleted_first/runs", {})));
    expect(del.statusCode, del.body).toBe(204);
    expectProblem(run, 404);
    expect(await env.ctx.db.prisma.processingRun.count({ where: { factId: id } })).toBe(0);
  });

  it("a run request that goes first is kept, and the deletion refuses naming it", async () => {
    await createFact(env, "run_first");
    await ingest(env, "run_first", EVENTS);
    const id = await factId("run_first");
    const [run, del] = await contend(id, writer(() => api(env).post("/v1/facts/run_first/runs", {})), deletion("run_first"));
    expect(run.statusCode, run.body).toBe(202);
    expect(expectProblem(del, 409).references).toEqual(["1 processing run(s) queued or running"]);
  });

  it("a run request waits for no ingestion of its fact", async () => {
    await createFact(env, "run_while_ingesting");
    await ingest(env, "run_while_ingesting", EVENTS);
    const ref = { id: await factId("run_while_ingesting"), name: "run_while_ingesting", timezone: "UTC" };
    const open = await env.ctx.db.pool.connect();
    try {
      await open.query("BEGIN");
      await ingestEventBatch(open, ref, [{ userId: "late", occurredAtMs: Date.parse("2026-03-03T10:00:00Z") }]);
      const run = await api(env).post("/v1/facts/run_while_ingesting/runs", { through: "2026-03-02" });
      expect(run.statusCode, run.body).toBe(202);
    } finally {
      await open.query("ROLLBACK").catch(() => {});
      open.release();
    }
  });
});

describe("audiences and a fact's deletion", () => {
  const everyone = (fact: string) => ({ name: `On ${fact}`, fact, grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
  const alsoOn = (fact: string) => ({ all: [{ field: "inactivity_periods", op: "gte", value: 0 }, { field: "state", op: "eq", value: "new", fact }] });
  const audiencesNaming = async (id: number) =>
    (await env.ctx.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audience WHERE $1 = ANY(fact_ids)`, [id])).rows[0]!.n;

  it("a creation that waits for the deletion answers 400 (unknown fact) and stores nothing", async () => {
    await createFact(env, "aud_deleted_first");
    const id = await factId("aud_deleted_first");
    const [del, created] = await contend(id, deletion("aud_deleted_first"), writer(() => api(env).post("/v1/audiences", everyone("aud_deleted_first"))));
    expect(del.statusCode, del.body).toBe(204);
    expectUnknownFact(created, "fact", "unknown fact 'aud_deleted_first'");
    expect(await audiencesNaming(id)).toBe(0);
  });

  it("a creation naming the fact in a condition that waits for the deletion answers 400 and stores nothing", async () => {
    await createFact(env, "aud_keeper");
    await createFact(env, "aud_cond_deleted_first");
    const id = await factId("aud_cond_deleted_first");
    const body = { ...everyone("aud_keeper"), filter: alsoOn("aud_cond_deleted_first") };
    const [del, created] = await contend(id, deletion("aud_cond_deleted_first"), writer(() => api(env).post("/v1/audiences", body)));
    expect(del.statusCode, del.body).toBe(204);
    expectUnknownFact(created, "filter", "unknown fact 'aud_cond_deleted_first'");
    expect(await audiencesNaming(id)).toBe(0);
  });

  it("a creation caught mid-way by a deletion is waited for, and the deletion refuses naming it", async () => {
    await createFact(env, "aud_midway");
    const id = await factId("aud_midway");
    const create = () => api(env).post("/v1/audiences", everyone("aud_midway"));
    const [created, del] = await deletionMidway("aud_midway", id, create, "audience", `${id} = ANY(NEW.fact_ids)`);
    expect(created.statusCode, created.body).toBe(201);
    expect(expectProblem(del, 409).references).toEqual(["audience(s) 'On aud_midway'"]);
  });

  it("a creation that goes first is kept, and the deletion refuses naming it", async () => {
    await createFact(env, "aud_first");
    const id = await factId("aud_first");
    const [created, del] = await contend(id, writer(() => api(env).post("/v1/audiences", everyone("aud_first"))), deletion("aud_first"));
    expect(created.statusCode, created.body).toBe(201);
    expect(expectProblem(del, 409).references).toEqual(["audience(s) 'On aud_first'"]);
  });

  it("a change that names the fact and waits for the deletion answers 400 and leaves the audience as it was", async () => {
    await createFact(env, "aud_patch_keeper");
    await createFact(env, "aud_patch_deleted_first");
    const audience = await api(env).post("/v1/audiences", everyone("aud_patch_keeper"));
    expect(audience.statusCode, audience.body).toBe(201);
    const id = await factId("aud_patch_deleted_first");
    const patch = () => api(env).patch(`/v1/audiences/${audience.json().id}`, { filter: alsoOn("aud_patch_deleted_first") });
    const [del, patched] = await contend(id, deletion("aud_patch_deleted_first"), writer(patch));
    expect(del.statusCode, del.body).toBe(204);
    expectUnknownFact(patched, "filter", "unknown fact 'aud_patch_deleted_first'");
    expect((await api(env).get(`/v1/audiences/${audience.json().id}`)).json()).toMatchObject({ version: 1, filter: everyone("aud_patch_keeper").filter });
    expect(await audiencesNaming(id)).toBe(0);
  });
});

describe("campaigns and the deletion of their goal fact", () => {
  const campaign = (goalFact: string) => ({ name: `Goal ${goalFact}`, materialization_id: listId, goal: { fact: goalFact, window_periods: 14, metric: "returned" } });
  const campaignsOn = async (id: number) => env.ctx.db.prisma.campaign.count({ where: { goalFactId: id } });

  it("a creation that waits for the deletion answers 400 (unknown goal fact) and stores nothing", async () => {
    await createFact(env, "goal_deleted_first");
    const id = await factId("goal_deleted_first");
    const [del, created] = await contend(id, deletion("goal_deleted_first"), writer(() => api(env).post("/v1/campaigns", campaign("goal_deleted_first"))));
    expect(del.statusCode, del.body).toBe(204);
    expect(expectProblem(created, 400).errors).toEqual([{ path: "goal.fact", message: "unknown fact 'goal_deleted_first'" }]);
    expect(await campaignsOn(id)).toBe(0);
  });

  it("a creation caught mid-way by a deletion is waited for, and the deletion refuses naming it", async () => {
    await createFact(env, "goal_midway");
    const id = await factId("goal_midway");
    const create = () => api(env).post("/v1/campaigns", campaign("goal_midway"));
    const [created, del] = await deletionMidway("goal_midway", id, create, "campaign", `NEW.goal_fact_id = ${id}`);
    expect(created.statusCode, created.body).toBe(202);
    expect(expectProblem(del, 409).references).toEqual([`the goal of campaign(s) 'Goal goal_midway' (${created.json().id})`]);
  });

  it("a creation that goes first is kept, and the deletion refuses naming it", async () => {
    await createFact(env, "goal_first");
    const id = await factId("goal_first");
    const [created, del] = await contend(id, writer(() => api(env).post("/v1/campaigns", campaign("goal_first"))), deletion("goal_first"));
    expect(created.statusCode, created.body).toBe(202);
    expect(expectProblem(del, 409).references).toEqual([`the goal of campaign(s) 'Goal goal_first' (${created.json().id})`]);
  });

  it("a change of goal to the fact that waits for the deletion answers 400 and leaves the campaign as it was", async () => {
    await createFact(env, "goal_patch_deleted_first");
    const created = await api(env).post("/v1/campaigns", campaign("list_base"));
    expect(created.statusCode, created.body).toBe(202);
    // Assigned here (no workers run): a campaign being assigned refuses a change of goal.
    await executeCampaignAssignment(env.ctx, created.json().id, 1, { finalAttempt: true });
    const id = await factId("goal_patch_deleted_first");
    const patch = () => api(env).patch(`/v1/campaigns/${created.json().id}`, { goal: { fact: "goal_patch_deleted_first", window_periods: 14, metric: "returned" } });
    const [del, patched] = await contend(id, deletion("goal_patch_deleted_first"), writer(patch));
    expect(del.statusCode, del.body).toBe(204);
    expect(expectProblem(patched, 400).errors).toEqual([{ path: "goal.fact", message: "unknown fact 'goal_patch_deleted_first'" }]);
    expect((await api(env).get(`/v1/campaigns/${created.json().id}`)).json().goal.fact).toBe("list_base");
    expect(await campaignsOn(id)).toBe(0);
  });
});
