import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { createFact, ingest, processThrough } from "./helpers/api.js";
import { fixtureMeta, readFixtureCsv } from "./helpers/fixtures.js";

/**
 * Migration 20261128100000_packed_islands moves the islands of existing facts from the table layer_island
 * into the packs. Test databases are migrated empty, so the move is checked here: a fixture's islands,
 * put back into a layer_island table as the earlier migrations had it (inside a transaction rolled back
 * at the end), go through the migration's SQL and come out of the new view exactly as they went in.
 */
const MIGRATION = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../prisma/migrations/20261128100000_packed_islands/migration.sql");
const COLUMNS = "fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
});
afterAll(async () => env?.close());

describe("migration 20261128100000_packed_islands", () => {
  it("moves every island of the rows layout into the packs unchanged", async () => {
    const meta = fixtureMeta("seoul-70d");
    await createFact(env, "moved", meta.fact_timezone);
    await ingest(env, "moved", readFixtureCsv("seoul-70d", "events.csv").map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! })));
    await processThrough(env, "moved", meta.through);
    const client = await env.ctx.db.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(`CREATE TEMP TABLE islands_before AS SELECT ${COLUMNS} FROM layer_island`);
      // The fixture's users have consecutive keys, all in one chunk: spread them over many, the slots of
      // their chunks' ends included (the islands alone are compared).
      await client.query(`UPDATE islands_before SET user_key = user_key * 613 + 1000`);
      expect((await client.query(`SELECT count(DISTINCT user_key >> 10)::int AS n FROM islands_before`)).rows[0].n).toBeGreaterThan(20);
      const before = (await client.query<{ n: number; closed: number }>(
        `SELECT count(*)::int AS n, count(next_start)::int AS closed FROM islands_before`,
      )).rows[0]!;
      expect(before.closed).toBeGreaterThan(0);
      // The layout the earlier migrations left (20261127120000_open_island_partition), holding those islands.
      await client.query(`DROP VIEW layer_island; DROP VIEW layer_latest_island; DROP VIEW layer_closed_island;
        DROP TABLE layer_latest_pack; DROP TABLE layer_latest_first; DROP TABLE layer_closed_pack;
        DROP FUNCTION aa_island_pack(integer, integer, integer, integer)`);
      await client.query(`CREATE TABLE layer_island (fact_id int NOT NULL, grain smallint NOT NULL, user_key int NOT NULL,
          start_p int NOT NULL, end_p int NOT NULL, prev_end int, next_start int, active_before int NOT NULL, first_p int NOT NULL)
        PARTITION BY LIST ((next_start IS NULL));
        CREATE TABLE layer_island_open PARTITION OF layer_island FOR VALUES IN (TRUE);
        CREATE TABLE layer_island_closed PARTITION OF layer_island FOR VALUES IN (FALSE);
        INSERT INTO layer_island SELECT * FROM islands_before`);
      await client.query(readFileSync(MIGRATION, "utf8"));
      const diff = await client.query(
        `(SELECT ${COLUMNS} FROM layer_island EXCEPT ALL SELECT * FROM islands_before)
         UNION ALL (SELECT * FROM islands_before EXCEPT ALL SELECT ${COLUMNS} FROM layer_island)`,
      );
      expect(diff.rows).toEqual([]);
      expect((await client.query(`SELECT count(*)::int AS n FROM layer_island`)).rows[0].n).toBe(before.n);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
    // Rolled back: the fact still answers from its packs.
    const res = await env.app.inject({ method: "GET", url: `/v1/facts/moved/metrics?grain=week`, headers: env.auth() });
    expect(res.statusCode, res.body).toBe(200);
  });
});
