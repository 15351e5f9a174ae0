import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { FactRef } from "../engine.js";
import { ensureUserKeysFrom, foldEventsIntoActivity, type EventSource } from "./ingest.js";

/** Validated events in columns: user ids and epoch milliseconds, index by index. */
export interface EventColumns {
  userIds: readonly string[];
  timesMs: readonly number[];
  /** How many leading entries to use (defaults to the arrays' length), so buffers can be reused. */
  length?: number;
}

export interface BulkLoadProgress {
  (phase: "copy" | "group" | "users" | "fold" | "commit"): void;
}

export interface BulkLoadSummary {
  rows: number;
  /** How many segments the events were folded in. */
  segments: number;
  earliest_date: string | null;
  latest_date: string | null;
  timings: Record<string, number>;
}

const STAGE = "bulk_event_stage";
const DAY_STAGE = "bulk_event_day";
const daySource: EventSource = () => ({ sql: `SELECT d.uid, d.f, d.l FROM ${DAY_STAGE} AS d`, params: [], grouped: true });
const NEEDS_ESCAPE = /[\\\t\n\r]/;

/** COPY text format: backslash, tab and line breaks are escaped (validated ids never hold the latter). */
function copyText(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r"));
}

function waitDrain(stream: NodeJS.WritableStream & { once: Function; off: Function }): Promise<void> {
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

/** Encodes a batch as COPY text rows `uid<TAB>ms`. */
function encodeBatch(b: EventColumns): { buf: Buffer; rows: number } {
  const n = b.length ?? b.userIds.length;
  let text = "";
  for (let i = 0; i < n; i++) text += `${copyText(b.userIds[i]!)}\t${b.timesMs[i]!}\n`;
  return { buf: Buffer.from(text, "utf8"), rows: n };
}

/**
 * Encoded batches between the file reader (producer) and the database connection (consumer), at
 * most `capBytes` of them: memory stays bounded whatever the file's size, and the reader parses the
 * next segment while PostgreSQL folds the current one.
 */
class BatchQueue {
  private items: Array<{ buf: Buffer; rows: number }> = [];
  private bytes = 0;
  private ended = false;
  private error: Error | null = null;
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;

  constructor(private readonly capBytes: number) {}

  async push(item: { buf: Buffer; rows: number }) {
    while (this.bytes >= this.capBytes && !this.error) await new Promise<void>((r) => (this.wakeProducer = r));
    if (this.error) throw this.error;
    this.items.push(item);
    this.bytes += item.buf.length;
    this.wakeConsumer?.();
  }

  end() {
    this.ended = true;
    this.wakeConsumer?.();
  }

  /** Stops both sides: the producer's next push and the consumer's next shift throw `err`. */
  fail(err: Error) {
    this.error ??= err;
    this.wakeConsumer?.();
    this.wakeProducer?.();
  }

  /** The next batch, or null at the end of the input. */
  async shift(): Promise<{ buf: Buffer; rows: number } | null> {
    for (;;) {
      if (this.error) throw this.error;
      const item = this.items.shift();
      if (item) {
        this.bytes -= item.buf.length;
        const w = this.wakeProducer;
        this.wakeProducer = null;
        w?.();
        return item;
      }
      if (this.ended) return null;
      await new Promise<void>((r) => (this.wakeConsumer = r));
      this.wakeConsumer = null;
    }
  }
}

export interface BulkLoadOptions {
  progress?: BulkLoadProgress;
  /** Events per segment (COPY, group, new users, fold); the next segment is parsed meanwhile. */
  segmentRows?: number;
}

export const DEFAULT_SEGMENT_ROWS = 1_000_000;

/**
 * Loads a stream of validated events in one transaction, segment by segment (a million events by
 * default): COPY into a temporary staging table; one pass that groups the segment's events per user
 * id and local date of the fact; then the same two statements as an HTTP batch over that (new user
 * keys, then the fold into activity_day with the fact's bookkeeping). While PostgreSQL works on a
 * segment, the caller's iterable is read ahead into the next (bounded memory). A user's day that
 * straddles two segments is folded twice, which the fold's upsert makes harmless. If `batches`
 * throws (a rejected file), or anything fails, the transaction rolls back and nothing is stored.
 */
export async function bulkLoadEvents(
  pool: pg.Pool,
  fact: FactRef,
  batches: AsyncIterable<EventColumns>,
  options: BulkLoadOptions = {},
): Promise<BulkLoadSummary> {
  const segmentRows = Math.max(1, options.segmentRows ?? DEFAULT_SEGMENT_ROWS);
  const progress = options.progress;
  const timings: Record<string, number> = { copy: 0, group: 0, users: 0, fold: 0, commit: 0 };
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = (timings[name] ?? 0) + Math.round(now - t);
    t = now;
  };
  // Room for about two segments of encoded rows (~25 bytes each): the one being copied and the next.
  const queue = new BatchQueue(Math.max(16 << 20, segmentRows * 64));
  const producer = (async () => {
    try {
      for await (const b of batches) {
        if ((b.length ?? b.userIds.length) > 0) await queue.push(encodeBatch(b));
      }
      queue.end();
    } catch (err) {
      queue.fail(err as Error);
    }
  })();

  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    // Big sorts and hash aggregates of a segment stay in memory; only for this transaction.
    await client.query("SET LOCAL work_mem = '256MB'");
    await client.query(`CREATE TEMP TABLE ${STAGE} (uid text COLLATE "C" NOT NULL, ms int8 NOT NULL) ON COMMIT DROP`);
    await client.query(`CREATE TEMP TABLE ${DAY_STAGE} (uid text COLLATE "C" NOT NULL, f timestamptz NOT NULL, l timestamptz NOT NULL) ON COMMIT DROP`);
    let rows = 0;
    let earliest: string | null = null;
    let latest: string | null = null;
    let segments = 0;
    for (let last = false; !last; ) {
      // The first segments are smaller so that PostgreSQL starts folding early instead of waiting
      // for a whole segment to be parsed; from then on the parser stays a segment ahead.
      const target = Math.min(segmentRows, Math.max(1, Math.floor(segmentRows / 8)) * 2 ** segments);
      progress?.("copy");
      const copy = client.query(copyFrom(`COPY ${STAGE} (uid, ms) FROM STDIN`));
      let copyError: Error | undefined;
      copy.on("error", (err: Error) => (copyError ??= err));
      let segment = 0;
      try {
        while (segment < target) {
          const item = await queue.shift();
          if (item === null) {
            last = true;
            break;
          }
          if (copyError) throw copyError;
          segment += item.rows;
          if (!copy.write(item.buf)) await waitDrain(copy);
        }
      } catch (err) {
        // Abandon the COPY mid-way: the connection is discarded, which also ends the transaction.
        broken = err as Error;
        copy.destroy(err as Error);
        throw err;
      }
      await new Promise<void>((resolve, reject) => {
        if (copyError) return reject(copyError);
        copy.once("finish", resolve);
        copy.once("error", reject);
        copy.end();
      });
      lap("copy");
      if (segment === 0) break;
      rows += segment;
      segments++;
      // One pass over the segment's events: their first and last instant per user id and activity
      // date (the fact's timezone decides the date, as in the fold). New users and the fold then read
      // this, several times smaller than the events when users do more than one thing a day.
      progress?.("group");
      await client.query(
        `INSERT INTO ${DAY_STAGE} (uid, f, l)
         SELECT e.uid, to_timestamp(min(e.ms)::float8 / 1000.0), to_timestamp(max(e.ms)::float8 / 1000.0)
         FROM ${STAGE} AS e
         GROUP BY e.uid, (to_timestamp(e.ms::float8 / 1000.0) AT TIME ZONE $1)::date`,
        [fact.timezone],
      );
      await client.query(`TRUNCATE ${STAGE}`);
      // A temporary table is never analysed by autovacuum: the planner needs its size for the fold.
      await client.query(`ANALYZE ${DAY_STAGE}`);
      lap("group");
      progress?.("users");
      await ensureUserKeysFrom(client, daySource);
      lap("users");
      progress?.("fold");
      const folded = await foldEventsIntoActivity(client, fact, daySource);
      if (folded.earliest_date && (earliest === null || folded.earliest_date < earliest)) earliest = folded.earliest_date;
      if (folded.latest_date && (latest === null || folded.latest_date > latest)) latest = folded.latest_date;
      await client.query(`TRUNCATE ${DAY_STAGE}`);
      lap("fold");
    }
    if (rows === 0) {
      await client.query("ROLLBACK");
      return { rows: 0, earliest_date: null, latest_date: null, timings, segments };
    }
    progress?.("commit");
    await client.query("COMMIT");
    lap("commit");
    return { rows, earliest_date: earliest, latest_date: latest, timings, segments };
  } catch (err) {
    queue.fail(err as Error);
    if (!broken) await client.query("ROLLBACK").catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
    await producer;
  }
}
