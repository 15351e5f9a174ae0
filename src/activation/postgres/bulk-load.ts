import { randomBytes } from "node:crypto";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { FactRef } from "../engine.js";
import { holdFact } from "../../facts/lifecycle-lock.js";
import { ensureUserKeysFrom, foldEventsIntoActivity, mergeFolds, recordFold, type EventSource, type FoldResult, type SqlRelation } from "./ingest.js";

/** Validated events in columns: user ids and epoch milliseconds, index by index. */
export interface EventColumns {
  userIds: readonly string[];
  timesMs: readonly number[];
  /** How many leading entries to use (defaults to the arrays' length). */
  length?: number;
}

export type BulkLoadPhase = "users" | "fold" | "commit";

export interface BulkLoadOptions {
  /** Called as the loading transaction moves from phase to phase (per segment). */
  progress?: (phase: BulkLoadPhase) => void;
  /** Events per segment (COPY and group on one connection, new users and fold on the other). */
  segmentRows?: number;
}

export interface BulkLoadSummary {
  rows: number;
  /** How many segments the events were folded in. */
  segments: number;
  earliest_date: string | null;
  latest_date: string | null;
  /**
   * Milliseconds per phase, summed over segments. copy and group run on the staging connection,
   * users and fold in the loading transaction, at the same time; "wait" is the loading transaction
   * waiting for the next staged segment.
   */
  timings: Record<string, number>;
}

export const DEFAULT_SEGMENT_ROWS = 1_000_000;
const SCRATCH = /^bulk_day_(\d+)_[0-9a-f]+_\d+$/;

/** Drops scratch tables of loads whose backend is gone (a process that died mid-load). */
async function dropOrphanedScratch(client: pg.ClientBase): Promise<void> {
  const r = await client.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND c.relpersistence = 'u' AND n.nspname = current_schema()
       AND c.relname ~ '^bulk_day_[0-9]+_'
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = split_part(c.relname, '_', 3)::int)`,
  );
  const names = r.rows.map((x) => x.relname).filter((n) => SCRATCH.test(n));
  if (names.length) await client.query(`DROP TABLE IF EXISTS ${names.map((n) => `"${n}"`).join(", ")}`);
}

/**
 * Planner settings of both transactions (SET LOCAL: they end with them). A segment's sorts and hash
 * aggregates stay in memory; compiling these short expressions costs more than it saves; and the
 * user table is looked up by index for a segment's ids rather than hashed whole (it is cached, and
 * far larger than a segment when there are millions of users).
 */
const TUNING = "SET LOCAL work_mem = '256MB'; SET LOCAL jit = off; SET LOCAL random_page_cost = 1.1";

/**
 * The loading transaction holds the rows of every segment it has folded until it commits, so an HTTP
 * batch of the same user-days can close a deadlock with it. PostgreSQL aborts the transaction whose
 * deadlock check finds the cycle, and a backend checks once it has waited deadlock_timeout: with a
 * longer one here, the batch (which retries on its own) is the one aborted, not a load of millions of
 * events. Setting it needs the right to (superuser, or GRANT SET ON PARAMETER); without it the load
 * keeps the server's setting.
 */
const LOAD_DEADLOCK_TIMEOUT = "20s";
const PATIENT_DEADLOCK_CHECK = `SELECT set_config('deadlock_timeout', '${LOAD_DEADLOCK_TIMEOUT}', true) WHERE has_parameter_privilege('deadlock_timeout', 'SET')`;

/** Staged segments the staging connection may run ahead of the fold (bounds the disk used). */
const STAGED_AHEAD = 2;
/** COPY text the parser may run ahead of the staging connection (bounds the memory used). */
const ENCODED_AHEAD_BYTES = 8 << 20;

// COPY's binary format: a signature, flags and header extension length; then per row a field count
// and each field as a length and its bytes; a -1 field count ends it. No escaping, no number text.
const BINARY_HEADER = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]);
const BINARY_TRAILER = Buffer.from([0xff, 0xff]);

/** Encodes a batch as COPY binary rows (uid text, ms int8). */
function encodeBatch(b: EventColumns): { buf: Buffer; rows: number } {
  const n = b.length ?? b.userIds.length;
  let size = 0;
  for (let i = 0; i < n; i++) size += 18 + 3 * b.userIds[i]!.length;
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const uid = b.userIds[i]!;
    buf.writeInt16BE(2, o);
    const start = o + 6;
    let end = start;
    // Most ids are ASCII: copied here byte by byte; any other character writes the id as UTF-8.
    for (let k = 0; k < uid.length; k++) {
      const c = uid.charCodeAt(k);
      if (c >= 128) {
        end = start + buf.write(uid, start, "utf8");
        break;
      }
      buf[end++] = c;
    }
    buf.writeInt32BE(end - start, o + 2);
    o = end;
    const ms = b.timesMs[i]!;
    const hi = Math.floor(ms / 4294967296);
    buf.writeInt32BE(8, o);
    buf.writeInt32BE(hi, o + 4);
    buf.writeUInt32BE(ms - hi * 4294967296, o + 8);
    o += 12;
  }
  return { buf: buf.subarray(0, o), rows: n };
}

/**
 * A bounded hand-over between two tasks: `push` waits while the items held weigh `cap` or more,
 * `shift` waits for an item (null once the producer ended). `fail` stops both sides with an error.
 */
class Channel<T> {
  private items: T[] = [];
  private held = 0;
  private ended = false;
  private error: Error | null = null;
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;

  constructor(
    private readonly cap: number,
    private readonly weight: (item: T) => number,
  ) {}

  get failed(): Error | null {
    return this.error;
  }

  async push(item: T) {
    while (this.held >= this.cap && !this.error) await new Promise<void>((r) => (this.wakeProducer = r));
    if (this.error) throw this.error;
    this.items.push(item);
    this.held += this.weight(item);
    this.wake("consumer");
  }

  end() {
    this.ended = true;
    this.wake("consumer");
  }

  fail(err: Error) {
    this.error ??= err;
    this.wake("consumer");
    this.wake("producer");
  }

  async shift(): Promise<T | null> {
    for (;;) {
      if (this.error) throw this.error;
      const item = this.items.shift();
      if (item !== undefined) {
        this.held -= this.weight(item);
        this.wake("producer");
        return item;
      }
      if (this.ended) return null;
      await new Promise<void>((r) => (this.wakeConsumer = r));
    }
  }

  private wake(side: "consumer" | "producer") {
    const w = side === "consumer" ? this.wakeConsumer : this.wakeProducer;
    if (side === "consumer") this.wakeConsumer = null;
    else this.wakeProducer = null;
    w?.();
  }
}

function waitDrain(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.off("error", onError);
      resolve();
    };
    const onError = (err: Error) => {
      stream.off("drain", onDrain);
      reject(err);
    };
    stream.once("drain", onDrain);
    stream.once("error", onError);
  });
}

/**
 * Loads a stream of validated events into a fact, atomically, in segments (a million events by
 * default; the first ones smaller, so that work starts early) that three workers pass along:
 *
 * 1. the caller's iterable (the file parser) runs ahead into a bounded queue of COPY rows;
 * 2. a staging connection COPYs each segment (binary) into a temporary table and groups it, in one
 *    pass, into the first and last instant per user id and activity date (the fact's timezone decides
 *    the date, as in the fold), with the user key of ids already known, in an UNLOGGED table of its
 *    own: several times fewer rows than events;
 * 3. the loading transaction, on another connection, takes the staged segments in order and runs the
 *    same statements as an HTTP batch over each: new user keys (for the ids the staging did not
 *    know), then the fold into activity_day; the fact's bookkeeping is moved once, at the end.
 *
 * Everything the fact keeps (users, activity, the fact row) is written by the loading transaction
 * alone, so a failure anywhere, or `batches` throwing (a rejected file), rolls it all back: nothing is
 * stored. The staged tables are scratch space, dropped at the end either way. A user's day that
 * straddles two segments is folded twice, which the fold's upsert makes harmless.
 */
export async function bulkLoadEvents(
  pool: pg.Pool,
  fact: FactRef,
  batches: AsyncIterable<EventColumns>,
  options: BulkLoadOptions = {},
): Promise<BulkLoadSummary> {
  const segmentRows = Math.max(1, options.segmentRows ?? DEFAULT_SEGMENT_ROWS);
  const progress = options.progress;
  const poolMax = (pool as pg.Pool & { options?: { max?: number } }).options?.max;
  if (poolMax !== undefined && poolMax < 2) throw new Error(`the bulk loader needs two database connections at once; the pool allows ${poolMax} (PG_POOL_MAX)`);
  // The loading transaction's connection comes first: its backend pid names the scratch tables, so
  // tables left behind by a crashed process (whose backend is gone) can be told apart and dropped.
  const client = await pool.connect();
  let broken: Error | undefined;
  let loadId: string;
  try {
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    loadId = `${pid}_${randomBytes(4).toString("hex")}`;
    await dropOrphanedScratch(client);
  } catch (err) {
    client.release(err as Error);
    throw err;
  }
  const staged: string[] = [];
  const timings: Record<string, number> = { copy: 0, group: 0, wait: 0, users: 0, fold: 0, commit: 0 };
  const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await work();
    } finally {
      timings[name] = (timings[name] ?? 0) + Math.round(performance.now() - t);
    }
  };

  // A few MB of COPY text keep the staging connection busy; more would only hold memory.
  const encoded = new Channel<{ buf: Buffer; rows: number }>(ENCODED_AHEAD_BYTES, (x) => x.buf.length);
  const ready = new Channel<{ table: string; rows: number }>(STAGED_AHEAD, () => 1);
  const failAll = (err: Error) => {
    encoded.fail(err);
    ready.fail(err);
  };

  const producer = (async () => {
    try {
      for await (const b of batches) {
        if (encoded.failed) return;
        if ((b.length ?? b.userIds.length) > 0) await encoded.push(encodeBatch(b));
      }
      encoded.end();
    } catch (err) {
      failAll(err as Error);
    }
  })();

  const stager = (async () => {
    let stage: pg.PoolClient | undefined;
    let broken: Error | undefined;
    try {
      stage = await pool.connect();
      for (let k = 0, last = false; !last; k++) {
        // The first segments are smaller so the fold starts early instead of waiting for a whole
        // segment to be parsed and staged; from then on the stages run a segment apart.
        const target = Math.min(segmentRows, Math.max(1, Math.floor(segmentRows / 8)) * 2 ** k);
        const raw = `bulk_raw_${loadId}`;
        const table = `bulk_day_${loadId}_${k}`;
        await stage.query("BEGIN");
        await stage.query(TUNING);
        await stage.query(`CREATE TEMP TABLE ${raw} (uid text COLLATE "C" NOT NULL, ms int8 NOT NULL) ON COMMIT DROP`);
        const copy = stage.query(copyFrom(`COPY ${raw} (uid, ms) FROM STDIN WITH (FORMAT binary)`));
        let copyError: Error | undefined;
        copy.on("error", (err: Error) => (copyError ??= err));
        copy.write(BINARY_HEADER);
        let rows = 0;
        const t = performance.now();
        try {
          while (rows < target) {
            const item = await encoded.shift();
            if (item === null) {
              last = true;
              break;
            }
            if (copyError) throw copyError;
            rows += item.rows;
            if (!copy.write(item.buf)) await waitDrain(copy);
          }
        } catch (err) {
          // Abandon the COPY mid-way: the connection is discarded, which also ends its transaction.
          broken = err as Error;
          copy.destroy(err as Error);
          throw err;
        }
        await new Promise<void>((resolve, reject) => {
          if (copyError) return reject(copyError);
          copy.once("finish", resolve);
          copy.once("error", reject);
          copy.end(BINARY_TRAILER);
        });
        timings.copy! += Math.round(performance.now() - t);
        if (rows === 0) {
          await stage.query("ROLLBACK");
          break;
        }
        await timed("group", async () => {
          staged.push(table);
          await stage!.query(
            `CREATE UNLOGGED TABLE ${table} (
               uid text COLLATE "C" NOT NULL, user_key int, d date NOT NULL, f timestamptz NOT NULL, l timestamptz NOT NULL)`,
          );
          // One pass over the segment's events: their first and last instant per user id and local
          // date (the fact's timezone decides it, as in the fold), with the user's key when the id
          // is known (as committed now; the loading transaction adds the others).
          await stage!.query(
            `INSERT INTO ${table} (uid, user_key, d, f, l)
             SELECT g.uid, u.user_key, g.d, g.f, g.l
             FROM (SELECT e.uid, (to_timestamp(e.ms::float8 / 1000.0) AT TIME ZONE $1)::date AS d,
                          to_timestamp(min(e.ms)::float8 / 1000.0) AS f, to_timestamp(max(e.ms)::float8 / 1000.0) AS l
                   FROM ${raw} AS e GROUP BY 1, 2) AS g
             LEFT JOIN app_user AS u ON u.external_id = g.uid`,
            [fact.timezone],
          );
          // Never analysed by autovacuum in time: the fold's planner needs its statistics.
          await stage!.query(`ANALYZE ${table}`);
          await stage!.query("COMMIT");
        });
        await ready.push({ table, rows });
      }
      ready.end();
    } catch (err) {
      failAll(err as Error);
      if (stage && !broken) await stage.query("ROLLBACK").catch((e: Error) => (broken = e));
    } finally {
      stage?.release(broken);
    }
  })();

  try {
    await client.query("BEGIN");
    await client.query(TUNING);
    await client.query(PATIENT_DEADLOCK_CHECK);
    // Held until the commit: a deletion of the fact waits for the whole load (and then deletes it),
    // or committed first and the load stores nothing (404).
    await holdFact(client, fact);
    let rows = 0;
    let segments = 0;
    let total: FoldResult = { earliest_date: null, latest_date: null, min_new_date: null, untracked_from: null };
    for (;;) {
      const seg = await timed("wait", () => ready.shift());
      if (seg === null) break;
      segments++;
      rows += seg.rows;
      // Ids the staging connection did not know get keys here; a second lookup finds them (and
      // any that another transaction added meanwhile).
      const unknown: SqlRelation = () => ({ sql: `SELECT s.uid FROM ${seg.table} AS s WHERE s.user_key IS NULL`, params: [] });
      const source: EventSource = {
        shape: "days",
        relation: () => ({
          sql: `SELECT s.user_key, s.d, s.f, s.l FROM ${seg.table} AS s WHERE s.user_key IS NOT NULL
                UNION ALL
                SELECT u.user_key, s.d, s.f, s.l FROM ${seg.table} AS s JOIN app_user AS u ON u.external_id = s.uid
                WHERE s.user_key IS NULL`,
          params: [],
        }),
      };
      progress?.("users");
      await timed("users", () => ensureUserKeysFrom(client, unknown));
      progress?.("fold");
      total = mergeFolds(total, await timed("fold", () => foldEventsIntoActivity(client, fact, source)));
    }
    if (rows === 0) {
      await client.query("ROLLBACK");
      return { rows: 0, segments, earliest_date: null, latest_date: null, timings };
    }
    progress?.("commit");
    await timed("commit", async () => {
      // The fact's row once, at the end: locked from here to the commit only, so HTTP batches of the
      // same fact (which update it too) are not held up for the whole load.
      await recordFold(client, fact.id, total);
      await client.query("COMMIT");
    });
    return { rows, segments, earliest_date: total.earliest_date, latest_date: total.latest_date, timings };
  } catch (err) {
    failAll(err as Error);
    await client.query("ROLLBACK").catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
    await producer;
    await stager;
    // Scratch space only; the loading transaction has ended, so nothing holds locks on them.
    if (staged.length) await pool.query(`DROP TABLE IF EXISTS ${staged.join(", ")}`).catch(() => {});
  }
}
