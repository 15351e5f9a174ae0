/**
 * Experiment (not used by the service): the write path of one more day with each grain's latest islands
 * packed 1,024 users to a row, and the islands a day closes appended as one row per grain, day and chunk
 * of users, instead of one row per island. It measures what that layout would cost a day, to decide
 * whether the layer's storage is worth rewriting for it (README, "The next layout measured").
 *
 * On a copy of a kept bench database (`npm run bench -- activation --no-baselines --no-flat --keep`,
 * then `CREATE DATABASE aa_packed TEMPLATE aa_bench_activation`):
 *   BENCH_DATABASE_URL=…/aa_packed npx tsx bench/activation/experiments/packed-day.ts setup
 *   BENCH_DATABASE_URL=…/aa_packed npx tsx bench/activation/experiments/packed-day.ts day 1 [--keep]
 * `day X` inserts the generated activity of day x = X (bench/activation/generate.ts) and runs the day
 * for all three grains in one transaction, rolled back unless --keep. What it leaves out: the island
 * counts and metrics (the shipped code's statements for those are timed by profile.ts) and every read
 * path (status, audiences, campaigns, late data would all read the packed rows).
 */
import pg from "pg";
import "../../../src/db/client.js";
import { runDay } from "./day-input.js";
import { copyBinary, copyOutBinary, int2, int4, int4ArrayBinary, readInt4Array } from "../../../src/activation/postgres/binary-copy.js";

const SLOTS = 1024; // users per packed row: user_key >> 10 is the row, user_key & 1023 the slot
const FIELDS = ["st", "en", "pe", "ab", "fp"] as const; // start, end, previous end, active before, first
const NONE = -1;

const url = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/aa_packed";
const pool = new pg.Pool({ connectionString: url, max: 2 });
const [cmd, arg] = process.argv.slice(2);
const factId = (await pool.query<{ id: number }>(`SELECT id FROM fact WHERE name = 'bench_main'`)).rows[0]!.id;
const t = () => performance.now();
const log = (label: string, t0: number) => console.log(`${(t() - t0).toFixed(1).padStart(9)} ms  ${label}`);

if (cmd === "setup") {
  const t0 = t();
  await pool.query(`DROP TABLE IF EXISTS packed_latest, packed_closed`);
  await pool.query(
    `CREATE TABLE packed_latest (fact_id int NOT NULL, grain smallint NOT NULL, chunk int NOT NULL,
       ${FIELDS.map((f) => `${f} int4[] NOT NULL`).join(", ")}, PRIMARY KEY (fact_id, grain, chunk))`,
  );
  await pool.query(
    `CREATE TABLE packed_closed (fact_id int NOT NULL, grain smallint NOT NULL, next_start int NOT NULL, chunk int NOT NULL, uk int4[] NOT NULL,
       ${FIELDS.map((f) => `${f} int4[] NOT NULL`).join(", ")}, PRIMARY KEY (fact_id, grain, next_start, chunk))`,
  );
  // One user's closed islands: the rows of its chunk.
  await pool.query(`CREATE INDEX packed_closed_chunk_idx ON packed_closed (fact_id, grain, chunk, next_start)`);
  // Uncompressed out-of-line arrays: a day rewrites them whole, and compressing costs CPU for little.
  for (const table of ["packed_latest", "packed_closed"])
    for (const f of FIELDS) await pool.query(`ALTER TABLE ${table} ALTER ${f} SET STORAGE EXTERNAL`);
  await pool.query(`ALTER TABLE packed_closed ALTER uk SET STORAGE EXTERNAL`);
  const cols = ["start_p", "end_p", "prev_end", "active_before", "first_p"];
  await pool.query(
    `INSERT INTO packed_latest (fact_id, grain, chunk, ${FIELDS.join(", ")})
     SELECT $1, g, c, ${cols.map((col) => `array_agg(COALESCE(i.${col}, ${NONE}) ORDER BY s)`).join(", ")}
     FROM generate_series(0, 2) g
     CROSS JOIN generate_series(0, (SELECT max(user_key) FROM app_user) >> 10) c
     CROSS JOIN generate_series(0, ${SLOTS - 1}) s
     LEFT JOIN layer_island_open i ON i.fact_id = $1 AND i.grain = g AND i.user_key = c * ${SLOTS} + s
     GROUP BY g, c`,
    [factId],
  );
  await pool.query(`VACUUM ANALYZE packed_latest`);
  await pool.query(`CHECKPOINT`);
  const size = (await pool.query(`SELECT pg_size_pretty(pg_total_relation_size('packed_latest')) AS s`)).rows[0].s;
  log(`setup: packed_latest ${size}`, t0);
} else if (cmd === "day") {
  await runDay(pool, factId, Number(arg ?? 1), process.argv.includes("--keep"), async (c, g, grain, P, actives) => {
    let t1 = t();
    // Binary COPY: the arrays arrive as raw bytes, not hex text.
    const rows = await copyOutBinary(
      c,
      `COPY (SELECT chunk, ${FIELDS.join(", ")} FROM packed_latest WHERE fact_id = ${factId | 0} AND grain = ${g} ORDER BY chunk) TO STDOUT (FORMAT binary)`,
    );
    log(`grain ${grain}: read ${rows.length} packed rows`, t1);
    t1 = t();
    const changedChunks: Array<{ chunk: number; arrays: Int32Array[] }> = [];
    const closedRows: Buffer[][] = []; // per chunk: the islands this day closes, uk st en pe ab fp
    let closedCount = 0;
    let extended = 0, returned = 0, fresh = 0;
    let ai = 0;
    for (const row of rows) {
      const chunk = row[0]!.readInt32BE(0);
      const lo = chunk * SLOTS, hi = lo + SLOTS;
      while (ai < actives.length && actives[ai]! < lo) ai++;
      if (ai >= actives.length || actives[ai]! >= hi) continue;
      const arrays = row.slice(1).map(readInt4Array);
      const [st, en, pe, ab, fp] = arrays as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
      let changed = false;
      const closed: number[][] = [[], [], [], [], [], []];
      for (; ai < actives.length && actives[ai]! < hi; ai++) {
        const s = actives[ai]! - lo;
        if (st[s] === NONE) {
          st[s] = P; en[s] = P; pe[s] = NONE; ab[s] = 0; fp[s] = P; fresh++; changed = true;
        } else if (en[s]! >= P) {
          // the period is covered already (week or month grain, an earlier day of it)
        } else if (en[s] === P - 1) {
          en[s] = P; extended++; changed = true;
        } else {
          closed[0]!.push(lo + s); closed[1]!.push(st[s]!); closed[2]!.push(en[s]!); closed[3]!.push(pe[s]!); closed[4]!.push(ab[s]!); closed[5]!.push(fp[s]!);
          ab[s] = ab[s]! + en[s]! - st[s]! + 1; pe[s] = en[s]!; st[s] = P; en[s] = P; returned++; changed = true;
        }
      }
      if (changed) changedChunks.push({ chunk, arrays });
      if (closed[0]!.length) {
        closedCount += closed[0]!.length;
        closedRows.push([int4(factId), int2(g), int4(P), int4(chunk), ...closed.map((a) => int4ArrayBinary(Int32Array.from(a)))]);
      }
    }
    log(`grain ${grain}: ${extended} extended, ${returned} returned, ${fresh} new, ${changedChunks.length} rows changed (in Node)`, t1);
    t1 = t();
    // The changed rows are replaced: deleted, then written once by COPY (an UPDATE from a staging
    // table would write every array twice).
    await c.query(`DELETE FROM packed_latest WHERE fact_id = $1 AND grain = $2 AND chunk = ANY($3::int[])`, [factId, g, changedChunks.map((r) => r.chunk)]);
    log(`grain ${grain}: DELETE ${changedChunks.length} packed rows`, t1);
    t1 = t();
    await copyBinary(
      c,
      `COPY packed_latest (fact_id, grain, chunk, ${FIELDS.join(", ")}) FROM STDIN (FORMAT binary)`,
      changedChunks.map((r) => [int4(factId), int2(g), int4(r.chunk), ...r.arrays.map(int4ArrayBinary)]),
    );
    log(`grain ${grain}: COPY ${changedChunks.length} packed rows`, t1);
    t1 = t();
    if (closedRows.length)
      await copyBinary(c, `COPY packed_closed (fact_id, grain, next_start, chunk, uk, ${FIELDS.join(", ")}) FROM STDIN (FORMAT binary)`, closedRows);
    log(`grain ${grain}: append ${closedCount} closed islands as ${closedRows.length} rows (one per chunk)`, t1);
  });
} else {
  console.error("usage: packed-day.ts setup | day X [--keep]");
  process.exitCode = 2;
}
await pool.end();
