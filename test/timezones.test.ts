import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addDays } from "../src/activation/status-rules.js";
import { allPages, api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/**
 * The activity date is the calendar date of the instant in the fact's timezone, whatever offset the
 * instant was written with. Events a minute either side of local midnight, each instant written with
 * several offsets (each write by its own user), must land on the dates written out by hand below.
 */
interface Edge {
  label: string;
  /** One instant written with different offsets. */
  writes: string[];
  /** Its activity date in the fact's zone. */
  date: string;
}

interface ZoneCase {
  fact: string;
  zone: string;
  through: string;
  edges: Edge[];
  /** Pairs of edges one user has both of: the two days are consecutive active days. */
  pairs: Array<[string, string]>;
}

const CASES: ZoneCase[] = [
  {
    fact: "tz_utc",
    zone: "UTC",
    through: "2026-03-03",
    edges: [
      // Sunday 2026-03-01 → Monday 2026-03-02 at 00:00Z: a day and an ISO week boundary.
      { label: "before", date: "2026-03-01", writes: ["2026-03-01T23:59:00Z", "2026-03-02T08:59:00+09:00", "2026-03-01T16:59:00-07:00", "2026-03-02T05:29:00+05:30"] },
      { label: "midnight", date: "2026-03-02", writes: ["2026-03-02T00:00:00Z", "2026-03-02T09:00:00+09:00", "2026-03-01T17:00:00-07:00", "2026-03-02T05:30:00+05:30"] },
      { label: "after", date: "2026-03-02", writes: ["2026-03-02T00:01:00Z", "2026-03-02T09:01:00+09:00", "2026-03-01T17:01:00-07:00", "2026-03-02T05:31:00+05:30"] },
    ],
    pairs: [["before", "after"]],
  },
  {
    fact: "tz_seoul",
    zone: "Asia/Seoul",
    through: "2026-04-02",
    edges: [
      // Local midnight of Monday 2026-03-02 is 2026-03-01T15:00Z.
      { label: "before", date: "2026-03-01", writes: ["2026-03-01T14:59:00Z", "2026-03-01T23:59:00+09:00", "2026-03-01T07:59:00-07:00", "2026-03-01T20:29:00+05:30"] },
      { label: "midnight", date: "2026-03-02", writes: ["2026-03-01T15:00:00Z", "2026-03-02T00:00:00+09:00", "2026-03-01T08:00:00-07:00", "2026-03-01T20:30:00+05:30"] },
      { label: "after", date: "2026-03-02", writes: ["2026-03-01T15:01:00Z", "2026-03-02T00:01:00+09:00", "2026-03-01T08:01:00-07:00", "2026-03-01T20:31:00+05:30"] },
      // Month end: 2026-03-31 23:59 KST is still March.
      { label: "march-end", date: "2026-03-31", writes: ["2026-03-31T14:59:00Z", "2026-03-31T23:59:00+09:00", "2026-03-31T07:59:00-07:00"] },
      { label: "april-start", date: "2026-04-01", writes: ["2026-03-31T15:01:00Z", "2026-04-01T00:01:00+09:00", "2026-03-31T08:01:00-07:00"] },
    ],
    pairs: [["before", "after"], ["march-end", "april-start"]],
  },
  {
    fact: "tz_la",
    zone: "America/Los_Angeles",
    through: "2026-11-03",
    edges: [
      // 2026-03-08 starts at 00:00 PST (-08:00) = 08:00Z; a -07:00 writing of 07:59Z reads "03-08" but is 03-07 in LA.
      { label: "dst-eve", date: "2026-03-07", writes: ["2026-03-08T07:59:00Z", "2026-03-07T23:59:00-08:00", "2026-03-08T00:59:00-07:00", "2026-03-08T16:59:00+09:00", "2026-03-08T13:29:00+05:30"] },
      { label: "dst-start", date: "2026-03-08", writes: ["2026-03-08T08:01:00Z", "2026-03-08T00:01:00-08:00", "2026-03-08T17:01:00+09:00", "2026-03-08T13:31:00+05:30"] },
      // 01:59 PST and a minute later 03:00 PDT: the same day.
      { label: "dst-jump-before", date: "2026-03-08", writes: ["2026-03-08T09:59:00Z", "2026-03-08T01:59:00-08:00"] },
      { label: "dst-jump-after", date: "2026-03-08", writes: ["2026-03-08T10:00:00Z", "2026-03-08T03:00:00-07:00"] },
      // The day after the switch starts at 00:00 PDT (-07:00) = 07:00Z: a fixed -08:00 would put 07:01Z on 03-08.
      { label: "dst-end", date: "2026-03-08", writes: ["2026-03-09T06:59:00Z", "2026-03-08T23:59:00-07:00", "2026-03-09T15:59:00+09:00", "2026-03-09T12:29:00+05:30"] },
      { label: "dst-next", date: "2026-03-09", writes: ["2026-03-09T07:01:00Z", "2026-03-09T00:01:00-07:00", "2026-03-08T23:01:00-08:00", "2026-03-09T16:01:00+09:00"] },
      // Back to PST on 2026-11-01: the next day starts at 08:00Z.
      { label: "fall-end", date: "2026-11-01", writes: ["2026-11-02T07:59:00Z", "2026-11-01T23:59:00-08:00", "2026-11-02T00:59:00-07:00"] },
      { label: "fall-next", date: "2026-11-02", writes: ["2026-11-02T08:01:00Z", "2026-11-02T00:01:00-08:00", "2026-11-02T17:01:00+09:00"] },
    ],
    pairs: [["dst-eve", "dst-start"], ["dst-end", "dst-next"], ["fall-end", "fall-next"]],
  },
];

const userOf = (c: ZoneCase, e: Edge, i: number) => `${c.fact}:${e.label}@${i}`;
const pairUser = (c: ZoneCase, a: string, b: string) => `${c.fact} pair ${a}/${b}`;
const utc = (s: string) => new Date(Date.parse(s)).toISOString();

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  for (const c of CASES) {
    await createFact(env, c.fact, c.zone);
    const events = c.edges.flatMap((e) => e.writes.map((w, i) => ({ user_id: userOf(c, e, i), occurred_at: w })));
    for (const [a, b] of c.pairs) {
      const ea = c.edges.find((e) => e.label === a)!;
      const eb = c.edges.find((e) => e.label === b)!;
      events.push({ user_id: pairUser(c, a, b), occurred_at: ea.writes[ea.writes.length - 1]! }, { user_id: pairUser(c, a, b), occurred_at: eb.writes[1]! });
    }
    await ingest(env, c.fact, events, 7);
    await processThrough(env, c.fact, c.through);
  }
});
afterAll(async () => env?.close());

async function firstLast(fact: string, date: string, user: string) {
  const res = await api(env).get(`/v1/facts/${fact}/first-last?date=${date}&user_id=${encodeURIComponent(user)}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<Record<string, string>>;
}

describe.each(CASES)("$zone", (c) => {
  it("the writes of each edge are one instant (a guard on the table itself)", () => {
    for (const e of c.edges) expect(new Set(e.writes.map(utc)).size, e.label).toBe(1);
  });

  it.each(c.edges)("$label lands on $date whatever the offset it was written with", async (e) => {
    const instant = utc(e.writes[0]!);
    for (const [i] of e.writes.entries()) {
      const user = userOf(c, e, i);
      // Seen on its date, with the instant in UTC…
      expect(await firstLast(c.fact, e.date, user), `${user} on ${e.date}`).toEqual([
        { snapshot_date: e.date, user_id: user, first_active_date: e.date, last_active_date: e.date, first_event_at: instant, last_event_at: instant },
      ]);
      // …and not the day before.
      expect(await firstLast(c.fact, addDays(e.date, -1), user), `${user} before ${e.date}`).toEqual([]);
      // Its status: new on that date, inactive the next day.
      const tl = await api(env).get(`/v1/facts/${c.fact}/users/${encodeURIComponent(user)}/status?grain=day&to=${addDays(e.date, 1)}`);
      expect(tl.statusCode, tl.body).toBe(200);
      expect(tl.json().data.map((r: Record<string, unknown>) => [r.period, r.state])).toEqual([
        [e.date, "new"],
        [addDays(e.date, 1), "inactive"],
      ]);
    }
  });

  it("the day's status lists exactly the users whose instants fall on it", async () => {
    const dates = [...new Set(c.edges.map((e) => e.date))];
    for (const date of dates) {
      const rows = await allPages(env, `/v1/facts/${c.fact}/status?grain=day&period=${date}&state=new`, 5);
      const expected = c.edges.filter((e) => e.date === date).flatMap((e) => e.writes.map((_, i) => userOf(c, e, i)));
      // Pair users are new on the first date of their pair.
      for (const [a, b] of c.pairs) if (c.edges.find((e) => e.label === a)!.date === date) expected.push(pairUser(c, a, b));
      expect(rows.map((r) => r.user_id).sort(), date).toEqual(expected.sort());
    }
  });

  it.each(c.pairs)("one user active at %s and %s: two consecutive days", async (a, b) => {
    const ea = c.edges.find((e) => e.label === a)!;
    const eb = c.edges.find((e) => e.label === b)!;
    expect(eb.date).toBe(addDays(ea.date, 1));
    const user = pairUser(c, a, b);
    expect(await firstLast(c.fact, eb.date, user)).toEqual([
      { snapshot_date: eb.date, user_id: user, first_active_date: ea.date, last_active_date: eb.date, first_event_at: utc(ea.writes[0]!), last_event_at: utc(eb.writes[0]!) },
    ]);
    const tl = await api(env).get(`/v1/facts/${c.fact}/users/${encodeURIComponent(user)}/status?grain=day&to=${eb.date}`);
    expect(tl.json().data.map((r: Record<string, unknown>) => [r.period, r.state, r.transition_segment])).toEqual([
      [ea.date, "new", "new"],
      [eb.date, "retained", "new_to_retained"],
    ]);
  });
});

describe("period edges in the fact's zone", () => {
  it("a minute before and after local midnight between Sunday and Monday are two ISO weeks (Seoul and UTC)", async () => {
    for (const fact of ["tz_utc", "tz_seoul"]) {
      const user = `${fact} pair before/after`;
      const tl = await api(env).get(`/v1/facts/${fact}/users/${encodeURIComponent(user)}/status?grain=week&to=2026-03-02`);
      expect(tl.statusCode, tl.body).toBe(200);
      expect(tl.json().data.map((r: Record<string, unknown>) => [r.period, r.state]), fact).toEqual([
        ["2026-02-23", "new"],
        ["2026-03-02", "retained"],
      ]);
    }
  });

  it("23:59 and 00:01 KST around the end of March are two months in Seoul, one month in UTC terms", async () => {
    const user = "tz_seoul pair march-end/april-start";
    const tl = await api(env).get(`/v1/facts/tz_seoul/users/${encodeURIComponent(user)}/status?grain=month`);
    expect(tl.json().data.map((r: Record<string, unknown>) => [r.period, r.state])).toEqual([
      ["2026-03-01", "new"],
      ["2026-04-01", "retained"],
    ]);
  });

  it("Saturday 23:59 PST and Sunday 00:01 PST (the DST day) are one ISO week in Los Angeles", async () => {
    const user = "tz_la pair dst-eve/dst-start";
    const tl = await api(env).get(`/v1/facts/tz_la/users/${encodeURIComponent(user)}/status?grain=week&to=2026-03-09`);
    expect(tl.json().data.map((r: Record<string, unknown>) => [r.period, r.state, r.consecutive_active_periods])).toEqual([
      ["2026-03-02", "new", 1],
      ["2026-03-09", "inactive", 0],
    ]);
  });

  it("day metrics count the users of each side of midnight on their own day", async () => {
    const res = await api(env).get(`/v1/facts/tz_la/metrics?grain=day&from=2026-03-07&to=2026-03-09`);
    expect(res.statusCode, res.body).toBe(200);
    const active = Object.fromEntries(res.json().data.map((r: Record<string, unknown>) => [r.period, r.active]));
    // 03-07: 5 writes of dst-eve + its pair user; 03-08: dst-start (4), the jump (2+2), dst-end (4), the pairs' users;
    // 03-09: dst-next (4) + its pair user.
    expect(active).toEqual({ "2026-03-07": 6, "2026-03-08": 4 + 2 + 2 + 4 + 1 + 1, "2026-03-09": 5 });
  });
});
