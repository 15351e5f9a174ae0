import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorkers } from "../src/jobs/workers.js";
import { api, createFact, ingest, processThrough, waitForRecord } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { dateAfter, layerSnapshot, memberIds, syntheticEvents } from "./helpers/layer-snapshot.js";
import { killHard, spawnWorker } from "./helpers/private-services.js";

/**
 * A worker process killed with SIGKILL in the middle of a processing run (the first build and an
 * incremental run) and of a materialisation: once a new worker process starts, the job finishes and
 * its result equals the same work done undisturbed. Short job locks make the dead worker's job stall
 * within seconds instead of a minute.
 */
let env: TestEnv;
let refAtMid: Record<string, unknown>;
const FIRST = "2026-02-01";
const MID = dateAfter(FIRST, 24);
const LAST = dateAfter(FIRST, 39);
const events = syntheticEvents(7, 150, FIRST, 40);
const before = (d: string) => events.filter((e) => e.occurred_at.slice(0, 10) <= d);
const after = (d: string) => events.filter((e) => e.occurred_at.slice(0, 10) > d);

beforeAll(async () => {
  env = await createTestEnv({ JOB_LOCK_MS: "1500", JOB_STALLED_CHECK_MS: "500" });
  for (const f of ["k_ref", "k_kill"]) await createFact(env, f);
  // The reference: the same events, processed by in-process workers with nothing disturbing them.
  const w = env.startWorkers();
  try {
    await ingest(env, "k_ref", before(MID));
    await processThrough(env, "k_ref", MID);
    refAtMid = await layerSnapshot(env.app, env.auth().authorization, "k_ref", FIRST, MID);
    await ingest(env, "k_ref", after(MID));
    await processThrough(env, "k_ref", LAST);
  } finally {
    await w.close();
  }
});
afterAll(async () => env?.close());

const finished = (r: Record<string, unknown>) => r.status === "succeeded" || r.status === "failed";

/**
 * Holds `lockSql` on a connection of its own, starts a child worker, requests the job, waits until the
 * child has it running (stuck on the lock, with its work uncommitted), kills the child, releases the
 * lock, starts a new worker process and waits for the job to finish.
 */
async function killMidway(lockSql: string, request: () => Promise<string>, recordUrl: (id: string) => string) {
  const blocker = new pg.Client({ connectionString: env.childEnv.DATABASE_URL });
  await blocker.connect();
  await blocker.query("BEGIN");
  await blocker.query(lockSql);
  const victim = spawnWorker(env.childEnv);
  let survivor: ReturnType<typeof spawnWorker> | null = null;
  try {
    const id = await request();
    await waitForRecord(env, recordUrl(id), (r) => r.status === "running", "running", 30_000);
    // Let the job reach the lock and block on it with its transaction open.
    await waitForBlocked(blocker);
    await killHard(victim);
    await blocker.query("ROLLBACK");
    survivor = spawnWorker(env.childEnv);
    const done = await waitForRecord(env, recordUrl(id), finished, "finished").catch((err) => {
      throw new Error(`${(err as Error).message}\nsurvivor output: ${survivor?.output()}`);
    });
    return done;
  } finally {
    await killHard(victim);
    if (survivor) await killHard(survivor);
    await blocker.end().catch(() => {});
  }
}

/** Until some other session of this database waits on a lock (the job, stuck behind the blocker). */
async function waitForBlocked(blocker: pg.Client) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await env.ctx.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1`,
      [(blocker as unknown as { processID: number }).processID],
    );
    if (r.rows[0].n > 0) return;
    if (Date.now() > deadline) throw new Error("the job never blocked on the held lock");
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe("a worker process killed with SIGKILL", () => {
  it("during a first build and during an incremental run: a new worker finishes both, equal to an undisturbed run", async () => {
    await ingest(env, "k_kill", before(MID));
    // Metrics are computed after the islands: holding layer_metric stops the run with islands written.
    const lockMetrics = "LOCK TABLE layer_metric IN ACCESS EXCLUSIVE MODE";
    const requestRun = (through: string) => async () => {
      const res = await api(env).post("/v1/facts/k_kill/runs", { through });
      expect(res.statusCode, res.body).toBe(202);
      return res.json().id as string;
    };
    const first = await killMidway(lockMetrics, requestRun(MID), (id) => `/v1/runs/${id}`);
    expect(first, JSON.stringify(first)).toMatchObject({ status: "succeeded", from: FIRST, through: MID, progress: 1, error: null });
    expect(await layerSnapshot(env.app, env.auth().authorization, "k_kill", FIRST, MID)).toEqual(refAtMid);

    await ingest(env, "k_kill", after(MID));
    const second = await killMidway(lockMetrics, requestRun(LAST), (id) => `/v1/runs/${id}`);
    expect(second, JSON.stringify(second)).toMatchObject({ status: "succeeded", from: dateAfter(MID, 1), through: LAST, progress: 1, error: null });
    const [got, want] = [await layerSnapshot(env.app, env.auth().authorization, "k_kill", FIRST, LAST), await layerSnapshot(env.app, env.auth().authorization, "k_ref", FIRST, LAST)];
    expect(got).toEqual(want);
    const fact = (await api(env).get("/v1/facts/k_kill")).json();
    expect(fact).toMatchObject({ processed_through: LAST });
  });

  it("during a materialisation: a new worker finishes it with the same members as an undisturbed one", async () => {
    const definition = (fact: string) => ({
      name: `lapsed ${fact}`,
      fact,
      grain: "day",
      filter: { all: [{ field: "inactivity_periods", op: "between", value: [1, 20] }, { field: "last_streak_periods", op: "gte", value: 2 }] },
    });
    const ref = (await api(env).post("/v1/audiences", definition("k_ref"))).json();
    const kill = (await api(env).post("/v1/audiences", definition("k_kill"))).json();
    const w: RunningWorkers = env.startWorkers();
    let reference: Record<string, unknown>;
    try {
      const res = await api(env).post(`/v1/audiences/${ref.id}/materializations`, { as_of: LAST });
      reference = await waitForRecord(env, `/v1/materializations/${res.json().id}`, finished, "finished");
    } finally {
      await w.close();
    }
    expect(reference.status).toBe("succeeded");
    expect(reference.member_count as number).toBeGreaterThan(5);

    const done = await killMidway(
      "LOCK TABLE audience_member IN SHARE ROW EXCLUSIVE MODE",
      async () => {
        const res = await api(env).post(`/v1/audiences/${kill.id}/materializations`, { as_of: LAST });
        expect(res.statusCode, res.body).toBe(202);
        return res.json().id as string;
      },
      (id) => `/v1/materializations/${id}`,
    );
    expect(done, JSON.stringify(done)).toMatchObject({ status: "succeeded", member_count: reference.member_count, error: null });
    const auth = env.auth().authorization;
    expect(await memberIds(env.app, auth, done.id as string)).toEqual(await memberIds(env.app, auth, reference.id as string));
  });
});
