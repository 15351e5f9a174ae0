import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { createFact, ingest, processThrough } from "./helpers/api.js";
import { FIXTURE_NAMES, fixtureMeta, readFixtureCsv } from "./helpers/fixtures.js";
import { expectLayerEquals } from "./helpers/layer-compare.js";
import { activityDateOf } from "../src/activation/status-rules.js";
import { dateToDay, dayToDate } from "../src/activation/periods.js";
import { mulberry32 } from "../src/util/prng.js";

/**
 * The islands are packed 1,024 users to a row (chunk = user key >> 10). The other fixture tests give
 * their users consecutive keys, all in the first chunk; here the keys jump between the days' new users,
 * so the same log lies over many chunks, users on either side of their boundaries, and each day after the
 * first is processed alone (the daily path), then late data (the general path). Each fixture has a
 * database of its own: user ids are shared across facts, and the users must be new to get these keys.
 */
const events = (fixture: string, file: string) => readFixtureCsv(fixture, file).map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));

describe.each(FIXTURE_NAMES)("fixture %s with its users spread over the packs' chunks", (fixture) => {
  const meta = fixtureMeta(fixture);
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    env.startWorkers();
  });
  afterAll(async () => env?.close());

  it("equals the expected layer processed a day at a time, then after late data", async () => {
    const fact = fixture.replace(/-/g, "_");
    await createFact(env, fact, meta.fact_timezone);
    const pool = env.ctx.db.pool;
    const rnd = mulberry32(20261128);
    const byDay = new Map<string, ReturnType<typeof events>>();
    for (const e of events(fixture, "events_part1.csv")) {
      const d = activityDateOf(e.occurred_at, meta.fact_timezone);
      byDay.set(d, [...(byDay.get(d) ?? []), e]);
    }
    const first = dateToDay([...byDay.keys()].sort()[0]!);
    for (let d = first; d <= dateToDay(meta.part1_through); d++) {
      const day = dayToDate(d);
      const todays = byDay.get(day) ?? [];
      // A few events at a time, the keys jumping before each batch.
      for (let i = 0; i < todays.length; i += 7) {
        await pool.query(
          `SELECT setval(pg_get_serial_sequence('app_user', 'user_key'), (SELECT COALESCE(max(user_key), 0) FROM app_user) + $1)`,
          [1 + Math.floor(rnd() * 1500)],
        );
        await ingest(env, fact, todays.slice(i, i + 7));
      }
      await processThrough(env, fact, day);
    }
    const spread = (await pool.query<{ chunks: number; users: number }>(
      `SELECT count(DISTINCT user_key >> 10)::int AS chunks, count(*)::int AS users FROM app_user`,
    )).rows[0]!;
    expect(spread.chunks).toBeGreaterThanOrEqual(Math.max(8, spread.users / 3));
    await expectLayerEquals(env, fact, fixture, "expected_part1", meta.part1_through);
    await ingest(env, fact, events(fixture, "events_part2.csv"));
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });
});
