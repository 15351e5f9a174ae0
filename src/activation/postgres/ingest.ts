import type pg from "pg";
import type { FactRef, IngestResult } from "../engine.js";
import type { ValidEvent } from "../../facts/event-validation.js";
import { holdFact } from "../../facts/lifecycle-lock.js";

/**
 * SQL text of a relation whose bind parameters are numbered from `first`, so that it can sit inside
 * a statement that has parameters of its own.
 */
export type SqlRelation = (first: number) => { sql: string; params: unknown[] };

/**
 * What a fold reads, in one of two shapes:
 * - "events": columns `uid` (text), `f` and `l` (timestamptz), any number of rows per user and date;
 *   `f` and `l` are the first and last instant of the row's events (for one event, both its instant)
 *   and fall on one local date. The fold finds the user keys and groups by local date. HTTP batches
 *   pass `unnest` of their arrays, one row per event.
 * - "days": columns `user_key`, `d` (the fact's local date), `f`, `l`, at most one row per user key
 *   and date: already resolved and grouped. The bulk loader passes its staged segments.
 */
export interface EventSource {
  shape: "events" | "days";
  relation: SqlRelation;
}

/** Events given as two parallel arrays: user ids and epoch milliseconds. */
export function arrayEventSource(userIds: readonly string[], timesMs: readonly number[]): EventSource {
  return {
    shape: "events",
    relation: (n) => ({
      sql: `SELECT e.uid, e.at AS f, e.at AS l
            FROM (SELECT x.uid, to_timestamp(x.ms / 1000.0) AS at FROM unnest($${n}::text[], $${n + 1}::float8[]) AS x(uid, ms)) AS e`,
      params: [userIds, timesMs],
    }),
  };
}

/**
 * Adds the user ids (column `uid` of the relation) not seen before. Its own statement, so the next
 * one sees rows other batches just added.
 */
export async function ensureUserKeysFrom(client: pg.ClientBase, ids: SqlRelation): Promise<void> {
  const src = ids(1);
  // Known ids are filtered out by a plain lookup first: most ids are known, and ON CONFLICT costs
  // more per row than a probe. ON CONFLICT still settles races with concurrent batches.
  await client.query(
    `INSERT INTO app_user (external_id)
     SELECT n.uid FROM (SELECT DISTINCT ev.uid FROM (${src.sql}) AS ev) AS n
     WHERE NOT EXISTS (SELECT 1 FROM app_user u WHERE u.external_id = n.uid)
     ORDER BY 1
     ON CONFLICT (external_id) DO NOTHING`,
    src.params,
  );
}

/** Adds user ids not seen before (see ensureUserKeysFrom). */
export async function ensureUserKeys(client: pg.ClientBase, userIds: readonly string[]): Promise<void> {
  await ensureUserKeysFrom(client, (n) => ({ sql: `SELECT u AS uid FROM unnest($${n}::text[]) AS u`, params: [userIds] }));
}

/** What a fold did, for the fact's bookkeeping. */
export interface FoldResult {
  earliest_date: string | null;
  latest_date: string | null;
  /**
   * Earliest date of a (user, date) row the fold created, among the dates at or before the fact's
   * watermark (processed or being processed) when it ran: only there does a new row make a date dirty.
   */
  min_new_date: string | null;
  /**
   * Earliest date the fold touched after that watermark (where new rows were not told from updated
   * ones). Should a run pass it before the transaction ends, the fact is marked dirty from there.
   */
  untracked_from: string | null;
}

// The upsert of a fold: new (user, date) rows, or an earlier first / later last instant of one.
const UPSERT = `INSERT INTO activity_day AS a (fact_id, activity_date, user_key, first_at, last_at)
       SELECT $1, agg.d, agg.user_key, agg.f, agg.l FROM agg LEFT JOIN wm ON true
       WHERE /*dates*/ ORDER BY agg.d, agg.user_key
       ON CONFLICT (fact_id, activity_date, user_key) DO UPDATE
         SET first_at = LEAST(a.first_at, EXCLUDED.first_at), last_at = GREATEST(a.last_at, EXCLUDED.last_at)
         WHERE EXCLUDED.first_at < a.first_at OR EXCLUDED.last_at > a.last_at`;
const AT_OR_BEFORE_WATERMARK = "agg.d <= wm.w";
const AFTER_WATERMARK = "(wm.w IS NULL OR agg.d > wm.w)";

/**
 * Folds events into (user, activity date, first instant, last instant) rows of activity_day. The
 * fact's timezone decides the date. The transaction must hold the fact against its deletion (holdFact,
 * first), and every user id of an "events" source must already be in app_user (ensureUserKeysFrom, a
 * statement before). recordFold then moves the fact's bookkeeping.
 *
 * Rows on dates at or before the fact's watermark are upserted with RETURNING, to find the new ones;
 * the others (usually nearly all: recent days, or a fact never processed) without, which is cheaper.
 * The two upserts touch disjoint dates and run in date order (the one read by the query first).
 */
export async function foldEventsIntoActivity(client: pg.ClientBase, fact: FactRef, source: EventSource): Promise<FoldResult> {
  // $1 the fact, $2 its timezone (only events need it: days come with their date), then the source's.
  const days = source.shape === "days";
  const src = source.relation(days ? 2 : 3);
  const params = days ? [fact.id, ...src.params] : [fact.id, fact.timezone, ...src.params];
  const res = await client.query<{ earliest: string | null; latest: string | null; min_new: string | null; untracked_from: string | null }>(
    `WITH ev AS (
       ${src.sql}
     ), agg AS (
       ${
         days
           ? `SELECT ev.user_key, ev.d, ev.f, ev.l FROM ev`
           : `SELECT u.user_key, (ev.f AT TIME ZONE $2)::date AS d, min(ev.f) AS f, max(ev.l) AS l
              FROM ev JOIN app_user u ON u.external_id = ev.uid
              GROUP BY 1, 2`
       }
     ), wm AS MATERIALIZED (
       SELECT GREATEST(f.processed_through, f.running_through) AS w FROM fact f WHERE f.id = $1
     ), up_old AS (
       ${UPSERT.replace("/*dates*/", AT_OR_BEFORE_WATERMARK)}
       RETURNING a.activity_date, (xmax = 0) AS inserted
     ), up_new AS (
       ${UPSERT.replace("/*dates*/", AFTER_WATERMARK)}
     )
     SELECT (SELECT min(d) FROM agg) AS earliest, (SELECT max(d) FROM agg) AS latest,
            (SELECT min(activity_date) FROM up_old WHERE inserted) AS min_new,
            (SELECT min(agg.d) FROM agg LEFT JOIN wm ON true WHERE ${AFTER_WATERMARK}) AS untracked_from`,
    params,
  );
  const r = res.rows[0]!;
  return { earliest_date: r.earliest, latest_date: r.latest, min_new_date: r.min_new, untracked_from: r.untracked_from };
}

/** Folds of several statements (segments of a bulk load) as one, for a single recordFold. */
export function mergeFolds(a: FoldResult, b: FoldResult): FoldResult {
  const min = (x: string | null, y: string | null) => (x === null ? y : y === null ? x : x < y ? x : y);
  const max = (x: string | null, y: string | null) => (x === null ? y : y === null ? x : x > y ? x : y);
  return {
    earliest_date: min(a.earliest_date, b.earliest_date),
    latest_date: max(a.latest_date, b.latest_date),
    min_new_date: min(a.min_new_date, b.min_new_date),
    untracked_from: min(a.untracked_from, b.untracked_from),
  };
}

/**
 * Moves the fact's bookkeeping after a fold: earliest/latest date, and dirty_from when a new active
 * (user, date) landed on a date a run has already processed (or is processing right now). Dates the
 * fold did not track count as new should a run have passed them meanwhile (rare, and only costs a
 * longer recompute). It locks the fact's row until the transaction ends, so it comes last.
 */
export async function recordFold(client: pg.ClientBase, factId: number, fold: FoldResult): Promise<void> {
  await client.query(
    `UPDATE fact SET
       earliest_date = LEAST(earliest_date, $2::date),
       latest_date = GREATEST(latest_date, $3::date),
       dirty_from = LEAST(dirty_from,
         CASE WHEN $4::date <= GREATEST(processed_through, running_through) THEN $4::date END,
         CASE WHEN $5::date <= GREATEST(processed_through, running_through) THEN $5::date END)
     WHERE id = $1`,
    [factId, fold.earliest_date, fold.latest_date, fold.min_new_date, fold.untracked_from],
  );
}

/**
 * Ingests one validated batch (an HTTP request) in the caller's transaction: the fact held against
 * its deletion first (404 when it is gone: no activity of a deleted fact is ever stored), new user
 * keys next, then the fold.
 */
export async function ingestEventBatch(client: pg.ClientBase, fact: FactRef, events: readonly ValidEvent[]): Promise<IngestResult> {
  if (events.length === 0) return { accepted: 0, earliest_date: null, latest_date: null };
  await holdFact(client, fact);
  const userIds = new Array<string>(events.length);
  const times = new Array<number>(events.length);
  for (let i = 0; i < events.length; i++) {
    userIds[i] = events[i]!.userId;
    times[i] = events[i]!.occurredAtMs;
  }
  await ensureUserKeys(client, userIds);
  const folded = await foldEventsIntoActivity(client, fact, arrayEventSource(userIds, times));
  await recordFold(client, fact.id, folded);
  return { accepted: events.length, earliest_date: folded.earliest_date, latest_date: folded.latest_date };
}
