/**
 * Experiment (not used by the service): packed-day.ts with one int8 per user instead of five int4[]
 * elements. Each grain's latest islands are packed 1,024 users to a row, start | end | previous end |
 * active periods before in one int8 (16 bits each) and the first period in an int4[] beside it; the islands
 * a day closes are appended as one row per grain, day and chunk of users. It measures what that layout would
 * cost a day (README, Performance, "Session 10"; the plan built on it: docs/packed-layer.md).
 *
 * On a copy of a kept bench database (`npm run bench -- activation --no-baselines --no-flat --keep`,
 * then `CREATE DATABASE aa_packed8 TEMPLATE aa_bench_activation`):
 *   BENCH_DATABASE_URL=…/aa_packed8 npx tsx bench/activation/experiments/packed8-day.ts setup
 *   BENCH_DATABASE_URL=…/aa_packed8 npx tsx bench/activation/experiments/packed8-day.ts day 1 [--keep]
 *   BENCH_DATABASE_URL=…/aa_packed8 npx tsx bench/activation/experiments/packed8-day.ts read 0
 * `day X` inserts the generated activity of day x = X (bench/activation/generate.ts) and runs the day
 * for all three grains in one transaction, rolled back unless --keep. `read G` decodes every latest island
 * of grain G in SQL. Left out: the island counts, the metrics and every read path. The Node arithmetic here
 * assumes periods below 32,768 (dates before 2059), enough for the bench's 2026.
 */
import pg from "pg";
import "../../../src/db/client.js";
import { runDay } from "./day-input.js";
import { copyBinary, copyOutBinary, int2, int4, int4ArrayBinary, int8ArrayBinary, readInt4Array, readInt8ArrayWords } from "../../../src/activation/postgres/binary-copy.js";

const SLOTS = 1024; // users per packed row: user_key >> 10 is the row, user_key & 1023 the slot
// One int8 per user and grain: start | end | previous end | active before, 16 bits each (periods are days,
// weeks or months since 1970, < 65,535 until 2149). 0xFFFF in the start half-word: no island.
const NONE_HI = -1; // the high 32 bits of a slot without an island (start 0xFFFF, end 0xFFFF)
const NO_PREV = 0xffff;

const url = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/aa_packed8";
const pool = new pg.Pool({ connectionString: url, max: 2 });
const [cmd, arg] = process.argv.slice(2);
const factId = (await pool.query<{ id: number }>(`SELECT id FROM fact WHERE name = 'bench_main'`)).rows[0]!.id;
const t = () => performance.now();
const log = (label: string, t0: number) => console.log(`${(t() - t0).toFixed(1).padStart(9)} ms  ${label}`);

if (cmd === "setup") {
  const t0 = t();
  await pool.query(`DROP TABLE IF EXISTS packed8_latest, packed8_first, packed8_closed`);
  // The first period does not fit the int8 beside the four others: an int4[] of its own in the row.
  await pool.query(`CREATE TABLE packed8_latest (fact_id int NOT NULL, grain smallint NOT NULL, chunk int NOT NULL, s int8[] NOT NULL, fp int4[] NOT NULL, PRIMARY KEY (fact_id, grain, chunk))`);
  await pool.query(
    `CREATE TABLE packed8_closed (fact_id int NOT NULL, grain smallint NOT NULL, next_start int NOT NULL, chunk int NOT NULL, uk int4[] NOT NULL, s int8[] NOT NULL, PRIMARY KEY (fact_id, grain, next_start, chunk))`,
  );
  await pool.query(`CREATE INDEX packed8_closed_chunk_idx ON packed8_closed (fact_id, grain, chunk, next_start)`);
  for (const [table, col] of [["packed8_latest", "s"], ["packed8_latest", "fp"], ["packed8_closed", "s"], ["packed8_closed", "uk"]])
    await pool.query(`ALTER TABLE ${table} ALTER ${col} SET STORAGE EXTERNAL`);
  const base = `FROM generate_series(0, 2) g
     CROSS JOIN generate_series(0, (SELECT max(user_key) FROM app_user) >> 10) c
     CROSS JOIN generate_series(0, ${SLOTS - 1}) sl
     LEFT JOIN layer_island_open i ON i.fact_id = $1 AND i.grain = g AND i.user_key = c * ${SLOTS} + sl
     GROUP BY g, c`;
  await pool.query(
    `INSERT INTO packed8_latest (fact_id, grain, chunk, s, fp)
     SELECT $1, g, c, array_agg(CASE WHEN i.user_key IS NULL THEN -1::int8 ELSE
       ((i.start_p::int8 & 65535) << 48) | ((i.end_p::int8 & 65535) << 32) | ((COALESCE(i.prev_end, 65535)::int8 & 65535) << 16) | (i.active_before::int8 & 65535) END ORDER BY sl),
       array_agg(COALESCE(i.first_p, -1) ORDER BY sl) ${base}`,
    [factId],
  );
  await pool.query(`VACUUM ANALYZE packed8_latest`);
  await pool.query(`CHECKPOINT`);
  const size = (await pool.query(`SELECT pg_size_pretty(pg_total_relation_size('packed8_latest')) AS s`)).rows[0];
  log(`setup: packed8_latest ${size.s}`, t0);
} else if (cmd === "day") {
  await runDay(pool, factId, Number(arg ?? 1), process.argv.includes("--keep"), async (c, g, grain, P, actives) => {
    let t1 = t();
    const rows = await copyOutBinary(c, `COPY (SELECT chunk, s, fp FROM packed8_latest WHERE fact_id = ${factId | 0} AND grain = ${g} ORDER BY chunk) TO STDOUT (FORMAT binary)`);
    log(`grain ${grain}: read ${rows.length} packed rows`, t1);
    t1 = t();
    const changedChunks: Array<{ chunk: number; words: Int32Array; fp: Int32Array }> = [];
    const closedRows: Buffer[][] = [];
    let closedCount = 0;
    let extended = 0, returned = 0, fresh = 0;
    let ai = 0;
    for (const row of rows) {
      const chunk = row[0]!.readInt32BE(0);
      const lo = chunk * SLOTS, hi = lo + SLOTS;
      while (ai < actives.length && actives[ai]! < lo) ai++;
      if (ai >= actives.length || actives[ai]! >= hi) continue;
      const w = readInt8ArrayWords(row[1]!); // per slot: [hi = start<<16|end, lo = prev<<16|before]
      const fp = readInt4Array(row[2]!);
      let changed = false;
      const cu: number[] = [], cs: number[] = [];
      for (; ai < actives.length && actives[ai]! < hi; ai++) {
        const s = actives[ai]! - lo;
        const h = w[2 * s]!, l = w[2 * s + 1]!;
        if (h === NONE_HI) {
          w[2 * s] = (P << 16) | P; w[2 * s + 1] = (NO_PREV << 16) | 0; fp[s] = P; fresh++; changed = true;
          continue;
        }
        const st = h >>> 16, en = h & 0xffff, ab = l & 0xffff;
        if (en >= P) continue; // the period is covered already (week or month grain)
        if (en === P - 1) {
          w[2 * s] = (st << 16) | P; extended++; changed = true;
        } else {
          cu.push(lo + s); cs.push(h, l);
          w[2 * s] = (P << 16) | P; w[2 * s + 1] = (en << 16) | (ab + en - st + 1); returned++; changed = true;
        }
      }
      if (changed) changedChunks.push({ chunk, words: w, fp });
      if (cu.length) {
        closedCount += cu.length;
        closedRows.push([int4(factId), int2(g), int4(P), int4(chunk), int4ArrayBinary(Int32Array.from(cu)), int8ArrayBinary(Int32Array.from(cs))]);
      }
    }
    log(`grain ${grain}: ${extended} extended, ${returned} returned, ${fresh} new, ${changedChunks.length} rows changed (in Node)`, t1);
    t1 = t();
    await c.query(`DELETE FROM packed8_latest WHERE fact_id = $1 AND grain = $2 AND chunk = ANY($3::int[])`, [factId, g, changedChunks.map((r) => r.chunk)]);
    log(`grain ${grain}: DELETE ${changedChunks.length} packed rows`, t1);
    t1 = t();
    await copyBinary(c, `COPY packed8_latest (fact_id, grain, chunk, s, fp) FROM STDIN (FORMAT binary)`, changedChunks.map((r) => [int4(factId), int2(g), int4(r.chunk), int8ArrayBinary(r.words), int4ArrayBinary(r.fp)]));
    log(`grain ${grain}: COPY ${changedChunks.length} packed rows`, t1);
    t1 = t();
    if (closedRows.length)
      await copyBinary(c, `COPY packed8_closed (fact_id, grain, next_start, chunk, uk, s) FROM STDIN (FORMAT binary)`, closedRows);
    log(`grain ${grain}: append ${closedCount} closed islands as ${closedRows.length} rows (one per chunk)`, t1);
  });
} else if (cmd === "read") {
  // Every user's latest island of one grain, decoded in SQL, as a read path would see it.
  const g = Number(arg ?? 0);
  const t0 = t();
  const r = await pool.query(
    `SELECT count(*) AS n, sum(en - st) AS len, sum(fp) AS fps FROM (
       SELECT p.chunk * ${SLOTS} + u.o - 1 AS user_key, (u.x >> 48) & 65535 AS st, (u.x >> 32) & 65535 AS en,
              NULLIF((u.x >> 16) & 65535, 65535) AS pe, u.x & 65535 AS ab, u.f AS fp
       FROM packed8_latest p, unnest(p.s, p.fp) WITH ORDINALITY AS u(x, f, o)
       WHERE p.fact_id = $1 AND p.grain = $2 AND u.x <> -1) t`,
    [factId, g],
  );
  log(`read every latest island of grain ${g}: ${r.rows[0].n} (sum of lengths ${r.rows[0].len})`, t0);
} else {
  console.error("usage: packed8-day.ts setup | day X [--keep] | read G");
  process.exitCode = 2;
}
await pool.end();
