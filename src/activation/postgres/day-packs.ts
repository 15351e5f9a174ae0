import type pg from "pg";
import { CountDeltas } from "./island-counts.js";
import { CHUNK_BITS, CHUNK_SLOTS } from "./pack-sql.js";
import { copyBinary, copyOutBinary, int2, int4, int4ArrayBinary, int8ArrayBinary, readInt4Array } from "./binary-copy.js";

/**
 * A day after the watermark (a run of such days, a day at a time), in Node: each user active that day has
 * one new period per grain, after every island of theirs (no island ends after the watermark at day
 * grain; at week and month grain the period may be the latest island's end already). So each grain's
 * latest packs are read by binary COPY, the active users' slots changed (an island extended, or closed and
 * a new one started, or a user's first), the changed chunk rows written back, and the islands closed
 * appended as one row per chunk (migration 20261128100000_packed_islands). The counts of the islands
 * changed are kept in step here too. The same islands and counts as merging the day in SQL (islands.ts),
 * which the tests check.
 */

const SLOTS = CHUNK_SLOTS;
const NO_PREV = 0xffff;

/** The keys of the users active on a date, ascending. */
export async function readDayActives(client: pg.ClientBase, factId: number, date: string): Promise<Int32Array> {
  // ARRAY(… ORDER BY) takes the key's order from the index; array_agg(… ORDER BY) would sort them again.
  const res = await client.query(
    `SELECT array_send(ARRAY(SELECT user_key FROM activity_day WHERE fact_id = $1 AND activity_date = $2 ORDER BY user_key)) AS a`,
    [factId, date],
  );
  return readInt4Array(res.rows[0].a);
}

/**
 * One chunk's latest islands, changed in place in the binary form COPY reads them in and writes them
 * back in (array_send: a 20-byte header, then each element's length and value): a day changes a few
 * hundred of a chunk's 1,024 slots, and decoding and encoding whole arrays cost more than the COPYs.
 */
class LatestChunk {
  changed = false;
  /** A first period changed (a user new to the fact): layer_latest_first's row is written too. */
  firstChanged = false;
  private constructor(readonly chunk: number, readonly s: Buffer, readonly fp: Buffer) {}

  /** A stored row's arrays, which must be the 1,024 slots every writer writes. */
  static read(chunk: number, s: Buffer, fp: Buffer): LatestChunk {
    const shaped = (b: Buffer, type: number, width: number) =>
      b.length === 20 + (4 + width) * SLOTS && b.readInt32BE(0) === 1 && b.readInt32BE(8) === type && b.readInt32BE(12) === SLOTS && b.readInt32BE(16) === 1;
    if (!shaped(s, 20, 8) || !shaped(fp, 23, 4)) throw new Error(`layer_latest_pack chunk ${chunk}: not 1,024 slots without nulls`);
    return new LatestChunk(chunk, s, fp);
  }

  /** A chunk no row holds yet: no island in any slot. */
  static empty(chunk: number): LatestChunk {
    const c = new LatestChunk(chunk, int8ArrayBinary(new Int32Array(2 * SLOTS).fill(-1)), int4ArrayBinary(new Int32Array(SLOTS).fill(-1)));
    c.firstChanged = true;
    return c;
  }

  /** The island's high word (start << 16 | end; -1: no island) and low word (prev_end << 16 | active_before). */
  high(slot: number): number {
    return this.s.readInt32BE(24 + 12 * slot);
  }
  low(slot: number): number {
    return this.s.readInt32BE(28 + 12 * slot);
  }
  first(slot: number): number {
    return this.fp.readInt32BE(24 + 8 * slot);
  }
  set(slot: number, start: number, end: number, prevEnd: number, activeBefore: number): void {
    this.s.writeInt32BE(((start << 16) | end) | 0, 24 + 12 * slot);
    this.s.writeInt32BE(((prevEnd << 16) | activeBefore) | 0, 28 + 12 * slot);
    this.changed = true;
  }
  setFirst(slot: number, p: number): void {
    if (this.first(slot) === p) return;
    this.fp.writeInt32BE(p, 24 + 8 * slot);
    this.firstChanged = true;
  }
}

/**
 * Reads the grain's latest packs of the chunks `chunks` (ascending; a chunk without a row starts with no
 * island in any slot), lets `change` change each, and writes back those it marks changed (their first
 * periods only where one changed).
 */
async function rewriteLatestPacks(
  client: pg.ClientBase, fid: number, gc: number, chunks: number[], change: (c: LatestChunk) => void,
): Promise<LatestChunk[]> {
  if (chunks.length === 0) return [];
  const rows = await copyOutBinary(
    client,
    `COPY (SELECT p.chunk, p.s, f.fp FROM layer_latest_pack p
           JOIN layer_latest_first f ON f.fact_id = p.fact_id AND f.grain = p.grain AND f.chunk = p.chunk
           WHERE p.fact_id = ${fid} AND p.grain = ${gc} AND p.chunk BETWEEN ${chunks[0]! | 0} AND ${chunks[chunks.length - 1]! | 0}
           ORDER BY p.chunk) TO STDOUT (FORMAT binary)`,
  );
  const stored = new Map<number, Buffer[]>();
  for (const r of rows) stored.set(r[0]!.readInt32BE(0), r);
  const changed: LatestChunk[] = [];
  for (const chunk of chunks) {
    const row = stored.get(chunk);
    const c = row ? LatestChunk.read(chunk, row[1]!, row[2]!) : LatestChunk.empty(chunk);
    change(c);
    if (c.changed) changed.push(c);
  }
  if (changed.length === 0) return changed;
  await client.query(`DELETE FROM layer_latest_pack WHERE fact_id = $1 AND grain = ${gc} AND chunk = ANY($2::int[])`, [fid, changed.map((c) => c.chunk)]);
  await copyBinary(client, `COPY layer_latest_pack (fact_id, grain, chunk, s) FROM STDIN (FORMAT binary)`, changed.map((c) => [int4(fid), int2(gc), int4(c.chunk), c.s]));
  const firsts = changed.filter((c) => c.firstChanged);
  if (firsts.length) {
    await client.query(`DELETE FROM layer_latest_first WHERE fact_id = $1 AND grain = ${gc} AND chunk = ANY($2::int[])`, [fid, firsts.map((c) => c.chunk)]);
    await copyBinary(client, `COPY layer_latest_first (fact_id, grain, chunk, fp) FROM STDIN (FORMAT binary)`, firsts.map((c) => [int4(fid), int2(gc), int4(c.chunk), c.fp]));
  }
  return changed;
}

/** The chunks of ascending user keys, ascending and distinct. */
function chunksOf(keys: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < keys.length; i++) {
    const c = keys[i]! >> CHUNK_BITS;
    if (out.length === 0 || out[out.length - 1] !== c) out.push(c);
  }
  return out;
}

/**
 * Adds period P to the grain's islands of every user in `actives` (ascending keys). Returns P, or null
 * when every one of them had the period already.
 */
export async function appendPeriodToPacks(client: pg.ClientBase, factId: number, g: number, P: number, actives: Int32Array): Promise<number | null> {
  const fid = factId | 0, gc = g | 0;
  const counts = new CountDeltas();
  const closed: Buffer[][] = [];
  let ai = 0;
  const changed = await rewriteLatestPacks(client, fid, gc, chunksOf(actives), (c) => {
    const base = c.chunk * SLOTS;
    const closedKeys: number[] = [], closedWords: number[] = [], closedFp: number[] = [];
    for (; ai < actives.length && actives[ai]! >> CHUNK_BITS === c.chunk; ai++) {
      const slot = actives[ai]! - base;
      const h = c.high(slot), l = c.low(slot);
      if (h === -1) {
        // The user's first island.
        c.set(slot, P, P, NO_PREV, 0);
        c.setFirst(slot, P);
        counts.add(P, P, null, null, 1);
        continue;
      }
      const st = h >>> 16, en = h & 0xffff, pv = l >>> 16, ab = l & 0xffff;
      if (en >= P) continue; // the period is the island's already (week or month grain)
      const prev = pv === NO_PREV ? null : pv;
      counts.add(st, en, prev, null, -1);
      if (en === P - 1) {
        c.set(slot, st, P, pv, ab);
        counts.add(st, P, prev, null, 1);
      } else {
        // A return: the island closes (its next starts at P) and a new one starts.
        closedKeys.push(base + slot);
        closedWords.push(h, l);
        closedFp.push(c.first(slot));
        counts.add(st, en, prev, P, 1);
        c.set(slot, P, P, en, ab + en - st + 1);
        counts.add(P, P, en, null, 1);
      }
    }
    if (closedKeys.length)
      closed.push([
        int4(fid), int2(gc), int4(P), int4(closedKeys[0]!), int4(c.chunk),
        int4ArrayBinary(Int32Array.from(closedKeys)), int8ArrayBinary(Int32Array.from(closedWords)), int4ArrayBinary(Int32Array.from(closedFp)),
      ]);
  });
  if (changed.length === 0) return null;
  if (closed.length)
    await copyBinary(client, `COPY layer_closed_pack (fact_id, grain, next_start, first_key, chunk, uk, s, fp) FROM STDIN (FORMAT binary)`, closed);
  await counts.apply(client, fid, gc);
  return P;
}

/** A user's latest island, as written into its slot by setLatestIslands. */
export interface LatestIsland {
  user_key: number;
  start_p: number;
  end_p: number;
  prev_end: number | null;
  active_before: number;
  first_p: number;
}

/** Writes each user's latest island into its slot (`islands` in ascending key order). */
export async function setLatestIslands(client: pg.ClientBase, factId: number, g: number, islands: LatestIsland[]): Promise<void> {
  let i = 0;
  await rewriteLatestPacks(client, factId | 0, g | 0, chunksOf(islands.map((x) => x.user_key)), (c) => {
    for (; i < islands.length && islands[i]!.user_key >> CHUNK_BITS === c.chunk; i++) {
      const x = islands[i]!;
      const slot = x.user_key - c.chunk * SLOTS;
      c.set(slot, x.start_p, x.end_p, x.prev_end ?? NO_PREV, x.active_before);
      c.setFirst(slot, x.first_p);
    }
  });
}
