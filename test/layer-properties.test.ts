import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  activityDateOf, addDays, byteOrder, nextPeriodStart, referenceFirstLast, referenceLayer, type RefGrain,
} from "../src/activation/status-rules.js";
import { allPages, api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { expectMetricIdentities } from "./helpers/identities.js";
import { END_COUNTS, START_COUNTS, islandColumns } from "../src/activation/postgres/island-counts.js";

/**
 * Random event logs through the HTTP API, in random batch splits and random processing stages with late
 * events between them: every metrics row satisfies the spec's identities exactly, and every model equals
 * the pure reference (src/activation/status-rules.ts) at all three grains. Seeded: a failure prints the
 * seed and path to replay (set FC_SEED / FC_PATH), and the shrunk log.
 */
const GRAINS: RefGrain[] = ["day", "week", "month"];
const ZONES = ["UTC", "Asia/Seoul", "America/Los_Angeles", "Asia/Kolkata", "Asia/Kathmandu"];
// Windows that cross a year end (ISO week 2026-W01 starts 2025-12-29), the US spring and fall DST
// switches, and month ends of 28, 30 and 31 days.
const BASES = ["2025-12-10", "2026-02-20", "2026-09-25", "2026-05-28"];
const OFFSETS = [0, 540, -420, 330, -480, 345]; // Z, +09:00, -07:00, +05:30, -08:00, +05:45
// Minutes of the UTC day a minute either side of local midnight in the zones above.
const EDGE_MINUTES = [0, 1, 1439, 899, 900, 901, 419, 420, 479, 480, 1109, 1110, 1094, 1095];
const DAY_MS = 86_400_000;

let env: TestEnv;
let factCounter = 0;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
});
afterAll(async () => env?.close());

function userIdOf(i: number): string | number {
  switch (i % 5) {
    case 0:
      return 1000 + i; // an integer id becomes its decimal string
    case 1:
      return `user:${i}`;
    case 2:
      return `u${i}@example.com`;
    case 3:
      return `team/${i} x`;
    default:
      return `ü-${i}`;
  }
}

function writeInstant(ms: number, offsetMin: number, withMs: boolean): string {
  const local = new Date(ms + offsetMin * 60_000).toISOString().slice(0, withMs ? 23 : 19);
  if (offsetMin === 0) return `${local}Z`;
  const a = Math.abs(offsetMin);
  return `${local}${offsetMin < 0 ? "-" : "+"}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
}

const scenarioArb = fc
  .record({
    zone: fc.constantFrom(...ZONES),
    base: fc.constantFrom(...BASES),
    users: fc.integer({ min: 1, max: 30 }),
    days: fc.integer({ min: 1, max: 60 }),
    stages: fc.integer({ min: 1, max: 3 }),
  })
  .chain((s) =>
    fc.record({
      zone: fc.constant(s.zone),
      base: fc.constant(s.base),
      days: fc.constant(s.days),
      events: fc.array(
        fc.record({
          u: fc.integer({ min: 0, max: s.users - 1 }),
          d: fc.integer({ min: 0, max: s.days - 1 }),
          minute: fc.oneof(fc.integer({ min: 0, max: 1439 }), fc.constantFrom(...EDGE_MINUTES)),
          second: fc.integer({ min: 0, max: 59 }),
          offset: fc.constantFrom(...OFFSETS),
          withMs: fc.boolean(),
          stage: fc.integer({ min: 0, max: s.stages - 1 }),
        }),
        { minLength: 1, maxLength: 250 },
      ),
      // Watermarks as day offsets from base (sorted: a run never goes back), one per stage.
      throughs: fc.array(fc.integer({ min: 0, max: s.days + 1 }), { minLength: s.stages, maxLength: s.stages }).map((a) => [...a].sort((x, y) => x - y)),
      batch: fc.integer({ min: 4, max: 60 }),
      // Ask the last run for the default through (the latest activity date) instead of a date.
      defaultThrough: fc.boolean(),
    }),
  );
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

interface Event {
  user_id: string | number;
  occurred_at: string;
  at: number;
  stage: number;
}

function eventsOf(s: Scenario): Event[] {
  const base = Date.parse(`${s.base}T00:00:00Z`);
  return s.events.map((e) => {
    const at = base + e.d * DAY_MS + e.minute * 60_000 + e.second * 1000 + (e.withMs ? 123 : 0);
    return { user_id: userIdOf(e.u), occurred_at: writeInstant(at, e.offset, e.withMs), at, stage: e.stage };
  });
}

const sortRows = <T extends { user_id: string }>(rows: T[]) => [...rows].sort((a, b) => byteOrder(a.user_id, b.user_id));

async function metricsOf(fact: string, grain: RefGrain) {
  const res = await api(env).get(`/v1/facts/${fact}/metrics?grain=${grain}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<Record<string, unknown>>;
}

/**
 * The island counts every run keeps in step by deltas equal the islands counted afresh: a count that
 * drifted would show in the metrics only once a later run reads that period.
 */
async function expectCountsInStep(fact: string, label: string) {
  const island = islandColumns();
  for (const [table, key, counts] of [["layer_start_count", "start_p", START_COUNTS], ["layer_end_count", "end_p", END_COUNTS]] as const) {
    const cols = Object.keys(counts);
    const sql = `SELECT grain, ${key}, ${cols.join(", ")} FROM ${table} WHERE fact_id = (SELECT id FROM fact WHERE name = $1) ORDER BY 1, 2`;
    const fresh = `SELECT grain, ${key}, ${Object.values(counts).map((cond, i) => `count(*) FILTER (WHERE ${cond(island)})::int AS ${cols[i]}`).join(", ")}
      FROM layer_island WHERE fact_id = (SELECT id FROM fact WHERE name = $1) GROUP BY 1, 2 ORDER BY 1, 2`;
    const [kept, counted] = await Promise.all([env.ctx.db.pool.query(sql, [fact]), env.ctx.db.pool.query(fresh, [fact])]);
    expect(kept.rows, `${fact} ${label}: ${table}`).toEqual(counted.rows);
  }
}

/** Metrics at every grain: the identities, and equality with the reference. */
async function checkMetrics(fact: string, seen: Event[], zone: string, through: string, label: string) {
  await expectCountsInStep(fact, label);
  const activity = seen.map((e) => ({ user_id: String(e.user_id), date: activityDateOf(e.at, zone) }));
  for (const grain of GRAINS) {
    const got = await metricsOf(fact, grain);
    expectMetricIdentities(got, grain, `${fact} ${label}`);
    expect(got, `${fact} ${label}: metrics at ${grain}`).toEqual(referenceLayer(activity, grain, through).metrics);
  }
}

/** Every status and activation row of every period, FirstLast of every date, one user's timelines. */
async function checkEveryModel(fact: string, seen: Event[], zone: string, through: string) {
  const activity = seen.map((e) => ({ user_id: String(e.user_id), date: activityDateOf(e.at, zone) }));
  const a = api(env);
  for (const grain of GRAINS) {
    const ref = referenceLayer(activity, grain, through);
    const periods = ref.metrics.map((m) => m.period);
    for (const period of periods) {
      const st = await a.get(`/v1/facts/${fact}/status?grain=${grain}&period=${period}&limit=10000`);
      expect(st.statusCode, st.body).toBe(200);
      expect(st.json().next_cursor).toBeNull();
      expect(sortRows(st.json().data), `${fact}: status ${grain} ${period}`).toEqual(sortRows(ref.status.filter((r) => r.period === period)));
      const act = await a.get(`/v1/facts/${fact}/activation?grain=${grain}&period=${period}&limit=10000`);
      expect(act.statusCode, act.body).toBe(200);
      expect(sortRows(act.json().data), `${fact}: activation ${grain} ${period}`).toEqual(sortRows(ref.activation.filter((r) => r.period === period)));
    }
    // One user's timeline equals its rows of every period.
    const someone = ref.status[Math.floor(ref.status.length / 2)]?.user_id;
    if (someone !== undefined) {
      const tl = await a.get(`/v1/facts/${fact}/users/${encodeURIComponent(someone)}/status?grain=${grain}`);
      expect(tl.statusCode, tl.body).toBe(200);
      expect(tl.json().data, `${fact}: timeline of ${someone} at ${grain}`).toEqual(ref.status.filter((r) => r.user_id === someone));
    }
  }
  const fl = referenceFirstLast(seen.map((e) => ({ user_id: String(e.user_id), at: e.at })), zone, through);
  // Every fifth snapshot date and the last (a snapshot is the one before plus its own day's events).
  const dates = [...new Set(fl.map((r) => r.snapshot_date))].sort().filter((_, i, all) => i % 5 === 0 || i === all.length - 1);
  for (const date of dates) {
    const got = await allPages(env, `/v1/facts/${fact}/first-last?date=${date}`, 10_000);
    expect(sortRows(got as Array<{ user_id: string }>), `${fact}: first-last ${date}`).toEqual(sortRows(fl.filter((r) => r.snapshot_date === date)));
  }
}

describe("the activation layer on random logs", () => {
  it("holds the spec's identities and equals the reference at every grain, whatever the batches, stages and late events", async () => {
    const started = Date.now();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (s) => {
        runs++;
        const fact = `prop_${++factCounter}`;
        await createFact(env, fact, s.zone);
        const events = eventsOf(s);
        const seen: Event[] = [];
        let processed: string | null = null;
        for (let k = 0; k < s.throughs.length; k++) {
          const stage = events.filter((e) => e.stage === k);
          await ingest(env, fact, stage.map(({ user_id, occurred_at }) => ({ user_id, occurred_at })), s.batch);
          // The run recomputes from the earliest date that gained a (user, date) at or before the watermark,
          // else from the day after it (the first run: from the earliest activity date), never from further back.
          const known = new Set(seen.map((e) => `${e.user_id}|${activityDateOf(e.at, s.zone)}`));
          const changed = stage.map((e) => activityDateOf(e.at, s.zone)).filter((d, i) => !known.has(`${stage[i]!.user_id}|${d}`) && (processed === null || d <= processed));
          seen.push(...stage);
          if (seen.length === 0) continue; // nothing to process yet: a run would be refused (409)
          const expectedFrom = [...changed, ...(processed === null ? [] : [addDays(processed, 1)])].sort()[0]!;
          let through = addDays(s.base, s.throughs[k]!);
          const latest = seen.map((e) => activityDateOf(e.at, s.zone)).sort().pop()!;
          const last = k === s.throughs.length - 1;
          if (last && s.defaultThrough && (processed === null || latest >= processed)) {
            const run = await processThrough(env, fact);
            expect(run.through, "default through is the latest activity date").toBe(latest);
            expect(run.from, "the run's first recomputed date (none: nothing to recompute)").toBe(expectedFrom <= latest ? expectedFrom : null);
            through = latest;
          } else {
            if (processed !== null && through < processed) through = processed;
            const run = await processThrough(env, fact, through);
            expect(run.through).toBe(through);
            expect(run.from, "the run's first recomputed date (none: nothing to recompute)").toBe(expectedFrom <= through ? expectedFrom : null);
          }
          processed = through;
          await checkMetrics(fact, seen, s.zone, through, `stage ${k} through ${through}`);
        }
        if (processed !== null) await checkEveryModel(fact, seen, s.zone, processed);
      }),
      {
        numRuns: Number(process.env.FC_RUNS ?? 25),
        seed: Number(process.env.FC_SEED ?? 20261127),
        ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
        // Shrinking replays the API; stop it after a while and report the smallest log found so far.
        plugins: [fc.interruptAfterTimeLimit(150_000)],
      },
    );
    expect(runs).toBeGreaterThanOrEqual(Math.min(25, Number(process.env.FC_RUNS ?? 25)));
    console.log(`layer properties: ${runs} runs in ${Date.now() - started} ms`);
  }, 300_000);
});

describe("the activation layer run one day at a time", () => {
  // Runs of only the day after the watermark take their own path (the day grain first, then week and
  // month only for the users that day starts the period for): day by day, through week and month
  // boundaries, the layer must equal the reference after every run.
  it("equals the reference at every grain after each day's run", async () => {
    let dailyRuns = 0;
    await fc.assert(
      // Logs of 3 to 9 weeks: every run crosses week boundaries, most a month's.
      fc.asyncProperty(scenarioArb.filter((x) => x.days >= 20), async (s) => {
        const fact = `daily_${++factCounter}`;
        await createFact(env, fact, s.zone);
        const events = eventsOf(s);
        await ingest(env, fact, events.map(({ user_id, occurred_at }) => ({ user_id, occurred_at })), 250);
        const dates = [...new Set(events.map((e) => activityDateOf(e.at, s.zone)))].sort();
        const first = dates[0]!, last = dates[dates.length - 1]!;
        const seen = (through: string) => events.filter((e) => activityDateOf(e.at, s.zone) <= through);
        for (let day = first; day <= last; day = addDays(day, 1)) {
          const run = await processThrough(env, fact, day);
          expect(run.from, "each run recomputes only its day").toBe(day);
          dailyRuns++;
          await checkMetrics(fact, seen(day), s.zone, day, `run through ${day}`);
        }
        await checkEveryModel(fact, seen(last), s.zone, last);
      }),
      { numRuns: Number(process.env.FC_DAILY_RUNS ?? 6), seed: Number(process.env.FC_SEED ?? 20261127), plugins: [fc.interruptAfterTimeLimit(120_000)] },
    );
    console.log(`layer run day by day: ${dailyRuns} runs`);
    expect(dailyRuns).toBeGreaterThan(100);
  }, 240_000);
});

describe("the reference's own calendar", () => {
  it("steps through every period of the windows the property test draws from", () => {
    // A guard for the generator above: bases plus 61 days stay in the past (events more than a day in
    // the future are refused), and the windows really cross the edges they are meant to.
    for (const b of BASES) expect(Date.parse(`${addDays(b, 62)}T00:00:00Z`)).toBeLessThan(Date.now());
    expect(nextPeriodStart("week", "2025-12-22")).toBe("2025-12-29");
  });
});
