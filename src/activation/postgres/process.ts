import type pg from "pg";
import type { FactRef, ProcessOptions, ProcessResult } from "../engine.js";
import { GRAINS, GRAIN_CODE, periodOfDate, dayToDate, dateToDay } from "../periods.js";
import { mergeNewPeriods } from "./islands.js";
import { recomputeMetrics } from "./metrics.js";
import { withTransaction } from "./tx.js";

// Advisory lock namespace for "a run of this fact is in progress" (second key: the fact id).
const RUN_LOCK_NS = 4_271;

export class NothingToProcessError extends Error {}

/**
 * Processes a fact through `through`: from the earliest date that changed (late data) or the day
 * after the watermark, each grain's islands and metrics in one transaction, then the watermark.
 * Runs of one fact serialise on an advisory lock; a failed run leaves the earlier results and puts
 * its start date back into dirty_from so nothing is forgotten.
 */
export async function processFact(pool: pg.Pool, fact: FactRef, through: string, options: ProcessOptions = {}): Promise<ProcessResult> {
  const { progress, resumeFrom, onClaimed } = options;
  const lockClient = await pool.connect();
  const timings: Record<string, number> = {};
  let claimed: { from: string | null } | null = null;
  try {
    let t0 = performance.now();
    await lockClient.query("SELECT pg_advisory_lock($1, $2)", [RUN_LOCK_NS, fact.id]);
    timings.wait_ms = Math.round(performance.now() - t0);

    claimed = await withTransaction(pool, async (c) => {
      const r = await c.query<{ processed_through: string | null; dirty_from: string | null; earliest_date: string | null }>(
        `SELECT processed_through, dirty_from, earliest_date FROM fact WHERE id = $1 FOR UPDATE`,
        [fact.id],
      );
      const row = r.rows[0];
      if (!row) throw new Error(`fact ${fact.name} no longer exists`);
      if (row.processed_through && row.processed_through > through)
        throw new NothingToProcessError(`${fact.name} is already processed through ${row.processed_through}`);
      const candidates = [
        row.dirty_from,
        row.processed_through ? dayToDate(dateToDay(row.processed_through) + 1) : row.earliest_date,
        resumeFrom ?? null,
      ].filter((d): d is string => d !== null);
      const from = candidates.length ? candidates.reduce((a, b) => (a < b ? a : b)) : null;
      await c.query(`UPDATE fact SET running_through = $2, dirty_from = NULL WHERE id = $1`, [fact.id, through]);
      // Recorded in the same transaction that cleared dirty_from: a retry after a crash resumes from it.
      await onClaimed?.(from, c);
      return { from };
    });
    const from = claimed.from;
    await progress?.(0.02, "claimed");

    if (from !== null && from <= through) {
      for (const [i, grain] of GRAINS.entries()) {
        t0 = performance.now();
        await withTransaction(
          pool,
          async (c) => {
            const g = GRAIN_CODE[grain];
            const minNew = await mergeNewPeriods(c, fact.id, g, from, through);
            const stored = await c.query<{ p: number | null }>(
              `SELECT max(period) AS p FROM layer_metric WHERE fact_id = $1 AND grain = ${g}`,
              [fact.id],
            );
            const maxStored = stored.rows[0]!.p;
            const candidates = [minNew, maxStored === null ? null : maxStored + 1].filter((x): x is number => x !== null);
            if (candidates.length) await recomputeMetrics(c, fact.id, g, Math.min(...candidates), periodOfDate(grain, through));
          },
          1,
        );
        timings[`${grain}_ms`] = Math.round(performance.now() - t0);
        await progress?.(0.05 + (0.9 * (i + 1)) / GRAINS.length, `${grain} done`);
      }
    }
    await pool.query(
      `UPDATE fact SET processed_through = GREATEST(processed_through, $2::date), running_through = NULL WHERE id = $1`,
      [fact.id, through],
    );
    // After a large rebuild the planner's statistics are stale until autovacuum catches up, and plans
    // for status and audience queries go wrong meanwhile: refresh them now.
    if (from !== null && dateToDay(through) - dateToDay(from) >= 28) {
      t0 = performance.now();
      await pool.query("ANALYZE layer_island");
      timings.analyze_ms = Math.round(performance.now() - t0);
    }
    await progress?.(1, "done");
    return { from: from ?? through, through, timings };
  } catch (err) {
    if (claimed?.from) {
      await pool
        .query(`UPDATE fact SET dirty_from = LEAST(dirty_from, $2::date), running_through = NULL WHERE id = $1`, [fact.id, claimed.from])
        .catch(() => {});
    }
    throw err;
  } finally {
    await lockClient.query("SELECT pg_advisory_unlock($1, $2)", [RUN_LOCK_NS, fact.id]).catch(() => {});
    lockClient.release();
  }
}
