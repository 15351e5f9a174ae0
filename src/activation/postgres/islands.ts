import type pg from "pg";
import { GRAINS, dateToDay, periodEndDay, periodOfDay, periodStartDay } from "../periods.js";
import {
  addCountDelta, applyCountDeltas, beginCountDeltas, earliestStart, islandColumns, latestClosedEnd, latestEnd, rebuildCounts,
} from "./island-counts.js";
import { createWorkIslands, loadWorkIslands, packWorkIslands, workChunks, writeBackChangedIslands } from "./work-islands.js";

/**
 * SQL of the period number of date expression `d` at grain g: the body of the migration's
 * aa_period(grain, d), written out. PostgreSQL never inlines that function (a STRICT function whose
 * CASE body it cannot prove strict), and calling it per activity row costs several times this.
 */
export function periodOfDateSql(g: number, d: string): string {
  if (g === 0) return `(${d} - DATE '1970-01-01')`;
  if (g === 1) return `(((${d} - DATE '1970-01-01' + 3) - (((${d} - DATE '1970-01-01' + 3) % 7) + 7) % 7) / 7)`;
  return `((EXTRACT(YEAR FROM ${d})::INTEGER - 1970) * 12 + EXTRACT(MONTH FROM ${d})::INTEGER - 1)`;
}

/**
 * Merges newly seen active periods into a grain's islands (runs of consecutive active periods), for every
 * run but one of a few days after the watermark (day-packs.ts, a day at a time). Activity only ever adds active
 * periods, so a run touches just the users with activity in [from, through] whose period is not already
 * covered, and for each of them only the islands from its earliest new period on. The merge runs on
 * those islands unpacked into work_island (work-islands.ts), and what it changed is packed back (a first
 * build packs everything). Returns the earliest new period, or null when nothing changed.
 *
 * Two paths, over disjoint sets of users:
 * - appended (most users of a late run, every user of a run of new days): all the user's new periods
 *   lie after its latest island, so only that island changes (it is extended, or gets its next_start)
 *   and the new islands are inserted after it;
 * - general (a new period before the end of the latest island: late data): the islands from the
 *   earliest new period on are merged again with the new periods, carried values from the island
 *   before them (the "anchor").
 */
export async function mergeNewPeriods(
  client: pg.ClientBase, factId: number, grain: number, from: string, through: string, run?: GrainsInOneRun,
): Promise<number | null> {
  const g = Number(grain) | 0; // a constant of ours, inlined so the planner sees it
  // No islands yet means the first build of this grain.
  const maxEnd = await latestEnd(client, factId, g);
  if (maxEnd === null) {
    await createWorkIslands(client);
    const first = await buildIslands(client, factId, g, from, through);
    await client.query("ANALYZE work_island");
    await packWorkIslands(client, factId, g, await workChunks(client));
    await client.query(`DROP TABLE work_island`);
    return first;
  }
  if (g !== 0 && run?.dayNew) return mergePeriodsOfNewDays(client, factId, g, maxEnd);
  await client.query(
    g === 0
      ? `CREATE TEMP TABLE np ON COMMIT DROP AS
         SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`
      : `CREATE TEMP TABLE np ON COMMIT DROP AS
         SELECT DISTINCT a.user_key, ${periodOfDateSql(g, "a.activity_date")} AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`,
    [factId, from, through],
  );
  await client.query("ANALYZE np");
  const range = (await client.query<{ lo: number | null; hi: number | null }>(`SELECT min(p) AS lo, max(p) AS hi FROM np`)).rows[0]!;
  if (range.lo === null) {
    if (g === 0 && run) await keepNewDays(client, run);
    await client.query("DROP TABLE np");
    return null;
  }
  // Only periods up to the latest island end can be covered already (none, for a run of new days). A late
  // run reads every period since its start date, nearly all of them covered: they are dropped against the
  // packed islands first, so that only the users left are unpacked into the work table.
  const { lo, hi } = range as { lo: number; hi: number };
  const closedMax = lo <= maxEnd ? await latestClosedEnd(client, factId, g) : null;
  // Past the end of every closed island only a latest island can cover one (a run of a new day at week or
  // month grain).
  if (lo <= maxEnd && closedMax !== null && lo <= closedMax) await dropCovered(client, factId, g, from, through, lo, Math.min(hi, maxEnd));
  else if (lo <= maxEnd) await dropCoveredByLatest(client, factId, g);
  if (g === 0 && run) await keepNewDays(client, run);
  const left = (await client.query<{ lo: number | null }>(`SELECT min(p) AS lo FROM np`)).rows[0]!.lo;
  if (left === null) {
    await client.query("DROP TABLE np");
    return null;
  }
  await loadWorkIslands(client, factId, g, left, lo > maxEnd);
  await mergeIntoWorkIslands(client, factId, g, lo > maxEnd);
  await writeBackChangedIslands(client, factId, g);
  await client.query("DROP TABLE work_island");
  return left;
}

/** The grains of one run merged in one transaction, day first: what the day grain leaves the others. */
export interface GrainsInOneRun {
  /** Set once the day grain has kept its new days (the days no island covered) in day_new. */
  dayNew: boolean;
}

/** day_new: the day grain's new (user, day) pairs, np once the covered days are dropped. */
async function keepNewDays(client: pg.ClientBase, run: GrainsInOneRun): Promise<void> {
  await client.query(`CREATE TEMP TABLE day_new ON COMMIT DROP AS SELECT user_key, p FROM np`);
  await client.query("ANALYZE day_new");
  run.dayNew = true;
}

/**
 * Week or month grain after the day grain in the same run: activity only adds days, so a user's week
 * (month) can be new only where one of its days is new at day grain. np is those periods of day_new,
 * far fewer than every period of the run's window; the islands of its users are unpacked first and the
 * periods they cover dropped there.
 */
async function mergePeriodsOfNewDays(client: pg.ClientBase, factId: number, g: number, maxEnd: number): Promise<number | null> {
  await client.query(
    `CREATE TEMP TABLE np ON COMMIT DROP AS
     SELECT DISTINCT user_key, ${periodOfDateSql(g, "(DATE '1970-01-01' + p)")} AS p FROM day_new`,
  );
  await client.query("ANALYZE np");
  const lo = (await client.query<{ lo: number | null }>(`SELECT min(p) AS lo FROM np`)).rows[0]!.lo;
  if (lo === null) {
    await client.query("DROP TABLE np");
    return null;
  }
  // Every island that can cover a period from lo on is in the work table (it ends at lo or later).
  await loadWorkIslands(client, factId, g, lo, lo > maxEnd);
  await client.query(`DELETE FROM np USING work_island i WHERE i.user_key = np.user_key AND np.p BETWEEN i.start_p AND i.end_p`);
  await client.query("ANALYZE np");
  const left = (await client.query<{ lo: number | null }>(`SELECT min(p) AS lo FROM np`)).rows[0]!.lo;
  if (left !== null) {
    await mergeIntoWorkIslands(client, factId, g, lo > maxEnd);
    await writeBackChangedIslands(client, factId, g);
  } else await client.query("DROP TABLE np; DROP TABLE work_island_before");
  await client.query("DROP TABLE work_island");
  return left;
}

/**
 * The merge of np (periods no island covers) into work_island (mergeNewPeriods); drops np and the other
 * temporary tables it made. `afterEvery`: every new period lies after every island.
 */
async function mergeIntoWorkIslands(client: pg.ClientBase, factId: number, g: number, afterEvery: boolean): Promise<void> {
  await groupNewPeriodsByUser(client);
  // One new period per user, after every island (a run of new days at a coarser grain, say): no island
  // can be merged, so the latest islands are changed in one pass.
  if (afterEvery && (await onePeriodPerUser(client))) {
    await appendOnePeriod(client, factId, g);
    await client.query("DROP TABLE np; DROP TABLE au");
    return;
  }
  await readLatestIslands(client, factId, g, "au");
  await client.query("ANALYZE lat");
  await beginCountDeltas(client);
  const general = (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM lat WHERE end_p >= m`)).rows[0]!.n;
  if (general > 0) await mergeGeneral(client, factId, g);
  const onePerUser = await onePeriodPerUser(client);
  await mergeAppended(client, factId, g, onePerUser);
  await applyCountDeltas(client, factId, g);
  await client.query("DROP TABLE np; DROP TABLE au; DROP TABLE lat");
}

/** au: each user with new periods in np and the earliest of them (m). */
async function groupNewPeriodsByUser(client: pg.ClientBase): Promise<void> {
  await client.query(`CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key, min(p) AS m FROM np GROUP BY user_key ORDER BY user_key`);
  await client.query("ANALYZE au");
}

/** lat: for each user of `users`, its latest island (the one without a next; none for a user new to the fact). */
async function readLatestIslands(client: pg.ClientBase, factId: number, g: number, users: string): Promise<void> {
  await client.query(
    `CREATE TEMP TABLE lat ON COMMIT DROP AS
     SELECT au.user_key, au.m, i.start_p, i.end_p, i.prev_end, i.active_before, i.first_p
     FROM ${users} au LEFT JOIN work_island i ON i.fact_id = $1 AND i.grain = ${g} AND i.user_key = au.user_key AND i.next_start IS NULL`,
    [factId],
  );
}

/** Whether np holds one new period per user (then no new periods chain into each other). */
async function onePeriodPerUser(client: pg.ClientBase): Promise<boolean> {
  const r = await client.query<{ one: boolean }>(`SELECT (SELECT count(*) FROM np) = (SELECT count(*) FROM au) AS one`);
  return r.rows[0]!.one;
}

/**
 * The new periods lie after the end of every closed island, so only a user's latest island can cover
 * one: those covered are dropped from np.
 */
async function dropCoveredByLatest(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  await client.query(
    `DELETE FROM np USING layer_latest_island l
     WHERE l.fact_id = $1 AND l.grain = ${g | 0} AND l.user_key = np.user_key AND np.p BETWEEN l.start_p AND l.end_p`,
    [factId],
  );
  await client.query("ANALYZE np");
}

/**
 * au holds one new period m per user, later than the end of every island, so later than the end of
 * each user's latest island L. Each L is extended (m = its end + 1) or closed (next_start = m) by one
 * UPDATE that also returns what the new islands carry from it;
 * the new islands are then inserted: the same result as mergeAppended, without reading L first.
 */
async function appendOnePeriod(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  await client.query(
    `CREATE TEMP TABLE touched (user_key int, m int, start_p int, end_p int, prev_end int, next_start int, active_before int, first_p int) ON COMMIT DROP`,
  );
  // Each latest island found through the user-keyed index, au in key order: far cheaper than hashing au
  // and scanning the work table when few of its users need the period.
  await client.query("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
  await client.query(
    `WITH changed AS (
       UPDATE work_island i
       SET end_p = CASE WHEN au.m = i.end_p + 1 THEN au.m ELSE i.end_p END,
           next_start = CASE WHEN au.m = i.end_p + 1 THEN NULL ELSE au.m END
       FROM au
       WHERE i.fact_id = $1 AND i.grain = ${g} AND i.next_start IS NULL AND i.user_key = au.user_key
       RETURNING i.user_key, au.m, i.start_p, i.end_p, i.prev_end, i.next_start, i.active_before, i.first_p)
     INSERT INTO touched SELECT * FROM changed`,
    [factId],
  );
  await client.query("SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on");
  // L's end before the update: m - 1 when it was extended, its end otherwise.
  const oldEnd = "CASE WHEN next_start IS NULL THEN end_p - 1 ELSE end_p END";
  // Every L changes its end or its next island, so its end counts; its start counts depend on its length
  // only where that reaches 2 or 3 periods (an extension of a 1- or 2-period island).
  await beginCountDeltas(client);
  await addCountDelta(client, "touched", { ...islandColumns(), e: oldEnd, next: "NULL" }, -1, [], "end");
  await addCountDelta(client, "touched", islandColumns(), 1, [], "end");
  const lengthened = "touched WHERE next_start IS NULL AND end_p - start_p BETWEEN 1 AND 2";
  await addCountDelta(client, lengthened, { ...islandColumns(), e: "end_p - 1", next: "NULL" }, -1, [], "start");
  await addCountDelta(client, lengthened, islandColumns(), 1, [], "start");
  // New islands of one period: after a closed L (a return), or a user's first.
  await client.query(
    `CREATE TEMP TABLE fresh ON COMMIT DROP AS
     SELECT user_key, m, end_p AS prev_end, active_before + end_p - start_p + 1 AS active_before, first_p FROM touched WHERE next_start IS NOT NULL
     UNION ALL
     SELECT au.user_key, au.m, NULL, 0, au.m FROM au WHERE NOT EXISTS (SELECT 1 FROM touched t WHERE t.user_key = au.user_key)`,
  );
  await client.query(
    `INSERT INTO work_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, user_key, m, m, prev_end, NULL, active_before, first_p FROM fresh ORDER BY user_key`,
    [factId],
  );
  await addCountDelta(client, "fresh", { s: "m", e: "m", prev: "prev_end", next: "NULL" }, 1);
  await applyCountDeltas(client, factId, g);
  await client.query("DROP TABLE touched; DROP TABLE fresh");
}

/**
 * Removes from np the periods [lo, X] that islands cover already, read from the packs (layer_island). A late run reads every period
 * since its start date, nearly all of them covered: checking each against the islands would cost
 * the whole window. Activity only ever adds periods, and an island period inside [from, through]
 * comes from activity there, so a user whose islands cover as many of the periods that lie wholly
 * inside the window as np holds for it has them all covered. Only the other users, and the first
 * and last periods when the window starts or ends inside them, are checked period by period.
 */
async function dropCovered(
  client: pg.ClientBase, factId: number, g: number, from: string, through: string, lo: number, X: number,
): Promise<void> {
  const isl = `i.fact_id = $1 AND i.grain = ${g}`;
  const grain = GRAINS[g]!;
  const fromDay = dateToDay(from), throughDay = dateToDay(through);
  const p0 = periodOfDay(grain, fromDay), p1 = periodOfDay(grain, throughDay);
  // The periods wholly inside [from, through]: [whole, last].
  const whole = Math.max(lo, periodStartDay(grain, p0) === fromDay ? p0 : p0 + 1) | 0;
  const last = Math.min(X, periodEndDay(grain, p1) === throughDay ? p1 : p1 - 1) | 0;
  const x = X | 0;
  if (whole <= last) {
    await client.query(
      `CREATE TEMP TABLE unc ON COMMIT DROP AS
       SELECT a.user_key
       FROM (SELECT user_key, count(*) AS c FROM np WHERE p BETWEEN ${whole} AND ${last} GROUP BY user_key) a
       LEFT JOIN (SELECT i.user_key, sum(LEAST(i.end_p, ${last}) - GREATEST(i.start_p, ${whole}) + 1) AS c
                  FROM layer_island i WHERE ${isl} AND i.end_p >= ${whole} AND i.start_p <= ${last} AND (i.next_start IS NULL OR i.next_start > ${whole})
                  GROUP BY i.user_key) b ON b.user_key = a.user_key
       WHERE b.c IS NULL OR b.c < a.c`,
      [factId],
    );
    await client.query("ANALYZE unc");
    await client.query(
      `CREATE TEMP TABLE np_left ON COMMIT DROP AS
       SELECT np.user_key, np.p FROM np
       WHERE np.p > ${last} OR np.p < ${whole} OR np.user_key IN (SELECT user_key FROM unc)`,
    );
    await client.query("DROP TABLE np; DROP TABLE unc; ALTER TABLE np_left RENAME TO np");
    await client.query("ANALYZE np");
  }
  await client.query(
    `DELETE FROM np USING layer_island i
     WHERE ${isl} AND i.end_p >= ${lo | 0} AND i.start_p <= ${x} AND (i.next_start IS NULL OR i.next_start > ${lo | 0}) AND np.p <= ${x}
       AND i.user_key = np.user_key AND i.start_p <= np.p AND i.end_p >= np.p`,
    [factId],
  );
  await client.query("ANALYZE np");
}

/**
 * Users whose new periods all lie after their latest island L (or who have none): the new periods
 * form islands of their own, the first of which joins L when it starts right after L's end. L is
 * updated once (its end, or its next_start), the other new islands are inserted with the values
 * carried from L: the same islands and values as merging them from scratch.
 */
async function mergeAppended(client: pg.ClientBase, factId: number, g: number, onePerUser: boolean): Promise<void> {
  const isl = `i.fact_id = $1 AND i.grain = ${g}`;
  // One new period per user (a run of one new day): each is one new island, nothing to chain.
  if (onePerUser)
    await client.query(
      `CREATE TEMP TABLE nw ON COMMIT DROP AS
       SELECT user_key, m AS s, m AS e, start_p AS ls, end_p AS le, prev_end AS lpe, active_before AS lab, first_p AS lf,
              1::bigint AS k, NULL::int AS next_s, NULL::int AS prev_e, 0::bigint AS len_before, m AS first_s
       FROM lat WHERE end_p IS NULL OR end_p < m`,
    );
  // np holds distinct (user, period) rows, so p - row_number() is constant along a run of periods.
  else await client.query(
    `CREATE TEMP TABLE nw ON COMMIT DROP AS
     SELECT user_key, s, e, ls, le, lpe, lab, lf,
            row_number() OVER u AS k,
            lead(s) OVER u AS next_s,
            lag(e) OVER u AS prev_e,
            COALESCE(sum(e - s + 1) OVER (u ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS len_before,
            min(s) OVER (PARTITION BY user_key) AS first_s
     FROM (
       SELECT r.user_key, min(r.p) AS s, max(r.p) AS e,
              min(r.start_p) AS ls, min(r.end_p) AS le, min(r.prev_end) AS lpe, min(r.active_before) AS lab, min(r.first_p) AS lf
       FROM (
         SELECT np.user_key, np.p, l.start_p, l.end_p, l.prev_end, l.active_before, l.first_p,
                np.p - row_number() OVER (PARTITION BY np.user_key ORDER BY np.p) AS grp
         FROM np JOIN lat l ON l.user_key = np.user_key
         WHERE l.end_p IS NULL OR l.end_p < l.m
       ) r
       GROUP BY r.user_key, r.grp
     ) w
     WINDOW u AS (PARTITION BY user_key ORDER BY s)`,
  );
  // The first new island either extends L (it starts right after L's end) or becomes L's next.
  await client.query(
    `UPDATE work_island i
     SET end_p = CASE WHEN f.s = f.le + 1 THEN f.e ELSE i.end_p END,
         next_start = CASE WHEN f.s = f.le + 1 THEN f.next_s ELSE f.s END
     FROM nw f
     WHERE f.k = 1 AND f.ls IS NOT NULL AND ${isl} AND i.next_start IS NULL AND i.user_key = f.user_key AND i.start_p = f.ls`,
    [factId],
  );
  await client.query(
    `INSERT INTO work_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, user_key, s, e,
            CASE WHEN k = 1 THEN le ELSE prev_e END,
            next_s,
            COALESCE(lab + le - ls + 1, 0) + len_before,
            COALESCE(lf, first_s)
     FROM nw
     WHERE NOT (k = 1 AND ls IS NOT NULL AND s = le + 1)
     ORDER BY user_key, s`,
    [factId],
  );
  // Counted out: each L as it was. In: each L as it is now, and the islands inserted after it.
  await addCountDelta(client, "lat WHERE end_p < m", { ...islandColumns(), next: "NULL" }, -1);
  await addCountDelta(
    client,
    "nw WHERE k = 1 AND ls IS NOT NULL",
    { s: "ls", e: "CASE WHEN s = le + 1 THEN e ELSE le END", prev: "lpe", next: "CASE WHEN s = le + 1 THEN next_s ELSE s END" },
    1,
  );
  await addCountDelta(client, "nw WHERE NOT (k = 1 AND ls IS NOT NULL AND s = le + 1)", { s: "s", e: "e", prev: "CASE WHEN k = 1 THEN le ELSE prev_e END", next: "next_s" }, 1);
  await client.query("DROP TABLE nw");
}

/**
 * Users with a new period before the end of their latest island: every island from the earliest
 * new period m on (they may merge, and their carried values change) is merged again with the new
 * periods; the latest island ending before m - 1 (the anchor) gives the carried values and gets
 * its next_start.
 */
async function mergeGeneral(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  const isl = `i.fact_id = $1 AND i.grain = ${g}`;
  await client.query(`CREATE TEMP TABLE ag ON COMMIT DROP AS SELECT user_key, m FROM lat WHERE end_p >= m`);
  await client.query("ANALYZE ag");
  // The (at most) two latest islands starting before m-1: one may span m-1, the other is then the anchor.
  await client.query(
    `CREATE TEMP TABLE prior ON COMMIT DROP AS
     SELECT ag.user_key, ag.m, b.start_p, b.end_p, b.active_before, b.first_p, b.rn
     FROM ag CROSS JOIN LATERAL (
       SELECT i.start_p, i.end_p, i.active_before, i.first_p, row_number() OVER (ORDER BY i.start_p DESC) AS rn
       FROM work_island i
       WHERE ${isl} AND i.user_key = ag.user_key AND i.start_p < ag.m - 1
       ORDER BY i.start_p DESC LIMIT 2) b`,
    [factId],
  );
  await client.query(
    `CREATE TEMP TABLE old_aff ON COMMIT DROP AS
     SELECT i.user_key, i.start_p, i.end_p
     FROM ag JOIN work_island i ON ${isl} AND i.user_key = ag.user_key AND i.start_p >= ag.m - 1
     UNION ALL
     SELECT user_key, start_p, end_p FROM prior WHERE rn = 1 AND end_p >= m - 1`,
    [factId],
  );
  await client.query(
    `CREATE TEMP TABLE anchor ON COMMIT DROP AS
     SELECT DISTINCT ON (user_key) user_key, start_p, end_p, active_before, first_p
     FROM prior WHERE end_p < m - 1 ORDER BY user_key, start_p DESC`,
  );

  // Gaps and islands over intervals: a row opens a new island when it starts after every earlier end + 1.
  await client.query(
    `CREATE TEMP TABLE merged ON COMMIT DROP AS
     WITH iv AS (
       SELECT user_key, start_p AS s, end_p AS e FROM old_aff
       UNION ALL SELECT np.user_key, np.p, np.p FROM np JOIN ag ON ag.user_key = np.user_key
     ), marked AS (
       SELECT user_key, s, e,
              CASE WHEN s <= max(e) OVER (PARTITION BY user_key ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1
                   THEN 0 ELSE 1 END AS brk
       FROM iv
     ), grouped AS (
       SELECT user_key, s, e, sum(brk) OVER (PARTITION BY user_key ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp FROM marked
     )
     SELECT user_key, min(s) AS start_p, max(e) AS end_p FROM grouped GROUP BY user_key, grp`,
  );

  // Each user's islands from the anchor on are the ones this merge changes (the anchor gets a new
  // next_start, the rest are merged again): counted out now, back in once merged.
  const fromAnchor = `ag LEFT JOIN anchor an ON an.user_key = ag.user_key
    JOIN work_island i ON ${isl} AND i.user_key = ag.user_key AND (an.start_p IS NULL OR i.start_p >= an.start_p)`;
  await addCountDelta(client, fromAnchor, islandColumns("i."), -1, [factId]);
  await client.query(
    `DELETE FROM work_island i USING old_aff o
     WHERE ${isl} AND i.user_key = o.user_key AND i.start_p = o.start_p`,
    [factId],
  );
  await client.query(
    `INSERT INTO work_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, m.user_key, m.start_p, m.end_p,
            COALESCE(lag(m.end_p) OVER w, an.end_p),
            lead(m.start_p) OVER w,
            COALESCE(an.active_before + an.end_p - an.start_p + 1, 0)
              + COALESCE(sum(m.end_p - m.start_p + 1) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
            COALESCE(an.first_p, min(m.start_p) OVER (PARTITION BY m.user_key))
     FROM merged m LEFT JOIN anchor an ON an.user_key = m.user_key
     WINDOW w AS (PARTITION BY m.user_key ORDER BY m.start_p)`,
    [factId],
  );
  await client.query(
    `UPDATE work_island i SET next_start = f.first_start
     FROM (SELECT user_key, min(start_p) AS first_start FROM merged GROUP BY user_key) f
     JOIN anchor an ON an.user_key = f.user_key
     WHERE ${isl} AND i.user_key = an.user_key AND i.start_p = an.start_p`,
    [factId],
  );
  await addCountDelta(client, fromAnchor, islandColumns("i."), 1, [factId]);
  await client.query("DROP TABLE ag; DROP TABLE prior; DROP TABLE old_aff; DROP TABLE anchor; DROP TABLE merged");
}

/**
 * The first build of a grain (no islands yet): the islands straight from the activity in one sorted
 * pass. Over each user's distinct active periods in order, a period starts an island when the one
 * before is not p - 1 and ends it when the one after is not p + 1; the start row carries prev_end
 * (the period before), active_before (its rank - 1) and first_p, and the end row, reached by lead()
 * over the start and end rows only, carries end_p and next_start. The same islands, with the same
 * carried values, as merging these periods into nothing.
 */
async function buildIslands(
  client: pg.ClientBase, factId: number, g: number, from: string, through: string,
): Promise<number | null> {
  const periods =
    g === 0
      ? `SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3`
      : `SELECT a.user_key, ${periodOfDateSql(g, "a.activity_date")} AS p
         FROM activity_day a WHERE a.fact_id = $1 AND a.activity_date BETWEEN $2 AND $3 GROUP BY 1, 2`;
  await client.query(
    `INSERT INTO work_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
     SELECT $1, ${g}, user_key, p, end_p, prev_p, next_start, rn - 1, first_p FROM (
       SELECT user_key, p, prev_p, rn, first_p, is_start,
              CASE WHEN is_end THEN p ELSE lead(p) OVER w END AS end_p,
              CASE WHEN is_end THEN next_p ELSE lead(next_p) OVER w END AS next_start
       FROM (
         SELECT user_key, p, prev_p, next_p, rn, first_p,
                prev_p IS NULL OR prev_p < p - 1 AS is_start,
                next_p IS NULL OR next_p > p + 1 AS is_end
         FROM (
           SELECT user_key, p, lag(p) OVER w AS prev_p, lead(p) OVER w AS next_p,
                  row_number() OVER w AS rn, first_value(p) OVER w AS first_p
           FROM (${periods}) s
           WINDOW w AS (PARTITION BY user_key ORDER BY p)
         ) a
       ) b
       WHERE is_start OR is_end
       WINDOW w AS (PARTITION BY user_key ORDER BY p)
     ) c
     WHERE is_start`,
    [factId, from, through],
  );
  await rebuildCounts(client, factId, g, "work_island");
  return earliestStart(client, factId, g);
}
