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
  (phase: "copy" | "users" | "fold" | "commit"): void;
}

export interface BulkLoadSummary {
  rows: number;
  earliest_date: string | null;
  latest_date: string | null;
  timings: Record<string, number>;
}

const STAGE = "bulk_event_stage";
const stageSource: EventSource = () => ({ sql: `SELECT s.uid, to_timestamp(s.ms / 1000.0) AS at FROM ${STAGE} AS s`, params: [] });
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
    await client.query(`CREATE TEMP TABLE ${STAGE} (uid text COLLATE "C" NOT NULL, ms float8 NOT NULL) ON COMMIT DROP`);
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
    // A temporary table is never analysed by autovacuum: the planner needs its size for the fold.
    await client.query(`ANALYZE ${STAGE}`);
    lap("analyze");
    progress?.("users");
    await ensureUserKeysFrom(client, stageSource);
    lap("users");
    progress?.("fold");
    const folded = await foldEventsIntoActivity(client, fact, stageSource);
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
