import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AudienceDefinition, Condition, FilterNode } from "../src/audiences/definition.js";
import { dateToDay, dayToDate, periodOfDate, periodToDate, type Grain } from "../src/activation/periods.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { api, createFact, ingest, processThrough } from "./helpers/api.js";
import { fixtureMeta, readFixtureCsv } from "./helpers/fixtures.js";
import { evaluateAudience, indexStatus, type StatusIndex } from "./helpers/audience-eval.js";

/**
 * Membership equals evaluating the filter on the spec's status rows: every field and op, within_periods,
 * periods_ago, nested nodes and conditions on another fact, against the fixture's expected status files.
 */
const FIXTURE = "seoul-70d";
const meta = fixtureMeta(FIXTURE);
const MAIN = "aud_main";
const OTHER = "aud_other"; // the same log restricted to a subset of users: their status rows are the same

let env: TestEnv;
const status: Record<Grain, Record<string, StatusIndex>> = { day: {}, week: {}, month: {} };
const inSubset = (user: string) => /[02468]$/.test(user);

beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  const events = readFixtureCsv(FIXTURE, "events.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
  await createFact(env, MAIN, meta.fact_timezone);
  await createFact(env, OTHER, meta.fact_timezone);
  await ingest(env, MAIN, events);
  await ingest(env, OTHER, events.filter((e) => inSubset(e.user_id)));
  await processThrough(env, MAIN, meta.through);
  await processThrough(env, OTHER, meta.through);
  for (const grain of ["day", "week", "month"] as const) {
    const rows = readFixtureCsv(FIXTURE, `expected/status_${grain}.csv`);
    status[grain][MAIN] = indexStatus(rows, grain);
    status[grain][OTHER] = indexStatus(rows.filter((r) => inSubset(r.user_id!)), grain);
  }
});
afterAll(async () => env?.close());

const c = (field: Condition["field"], op: Condition["op"], value?: Condition["value"], extra: Partial<Condition> = {}): Condition => ({
  field,
  op,
  ...(value !== undefined ? { value } : {}),
  ...extra,
});

function conditions(grain: Grain, asOf: string): FilterNode[] {
  const p = periodOfDate(grain, asOf);
  const d = (k: number) => periodToDate(grain, p - k);
  const list: FilterNode[] = [
    c("state", "eq", "new"), c("state", "eq", "retained"), c("state", "eq", "reactivated"), c("state", "eq", "inactive"),
    c("state", "neq", "inactive"), c("state", "in", ["new", "reactivated"]), c("state", "not_in", ["inactive", "retained"]),
    c("previous_state", "is_null"), c("previous_state", "is_not_null"), c("previous_state", "eq", "inactive"), c("previous_state", "neq", "retained"),
    c("transition_segment", "in", ["retained_to_inactive", "new_to_inactive", "reactivated_to_inactive"]),
    c("transition_segment", "eq", "inactive_to_inactive"), c("transition_segment", "eq", "retained_to_retained"),
    c("transition_segment", "not_in", ["new", "inactive_to_inactive"]),
    c("last_active_state", "eq", "retained"), c("last_active_state", "in", ["new", "reactivated"]),
    c("is_active", "eq", true), c("is_active", "eq", false),
    c("first_active_period", "gte", { periods_ago: 3 }), c("first_active_period", "between", [d(6), d(2)]), c("first_active_period", "lt", d(4)),
    c("last_active_period", "eq", { periods_ago: 1 }), c("last_active_period", "lte", { periods_ago: 2 }),
    c("inactivity_periods", "between", [1, 6]), c("inactivity_periods", "gt", 3), c("inactivity_periods", "eq", 0),
    c("consecutive_active_periods", "gte", 2), c("last_streak_periods", "gte", 3), c("last_streak_periods", "lte", 1),
    c("return_interval_periods", "is_null"), c("return_interval_periods", "gte", 2), c("return_interval_periods", "eq", 1),
    c("active_periods_total", "gt", 4), c("active_periods_total", "neq", 1), c("tenure_periods", "lt", 7), c("tenure_periods", "in", [0, 1, 2]),
    c("transition_segment", "in", ["retained_to_inactive"], { within_periods: 14 }),
    c("transition_segment", "eq", "inactive_to_reactivated", { within_periods: 3 }),
    c("transition_segment", "neq", "inactive_to_inactive", { within_periods: 4 }),
    c("state", "eq", "reactivated", { within_periods: 7 }), c("state", "not_in", ["inactive"], { within_periods: 2 }),
    c("state", "eq", "retained", { within_periods: 1 }),
    c("state", "eq", "inactive", { fact: OTHER }), c("state", "is_null", undefined, { fact: OTHER }), c("state", "is_not_null", undefined, { fact: OTHER }),
    c("inactivity_periods", "gte", 2, { fact: OTHER }), c("state", "eq", "retained", { fact: OTHER, within_periods: 5 }),
    { not: c("state", "eq", "inactive", { fact: OTHER }) },
    { all: [c("inactivity_periods", "between", [1, 30]), c("last_streak_periods", "gte", 2), { not: c("state", "eq", "inactive", { fact: OTHER }) }] },
    { any: [c("state", "eq", "new"), { all: [c("is_active", "eq", false), c("tenure_periods", "gte", 3)] }] },
    { not: { any: [c("state", "eq", "new"), c("previous_state", "is_null")] } },
  ];
  if (grain === "day") {
    for (const g of ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"]) list.push(c("growth_state", "eq", g));
    list.push(c("growth_state", "in", ["at_risk_wau", "at_risk_mau"], { within_periods: 10 }));
    list.push(c("growth_state", "eq", "current", { within_periods: 3 }));
    list.push(c("growth_state", "not_in", ["dormant", "at_risk_mau"], { within_periods: 6 }));
  }
  return list;
}

const def = (grain: Grain, filter: FilterNode): AudienceDefinition => ({ name: "t", fact: MAIN, grain, filter });

const cases: Array<[Grain, string]> = [
  ["day", meta.through],
  ["day", dayToDate(dateToDay(meta.through) - 23)],
  ["week", meta.through],
  ["week", dayToDate(dateToDay(meta.through) - 30)],
  ["month", meta.through],
  ["month", dayToDate(dateToDay(meta.through) - 40)],
];

describe("audience membership equals the filter evaluated on the spec's status rows", () => {
  it.each(cases)("preview counts at %s grain as of %s, every field and op", async (grain, asOf) => {
    let nonEmpty = 0;
    for (const filter of conditions(grain, asOf)) {
      const d = def(grain, filter);
      const expected = evaluateAudience(d, asOf, status[grain]);
      const res = await api(env, env.keys.read).post("/v1/audiences/preview", { definition: d, as_of: asOf });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect({ filter, count: body.count }).toEqual({ filter, count: expected.size });
      for (const s of body.sample) expect(expected.has(s.user_id), JSON.stringify(filter)).toBe(true);
      expect(body.sample.length).toBe(Math.min(20, expected.size));
      const byState = Object.values(body.by_state as Record<string, number>).reduce((a, b) => a + b, 0);
      expect(byState).toBe(expected.size);
      if (expected.size > 0) nonEmpty++;
    }
    // The cases must exercise real members, not only empty sets.
    expect(nonEmpty).toBeGreaterThan(15);
  });

  it.each(cases.filter((_, i) => i % 2 === 0))("materialized members at %s grain as of %s are exactly the expected users", async (grain, asOf) => {
    const filters = conditions(grain, asOf).filter((_, i) => i % 6 === 0);
    for (const filter of filters) {
      const d = def(grain, filter);
      const created = await api(env).post("/v1/audiences", d);
      expect(created.statusCode, created.body).toBe(201);
      const m = await api(env).post(`/v1/audiences/${created.json().id}/materializations`, { as_of: asOf });
      expect(m.statusCode, m.body).toBe(202);
      const done = await waitMaterialization(m.json().id);
      const expected = evaluateAudience(d, asOf, status[grain]);
      expect(done.member_count).toBe(expected.size);
      const csv = await api(env).get(`/v1/materializations/${done.id}/members`, { accept: "text/csv" });
      const users = csv.body.trim().split("\n").slice(1).map((l) => l.split(",")[0]!.replace(/^"|"$/g, ""));
      expect(new Set(users)).toEqual(expected);
      expect(users.length).toBe(expected.size);
    }
  });
});

async function waitMaterialization(id: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = (await api(env).get(`/v1/materializations/${id}`)).json();
    if (m.status === "succeeded") return m;
    if (m.status === "failed") throw new Error(`materialization failed: ${m.error}`);
    if (Date.now() > deadline) throw new Error(`materialization ${id} did not finish`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
