/**
 * Experiment (not used by the service): the status of the latest day for every user as NDJSON, from the
 * packed latest islands of packed8-day.ts decoded in Node, against the shipped export (the status query's
 * text COPY turned into NDJSON by CopyTextToNdjson, as the server streams it). Both outputs are hashed:
 * the packed path must give the same bytes. Answers docs/packed-layer.md's question of how the status
 * stream would read the packs.
 *
 * On a database set up by `packed8-day.ts setup` (its packs are as of the watermark):
 *   BENCH_DATABASE_URL=…/aa_packed8 npx tsx bench/activation/experiments/packed8-status.ts rows|packed
 */
import { createHash } from "node:crypto";
import pg from "pg";
import "../../../src/db/client.js";
import { statusQuery, statusColumnsFor } from "../../../src/activation/postgres/queries.js";
import { copyQueryOut } from "../../../src/activation/postgres/copy-out.js";
import { copyOutBinary, readInt4Array, readInt8ArrayWords } from "../../../src/activation/postgres/binary-copy.js";

const enc = (x: string) => Buffer.from(x, "latin1");
const K = {
  user: enc('{"user_id":"'), period: enc('","period":"'), state: enc('","state":"'), previous: enc('","previous_state":'),
  segment: enc(',"transition_segment":"'), active: enc('","is_active":'), first: enc(',"first_active_period":"'),
  last: enc('","last_active_period":"'), inact: enc('","inactivity_periods":'), consec: enc(',"consecutive_active_periods":'),
  streak: enc(',"last_streak_periods":'), ret: enc(',"return_interval_periods":'), lastState: enc(',"last_active_state":"'),
  total: enc('","active_periods_total":'), tenure: enc(',"tenure_periods":'), growth: enc(',"growth_state":"'), end: enc('"}\n'),
  null: enc("null"), true: enc("true"), false: enc("false"),
};
const W = (x: string) => enc(x);
const QW = (x: string) => enc(`"${x}"`);
const STATE = { new: W("new"), reactivated: W("reactivated"), retained: W("retained"), inactive: W("inactive") };
const QSTATE = { new: QW("new"), reactivated: QW("reactivated"), retained: QW("retained"), inactive: QW("inactive") };
const SEG = Object.fromEntries(
  ["new", "inactive_to_reactivated", "retained_to_retained", "new_to_retained", "reactivated_to_retained", "retained_to_inactive", "new_to_inactive", "reactivated_to_inactive", "inactive_to_inactive"].map((x) => [x, W(x)]),
) as Record<string, Buffer>;
const GROWTH = Object.fromEntries(["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"].map((x) => [x, W(x)])) as Record<string, Buffer>;

/** Status documents of day period P written as bytes (status-sql.ts's columns, in TypeScript). */
class DocumentWriter {
  buf = Buffer.allocUnsafe(1 << 20);
  pos = 0;
  private readonly dates = new Map<number, Buffer>();
  private readonly period: Buffer;
  constructor(private readonly P: number) {
    this.period = this.date(P);
  }
  take(): Buffer {
    const b = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return b;
  }
  private date(p: number): Buffer {
    let d = this.dates.get(p);
    if (d === undefined) this.dates.set(p, (d = enc(new Date(p * 86_400_000).toISOString().slice(0, 10))));
    return d;
  }
  private put(b: Buffer): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  private int(n: number): void {
    if (n < 0) {
      this.buf[this.pos++] = 45;
      n = -n;
    }
    if (n < 10) {
      this.buf[this.pos++] = 48 + n;
      return;
    }
    let digits = 0;
    for (let x = n; x > 0; x = Math.floor(x / 10)) digits++;
    for (let i = digits - 1; i >= 0; i--) {
      this.buf[this.pos + i] = 48 + (n % 10);
      n = Math.floor(n / 10);
    }
    this.pos += digits;
  }
  status(ids: Buffer, idStart: number, idEnd: number, s: number, e: number, pe: number | null, ab: number, f: number): void {
    const P = this.P;
    const stateAt = (x: number) => (x === s ? (pe === null ? "new" : "reactivated") : "retained");
    const active = P <= e;
    const lastP = Math.min(P, e);
    this.put(K.user);
    // Bench ids are plain ASCII without quotes or backslashes: copied as they are.
    ids.copy(this.buf, this.pos, idStart, idEnd);
    this.pos += idEnd - idStart;
    this.put(K.period); this.put(this.period);
    this.put(K.state); this.put(STATE[active ? stateAt(P) : "inactive"]);
    this.put(K.previous);
    this.put(P === f ? K.null : QSTATE[active ? (P === s ? "inactive" : stateAt(P - 1)) : P === e + 1 ? stateAt(e) : "inactive"]);
    this.put(K.segment);
    this.put(SEG[
      P === f ? "new"
      : active ? (P === s ? "inactive_to_reactivated" : P - 1 > s ? "retained_to_retained" : pe === null ? "new_to_retained" : "reactivated_to_retained")
      : P === e + 1 ? (e > s ? "retained_to_inactive" : pe === null ? "new_to_inactive" : "reactivated_to_inactive")
      : "inactive_to_inactive"]!);
    this.put(K.active); this.put(active ? K.true : K.false);
    this.put(K.first); this.put(this.date(f));
    this.put(K.last); this.put(this.date(lastP));
    this.put(K.inact); this.int(Math.max(P - e, 0));
    this.put(K.consec); this.int(active ? P - s + 1 : 0);
    this.put(K.streak); this.int(lastP - s + 1);
    this.put(K.ret);
    if (P > e || (P === s && pe === null)) this.put(K.null);
    else this.int(P > s ? 1 : s - pe!);
    this.put(K.lastState); this.put(STATE[stateAt(lastP)]);
    this.put(K.total); this.int(ab + lastP - s + 1);
    this.put(K.tenure); this.int(P - f);
    this.put(K.growth);
    this.put(GROWTH[active
      ? P === s && pe === null ? "new" : P > s || s - pe! <= 6 ? "current" : s - pe! <= 29 ? "reactivated" : "resurrected"
      : P - e <= 6 ? "at_risk_wau" : P - e <= 29 ? "at_risk_mau" : "dormant"]!);
    this.put(K.end);
  }
}

const SLOTS = 1024;
const url = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/aa_packed8";
const pool = new pg.Pool({ connectionString: url, max: 2 });
const mode = process.argv[2];
const factId = (await pool.query<{ id: number }>(`SELECT id FROM fact WHERE name = 'bench_main'`)).rows[0]!.id;
const P = (await pool.query<{ p: number }>(`SELECT max(period) AS p FROM layer_metric WHERE fact_id = $1 AND grain = 0`, [factId])).rows[0]!.p;
const hash = createHash("sha256");
let bytes = 0;
const t0 = performance.now();
const cpu0 = process.cpuUsage();

if (mode === "rows") {
  const q = statusQuery(0, {}, undefined, true);
  const stream = await copyQueryOut(pool, q.sql, [factId, P, ...q.extraParams], statusColumnsFor(0), "ndjson");
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
} else if (mode === "packed") {
  const c = await pool.connect();
  let t1 = performance.now();
  const packs = await copyOutBinary(c, `COPY (SELECT chunk, s, fp FROM packed8_latest WHERE fact_id = ${factId | 0} AND grain = 0 ORDER BY chunk) TO STDOUT (FORMAT binary)`);
  const readPacks = performance.now() - t1;
  t1 = performance.now();
  // Every user's external id in key order, a row per chunk of users (their keys, their ids joined by
  // newlines): a thousand COPY messages instead of a million, which cost this process more than the ids.
  const idRows = await copyOutBinary(
    c,
    `COPY (SELECT user_key >> 10 AS chunk, array_agg(user_key ORDER BY user_key), string_agg(external_id, E'\\n' ORDER BY user_key)
           FROM app_user GROUP BY 1 ORDER BY 1) TO STDOUT (FORMAT binary)`,
  );
  c.release();
  const readIds = performance.now() - t1;
  t1 = performance.now();
  const w8 = new DocumentWriter(P);
  let r = 0; // in idRows
  for (const row of packs) {
    const chunk = row[0]!.readInt32BE(0);
    while (r < idRows.length && idRows[r]![0]!.readInt32BE(0) < chunk) r++;
    const idRow = idRows[r]!;
    const keys = readInt4Array(idRow[1]!);
    const ids = idRow[2]!; // bench ids hold no newline
    const w = readInt8ArrayWords(row[1]!);
    const fp = readInt4Array(row[2]!);
    let k = 0, pos = 0;
    for (let slot = 0; slot < SLOTS; slot++) {
      const hi = w[2 * slot]!, lo = w[2 * slot + 1]!;
      if (hi === -1 && lo === -1) continue;
      const userKey = chunk * SLOTS + slot;
      // Advance to this user's id (keys ascending on both sides).
      let idEnd = ids.indexOf(10, pos);
      while (keys[k]! < userKey) {
        k++;
        pos = idEnd + 1;
        idEnd = ids.indexOf(10, pos);
      }
      if (idEnd < 0) idEnd = ids.length;
      const peRaw = lo >>> 16;
      w8.status(ids, pos, idEnd, hi >>> 16, hi & 0xffff, peRaw === 0xffff ? null : peRaw, lo & 0xffff, fp[slot]!);
      k++;
      pos = idEnd + 1;
      if (w8.pos > 900_000) {
        const b = w8.take();
        hash.update(b);
        bytes += b.length;
      }
    }
  }
  const b = w8.take();
  hash.update(b);
  bytes += b.length;
  console.log(`packs ${readPacks.toFixed(0)} ms, ids ${readIds.toFixed(0)} ms, documents ${(performance.now() - t1).toFixed(0)} ms`);
} else {
  console.error("usage: packed8-status.ts rows|packed");
  process.exitCode = 2;
}
if (mode === "rows" || mode === "packed") {
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `${mode}: ${bytes} bytes in ${(performance.now() - t0).toFixed(0)} ms (this process: ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms CPU), sha256 ${hash.digest("hex").slice(0, 16)}`,
  );
}
await pool.end();

