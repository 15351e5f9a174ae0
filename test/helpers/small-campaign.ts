import { expect } from "vitest";
import { dateToDay, dayToDate } from "../../src/activation/periods.js";
import { localDate } from "../../src/facts/timezones.js";
import { allPages, api, createFact, ingest, processThrough, waitForCampaign, waitForRecord } from "./api.js";
import type { TestEnv } from "./context.js";

export interface SmallCampaign {
  id: string;
  fact: string;
  /** The list (materialization) it targets. */
  listId: string;
  /** The list's as_of; the window is the WINDOW_DAYS days after it. */
  asOf: string;
  windowEnd: string;
  /** Users by arm (treatment, control). */
  arms: Map<string, string>;
  treated: string[];
  held: string[];
}

const USERS = 40;
export const WINDOW_DAYS = 7;

/**
 * A campaign on a fact of its own (UTC), small enough to compute in milliseconds: 40 users active on
 * some of the 10 days before the list's as_of (a month ago), the list of all of them, a 50% holdout and
 * a 7-day window starting the day after as_of. The fact is processed through as_of only: the window's
 * days come with `windowActivity`. Needs running workers (the list and the assignments are jobs).
 */
export async function smallCampaign(env: TestEnv, fact: string): Promise<SmallCampaign> {
  const asOf = dateToDay(localDate("UTC")) - 30;
  const users = Array.from({ length: USERS }, (_, i) => `${fact}-u${i}`);
  await createFact(env, fact, "UTC");
  await ingest(env, fact, users.map((u, i) => ({ user_id: u, occurred_at: `${dayToDate(asOf - (i % 10))}T12:00:00Z` })));
  await processThrough(env, fact, dayToDate(asOf));
  const audience = await api(env).post("/v1/audiences", { name: fact, fact, grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
  expect(audience.statusCode, audience.body).toBe(201);
  const m = await api(env).post(`/v1/audiences/${audience.json().id}/materializations`, { as_of: dayToDate(asOf) });
  expect(m.statusCode, m.body).toBe(202);
  expect(await waitForRecord(env, `/v1/materializations/${m.json().id}`, (r) => r.status !== "queued" && r.status !== "running", "finished")).toMatchObject({ status: "succeeded" });
  const c = await api(env).post("/v1/campaigns", {
    name: fact, materialization_id: m.json().id, holdout_percent: 50, salt: fact,
    goal: { fact, window_periods: WINDOW_DAYS, metric: "active_periods" },
  });
  expect(c.statusCode, c.body).toBe(202);
  expect(await waitForCampaign(env, c.json().id)).toMatchObject({ status: "ready" });
  const arms = new Map((await allPages(env, `/v1/campaigns/${c.json().id}/assignments`)).map((r) => [r.user_id as string, r.group as string]));
  const of = (group: string) => [...arms].filter(([, g]) => g === group).map(([u]) => u);
  return { id: c.json().id, fact, listId: m.json().id, asOf: dayToDate(asOf), windowEnd: dayToDate(asOf + WINDOW_DAYS), arms, treated: of("treatment"), held: of("control") };
}

/** Events on the window's days for `users` (each active on the window's first `days` days); not processed. */
export async function windowActivity(env: TestEnv, c: SmallCampaign, users: string[], days: number): Promise<void> {
  const first = dateToDay(c.asOf) + 1;
  await ingest(env, c.fact, users.flatMap((u) => Array.from({ length: days }, (_, d) => ({ user_id: u, occurred_at: `${dayToDate(first + d)}T12:00:00Z` }))));
}

/** A campaign's data version and its stored results, from the database (a read of the API would ask for a recomputation itself). */
export async function storedResults(env: TestEnv, id: string) {
  const r = await env.ctx.db.pool.query<{ current: number; computed: number | null; result: Record<string, any> | null }>(
    `SELECT c.data_version AS current, r.data_version AS computed, r.result FROM campaign c LEFT JOIN campaign_result r ON r.campaign_id = c.id WHERE c.id = $1`,
    [id],
  );
  return r.rows[0]!;
}

/** Waits until the stored results are those of the campaign's newest data, with no recomputation left queued or running. */
export async function settledResults(env: TestEnv, id: string) {
  await expect.poll(async () => { const s = await storedResults(env, id); return s.computed === s.current; }, { timeout: 30_000 }).toBe(true);
  await expect.poll(async () => {
    const counts = await env.ctx.queues.campaigns.getJobCounts("active", "waiting", "delayed", "prioritized");
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }, { timeout: 30_000 }).toBe(0);
  return storedResults(env, id);
}

/** The mean summed value per treated member of an outcome name, in stored results. */
export const treatmentValueMean = (result: Record<string, any> | null, name = "purchase"): number | null =>
  result?.outcomes.find((o: { name: string }) => o.name === name)?.value.groups.treatment.mean ?? null;
