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
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import "../../../src/db/client.js";
import { GRAINS, dateToDay, periodOfDay } from "../../../src/activation/periods.js";
import { dateOfX, insertActivity } from "../generate.js";

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
  const x = Number(arg ?? 1);
  const date = dateOfX(x);
  const present = (await pool.query(`SELECT 1 FROM activity_day WHERE fact_id = $1 AND activity_date = $2 LIMIT 1`, [factId, date])).rowCount;
  if (!present) console.log(`inserted ${await insertActivity(pool, factId, x, x)} activity rows of ${date}`);
  await pool.query(`CHECKPOINT`);
  const c = await pool.connect();
  const t0 = t();
  await c.query("BEGIN");
  let t1 = t();
  const actives = readInt4Array(
    (await c.query(`SELECT array_send(COALESCE(array_agg(user_key ORDER BY user_key), '{}')) AS a FROM activity_day WHERE fact_id = $1 AND activity_date = $2`, [factId, date])).rows[0].a,
  );
  log(`read ${actives.length} active users`, t1);
  const day = dateToDay(date);
  for (const [g, grain] of GRAINS.entries()) {
    const P = periodOfDay(grain, day);
    t1 = t();
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
  }
  t1 = t();
  await c.query(process.argv.includes("--keep") ? "COMMIT" : "ROLLBACK");
  log(process.argv.includes("--keep") ? "COMMIT" : "ROLLBACK", t1);
  log("the day, all grains", t0);
  c.release();
} else {
  console.error("usage: packed-day.ts setup | day X [--keep]");
  process.exitCode = 2;
}
await pool.end();

/** The elements of an int4[] in PostgreSQL's binary form (array_send): no nulls, one dimension. */
function readInt4Array(buf: Buffer): Int32Array {
  const ndim = buf.readInt32BE(0);
  if (ndim === 0) return new Int32Array(0);
  const n = buf.readInt32BE(12);
  // Elements are (length, value) pairs of big-endian int32: swap the bytes natively, keep every second.
  const words = Buffer.from(buf.subarray(20, 20 + 8 * n)).swap32();
  const all = new Int32Array(words.buffer, words.byteOffset, 2 * n);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = all[2 * i + 1]!;
  return out;
}

function int4ArrayBinary(a: Int32Array): Buffer {
  const buf = Buffer.allocUnsafe(20 + 8 * a.length);
  buf.writeInt32BE(1, 0); // one dimension
  buf.writeInt32BE(0, 4); // no nulls
  buf.writeInt32BE(23, 8); // int4
  buf.writeInt32BE(a.length, 12);
  buf.writeInt32BE(1, 16); // lower bound
  const words = new Int32Array(2 * a.length);
  for (let i = 0; i < a.length; i++) {
    words[2 * i] = 4;
    words[2 * i + 1] = a[i]!;
  }
  Buffer.from(words.buffer).swap32().copy(buf, 20);
  return buf;
}
function int4(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(v, 0);
  return b;
}
function int2(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(v, 0);
  return b;
}

/** COPY … FROM STDIN (FORMAT binary) of rows whose fields are already in binary form. */
async function copyBinary(c: pg.PoolClient, sql: string, rows: Buffer[][]): Promise<void> {
  const header = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), int4(0), int4(0)]);
  const parts: Buffer[] = [header];
  for (const fields of rows) {
    parts.push(int2(fields.length));
    for (const f of fields) parts.push(int4(f.length), f);
  }
  parts.push(int2(-1));
  await pipeline(Readable.from([Buffer.concat(parts)]), c.query(copyFrom(sql)));
}

/** The rows of a COPY … TO STDOUT (FORMAT binary), each as its fields' bytes (no nulls expected). */
async function copyOutBinary(c: pg.PoolClient, sql: string): Promise<Buffer[][]> {
  const chunks: Buffer[] = [];
  for await (const chunk of c.query(copyTo(sql))) chunks.push(chunk as Buffer);
  const buf = Buffer.concat(chunks);
  const rows: Buffer[][] = [];
  let o = 11 + 4 + 4 + buf.readInt32BE(15);
  for (;;) {
    const n = buf.readInt16BE(o);
    o += 2;
    if (n === -1) break;
    const fields: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const len = buf.readInt32BE(o);
      fields.push(buf.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    rows.push(fields);
  }
  return rows;
}
