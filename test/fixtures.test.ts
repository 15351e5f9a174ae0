import { afterAll, beforeAll, describe, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { createFact, ingest, processThrough } from "./helpers/api.js";
import { FIXTURE_NAMES, fixtureMeta, readFixtureCsv, shuffled } from "./helpers/fixtures.js";
import { expectLayerEquals } from "./helpers/layer-compare.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
});
afterAll(async () => env?.close());

const events = (fixture: string, file: string) => readFixtureCsv(fixture, file).map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
const factName = (fixture: string, variant: string) => `${fixture.replace(/-/g, "_")}_${variant}`;

describe.each(FIXTURE_NAMES)("fixture %s through the HTTP API", (fixture) => {
  const meta = fixtureMeta(fixture);

  it("matches every model at every grain, the whole log processed at once", async () => {
    const fact = factName(fixture, "whole");
    await createFact(env, fact, meta.fact_timezone);
    await ingest(env, fact, events(fixture, "events.csv"));
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });

  it("gives the same answers when events arrive shuffled in small batches", async () => {
    const fact = factName(fixture, "shuffled");
    await createFact(env, fact, meta.fact_timezone);
    await ingest(env, fact, shuffled(events(fixture, "events.csv"), 20261127), 37);
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });

  it("recomputes only from the late date: part 1, then a late part 2, equals the whole log", async () => {
    const fact = factName(fixture, "late");
    await createFact(env, fact, meta.fact_timezone);
    await ingest(env, fact, events(fixture, "events_part1.csv"));
    await processThrough(env, fact, meta.part1_through);
    await expectLayerEquals(env, fact, fixture, "expected_part1", meta.part1_through);
    await ingest(env, fact, events(fixture, "events_part2.csv"));
    const run = await processThrough(env, fact, meta.through);
    // The run starts at the earliest late date, not at the beginning of history.
    const earliestLate = events(fixture, "events_part2.csv")
      .map((e) => e.occurred_at)
      .sort()[0]!;
    if (run.from > meta.part1_through) throw new Error(`expected a late recompute before ${meta.part1_through}, got from ${run.from} (${earliestLate})`);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });
});
