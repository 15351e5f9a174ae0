// When a campaign's results are recomputed: one recomputation at a time per campaign, a request that
// arrives while one runs gets one more after it, and the recomputation a processing run asks for (its
// outbox: the campaign's new data version) is queued again by the workers' recovery sweep when Redis
// lost it. Every interleaving is held in place from the test: a lock on campaign_result holds a
// recomputation just before it stores its results.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type pg from "pg";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { api } from "./helpers/api.js";
import { settledResults, smallCampaign, storedResults, treatmentValueMean, windowActivity, WINDOW_DAYS, type SmallCampaign } from "./helpers/small-campaign.js";
import { executeRun } from "../src/activation/runs.js";
import { executeCampaignResults } from "../src/campaigns/results.js";
import { queueResultsRecomputation } from "../src/campaigns/campaigns.js";
import { reviveUnfinishedJobs } from "../src/jobs/recovery.js";
import { whileTableLocked } from "./helpers/locks.js";

let env: TestEnv;
let pool: pg.Pool;
beforeAll(async () => {
  env = await createTestEnv();
  pool = env.ctx.db.pool;
  env.startWorkers();
  // Every write of stored results, in order: how many recomputations stored something, and for which data version.
  await pool.query(`
    CREATE TABLE results_written (n serial PRIMARY KEY, campaign_id uuid, data_version int);
    CREATE FUNCTION note_results_written() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO results_written (campaign_id, data_version) VALUES (NEW.campaign_id, NEW.data_version); RETURN NEW; END $$;
    CREATE TRIGGER note_results_written AFTER INSERT OR UPDATE ON campaign_result FOR EACH ROW EXECUTE FUNCTION note_results_written()`);
});
afterAll(async () => env?.close());

const writes = async (id: string) =>
  (await pool.query<{ data_version: number }>(`SELECT data_version FROM results_written WHERE campaign_id = $1 ORDER BY n`, [id])).rows.map((r) => r.data_version);

const stored = (id: string) => storedResults(env, id);
const settled = (id: string) => settledResults(env, id);

/** Runs `work` while every write of stored results waits (the recomputation has computed everything by then). */
const holdingResultWrites = <T>(work: () => Promise<T>) => whileTableLocked(pool, "campaign_result", work);
const writerWaiting = async () =>
  (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'campaign_result'::regclass AND NOT granted`)).rows[0]!.n;


const outcome = (id: string, user: string, value: number, c: SmallCampaign) => ({
  outcome_id: id, user_id: user, occurred_at: `${c.windowEnd}T08:00:00Z`, name: "purchase", value,
});
describe("a request that arrives while the campaign's results are being recomputed", () => {
  it("leads to one more recomputation after the running one, whose results include the later data", async () => {
    const c = await smallCampaign(env, "rr_during");
    const before = await settled(c.id);
    const [first, second] = [c.treated[0]!, c.treated[1]!];
    await holdingResultWrites(async () => {
      const a = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcome("o-1", first, 10, c)] });
      expect(a.statusCode, a.body).toBe(200);
      // Its recomputation has read the outcome and waits to store the results.
      await expect.poll(writerWaiting, { timeout: 20_000 }).toBe(1);
      const b = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcome("o-2", second, 32, c)] });
      expect(b.statusCode, b.body).toBe(200);
    });
    const after = await settled(c.id);
    expect(after.current).toBe(before.current + 2);
    // The held recomputation stored what it had read; the one after it, both outcomes.
    expect((await writes(c.id)).filter((v) => v > before.current)).toEqual([before.current + 1, before.current + 2]);
    expect(treatmentValueMean(after.result)).toBeCloseTo(42 / c.treated.length, 12);
    expect((await api(env).get(`/v1/campaigns/${c.id}/results`)).json()).toMatchObject({ stale: false, data_version: after.current });
  });

  it("is not dropped even when it brings no data of its own (a read that found the results stale by the clock): one more runs", async () => {
    const c = await smallCampaign(env, "rr_request");
    const before = await settled(c.id);
    const writtenBefore = (await writes(c.id)).length;
    await holdingResultWrites(async () => {
      await queueResultsRecomputation(env.ctx, [c.id]);
      await expect.poll(writerWaiting, { timeout: 20_000 }).toBe(1);
      await queueResultsRecomputation(env.ctx, [c.id]);
      // More requests while it runs still make one more, not one each.
      await queueResultsRecomputation(env.ctx, [c.id]);
    });
    await settled(c.id);
    expect(await writes(c.id)).toHaveLength(writtenBefore + 2);
    expect((await stored(c.id)).computed).toBe(before.current);
  });
});

describe("after a processing run of the goal fact", () => {
  it("the campaigns' recomputation Redis lost is queued again by the recovery sweep, without anyone reading the results", async () => {
    const c = await smallCampaign(env, "rr_run");
    const before = await settled(c.id);
    expect(before.result!.window).toMatchObject({ days_observed: 0, complete: false });
    await windowActivity(env, c, c.treated.slice(0, 5), WINDOW_DAYS);
    await env.withWorkersStopped(async () => {
      const run = await api(env).post(`/v1/facts/${c.fact}/runs`, { through: c.windowEnd });
      expect(run.statusCode, run.body).toBe(202);
      // The run ends here (as a worker would end it); its end queues the results' recomputation, which Redis then loses.
      expect(await executeRun(env.ctx, run.json().id)).toMatchObject({ status: "succeeded" });
      await env.ctx.queues.campaigns.obliterate({ force: true });
      await env.ctx.queues.processing.obliterate({ force: true });
      const behind = await stored(c.id);
      expect(behind.current).toBe(before.current + 1);
      expect(behind.computed).toBe(before.current);
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(1);
      // Queued once: a second sweep finds it waiting.
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(0);
    });
    const after = await settled(c.id);
    expect(after.result!.window).toMatchObject({ processed_through: c.windowEnd, days_observed: WINDOW_DAYS, complete: true });
    expect(after.result!.goal.groups.treatment.mean).toBeCloseTo((5 * WINDOW_DAYS) / c.treated.length, 12);
  });

  it("the sweep asks for the campaigns whose stored results are behind and for no other: out once their results are stored, back with new data", async () => {
    const c = await smallCampaign(env, "rr_sweep");
    const before = await settled(c.id);
    await env.withWorkersStopped(async () => {
      await env.ctx.queues.campaigns.obliterate({ force: true });
      // Every campaign of this file has its results stored: nothing to ask for, even with Redis emptied.
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(0);
      const a = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcome("o-1", c.treated[0]!, 3, c)] });
      expect(a.statusCode, a.body).toBe(200);
      await env.ctx.queues.campaigns.obliterate({ force: true });
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(1);
      // Its results stored (as a job would store them): out of the sweep again.
      await env.ctx.queues.campaigns.obliterate({ force: true });
      expect(await executeCampaignResults(env.ctx, c.id)).toEqual({ data_version: before.current + 1 });
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(0);
      // The campaign's copy of the stored version lost (written after the results, it may lag): the
      // campaign only looks behind, and the recomputation the sweep asks for writes it again.
      await pool.query(`UPDATE campaign SET results_version = NULL WHERE id = $1`, [c.id]);
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(1);
      await env.ctx.queues.campaigns.obliterate({ force: true });
      await executeCampaignResults(env.ctx, c.id);
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(0);
    });
    expect((await settled(c.id)).computed).toBe(before.current + 1);
  });

  it("a recomputation that failed on its last attempt is not retried by every sweep; newer data asks again", async () => {
    const c = await smallCampaign(env, "rr_failed");
    const before = await settled(c.id);
    await env.withWorkersStopped(async () => {
      await pool.query(`
        CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
        CREATE TRIGGER refuse_results BEFORE INSERT OR UPDATE ON campaign_result FOR EACH ROW EXECUTE FUNCTION refuse_results()`);
      try {
        const a = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcome("o-1", c.treated[0]!, 5, c)] });
        expect(a.statusCode, a.body).toBe(200);
        await expect(executeCampaignResults(env.ctx, c.id, { finalAttempt: true })).rejects.toThrow(/disk full/);
      } finally {
        await pool.query(`DROP TRIGGER refuse_results ON campaign_result; DROP FUNCTION refuse_results()`);
      }
      await env.ctx.queues.campaigns.obliterate({ force: true });
      const failed = await env.ctx.db.prisma.campaign.findUniqueOrThrow({ where: { id: c.id } });
      expect(failed).toMatchObject({ dataVersion: before.current + 1, resultsFailedVersion: before.current + 1 });
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(0);
      const b = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes: [outcome("o-2", c.treated[1]!, 7, c)] });
      expect(b.statusCode, b.body).toBe(200);
      await env.ctx.queues.campaigns.obliterate({ force: true });
      expect(await reviveUnfinishedJobs(env.ctx)).toBe(1);
    });
    const after = await settled(c.id);
    expect(after.computed).toBe(before.current + 2);
    expect(treatmentValueMean(after.result)).toBeCloseTo(12 / c.treated.length, 12);
  });
});
