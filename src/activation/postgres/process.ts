import type pg from "pg";
import type { FactRef, ProcessOptions, ProcessResult } from "../engine.js";
import { GRAINS, GRAIN_CODE, periodOfDate, periodOfDay, dayToDate, dateToDay } from "../periods.js";
import { mergeNewPeriods, type GrainsInOneRun } from "./islands.js";
import { appendPeriodToPacks, readDayActives } from "./day-packs.js";
import { recomputeMetrics } from "./metrics.js";
import { withTransaction } from "./tx.js";

// Runs of up to this many days after the watermark add them a day at a time in Node (a 13-day run: 53.7 s
// merged in SQL on the work table); longer ones merge in SQL, which reads the state once.
const MAX_NEW_DAYS_IN_NODE = 31;
// The last day a packed island can hold (16 bits a period, 65,535 meaning none).
const MAX_PACKED_DAY = 65_534;
// Advisory lock namespace for "a run of this fact is in progress" (second key: the fact id).
const RUN_LOCK_NS = 4_271;
// Grains processed at once, each on its own pooled connection (besides the run's lock connection).
const GRAIN_CONCURRENCY = 2;
// Sorts and hashes of a grain's transaction (a first build sorts every activity row of the fact).
const GRAIN_WORK_MEM = "256MB";

/**
 * Processes a fact through `through`: from the earliest date that changed (late data) or the day
 * after the watermark, each grain's islands and metrics in one transaction, then the watermark.
 * Runs of one fact serialise on an advisory lock; a failed run leaves the earlier results and puts
 * its start date back into dirty_from so nothing is forgotten. A run overtaken by a later one (its
 * date is behind the watermark by the time it holds the fact) processes through the watermark
 * instead: answers stay as of the watermark, so it recomputes whatever late data made dirty up to
 * there, often nothing. The result says what was processed: `from` null when nothing was.
 */
export async function processFact(pool: pg.Pool, fact: FactRef, through: string, options: ProcessOptions = {}): Promise<ProcessResult> {
  const { progress, resumeFrom, onClaimed } = options;
  const lockClient = await pool.connect();
  const timings: Record<string, number> = {};
  let claimed: { from: string | null; through: string; firstBuild: boolean; newDays: boolean } | null = null;
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
      const watermark = row.processed_through;
      const target = watermark !== null && watermark > through ? watermark : through;
      const candidates = [
        row.dirty_from,
        row.processed_through ? dayToDate(dateToDay(row.processed_through) + 1) : row.earliest_date,
        resumeFrom ?? null,
      ].filter((d): d is string => d !== null);
      const earliest = candidates.length ? candidates.reduce((a, b) => (a < b ? a : b)) : null;
      const from = earliest !== null && earliest <= target ? earliest : null;
      await c.query(`UPDATE fact SET running_through = $2, dirty_from = NULL WHERE id = $1`, [fact.id, target]);
      // Recorded in the same transaction that cleared dirty_from: a retry after a crash resumes from it.
      await onClaimed?.(from, c);
      // Only days after the watermark, and nothing late (from is the day after it), and not too many:
      // each day's active users get the day's period at each grain, a day at a time.
      const newDays =
        from !== null && watermark !== null && from === dayToDate(dateToDay(watermark) + 1) && dateToDay(target) - dateToDay(from) < MAX_NEW_DAYS_IN_NODE;
      return { from, through: target, firstBuild: watermark === null, newDays };
    });
    const { from, through: target } = claimed;
    // Packed islands hold periods in 16 bits (migration 20261128100000_packed_islands); ingestion refuses
    // events that far ahead, so only a clock gone wrong gets here.
    if (dateToDay(target) > MAX_PACKED_DAY) throw new Error(`cannot process through ${target}: the layer holds dates up to ${dayToDate(MAX_PACKED_DAY)}`);
    await progress?.(0.02, "claimed");

    // A run of days after the watermark changes the packed islands in Node (day-packs.ts), a day at a time,
    // each day's active users read once for the three grains; every other run merges in SQL (islands.ts).
    const dayActives = new Map<string, Int32Array>();
    // Once answers exist every grain is merged in one transaction, day first: week and month then read the
    // day grain's new days instead of every day of the run (islands.ts). A first build commits its grains
    // apart, on connections of their own.
    const grainsInOneRun: GrainsInOneRun | undefined = claimed.firstBuild ? undefined : { dayNew: false };
    /** One grain's islands and metrics, on the caller's transaction. */
    const processGrain = async (c: pg.PoolClient, grain: (typeof GRAINS)[number]) => {
      const g = GRAIN_CODE[grain];
      await c.query(`SET LOCAL work_mem = '${GRAIN_WORK_MEM}'`);
      let minNew: number | null = null;
      if (claimed!.newDays) {
        for (let d = dateToDay(from!); d <= dateToDay(target); d++) {
          const day = dayToDate(d);
          let actives = dayActives.get(day);
          if (!actives) dayActives.set(day, (actives = await readDayActives(c, fact.id, day)));
          const added = await appendPeriodToPacks(c, fact.id, g, periodOfDay(grain, d), actives);
          if (added !== null && (minNew === null || added < minNew)) minNew = added;
        }
      } else minNew = await mergeNewPeriods(c, fact.id, g, from!, target, grainsInOneRun);
      const stored = await c.query<{ p: number | null }>(`SELECT max(period) AS p FROM layer_metric WHERE fact_id = $1 AND grain = ${g}`, [fact.id]);
      const maxStored = stored.rows[0]!.p;
      const candidates = [minNew, maxStored === null ? null : maxStored + 1].filter((x): x is number => x !== null);
      if (candidates.length) await recomputeMetrics(c, fact.id, g, Math.min(...candidates), periodOfDate(grain, target));
    };
    const moveWatermark = (c: pg.ClientBase | pg.Pool) =>
      c.query(`UPDATE fact SET processed_through = GREATEST(processed_through, $2::date), running_through = NULL WHERE id = $1`, [fact.id, target]);

    if (from !== null && claimed.firstBuild) {
      // A first build: nothing answers before the watermark exists, so the grains may commit apart,
      // two at once (the day grain, the largest, on one connection; week then month on the other).
      // A retry merges idempotently over whatever grains had committed.
      const queue = [...GRAINS];
      let done = 0;
      const runGrains = async () => {
        for (let grain = queue.shift(); grain !== undefined; grain = queue.shift()) {
          const g0 = performance.now();
          await withTransaction(pool, (c) => processGrain(c, grain), 1);
          timings[`${grain}_ms`] = Math.round(performance.now() - g0);
          done++;
          await progress?.(0.05 + (0.9 * done) / GRAINS.length, `${grain} done`);
        }
      };
      // Every grain settles before the run ends (or fails): nothing of this run outlives its lock.
      const settled = await Promise.allSettled(Array.from({ length: GRAIN_CONCURRENCY }, runGrains));
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      await moveWatermark(pool);
    } else {
      // Once answers exist they must stay exactly "as of the watermark" until it moves: every grain and
      // the watermark commit together, and a failure anywhere leaves everything as it was.
      await withTransaction(
        pool,
        async (c) => {
          if (from !== null) {
            for (const [i, grain] of GRAINS.entries()) {
              const g0 = performance.now();
              await processGrain(c, grain);
              timings[`${grain}_ms`] = Math.round(performance.now() - g0);
              await progress?.(0.05 + (0.9 * (i + 1)) / GRAINS.length, `${grain} done`);
            }
          }
          await moveWatermark(c);
        },
        1,
      );
    }
    // After a large rebuild the planner's statistics are stale until autovacuum catches up, and plans
    // for status and audience queries go wrong meanwhile: refresh them now.
    if (from !== null && dateToDay(target) - dateToDay(from) >= 28) {
      t0 = performance.now();
      await pool.query("ANALYZE layer_latest_pack, layer_latest_first, layer_closed_pack");
      timings.analyze_ms = Math.round(performance.now() - t0);
    }
    await progress?.(1, "done");
    return { from, through: target, timings };
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
