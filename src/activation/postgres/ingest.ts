import type pg from "pg";
import type { FactRef, IngestResult } from "../engine.js";
import type { ValidEvent } from "../../facts/event-validation.js";

/**
 * A relation of events with columns `uid` (text), `f` and `l` (timestamptz): the first and last
 * instant of the row's events, which fall on one local date of the fact (for a single event both are
 * its instant). It is SQL text whose bind parameters are numbered from `first`, so it can sit inside
 * a statement that has its own. HTTP batches pass `unnest` of arrays (one row per event); the bulk
 * loader passes its staging table, already folded per user id and date.
 */
export type EventSource = (first: number) => {
  sql: string;
  params: unknown[];
  /** The relation has at most one row per user id and local date already: the fold skips its GROUP BY. */
  grouped?: boolean;
};

/** Events given as two parallel arrays: user ids and epoch milliseconds. */
export function arrayEventSource(userIds: readonly string[], timesMs: readonly number[]): EventSource {
  return (n) => ({
    sql: `SELECT e.uid, e.at AS f, e.at AS l
          FROM (SELECT x.uid, to_timestamp(x.ms / 1000.0) AS at FROM unnest($${n}::text[], $${n + 1}::float8[]) AS x(uid, ms)) AS e`,
    params: [userIds, timesMs],
  });
}

/** Adds user ids not seen before. Its own statement, so the next one sees rows other batches just added. */
export async function ensureUserKeysFrom(client: pg.ClientBase, source: EventSource): Promise<void> {
  const src = source(1);
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

/** What a fold did, for the fact's bookkeeping: the dates it touched and the earliest it made active. */
export interface FoldResult {
  earliest_date: string | null;
  latest_date: string | null;
  /** Earliest date of an (user, date) row that did not exist before. */
  min_new_date: string | null;
}

/**
 * Folds events into (user, activity date, first instant, last instant) rows of activity_day. The
 * fact's timezone decides the date. Every user id of the source must already be in app_user
 * (ensureUserKeysFrom, a statement before). recordFold then moves the fact's bookkeeping.
 */
export async function foldEventsIntoActivity(client: pg.ClientBase, fact: FactRef, source: EventSource): Promise<FoldResult> {
  const src = source(3);
  const res = await client.query<{ earliest: string | null; latest: string | null; min_new: string | null }>(
    `WITH ev AS (
       ${src.sql}
     ), agg AS (
       ${
         src.grouped
           ? `SELECT u.user_key, (ev.f AT TIME ZONE $2)::date AS d, ev.f, ev.l
              FROM ev JOIN app_user u ON u.external_id = ev.uid`
           : `SELECT u.user_key, (ev.f AT TIME ZONE $2)::date AS d, min(ev.f) AS f, max(ev.l) AS l
              FROM ev JOIN app_user u ON u.external_id = ev.uid
              GROUP BY 1, 2`
       }
     ), up AS (
       INSERT INTO activity_day AS a (fact_id, activity_date, user_key, first_at, last_at)
       SELECT $1, d, user_key, f, l FROM agg ORDER BY d, user_key
       ON CONFLICT (fact_id, activity_date, user_key) DO UPDATE
         SET first_at = LEAST(a.first_at, EXCLUDED.first_at), last_at = GREATEST(a.last_at, EXCLUDED.last_at)
         WHERE EXCLUDED.first_at < a.first_at OR EXCLUDED.last_at > a.last_at
       RETURNING a.activity_date, (xmax = 0) AS inserted
     )
     SELECT (SELECT min(d) FROM agg) AS earliest, (SELECT max(d) FROM agg) AS latest,
            (SELECT min(activity_date) FROM up WHERE inserted) AS min_new`,
    [fact.id, fact.timezone, ...src.params],
  );
  const { earliest, latest, min_new } = res.rows[0]!;
  return { earliest_date: earliest, latest_date: latest, min_new_date: min_new };
}

/** Folds of several statements (segments of a bulk load) as one, for a single recordFold. */
export function mergeFolds(a: FoldResult, b: FoldResult): FoldResult {
  const min = (x: string | null, y: string | null) => (x === null ? y : y === null ? x : x < y ? x : y);
  const max = (x: string | null, y: string | null) => (x === null ? y : y === null ? x : x > y ? x : y);
  return { earliest_date: min(a.earliest_date, b.earliest_date), latest_date: max(a.latest_date, b.latest_date), min_new_date: min(a.min_new_date, b.min_new_date) };
}

/**
 * Moves the fact's bookkeeping after a fold: earliest/latest date, and dirty_from when a new active
 * (user, date) landed on a date a run has already processed (or is processing right now). It locks
 * the fact's row until the transaction ends, so it comes last.
 */
export async function recordFold(client: pg.ClientBase, factId: number, fold: FoldResult): Promise<void> {
  await client.query(
    `UPDATE fact SET
       earliest_date = LEAST(earliest_date, $2::date),
       latest_date = GREATEST(latest_date, $3::date),
       dirty_from = CASE
         WHEN $4::date IS NOT NULL AND $4::date <= GREATEST(processed_through, running_through)
         THEN LEAST(dirty_from, $4::date) ELSE dirty_from END
     WHERE id = $1`,
    [factId, fold.earliest_date, fold.latest_date, fold.min_new_date],
  );
}

/** Ingests one validated batch (an HTTP request): new user keys first, then the fold. */
export async function ingestEventBatch(client: pg.ClientBase, fact: FactRef, events: readonly ValidEvent[]): Promise<IngestResult> {
  if (events.length === 0) return { accepted: 0, earliest_date: null, latest_date: null };
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
