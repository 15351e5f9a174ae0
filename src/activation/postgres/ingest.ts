import type pg from "pg";
import type { FactRef, IngestResult } from "../engine.js";
import type { ValidEvent } from "../../facts/event-validation.js";

/** Adds user ids not seen before. Its own statement, so the next one sees rows other batches just added. */
export async function ensureUserKeys(client: pg.ClientBase, userIds: readonly string[]): Promise<void> {
  await client.query(
    `INSERT INTO app_user (external_id)
     SELECT DISTINCT u FROM unnest($1::text[]) AS u ORDER BY 1
     ON CONFLICT (external_id) DO NOTHING`,
    [userIds],
  );
}

/**
 * Folds events into (user, activity date, first instant, last instant) rows and moves the fact's
 * bookkeeping: earliest/latest date, and dirty_from when a new active (user, date) lands on a date a
 * run has already processed (or is processing right now).
 */
export async function ingestEventBatch(client: pg.ClientBase, fact: FactRef, events: readonly ValidEvent[]): Promise<IngestResult> {
  if (events.length === 0) return { accepted: 0, earliest_date: null, latest_date: null };
  const userIds = new Array<string>(events.length);
  const times = new Array<number>(events.length);
  for (let i = 0; i < events.length; i++) {
    userIds[i] = events[i]!.userId;
    times[i] = events[i]!.occurredAtMs;
  }
  await ensureUserKeys(client, userIds);
  const res = await client.query<{ earliest: string | null; latest: string | null; min_new: string | null }>(
    `WITH ev AS (
       SELECT e.uid, to_timestamp(e.ms / 1000.0) AS at
       FROM unnest($2::text[], $3::float8[]) AS e(uid, ms)
     ), agg AS (
       SELECT u.user_key, (ev.at AT TIME ZONE $4)::date AS d, min(ev.at) AS f, max(ev.at) AS l
       FROM ev JOIN app_user u ON u.external_id = ev.uid
       GROUP BY 1, 2
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
    [fact.id, userIds, times, fact.timezone],
  );
  const { earliest, latest, min_new } = res.rows[0]!;
  await client.query(
    `UPDATE fact SET
       earliest_date = LEAST(earliest_date, $2::date),
       latest_date = GREATEST(latest_date, $3::date),
       dirty_from = CASE
         WHEN $4::date IS NOT NULL AND $4::date <= GREATEST(processed_through, running_through)
         THEN LEAST(dirty_from, $4::date) ELSE dirty_from END
     WHERE id = $1`,
    [fact.id, earliest, latest, min_new],
  );
  return { accepted: events.length, earliest_date: earliest, latest_date: latest };
}
