import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { createFact, ingest, processThrough } from "./helpers/api.js";
import { resolveAudience } from "../src/audiences/resolve.js";
import type { AudienceDefinition } from "../src/audiences/definition.js";

/**
 * An audience as of the watermark reads the latest islands directly, a shortcut decided when it is
 * resolved. A run that commits between that and the query (here: forced, by resolving first and
 * processing the next day before querying) leaves latest islands that start after as_of; the query
 * must see that in its own snapshot and take the general path, giving what a fresh resolve gives.
 */
let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  await createFact(env, "race", "UTC");
  const at = (u: string, d: number) => ({ user_id: u, occurred_at: `2026-05-0${d}T12:00:00Z` });
  // a: active days 1–4; b: day 1, back on day 4; c: days 1–3; d: new on day 4.
  await ingest(env, "race", [at("a", 1), at("a", 2), at("a", 3), at("a", 4), at("b", 1), at("b", 4), at("c", 1), at("c", 2), at("c", 3), at("d", 4)]);
  await processThrough(env, "race", "2026-05-03");
}, 60_000);
afterAll(async () => env?.close());

const everyone: AudienceDefinition = {
  name: "everyone",
  fact: "race",
  grain: "day",
  filter: { field: "first_active_period", op: "is_not_null" },
} as AudienceDefinition;

describe("an audience resolved at the watermark, queried after a run moved it", () => {
  it("previews and materialises what a fresh resolve gives", async () => {
    const stale = await resolveAudience(env.ctx, everyone, "2026-05-03");
    expect(stale.query.latest).toBe(true);
    await processThrough(env, "race", "2026-05-04");
    const fresh = await resolveAudience(env.ctx, everyone, "2026-05-03");
    expect(fresh.query.latest).toBe(false);

    const expected = await env.ctx.engine.previewAudience(fresh.query, 20);
    expect(expected.count).toBe(3);
    expect(expected.by_state).toEqual({ retained: 2, inactive: 1 });
    expect(await env.ctx.engine.previewAudience(stale.query, 20)).toEqual(expected);

    const ids = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"];
    expect(await env.ctx.engine.materializeMembers(ids[0]!, stale.query)).toBe(3);
    expect(await env.ctx.engine.materializeMembers(ids[1]!, fresh.query)).toBe(3);
    const members = await env.ctx.db.pool.query(
      `SELECT materialization_id, user_key, state, inactivity_periods FROM audience_member WHERE materialization_id = ANY($1::uuid[]) ORDER BY user_key, materialization_id`,
      [ids],
    );
    const of = (id: string) => members.rows.filter((r) => r.materialization_id === id).map(({ materialization_id: _m, ...r }) => r);
    expect(of(ids[0]!)).toEqual(of(ids[1]!));
    expect(of(ids[0]!).map((r) => r.state).sort()).toEqual(["inactive", "retained", "retained"]);
  });
});
