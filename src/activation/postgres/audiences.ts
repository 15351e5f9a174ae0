import type pg from "pg";
import type { MemberRow } from "../engine.js";
import type { Readable } from "node:stream";
import { compileAudienceQuery, MEMBER_STATUS_FIELDS, type AudienceQuery } from "./audience-sql.js";
import { copyQueryOut, type ExportFormat } from "./copy-out.js";
import { EXPORT_FORMATS, hasRenderedExports, renderMemberExport, streamRenderedExport } from "./member-exports.js";
import { periodDateSql } from "./queries.js";
import { withTransaction } from "./tx.js";

/** Member columns as served: periods become their first day. */
function memberOut(g: number, alias: string): string {
  return MEMBER_STATUS_FIELDS.map((f) =>
    f === "first_active_period" || f === "last_active_period" ? `${periodDateSql(g, `${alias}.${f}`)} AS ${f}` : `${alias}.${f}`,
  ).join(", ");
}

export const MEMBER_COLUMNS = ["user_id", ...MEMBER_STATUS_FIELDS] as const;

export interface PreviewResult {
  count: number;
  by_state: Record<string, number>;
  by_growth_state: Record<string, number>;
  sample: Array<Record<string, unknown>>;
}

/**
 * Before the watermark's period an audience reads every island governing P, most of them in the closed
 * partition. The planner tends to walk its start_p index for them (an index scan over millions of
 * entries, each a random heap read, ten times slower than reading the partition through): plain index
 * scans are off for such a query. Bitmap scans stay on.
 */
async function steerPastPeriodPlan(c: pg.ClientBase, q: AudienceQuery): Promise<void> {
  if (!q.latest) await c.query("SET LOCAL enable_indexscan = off");
}

/**
 * The audience's query as the transaction's snapshot allows, as the first statements of a transaction.
 * The latest-island shortcut was decided when the audience was resolved, on another snapshot; a run
 * that committed since (a new day: latest islands that start after P) would make it wrong, so it is
 * confirmed here, under REPEATABLE READ (the query then reads this very snapshot), and otherwise
 * dropped: the general path is right whatever was processed after P.
 */
async function settleQuery(c: pg.ClientBase, q: AudienceQuery): Promise<AudienceQuery> {
  await c.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  if (!q.latest) return q;
  const r = await c.query<{ still: boolean }>(
    `SELECT (SELECT processed_through = $2::date AND running_through IS NULL AND dirty_from IS NULL FROM fact WHERE id = $1)
        AND NOT EXISTS (SELECT 1 FROM fact WHERE id = ANY($3::int[]) AND (processed_through IS NULL OR processed_through > $4::date)) AS still`,
    [q.factId, q.watermark ?? null, q.otherFacts ?? [], q.periodEnd ?? q.watermark ?? null],
  );
  return r.rows[0]?.still === true ? q : { ...q, latest: false };
}

export async function previewAudience(pool: pg.Pool, resolved: AudienceQuery, sampleSize: number): Promise<PreviewResult> {
  const g = Number(resolved.grain) | 0;
  const res = await withTransaction(pool, async (c) => {
    const q = await settleQuery(c, resolved);
    const { sql, params } = compileAudienceQuery(q);
    // Previews are interactive: bound their cost so one heavy filter cannot hold a connection for long.
    await c.query("SET LOCAL statement_timeout = '60s'");
    // JIT compilation costs more than it saves on interactive queries of this size.
    await c.query("SET LOCAL jit = off");
    await steerPastPeriodPlan(c, q);
    return c.query(
      `WITH m AS MATERIALIZED (${sql})
       SELECT (SELECT count(*) FROM m)::int AS count,
              (SELECT COALESCE(json_object_agg(state, n), '{}') FROM (SELECT state, count(*)::int AS n FROM m GROUP BY state) a) AS by_state,
              (SELECT COALESCE(json_object_agg(growth_state, n), '{}') FROM (SELECT growth_state, count(*)::int AS n FROM m WHERE growth_state IS NOT NULL GROUP BY growth_state) b) AS by_growth_state,
              (SELECT COALESCE(json_agg(z), '[]') FROM (
                 SELECT u.external_id AS user_id, ${memberOut(g, "m")}
                 FROM (SELECT * FROM m ORDER BY user_key LIMIT ${Number(sampleSize) | 0}) m JOIN app_user u ON u.user_key = m.user_key
                 ORDER BY m.user_key) z) AS sample`,
      params,
    );
  });
  const row = res.rows[0]!;
  return { count: row.count, by_state: row.by_state, by_growth_state: row.by_growth_state, sample: row.sample };
}

/**
 * Computes and freezes the members of a materialisation in one transaction: a retry after a crash
 * starts over (the earlier partial insert was rolled back), so the list has no duplicates and no gaps.
 * Then renders its exports, both formats at once on two connections (each replaces its own chunks, so
 * a retry redoes them whole). The caller marks the record succeeded only after all of it: until
 * then nothing of the list is served.
 */
export async function materializeMembers(pool: pg.Pool, materializationId: string, resolved: AudienceQuery): Promise<number> {
  const g = Number(resolved.grain) | 0;
  const count = await withTransaction(pool, async (c) => {
    const q = await settleQuery(c, resolved);
    const { sql, params } = compileAudienceQuery(q);
    await steerPastPeriodPlan(c, q);
    await c.query(`DELETE FROM audience_member WHERE materialization_id = $1`, [materializationId]);
    const mid = `$${params.length + 1}::uuid`;
    const res = await c.query(
      `INSERT INTO audience_member (materialization_id, user_key, ${MEMBER_STATUS_FIELDS.join(", ")})
       SELECT ${mid}, m.user_key, ${memberOut(g, "m")} FROM (${sql}) m`,
      [...params, materializationId],
    );
    return res.rowCount ?? 0;
  }, 1);
  await Promise.all(EXPORT_FORMATS.map((format) => withTransaction(pool, (c) => renderMemberExport(c, materializationId, format, MEMBERS_OF_ONE, MEMBER_COLUMNS), 1)));
  return count;
}

const MEMBER_SELECT = `SELECT m.user_key, u.external_id AS user_id, ${MEMBER_STATUS_FIELDS.map((f) => `m.${f}`).join(", ")}
  FROM audience_member m JOIN app_user u ON u.user_key = m.user_key`;
/** Every member of materialisation $1, as exported (in user order for the unrendered export). */
const MEMBERS_OF_ONE = `${MEMBER_SELECT} WHERE m.materialization_id = $1`;

export async function memberPage(pool: pg.Pool, materializationId: string, afterUserKey: number | undefined, limit: number) {
  const res = await pool.query(
    `${MEMBER_SELECT} WHERE m.materialization_id = $1 AND m.user_key > $2 ORDER BY m.user_key LIMIT $3`,
    [materializationId, afterUserKey ?? -1, limit],
  );
  return res.rows as Array<MemberRow & { user_key: number }>;
}

/** The members streamed whole: their rendered export when the list has one, else formatted now. */
export async function memberExport(pool: pg.Pool, materializationId: string, format: ExportFormat, rendered = true): Promise<Readable> {
  if (rendered && (await hasRenderedExports(pool, materializationId, format)))
    return streamRenderedExport(pool, materializationId, format, format === "csv" ? `${MEMBER_COLUMNS.join(",")}\n` : "");
  return copyQueryOut(pool, `${MEMBERS_OF_ONE} ORDER BY m.user_key`, [materializationId], MEMBER_COLUMNS, format);
}

/** Who entered (in `current`, not in `since`) or exited (the reverse) between two materialisations. */
export async function changeCounts(pool: pg.Pool, current: string, since: string) {
  const res = await pool.query<{ entered: number; exited: number; stayed: number }>(
    `SELECT
       (SELECT count(*) FROM audience_member a WHERE a.materialization_id = $1
          AND NOT EXISTS (SELECT 1 FROM audience_member b WHERE b.materialization_id = $2 AND b.user_key = a.user_key))::int AS entered,
       (SELECT count(*) FROM audience_member b WHERE b.materialization_id = $2
          AND NOT EXISTS (SELECT 1 FROM audience_member a WHERE a.materialization_id = $1 AND a.user_key = b.user_key))::int AS exited,
       (SELECT count(*) FROM audience_member a JOIN audience_member b ON b.materialization_id = $2 AND b.user_key = a.user_key
          WHERE a.materialization_id = $1)::int AS stayed`,
    [current, since],
  );
  return res.rows[0]!;
}

export async function changePage(pool: pg.Pool, current: string, since: string, kind: "entered" | "exited", afterUserKey: number | undefined, limit: number) {
  const [from, other] = kind === "entered" ? [current, since] : [since, current];
  const res = await pool.query(
    `SELECT a.user_key, u.external_id AS user_id FROM audience_member a JOIN app_user u ON u.user_key = a.user_key
     WHERE a.materialization_id = $1 AND a.user_key > $3
       AND NOT EXISTS (SELECT 1 FROM audience_member b WHERE b.materialization_id = $2 AND b.user_key = a.user_key)
     ORDER BY a.user_key LIMIT $4`,
    [from, other, afterUserKey ?? -1, limit],
  );
  return res.rows as Array<{ user_key: number; user_id: string }>;
}

export function changeExport(pool: pg.Pool, current: string, since: string, kind: "entered" | "exited", format: ExportFormat) {
  const [from, other] = kind === "entered" ? [current, since] : [since, current];
  return copyQueryOut(
    pool,
    `SELECT a.user_key, u.external_id AS user_id FROM audience_member a JOIN app_user u ON u.user_key = a.user_key
     WHERE a.materialization_id = $1
       AND NOT EXISTS (SELECT 1 FROM audience_member b WHERE b.materialization_id = $2 AND b.user_key = a.user_key)
     ORDER BY a.user_key`,
    [from, other],
    ["user_id"],
    format,
  );
}

export async function deleteMembers(pool: pg.Pool, materializationId: string) {
  await withTransaction(pool, async (c) => {
    await c.query(`DELETE FROM audience_member WHERE materialization_id = $1`, [materializationId]);
    await c.query(`DELETE FROM member_export_chunk WHERE materialization_id = $1`, [materializationId]);
  });
}
