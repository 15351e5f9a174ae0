import type pg from "pg";
import type { GroupSums } from "../../campaigns/statistics.js";
import type { Readable } from "node:stream";
import { copyJsonLinesOut, copyQueryOut, type ExportFormat } from "./copy-out.js";
import { withTransaction } from "./tx.js";

/**
 * Campaign data inside the layer boundary: assignments frozen from a materialization by the spec's
 * hash (the SQL function aa_assignment_bucket, tested equal to src/campaigns/assignment.ts), sends and
 * outcomes validated and stored set-based, and the per-arm aggregates the statistics need (n, Σy, Σy²,
 * Σx, Σx², Σxy) read from the goal fact's day islands — no per-user row leaves PostgreSQL.
 */

export type CampaignArm = "treatment" | "control" | "global_control";

export interface AssignmentParams {
  campaignId: string;
  materializationId: string;
  salt: string;
  /** Buckets below this are control: holdout_percent × 100. */
  holdoutBuckets: number;
  /** The global control group's salt and threshold (0: none). */
  globalSalt: string | null;
  globalBuckets: number;
  /** The goal: members' window and covariate days are computed with the assignment. */
  goal: ActivityRanges;
}

/** Where a campaign reads its goal: a fact's day islands, and two day ranges (day numbers, inclusive). */
export interface ActivityRanges {
  factId: number;
  windowStart: number;
  windowEnd: number;
  covariateStart: number;
  covariateEnd: number;
}

export type ArmCounts = Record<CampaignArm, number>;

export interface AssignHooks {
  /** First statement of the transaction (lock and check the campaign row). */
  before?: (tx: pg.PoolClient) => Promise<void>;
  /** Last statements of the transaction (write the campaign row with the counts and the day number the members' figures are as of). */
  after?: (tx: pg.PoolClient, counts: ArmCounts, through: number | null) => Promise<void>;
}

/**
 * (Re)computes the frozen assignments of a campaign from its list in one transaction: a crash leaves
 * the previous assignments (or none) intact, never half a list.
 */
export async function assignCampaign(pool: pg.Pool, p: AssignmentParams, hooks: AssignHooks = {}): Promise<ArmCounts> {
  return withTransaction(pool, async (c) => {
    await hooks.before?.(c);
    await c.query("SET LOCAL work_mem = '256MB'");
    await c.query(`DELETE FROM campaign_assignment WHERE campaign_id = $1`, [p.campaignId]);
    const g = p.goal;
    // Members' figures as of the goal fact's watermark now (days beyond it belong to a run in flight,
    // whose completion folds them in).
    const through = (await c.query<{ t: number | null }>(`SELECT processed_through - DATE '1970-01-01' AS t FROM fact WHERE id = $1`, [g.factId])).rows[0]?.t ?? null;
    const inserted = await c.query(
      `WITH act AS (${activitySql("$7", "$8", "$9", "$10", "$11", "$12")})
       INSERT INTO campaign_assignment (campaign_id, user_key, arm, bucket, state, inactivity_periods, window_days, covariate_days)
       SELECT $1::uuid, m.user_key,
              CASE WHEN $5::int > 0 AND aa_assignment_bucket($4::text, u.external_id) < $5::int THEN 'global_control'
                   WHEN b.bucket < $3::int THEN 'control'
                   ELSE 'treatment' END,
              b.bucket, m.state, m.inactivity_periods, COALESCE(act.y, 0), COALESCE(act.x, 0)
       FROM audience_member m
       JOIN app_user u ON u.user_key = m.user_key
       CROSS JOIN LATERAL (SELECT aa_assignment_bucket($2::text, u.external_id) AS bucket) b
       LEFT JOIN act ON act.user_key = m.user_key
       WHERE m.materialization_id = $6::uuid
       ORDER BY m.user_key`,
      [
        p.campaignId, p.salt, p.holdoutBuckets, p.globalSalt ?? "", p.globalSalt === null ? 0 : p.globalBuckets, p.materializationId,
        g.factId, g.windowStart, g.windowEnd, g.covariateStart, g.covariateEnd, through ?? -1,
      ],
    );
    // The planner's picture of the table changes by a whole list at a time.
    if ((inserted.rowCount ?? 0) >= 10_000) await c.query(`ANALYZE campaign_assignment`);
    const r = await c.query<{ arm: CampaignArm; n: number }>(
      `SELECT arm, count(*)::int AS n FROM campaign_assignment WHERE campaign_id = $1 GROUP BY arm`,
      [p.campaignId],
    );
    const counts: ArmCounts = { treatment: 0, control: 0, global_control: 0 };
    for (const row of r.rows) counts[row.arm] = row.n;
    await hooks.after?.(c, counts, through);
    return counts;
  }, 1);
}

export async function deleteCampaignData(pool: pg.Pool, campaignId: string, after?: (tx: pg.PoolClient) => Promise<void>): Promise<void> {
  await withTransaction(pool, async (c) => {
    // The campaign's row lock first: an assignment job holds it while it writes assignments, so they are
    // either committed before this deletes them, or never written (the job then finds no campaign).
    await c.query(`SELECT 1 FROM campaign WHERE id = $1 FOR UPDATE`, [campaignId]);
    for (const t of ["campaign_assignment", "campaign_send", "campaign_outcome", "campaign_outcome_revision", "campaign_result"])
      await c.query(`DELETE FROM ${t} WHERE campaign_id = $1`, [campaignId]);
    await after?.(c);
  });
}

// ---------------------------------------------------------------- assignments out

export const ASSIGNMENT_COLUMNS = ["user_id", "group", "bucket", "action"] as const;

function assignmentSelect(arm: CampaignArm | undefined, paged: boolean): string {
  return `SELECT a.user_key, u.external_id AS user_id, a.arm AS "group", a.bucket,
                 CASE WHEN a.arm = 'treatment' THEN 'send' ELSE 'hold_out' END AS action
          FROM campaign_assignment a JOIN app_user u ON u.user_key = a.user_key
          WHERE a.campaign_id = $1${arm ? " AND a.arm = $2" : ""}${paged ? ` AND a.user_key > $${arm ? 3 : 2}` : ""}
          ORDER BY a.user_key${paged ? ` LIMIT $${arm ? 4 : 3}` : ""}`;
}

export interface AssignmentRow {
  user_key: number;
  user_id: string;
  group: CampaignArm;
  bucket: number;
  action: "send" | "hold_out";
}

export async function assignmentPage(pool: pg.Pool, campaignId: string, arm: CampaignArm | undefined, afterUserKey: number | undefined, limit: number): Promise<AssignmentRow[]> {
  const params: unknown[] = [campaignId, ...(arm ? [arm] : []), afterUserKey ?? -1, limit];
  return (await pool.query<AssignmentRow>(assignmentSelect(arm, true), params)).rows;
}

/**
 * Both sides are read in user_key order by their primary keys: a merge join streams rows in export
 * order with no hash table and no sort (the planner otherwise picks a parallel hash join and a sort
 * of the whole list that spills to disk, three times slower).
 */
const EXPORT_PLAN = { jit: "off", enable_hashjoin: "off", max_parallel_workers_per_gather: "0" } as const;

export function assignmentExport(pool: pg.Pool, campaignId: string, arm: CampaignArm | undefined, format: ExportFormat): Promise<Readable> {
  const params = [campaignId, ...(arm ? [arm] : [])];
  if (format === "csv") return copyQueryOut(pool, assignmentSelect(arm, false), params, ASSIGNMENT_COLUMNS, format, EXPORT_PLAN);
  // NDJSON lines built in SQL (the document row_to_json would give, faster): to_json quotes the user
  // id; arm and action are our own words.
  return copyJsonLinesOut(
    pool,
    `SELECT '{"user_id":' || to_json(u.external_id)::text
            || ',"group":"' || a.arm || '","bucket":' || a.bucket
            || ',"action":"' || CASE WHEN a.arm = 'treatment' THEN 'send' ELSE 'hold_out' END || '"}' AS line
     FROM campaign_assignment a JOIN app_user u ON u.user_key = a.user_key
     WHERE a.campaign_id = $1${arm ? " AND a.arm = $2" : ""}
     ORDER BY a.user_key`,
    params,
    EXPORT_PLAN,
  );
}

// ---------------------------------------------------------------- sends and outcomes in

export interface SendInput {
  userId: string;
  channel: string;
  status: string;
  sentAt: string;
}

export interface OutcomeInput {
  outcomeId: string;
  userId: string;
  occurredAt: string;
  name: string;
  value: number | null;
}

/** A batch item whose user is not allowed: its index and the arm it is in (null: not in the list). */
export interface RejectedUser {
  index: number;
  user_id: string;
  arm: CampaignArm | null;
}

export interface BatchOutcome {
  rejected: RejectedUser[];
  rejectedCount: number;
  inserted: number;
  /**
   * Items whose id is recorded with other values, or retracted (the stored record stands): their
   * indexes and whether the outcome is retracted, first 100, and how many.
   */
  conflicting?: { items: Array<{ index: number; retracted: boolean }>; count: number };
}

const MAX_REJECTED = 100;

/**
 * The users of a batch that may not be recorded: not assigned at all, or (when `armsAllowed` is
 * given) in another arm. Reported in batch order, first 100, with the total.
 */
export async function rejectedUsers(c: pg.ClientBase, campaignId: string, userIds: string[], armsAllowed: CampaignArm[]): Promise<{ rows: RejectedUser[]; count: number }> {
  const r = await c.query<{ idx: number; user_id: string; arm: CampaignArm | null; total: number }>(
    `SELECT (t.ord - 1)::int AS idx, t.user_id, a.arm, count(*) OVER ()::int AS total
     FROM unnest($2::text[]) WITH ORDINALITY AS t(user_id, ord)
     LEFT JOIN app_user u ON u.external_id = t.user_id
     LEFT JOIN campaign_assignment a ON a.campaign_id = $1 AND a.user_key = u.user_key
     WHERE a.arm IS NULL OR NOT (a.arm = ANY($3::text[]))
     ORDER BY t.ord
     LIMIT ${MAX_REJECTED}`,
    [campaignId, userIds, armsAllowed],
  );
  return { rows: r.rows.map((x) => ({ index: x.idx, user_id: x.user_id, arm: x.arm })), count: r.rows[0]?.total ?? 0 };
}

/** What a batch's caller does in its transaction: `before` first (lock and check the campaign), `after` once the batch is stored. */
export interface BatchHooks<After> {
  before?: (tx: pg.PoolClient) => Promise<void>;
  after?: After;
}

/**
 * Records sends of a batch, idempotent per (user, channel, status): all of them, or none when any
 * user is not in the treatment arm.
 */
export async function recordSends(
  pool: pg.Pool, campaignId: string, sends: SendInput[], hooks: BatchHooks<(tx: pg.PoolClient, inserted: number) => Promise<void>> = {},
): Promise<BatchOutcome> {
  return withTransaction(pool, async (c) => {
    await hooks.before?.(c);
    const bad = await rejectedUsers(c, campaignId, sends.map((s) => s.userId), ["treatment"]);
    if (bad.count > 0) return { rejected: bad.rows, rejectedCount: bad.count, inserted: 0 };
    const r = await c.query(
      `INSERT INTO campaign_send (campaign_id, user_key, channel, status, sent_at)
       SELECT $1::uuid, u.user_key, t.channel, t.status, t.sent_at
       FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS t(user_id, channel, status, sent_at)
       JOIN app_user u ON u.external_id = t.user_id
       ON CONFLICT DO NOTHING`,
      [campaignId, sends.map((s) => s.userId), sends.map((s) => s.channel), sends.map((s) => s.status), sends.map((s) => s.sentAt)],
    );
    const inserted = r.rowCount ?? 0;
    await hooks.after?.(c, inserted);
    return { rejected: [], rejectedCount: 0, inserted };
  });
}

/**
 * Records outcomes of a batch, idempotent by outcome_id (the stored record wins: the first report, as
 * corrected since; a retracted id is never recorded again): all, or none when a user is not assigned.
 */
export async function recordOutcomes(
  pool: pg.Pool, campaignId: string, outcomes: OutcomeInput[],
  hooks: BatchHooks<(tx: pg.PoolClient, inserted: number, conflicting?: BatchOutcome["conflicting"]) => Promise<void>> = {},
): Promise<BatchOutcome> {
  return withTransaction(pool, async (c) => {
    await hooks.before?.(c);
    const bad = await rejectedUsers(c, campaignId, outcomes.map((o) => o.userId), ["treatment", "control", "global_control"]);
    if (bad.count > 0) return { rejected: bad.rows, rejectedCount: bad.count, inserted: 0 };
    // The batch as columns: $1 the campaign, $2–$6 outcome_id, user_id, name, occurred_at, value.
    const items = [
      campaignId,
      outcomes.map((o) => o.outcomeId),
      outcomes.map((o) => o.userId),
      outcomes.map((o) => o.name),
      outcomes.map((o) => o.occurredAt),
      outcomes.map((o) => o.value),
    ];
    const r = await c.query(
      // In batch order, so that of two items with one outcome_id the first is the one that stands.
      `INSERT INTO campaign_outcome (campaign_id, outcome_id, user_key, name, occurred_at, value)
       SELECT $1::uuid, t.outcome_id, u.user_key, t.name, t.occurred_at, t.value
       FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[]) WITH ORDINALITY AS t(outcome_id, user_id, name, occurred_at, value, ord)
       JOIN app_user u ON u.external_id = t.user_id
       ORDER BY t.ord
       ON CONFLICT DO NOTHING`,
      items,
    );
    const inserted = r.rowCount ?? 0;
    // Items whose outcome_id is recorded (before, or earlier in this batch) with other values, or retracted.
    const differing = await c.query<{ idx: number; retracted: boolean; total: number }>(
      `SELECT (t.ord - 1)::int AS idx, o.retracted_at IS NOT NULL AS retracted, count(*) OVER ()::int AS total
       FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[]) WITH ORDINALITY AS t(outcome_id, user_id, name, occurred_at, value, ord)
       JOIN app_user u ON u.external_id = t.user_id
       JOIN campaign_outcome o ON o.campaign_id = $1 AND o.outcome_id = t.outcome_id
       WHERE o.retracted_at IS NOT NULL OR (o.user_key, o.name, o.occurred_at, o.value) IS DISTINCT FROM (u.user_key, t.name, t.occurred_at, t.value)
       ORDER BY t.ord
       LIMIT ${MAX_REJECTED}`,
      items,
    );
    const conflicting = { items: differing.rows.map((x) => ({ index: x.idx, retracted: x.retracted })), count: differing.rows[0]?.total ?? 0 };
    await hooks.after?.(c, inserted, conflicting);
    return { rejected: [], rejectedCount: 0, inserted, conflicting };
  });
}

// ---------------------------------------------------------------- aggregates for the results

/** A group's sums as the statistics read them (statistics.ts). */
export type SumsRow = GroupSums;

export interface GoalAggregateRow extends SumsRow {
  arm: CampaignArm;
  /** "all", "inactivity_periods" or "state". */
  dimension: "all" | "inactivity_periods" | "state";
  bucket: string | null;
}

export const INACTIVITY_BUCKETS = ["0", "1-6", "7-29", "30+"] as const;

/** The breakdown bucket of an inactivity_periods value: 0, 1-6, 7-29, 30+. */
export function inactivityBucket(periods: number): (typeof INACTIVITY_BUCKETS)[number] {
  return periods <= 0 ? "0" : periods <= 6 ? "1-6" : periods <= 29 ? "7-29" : "30+";
}

// An island ending at or after a period X has no next island or one starting after X: said as well, it
// lets the layer_island view read only the closed islands' rows that can qualify (their next_start).

/** Active days in [start, end] of an island: max(0, min(end_p, end) − max(start_p, start) + 1). */
const overlap = (start: string, end: string) => `GREATEST(0, LEAST(i.end_p, ${end}) - GREATEST(i.start_p, ${start}) + 1)`;

/**
 * Per user with activity in the covariate period or the window: y = active days in the window, x =
 * active days in the covariate period, from the fact's day islands, as of day `t` (parameters: fact,
 * window start and end, covariate start and end, t; `from`: only days from then on count).
 */
function activitySql(fact: string, ws: string, we: string, cs: string, ce: string, t: string, opts: { users?: string; from?: string } = {}): string {
  const lo = (start: string) => (opts.from ? `GREATEST(${start}::int, ${opts.from}::int)` : `${start}::int`);
  const hi = (end: string) => `LEAST(${end}::int, ${t}::int)`;
  return `SELECT i.user_key, sum(${overlap(lo(ws), hi(we))})::int AS y, sum(${overlap(lo(cs), hi(ce))})::int AS x
          FROM layer_island i
          WHERE i.fact_id = ${fact}::int AND i.grain = 0 AND i.end_p >= ${lo(cs)} AND i.start_p <= ${hi(we)}
            AND (i.next_start IS NULL OR i.next_start > ${lo(cs)})${opts.users ? ` AND i.user_key IN (${opts.users})` : ""}
          GROUP BY i.user_key`;
}

/**
 * How to bring the members' figures up to date, decided under the campaign's row lock:
 * - `full`: every member recomputed from the islands (the goal changed, or never computed);
 * - `delta`: the days from `from` on were never counted (from is after the watermark the figures are
 *   as of): their active days are added — a daily run costs the users active that day;
 * - `recompute`: late data changed days already counted: the members active from `from` on are
 *   recomputed whole.
 * All as of day `through` (the goal fact's watermark).
 */
export interface RefreshPlan {
  mode: "full" | "delta" | "recompute";
  from: number | null;
  through: number;
}

export interface RefreshHooks {
  /** Locks the campaign row and decides; null: nothing to do. */
  plan: (tx: pg.PoolClient) => Promise<RefreshPlan | null>;
  /** Records that the figures are now as of plan.through, in the same transaction (so a delta is never added twice). */
  done: (tx: pg.PoolClient, plan: RefreshPlan, changed: number) => Promise<void>;
}

/** Brings the members' window and covariate days up to date with the goal fact's layer; returns the members changed. */
export async function refreshActivity(pool: pg.Pool, campaignId: string, r: ActivityRanges, hooks: RefreshHooks): Promise<{ plan: RefreshPlan | null; changed: number }> {
  return withTransaction(pool, async (c) => {
    const plan = await hooks.plan(c);
    if (!plan) return { plan, changed: 0 };
    await c.query("SET LOCAL work_mem = '256MB'");
    await c.query("SET LOCAL jit = off");
    const params: unknown[] = [campaignId, r.factId, r.windowStart, r.windowEnd, r.covariateStart, r.covariateEnd, plan.through];
    let res;
    if (plan.mode === "full") {
      res = await c.query(
        `WITH act AS (${activitySql("$2", "$3", "$4", "$5", "$6", "$7")}),
              v AS (SELECT a.user_key, COALESCE(act.y, 0) AS y, COALESCE(act.x, 0) AS x
                    FROM campaign_assignment a LEFT JOIN act ON act.user_key = a.user_key WHERE a.campaign_id = $1)
         UPDATE campaign_assignment a SET window_days = v.y, covariate_days = v.x
         FROM v WHERE a.campaign_id = $1 AND a.user_key = v.user_key AND (a.window_days <> v.y OR a.covariate_days <> v.x)`,
        params,
      );
    } else if (plan.mode === "delta") {
      res = await c.query(
        `WITH d AS (${activitySql("$2", "$3", "$4", "$5", "$6", "$7", { from: "$8" })})
         UPDATE campaign_assignment a SET window_days = a.window_days + d.y, covariate_days = a.covariate_days + d.x
         FROM d WHERE a.campaign_id = $1 AND a.user_key = d.user_key AND (d.y > 0 OR d.x > 0)`,
        [...params, plan.from],
      );
    } else {
      // Activity only grows, so a member whose figures changed has an island reaching into [from, window end].
      const changed = `SELECT DISTINCT j.user_key FROM layer_island j
                       WHERE j.fact_id = $2::int AND j.grain = 0 AND j.end_p >= GREATEST($8::int, $5::int) AND j.start_p <= LEAST($4::int, $7::int)
                         AND (j.next_start IS NULL OR j.next_start > GREATEST($8::int, $5::int))`;
      res = await c.query(
        `WITH act AS (${activitySql("$2", "$3", "$4", "$5", "$6", "$7", { users: changed })})
         UPDATE campaign_assignment a SET window_days = act.y, covariate_days = act.x
         FROM act WHERE a.campaign_id = $1 AND a.user_key = act.user_key AND (a.window_days <> act.y OR a.covariate_days <> act.x)`,
        [...params, plan.from],
      );
    }
    const changed = res.rowCount ?? 0;
    await hooks.done(c, plan, changed);
    return { plan, changed };
  }, 1);
}

/**
 * Per arm, and per arm and breakdown bucket (the member's inactivity_periods bucket and state at the
 * list's as_of): n, Σy, Σy², Σx, Σx², Σxy over the members' stored window days (y: the goal metric,
 * `returned` = 1 when any) and covariate days (x). One scan of the campaign's assignments, summed per
 * (arm, state, inactivity capped at 30); those few cells are then added per arm and per bucket.
 */
export async function goalAggregates(pool: pg.Pool, campaignId: string, metric: "returned" | "active_periods"): Promise<GoalAggregateRow[]> {
  const y = metric === "returned" ? "CASE WHEN window_days > 0 THEN 1 ELSE 0 END" : "window_days";
  const r = await withTransaction(pool, async (c) => {
    await c.query("SET LOCAL jit = off");
    return c.query<SumsRow & { arm: CampaignArm; state: string; ip: number }>(
      `SELECT arm, state, ip, count(*)::int AS n, sum(y)::float8 AS sy, sum(y * y)::float8 AS syy,
              sum(x)::float8 AS sx, sum(x * x)::float8 AS sxx, sum(x * y)::float8 AS sxy
       FROM (SELECT arm, state, LEAST(GREATEST(inactivity_periods, 0), 30) AS ip, ${y} AS y, covariate_days AS x
             FROM campaign_assignment WHERE campaign_id = $1) a
       GROUP BY arm, state, ip`,
      [campaignId],
    );
  });
  const cells = new Map<string, GoalAggregateRow>();
  const addTo = (arm: CampaignArm, dimension: GoalAggregateRow["dimension"], bucket: string | null, s: SumsRow) => {
    const key = `${arm}|${dimension}|${bucket}`;
    const cell = cells.get(key) ?? { arm, dimension, bucket, n: 0, sy: 0, syy: 0, sx: 0, sxx: 0, sxy: 0 };
    cell.n += s.n;
    cell.sy += s.sy;
    cell.syy += s.syy;
    cell.sx += s.sx;
    cell.sxx += s.sxx;
    cell.sxy += s.sxy;
    cells.set(key, cell);
  };
  for (const row of r.rows) {
    addTo(row.arm, "all", null, row);
    addTo(row.arm, "inactivity_periods", inactivityBucket(row.ip), row);
    addTo(row.arm, "state", row.state, row);
  }
  return [...cells.values()];
}

export interface OutcomeAggregateRow {
  name: string;
  arm: CampaignArm;
  /** Users with at least one outcome of this name in the window. */
  converters: number;
  /** Σ and Σ² of each converter's summed value (absent values count 0). */
  sv: number;
  svv: number;
  /** Σ of the covariate over converters, and Σ covariate × value. */
  sx: number;
  sxv: number;
}

/** Per outcome name and arm, over outcomes that occurred in [from, to) and stand (not retracted): converters, value sums and covariate cross-sums. */
export async function outcomeAggregates(pool: pg.Pool, q: { campaignId: string; from: Date; to: Date }): Promise<OutcomeAggregateRow[]> {
  const r = await pool.query<OutcomeAggregateRow>(
    `WITH o AS (
       SELECT user_key, name, sum(COALESCE(value, 0))::float8 AS v
       FROM campaign_outcome WHERE campaign_id = $1 AND occurred_at >= $2 AND occurred_at < $3 AND retracted_at IS NULL
       GROUP BY user_key, name
     )
     SELECT o.name, a.arm, count(*)::int AS converters, sum(o.v)::float8 AS sv, sum(o.v * o.v)::float8 AS svv,
            sum(a.covariate_days)::float8 AS sx, sum(a.covariate_days * o.v)::float8 AS sxv
     FROM o JOIN campaign_assignment a ON a.campaign_id = $1 AND a.user_key = o.user_key
     GROUP BY o.name, a.arm
     ORDER BY o.name, a.arm`,
    [q.campaignId, q.from, q.to],
  );
  return r.rows;
}

export interface FunnelRow {
  arm: CampaignArm;
  channel: string | null;
  status: string | null;
  users: number;
}

/** Distinct users per arm; per arm and status; per arm, channel and status. */
export async function sendFunnel(pool: pg.Pool, campaignId: string): Promise<FunnelRow[]> {
  const r = await pool.query<FunnelRow & { g_channel: number; g_status: number }>(
    `SELECT a.arm, s.channel, s.status, GROUPING(s.channel)::int AS g_channel, GROUPING(s.status)::int AS g_status,
            count(DISTINCT s.user_key)::int AS users
     FROM campaign_send s JOIN campaign_assignment a ON a.campaign_id = s.campaign_id AND a.user_key = s.user_key
     WHERE s.campaign_id = $1
     GROUP BY GROUPING SETS ((a.arm), (a.arm, s.status), (a.arm, s.channel, s.status))`,
    [campaignId],
  );
  return r.rows.map((x) => ({ arm: x.arm, channel: x.g_channel ? null : x.channel, status: x.g_status ? null : x.status, users: x.users }));
}
