import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  addDays, byteOrder, periodStartOf, referenceFirstLast, referenceLayer, type RefGrain, type ReferenceLayer,
} from "../src/activation/status-rules.js";
import { allPages, api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { canonical, parseCsv } from "./helpers/fixtures.js";

/**
 * The layer's read API beyond the fixtures: user timelines with awkward ids, pagination, filters,
 * exports, contribution, core actions and period completeness, each held to the pure reference.
 */
const GRAINS: RefGrain[] = ["day", "week", "month"];
const FACT = "api_main";
const SECOND = "api_second";
const THIRD = "api_third";
const SERVICE = "svc_market";
const FIRST_DAY = "2025-11-20";
const THROUGH = "2026-03-18"; // a Wednesday: its week and month are partial
const SPECIAL = ["a:b", "x@y.example", "dir/sub/leaf", "with space", "mix: a@b/c d", "%41 literal", "q?x#y&z=1"];
const USERS = [...SPECIAL, ...Array.from({ length: 9 }, (_, i) => `plain-${i}`)];

/**
 * A deterministic pseudo-random log: each user starts on some day, is away in some months and active
 * on some days of the others, so every grain sees every state.
 */
function makeEvents(seed: number, users: string[], days: number) {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const out: Array<{ user_id: string; occurred_at: string; at: number }> = [];
  for (const [u, user] of users.entries()) {
    const start = Math.floor(rnd() * 40);
    const p = 0.15 + (u % 4) * 0.15;
    const away = new Set(["2025-12", "2026-01", "2026-02", "2026-03"].filter(() => rnd() < 0.3));
    for (let d = start; d < days; d++) {
      if (away.has(addDays(FIRST_DAY, d).slice(0, 7)) && d !== start) continue;
      if (rnd() < p) {
        const at = Date.parse(`${addDays(FIRST_DAY, d)}T00:00:00Z`) + Math.floor(rnd() * 86_400_000);
        out.push({ user_id: user, occurred_at: new Date(at).toISOString(), at });
      }
    }
  }
  return out;
}
const DAYS = 122; // a few events after THROUGH too: they must not be seen
const EVENTS = makeEvents(7, USERS, DAYS);
const SECOND_EVENTS = makeEvents(11, USERS.slice(3, 12), 50);
const activity = (evs: typeof EVENTS) => evs.map((e) => ({ user_id: e.user_id, date: e.occurred_at.slice(0, 10) }));
const REF: Record<RefGrain, ReferenceLayer> = {
  day: referenceLayer(activity(EVENTS), "day", THROUGH),
  week: referenceLayer(activity(EVENTS), "week", THROUGH),
  month: referenceLayer(activity(EVENTS), "month", THROUGH),
};

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  await createFact(env, FACT, "UTC", SERVICE);
  await createFact(env, SECOND, "UTC", SERVICE);
  await createFact(env, THIRD, "UTC", SERVICE);
  await ingest(env, FACT, EVENTS.map(({ user_id, occurred_at }) => ({ user_id, occurred_at })), 200);
  await ingest(env, SECOND, SECOND_EVENTS.map(({ user_id, occurred_at }) => ({ user_id, occurred_at })), 200);
  await ingest(env, THIRD, [{ user_id: "someone", occurred_at: "2026-03-01T00:00:00Z" }]);
  await processThrough(env, FACT, THROUGH);
  await processThrough(env, SECOND, "2026-03-10");
});
afterAll(async () => env?.close());

const sortRows = <T extends Record<string, unknown>>(rows: T[]) =>
  [...rows].sort((a, b) => byteOrder(String(a.user_id), String(b.user_id)) || String(a.period).localeCompare(String(b.period)));

describe("one user's status timeline", () => {
  it("the test data covers every state and segment at every grain (a guard on the data)", () => {
    for (const g of GRAINS) {
      const states = new Set(REF[g].status.map((r) => r.state));
      expect([...states].sort(), g).toEqual(["inactive", "new", "reactivated", "retained"]);
    }
    expect(new Set(REF.day.status.map((r) => r.transition_segment)).size).toBe(9);
    for (const u of SPECIAL) expect(REF.day.status.some((r) => r.user_id === u), u).toBe(true);
  });

  it.each(GRAINS)("answers ids with ':', '@', '/', spaces, '%', '?' and '#' at %s grain, whole and between from and to", async (grain) => {
    for (const user of SPECIAL) {
      const all = REF[grain].status.filter((r) => r.user_id === user);
      const res = await api(env).get(`/v1/facts/${FACT}/users/${encodeURIComponent(user)}/status?grain=${grain}`);
      expect(res.statusCode, `${user}: ${res.body}`).toBe(200);
      expect(res.json()).toEqual({ user_id: user, fact: FACT, grain, data: all });

      // from and to may be any day of a period: they name the period containing them.
      const from = addDays(all[0]!.period, grain === "day" ? 3 : 9);
      const to = "2026-03-04";
      const want = all.filter((r) => r.period >= periodStartOf(grain, from) && r.period <= periodStartOf(grain, to));
      const part = await api(env).get(`/v1/facts/${FACT}/users/${encodeURIComponent(user)}/status?grain=${grain}&from=${from}&to=${to}`);
      if (want.length === 0) {
        expect(part.statusCode, `${user} ${from}..${to}`).toBe(404);
      } else {
        expect(part.statusCode, part.body).toBe(200);
        expect(part.json().data, `${user} ${from}..${to}`).toEqual(want);
      }
    }
  });

  it("answers 404 for a user never seen, a user of another fact only, and before a user's first activity", async () => {
    const a = api(env);
    for (const url of [
      `/v1/facts/${FACT}/users/${encodeURIComponent("nobody@all")}/status`,
      `/v1/facts/${SECOND}/users/${encodeURIComponent("a:b")}/status`,
      `/v1/facts/${FACT}/users/${encodeURIComponent("someone")}/status`,
    ]) {
      const res = await a.get(url);
      expect(res.statusCode, url).toBe(404);
      expect(String(res.headers["content-type"])).toContain("application/problem+json");
    }
    const user = REF.day.status.find((r) => r.first_active_period > "2025-11-25")!;
    const before = await a.get(`/v1/facts/${FACT}/users/${encodeURIComponent(user.user_id)}/status?to=${addDays(user.first_active_period, -1)}`);
    expect(before.statusCode).toBe(404);
    expect((await a.get(`/v1/facts/${FACT}/users/x/status?from=2026-03-02&to=2026-03-01`)).statusCode).toBe(400);
  });
});

describe("paged lists", () => {
  const periods = { day: ["2026-02-15", THROUGH], week: ["2026-02-09", "2026-03-16"], month: ["2026-02-01", "2026-03-01"] } as const;

  it.each(GRAINS)("status and activation at %s grain: small pages return every row exactly once", async (grain) => {
    for (const period of periods[grain]) {
      const want = REF[grain].status.filter((r) => r.period === period);
      expect(want.length).toBeGreaterThan(5);
      for (const limit of [1, 2, 5]) {
        const rows = await allPages(env, `/v1/facts/${FACT}/status?grain=${grain}&period=${period}`, limit);
        expect(rows.length, `limit ${limit}`).toBe(want.length);
        expect(new Set(rows.map((r) => r.user_id)).size).toBe(rows.length);
        expect(sortRows(rows), `status ${grain} ${period} limit ${limit}`).toEqual(sortRows(want as never[]));
      }
      const act = await allPages(env, `/v1/facts/${FACT}/activation?grain=${grain}&period=${period}`, 2);
      expect(sortRows(act)).toEqual(sortRows(REF[grain].activation.filter((r) => r.period === period) as never[]));
    }
  });

  it("first-last: small pages return every row exactly once", async () => {
    const fl = referenceFirstLast(EVENTS.map((e) => ({ user_id: e.user_id, at: e.at })), "UTC", THROUGH);
    for (const date of ["2026-02-01", "2026-03-01", THROUGH]) {
      const rows = await allPages(env, `/v1/facts/${FACT}/first-last?date=${date}`, 3);
      expect(new Set(rows.map((r) => r.user_id)).size).toBe(rows.length);
      expect(sortRows(rows), date).toEqual(sortRows(fl.filter((r) => r.snapshot_date === date) as never[]));
    }
    const one = await api(env).get(`/v1/facts/${FACT}/first-last?date=${THROUGH}&user_id=${encodeURIComponent("mix: a@b/c d")}`);
    expect(one.json().data).toEqual(fl.filter((r) => r.snapshot_date === THROUGH && r.user_id === "mix: a@b/c d"));
  });

  it("a page's limit is honoured and a cursor from another list is refused", async () => {
    const res = await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}&limit=3`);
    expect(res.json().data).toHaveLength(3);
    expect(res.json().next_cursor).toEqual(expect.any(String));
    expect((await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}&cursor=not-ours`)).statusCode).toBe(400);
    expect((await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}&limit=0`)).statusCode).toBe(400);
  });
});

describe("filters", () => {
  it.each(GRAINS)("state and transition_segment filters at %s grain keep exactly the matching rows", async (grain) => {
    const period = grain === "day" ? "2026-03-10" : grain === "week" ? "2026-03-02" : "2026-03-01";
    const all = REF[grain].status.filter((r) => r.period === period);
    for (const state of ["new", "retained", "reactivated", "inactive"]) {
      const rows = await allPages(env, `/v1/facts/${FACT}/status?grain=${grain}&period=${period}&state=${state}`, 4);
      expect(sortRows(rows), `${grain} ${state}`).toEqual(sortRows(all.filter((r) => r.state === state) as never[]));
    }
    const segments = new Set(all.map((r) => r.transition_segment));
    expect(segments.size).toBeGreaterThan(2);
    for (const seg of segments) {
      const rows = await allPages(env, `/v1/facts/${FACT}/status?grain=${grain}&period=${period}&transition_segment=${seg}`, 4);
      expect(sortRows(rows), `${grain} ${seg}`).toEqual(sortRows(all.filter((r) => r.transition_segment === seg) as never[]));
    }
    const both = await allPages(env, `/v1/facts/${FACT}/status?grain=${grain}&period=${period}&state=inactive&transition_segment=inactive_to_inactive`);
    expect(sortRows(both)).toEqual(sortRows(all.filter((r) => r.transition_segment === "inactive_to_inactive") as never[]));
    for (const state of ["new", "retained", "reactivated"]) {
      const rows = await allPages(env, `/v1/facts/${FACT}/activation?grain=${grain}&period=${period}&state=${state}`, 3);
      expect(sortRows(rows), `activation ${grain} ${state}`).toEqual(
        sortRows(REF[grain].activation.filter((r) => r.period === period && r.state === state) as never[]),
      );
    }
    expect((await api(env).get(`/v1/facts/${FACT}/status?grain=${grain}&period=${period}&state=gone`)).statusCode).toBe(400);
    expect((await api(env).get(`/v1/facts/${FACT}/activation?grain=${grain}&period=${period}&state=inactive`)).statusCode).toBe(400);
  });
});

describe("exports", () => {
  const DAY_COLUMNS = [
    "user_id", "period", "state", "previous_state", "transition_segment", "is_active", "first_active_period", "last_active_period",
    "inactivity_periods", "consecutive_active_periods", "last_streak_periods", "return_interval_periods", "last_active_state",
    "active_periods_total", "tenure_periods", "growth_state",
  ];

  it("CSV: a header, true/false booleans, nulls as empty cells, the same rows as the pages", async () => {
    const period = "2026-03-10";
    const res = await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${period}`, { accept: "text/csv" });
    expect(res.statusCode, res.body).toBe(200);
    expect(String(res.headers["content-type"])).toMatch(/^text\/csv/);
    expect(String(res.headers["content-disposition"])).toContain(".csv");
    const lines = res.body.split(/\r?\n/).filter(Boolean);
    expect(lines[0]!.split(",")).toEqual(DAY_COLUMNS);
    const rows = parseCsv(res.body);
    const want = REF.day.status.filter((r) => r.period === period);
    expect(canonical(rows, DAY_COLUMNS)).toEqual(canonical(want as never[], DAY_COLUMNS));
    expect(new Set(rows.map((r) => r.is_active))).toEqual(new Set(["true", "false"]));
    const newRow = rows.find((r) => r.state === "inactive")!;
    expect(newRow.return_interval_periods).toBe("");
    // Week grain: no growth_state column.
    const week = await api(env).get(`/v1/facts/${FACT}/status?grain=week&period=2026-03-09`, { accept: "text/csv" });
    expect(week.body.split(/\r?\n/)[0]!.split(",")).toEqual(DAY_COLUMNS.slice(0, -1));
    // Activation and first-last stream too.
    const act = await api(env).get(`/v1/facts/${FACT}/activation?grain=month&period=2026-03-01`, { accept: "text/csv" });
    expect(act.body.split(/\r?\n/)[0]).toBe("user_id,period,state,return_interval_periods");
    expect(canonical(parseCsv(act.body), ["user_id", "period", "state", "return_interval_periods"])).toEqual(
      canonical(REF.month.activation.filter((r) => r.period === "2026-03-01") as never[], ["user_id", "period", "state", "return_interval_periods"]),
    );
    const fl = await api(env).get(`/v1/facts/${FACT}/first-last?date=${THROUGH}`, { accept: "text/csv" });
    expect(fl.body.split(/\r?\n/)[0]).toBe("snapshot_date,user_id,first_active_date,last_active_date,first_event_at,last_event_at");
  });

  it("a user id with a comma or a quote survives the CSV export quoted", async () => {
    await createFact(env, "api_csv");
    const odd = ['comma,inside', 'quote"inside', "plain"];
    await ingest(env, "api_csv", odd.map((u) => ({ user_id: u, occurred_at: "2026-03-02T10:00:00Z" })));
    await processThrough(env, "api_csv", "2026-03-02");
    const res = await api(env).get(`/v1/facts/api_csv/status?grain=day&period=2026-03-02`, { accept: "text/csv" });
    expect(res.body).toContain('"comma,inside"');
    expect(res.body).toContain('"quote""inside"');
  });

  it("NDJSON: one JSON object per line, typed like the pages", async () => {
    const period = "2026-03-10";
    const res = await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${period}`, { accept: "application/x-ndjson" });
    expect(res.statusCode, res.body).toBe(200);
    expect(String(res.headers["content-type"])).toMatch(/^application\/x-ndjson/);
    const rows = res.body.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(sortRows(rows)).toEqual(sortRows(REF.day.status.filter((r) => r.period === period) as never[]));
    const filtered = await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${period}&state=inactive`, { accept: "application/x-ndjson" });
    const frows = filtered.body.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(frows.length).toBeGreaterThan(0);
    expect(frows.every((r) => r.state === "inactive" && r.is_active === false && r.return_interval_periods === null)).toBe(true);
  });
});

describe("contribution", () => {
  const pairs: Record<RefGrain, Array<[string, string]>> = {
    day: [["2026-03-09", "2026-03-10"], ["2026-03-10", "2026-02-20"], ["2026-03-01", THROUGH]],
    week: [["2026-02-23", "2026-03-02"], ["2026-03-09", "2026-03-16"], ["2026-02-02", "2026-03-16"]],
    month: [["2026-02-01", "2026-03-01"], ["2026-03-01", "2025-12-01"], ["2026-01-01", "2026-02-01"]],
  };

  it.each(GRAINS)("at %s grain: deltas of the reference, by state and by active-ending segment summing to delta_active", async (grain) => {
    const m = (p: string) => REF[grain].metrics.find((r) => r.period === p)!;
    for (const [base, compare] of pairs[grain]) {
      const res = await api(env).get(`/v1/facts/${FACT}/metrics/contribution?grain=${grain}&base=${base}&compare=${compare}`);
      expect(res.statusCode, res.body).toBe(200);
      const c = res.json();
      const B = m(base), C = m(compare);
      const delta = (C.active as number) - (B.active as number);
      expect(c.delta_active, `${base}→${compare}`).toBe(delta);
      expect(c.base).toEqual({ period: base, active: B.active, period_complete: B.period_complete });
      expect(c.compare).toEqual({ period: compare, active: C.active, period_complete: C.period_complete });
      const sum = (items: Array<{ delta: number }>) => items.reduce((s, i) => s + i.delta, 0);
      expect(c.by_state.map((i: { name: string }) => i.name)).toEqual(["new", "retained", "reactivated"]);
      expect(sum(c.by_state)).toBe(delta);
      expect(c.by_segment.map((i: { name: string }) => i.name)).toEqual(["new", "new_to_retained", "retained_to_retained", "reactivated_to_retained", "inactive_to_reactivated"]);
      expect(sum(c.by_segment)).toBe(delta);
      for (const i of [...c.by_state, ...c.by_segment, c.outflow.churned, ...c.outflow.segments]) {
        const col = i.name === "churned" || c.by_state.includes(i) ? i.name : `segment_${i.name}`;
        expect([i.base, i.compare, i.delta], `${i.name}`).toEqual([B[col], C[col], (C[col] as number) - (B[col] as number)]);
        expect(i.share, i.name).toBe(delta === 0 ? null : i.delta / delta + 0);
      }
      expect(c.outflow.segments.map((i: { name: string }) => i.name)).toEqual(["new_to_inactive", "retained_to_inactive", "reactivated_to_inactive", "inactive_to_inactive"]);
    }
  });

  it("every share is null when active did not move", async () => {
    const flat = REF.day.metrics.findIndex((r, i) => i > 0 && r.active === REF.day.metrics[i - 1]!.active);
    const pair: [string, string] = flat > 0 ? [REF.day.metrics[flat - 1]!.period, REF.day.metrics[flat]!.period] : ["2026-03-10", "2026-03-10"];
    for (const [base, compare] of [pair, ["2026-03-10", "2026-03-10"]]) {
      const c = (await api(env).get(`/v1/facts/${FACT}/metrics/contribution?grain=day&base=${base}&compare=${compare}`)).json();
      expect(c.delta_active).toBe(0);
      for (const i of [...c.by_state, ...c.by_segment, c.outflow.churned, ...c.outflow.segments]) expect(i.share, `${base} ${i.name}`).toBeNull();
    }
  });

  it("counts a base period before any user as zeros, and refuses invalid dates with 400", async () => {
    const c = await api(env).get(`/v1/facts/${FACT}/metrics/contribution?grain=day&base=2025-11-01&compare=2026-03-10`);
    expect(c.statusCode, c.body).toBe(200);
    expect(c.json().base.active).toBe(0);
    expect(c.json().delta_active).toBe(REF.day.metrics.find((r) => r.period === "2026-03-10")!.active);
    expect((await api(env).get(`/v1/facts/${FACT}/metrics/contribution?grain=day&base=2026-02-30&compare=2026-03-10`)).statusCode).toBe(400);
  });
});

describe("metrics", () => {
  it.each(GRAINS)("at %s grain equal the reference, period_complete false only for the period holding the watermark", async (grain) => {
    const res = await api(env).get(`/v1/facts/${FACT}/metrics?grain=${grain}`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.processed_through).toBe(THROUGH);
    expect(body.data).toEqual(REF[grain].metrics);
    const incomplete = body.data.filter((r: { period_complete: boolean }) => !r.period_complete).map((r: { period: string }) => r.period);
    expect(incomplete).toEqual(grain === "day" ? [] : [grain === "week" ? "2026-03-16" : "2026-03-01"]);
    // from/to select a range of periods (any day of a period names it).
    const part = await api(env).get(`/v1/facts/${FACT}/metrics?grain=${grain}&from=2026-02-11&to=2026-03-03`);
    expect(part.json().data).toEqual(REF[grain].metrics.filter((r) => r.period >= periodStartOf(grain, "2026-02-11") && r.period <= periodStartOf(grain, "2026-03-03")));
  });

  it("status and activation pages carry period_complete", async () => {
    const a = api(env);
    expect((await a.get(`/v1/facts/${FACT}/status?grain=week&period=2026-03-16`)).json().period_complete).toBe(false);
    expect((await a.get(`/v1/facts/${FACT}/status?grain=week&period=2026-03-09`)).json().period_complete).toBe(true);
    expect((await a.get(`/v1/facts/${FACT}/activation?grain=month&period=2026-03-01`)).json().period_complete).toBe(false);
    expect((await a.get(`/v1/facts/${FACT}/activation?grain=month&period=2026-02-01`)).json().period_complete).toBe(true);
    expect((await a.get(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}`)).json().period_complete).toBe(true);
  });
});

describe("core actions", () => {
  it.each(GRAINS)("at %s grain lists every fact of the service with its own metrics", async (grain) => {
    const res = await api(env).get(`/v1/services/${SERVICE}/core-actions?grain=${grain}`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.service).toBe(SERVICE);
    expect(body.grain).toBe(grain);
    expect(body.facts.map((f: { fact: string }) => f.fact)).toEqual([FACT, SECOND, THIRD]);
    const [main, second, third] = body.facts;
    expect(main.processed_through).toBe(THROUGH);
    expect(main.data).toEqual(REF[grain].metrics);
    expect(second.processed_through).toBe("2026-03-10");
    expect(second.data).toEqual(referenceLayer(activity(SECOND_EVENTS), grain, "2026-03-10").metrics);
    expect(third).toEqual({ fact: THIRD, processed_through: null, data: [] });
    // A shared range: each fact clipped to its own watermark.
    const ranged = (await api(env).get(`/v1/services/${SERVICE}/core-actions?grain=${grain}&from=2026-03-01&to=${THROUGH}`)).json();
    const inRange = (rows: Array<{ period: string }>) => rows.filter((r) => r.period >= periodStartOf(grain, "2026-03-01"));
    expect(ranged.facts[0].data).toEqual(inRange(REF[grain].metrics));
    expect(ranged.facts[1].data).toEqual(inRange(referenceLayer(activity(SECOND_EVENTS), grain, "2026-03-10").metrics));
  });

  it("checks from and to as a fact's metrics does: the same 400s naming the parameter, processed facts or not", async () => {
    await createFact(env, "api_idle", "UTC", "svc_idle");
    const problem = (res: { statusCode: number; headers: Record<string, unknown>; json(): any }, what: string) => {
      expect(res.statusCode, what).toBe(400);
      expect(String(res.headers["content-type"]), what).toContain("application/problem+json");
      const { detail, errors } = res.json();
      return { detail, errors };
    };
    for (const query of ["from=2026-03-10&to=2026-03-01", "grain=month&from=2026-03-01&to=2026-02-28", "from=2026-02-30", "to=2026-02-30", "from=2026-03-01&to=2026-13-01"]) {
      const metrics = problem(await api(env).get(`/v1/facts/${FACT}/metrics?${query}`), `metrics ${query}`);
      expect(metrics.errors.length, query).toBeGreaterThan(0);
      for (const service of [SERVICE, "svc_idle"])
        expect(problem(await api(env).get(`/v1/services/${service}/core-actions?${query}`), `${service} ${query}`), query).toEqual(metrics);
    }
    // Periods are compared, as for metrics: from may be a later day of to's week.
    expect((await api(env).get(`/v1/services/${SERVICE}/core-actions?grain=week&from=2026-03-18&to=2026-03-16`)).statusCode).toBe(200);
    expect((await api(env).get(`/v1/facts/${FACT}/metrics?grain=week&from=2026-03-18&to=2026-03-16`)).statusCode).toBe(200);
  });

  it("answers 404 for a service without facts", async () => {
    const res = await api(env).get(`/v1/services/nobody/core-actions`);
    expect(res.statusCode).toBe(404);
    expect(String(res.headers["content-type"])).toContain("application/problem+json");
  });
});
