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

/**
 * Loads a stream of validated events in one transaction: COPY into a temporary staging table, then
 * the same two statements as an HTTP batch (new user keys, then the fold into activity_day with the
 * fact's bookkeeping) over the staging table. If `batches` throws (a rejected file), or anything
 * fails, the transaction rolls back and nothing is stored.
 */
export async function bulkLoadEvents(
  pool: pg.Pool,
  fact: FactRef,
  batches: AsyncIterable<EventColumns>,
  progress?: BulkLoadProgress,
): Promise<BulkLoadSummary> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const timings: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = Math.round(now - t);
    t = now;
  };
  try {
    await client.query("BEGIN");
    // Big sorts and hash aggregates of the fold stay in memory; only for this transaction.
    await client.query("SET LOCAL work_mem = '256MB'");
    await client.query(`CREATE TEMP TABLE ${STAGE} (uid text COLLATE "C" NOT NULL, ms int8 NOT NULL) ON COMMIT DROP`);
    progress?.("copy");
    const copy = client.query(copyFrom(`COPY ${STAGE} (uid, ms) FROM STDIN`));
    let copyError: Error | undefined;
    copy.on("error", (err: Error) => (copyError ??= err));
    let rows = 0;
    try {
      for await (const b of batches) {
        if (copyError) throw copyError;
        const n = b.length ?? b.userIds.length;
        if (n === 0) continue;
        let text = "";
        for (let i = 0; i < n; i++) text += `${copyText(b.userIds[i]!)}\t${b.timesMs[i]!}\n`;
        rows += n;
        if (!copy.write(text)) await waitDrain(copy);
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
    if (rows === 0) {
      await client.query("ROLLBACK");
      return { rows: 0, earliest_date: null, latest_date: null, timings };
    }
    // One pass over the events: their first and last instant per user id and activity date (the
    // fact's timezone decides the date, as in the fold). New users and the fold then read this,
    // several times smaller than the events when users do more than one thing a day.
    progress?.("group");
    await client.query(`CREATE TEMP TABLE ${DAY_STAGE} (uid text COLLATE "C" NOT NULL, f timestamptz NOT NULL, l timestamptz NOT NULL) ON COMMIT DROP`);
    await client.query(
      `INSERT INTO ${DAY_STAGE} (uid, f, l)
       SELECT e.uid, to_timestamp(min(e.ms)::float8 / 1000.0), to_timestamp(max(e.ms)::float8 / 1000.0)
       FROM ${STAGE} AS e
       GROUP BY e.uid, (to_timestamp(e.ms::float8 / 1000.0) AT TIME ZONE $1)::date`,
      [fact.timezone],
    );
    await client.query(`DROP TABLE ${STAGE}`);
    // A temporary table is never analysed by autovacuum: the planner needs its size for the fold.
    await client.query(`ANALYZE ${DAY_STAGE}`);
    lap("group");
    progress?.("users");
    await ensureUserKeysFrom(client, daySource);
    lap("users");
    progress?.("fold");
    const folded = await foldEventsIntoActivity(client, fact, daySource);
    lap("fold");
    progress?.("commit");
    await client.query("COMMIT");
    lap("commit");
    return { rows, ...folded, timings };
  } catch (err) {
    if (!broken) await client.query("ROLLBACK").catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}
