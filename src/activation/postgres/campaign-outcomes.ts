import type pg from "pg";
import { rejectedUsers, type OutcomeInput } from "./campaigns.js";
import { withTransaction } from "./tx.js";

/**
 * One outcome of a campaign at a time: read, corrected, retracted (outcomes come in by batches, see
 * recordOutcomes in ./campaigns.ts). A correction that changes something keeps the revision it
 * replaces in campaign_outcome_revision; a retraction marks the row, which the results then skip.
 */

export const OUTCOME_STATUSES = ["recorded", "corrected", "retracted"] as const;
export type OutcomeStatus = (typeof OUTCOME_STATUSES)[number];

export interface OutcomeRow {
  outcome_id: string;
  user_id: string;
  name: string;
  occurred_at: Date;
  value: number | null;
  revision: number;
  recorded_at: Date;
  corrected_at: Date | null;
  retracted_at: Date | null;
}

export interface OutcomeRevisionRow {
  revision: number;
  user_id: string;
  name: string;
  occurred_at: Date;
  value: number | null;
  recorded_at: Date;
  replaced_at: Date;
}

const OUTCOME_SELECT = `SELECT o.outcome_id, u.external_id AS user_id, o.name, o.occurred_at, o.value, o.revision,
                               o.created_at AS recorded_at, o.corrected_at, o.retracted_at
                        FROM campaign_outcome o JOIN app_user u ON u.user_key = o.user_key`;

const STATUS_CONDITION: Record<OutcomeStatus, string> = {
  recorded: "o.retracted_at IS NULL AND o.corrected_at IS NULL",
  corrected: "o.retracted_at IS NULL AND o.corrected_at IS NOT NULL",
  retracted: "o.retracted_at IS NOT NULL",
};

export async function getOutcome(db: pg.Pool | pg.ClientBase, campaignId: string, outcomeId: string): Promise<OutcomeRow | null> {
  const r = await db.query<OutcomeRow>(`${OUTCOME_SELECT} WHERE o.campaign_id = $1 AND o.outcome_id = $2`, [campaignId, outcomeId]);
  return r.rows[0] ?? null;
}

export interface OutcomePageQuery {
  userId?: string;
  status?: OutcomeStatus;
  afterOutcomeId?: string;
  limit: number;
}

/** A page of a campaign's outcomes in outcome_id order (the primary key's), optionally of one user or status. */
export async function outcomePage(pool: pg.Pool, campaignId: string, q: OutcomePageQuery): Promise<OutcomeRow[]> {
  const params: unknown[] = [campaignId];
  const where = ["o.campaign_id = $1"];
  if (q.afterOutcomeId !== undefined) where.push(`o.outcome_id > $${params.push(q.afterOutcomeId)}`);
  // By the user's key: the (campaign_id, user_key) index finds the user's few outcomes.
  if (q.userId !== undefined) where.push(`o.user_key = (SELECT user_key FROM app_user WHERE external_id = $${params.push(q.userId)})`);
  if (q.status) where.push(STATUS_CONDITION[q.status]);
  const r = await pool.query<OutcomeRow>(`${OUTCOME_SELECT} WHERE ${where.join(" AND ")} ORDER BY o.outcome_id LIMIT $${params.push(q.limit)}`, params);
  return r.rows;
}

/**
 * The revisions corrections replaced before `revision` (the outcome's, as read), newest first (at most
 * `limit`): a correction committed since that read is left out, not shown as having replaced the
 * revision the read answers as current.
 */
export async function outcomeRevisions(pool: pg.Pool, campaignId: string, outcomeId: string, revision: number, limit: number): Promise<OutcomeRevisionRow[]> {
  const r = await pool.query<OutcomeRevisionRow>(
    `SELECT r.revision, u.external_id AS user_id, r.name, r.occurred_at, r.value, r.recorded_at, r.replaced_at
     FROM campaign_outcome_revision r JOIN app_user u ON u.user_key = r.user_key
     WHERE r.campaign_id = $1 AND r.outcome_id = $2 AND r.revision < $3
     ORDER BY r.revision DESC
     LIMIT $4`,
    [campaignId, outcomeId, revision, limit],
  );
  return r.rows;
}

/** `ifRevision`: apply only while the outcome is at this revision (the request's If-Match). */
export type OutcomeChange = ({ kind: "correct"; outcome: Omit<OutcomeInput, "outcomeId"> } | { kind: "retract" }) & { ifRevision?: number };

export type OutcomeChangeResult =
  | { status: "missing" }
  /** The outcome is at another revision than the request's If-Match: nothing written. */
  | { status: "revision_mismatch"; row: OutcomeRow }
  /** A correction of a retracted outcome: refused (a retraction is final). */
  | { status: "retracted"; row: OutcomeRow }
  /** A correction naming a user who is not assigned in the campaign: refused. */
  | { status: "user_not_assigned" }
  /** The same values again, or a retraction of a retracted outcome: nothing written. */
  | { status: "unchanged"; row: OutcomeRow }
  | { status: "changed"; row: OutcomeRow };

/**
 * Corrects or retracts one outcome under its row lock. `before` runs first in the transaction (the
 * caller locks the campaign there: before the outcome, as a batch of outcomes does, or the two would
 * deadlock). `after` runs last when the change is applied or found already made (status changed or
 * unchanged); refusals write nothing.
 */
export async function changeOutcome(
  pool: pg.Pool, campaignId: string, outcomeId: string, change: OutcomeChange,
  hooks: {
    before?: (tx: pg.PoolClient) => Promise<void>;
    after: (tx: pg.PoolClient, result: Extract<OutcomeChangeResult, { row: OutcomeRow }>) => Promise<void>;
  },
): Promise<OutcomeChangeResult> {
  return withTransaction(pool, async (c) => {
    await hooks.before?.(c);
    const locked = await c.query<{ retracted: boolean; revision: number }>(
      `SELECT retracted_at IS NOT NULL AS retracted, revision FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = $2 FOR UPDATE`,
      [campaignId, outcomeId],
    );
    if (!locked.rows[0]) return { status: "missing" };
    if (change.ifRevision !== undefined && locked.rows[0].revision !== change.ifRevision)
      return { status: "revision_mismatch", row: (await getOutcome(c, campaignId, outcomeId))! };
    // The change's instant, read once the row is ours (not now(), the transaction's start): a change that
    // began earlier but waited for the row behind another one is dated after it, so corrected_at, the
    // history's replaced_at and retracted_at follow the order the changes were made in. At least a
    // millisecond after the outcome's last change: the instants are kept to the millisecond, and two
    // changes made within one would otherwise read as simultaneous.
    const at = (
      await c.query<{ at: Date }>(
        `SELECT GREATEST(clock_timestamp(), GREATEST(created_at, corrected_at, retracted_at) + interval '1 millisecond') AS at
         FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = $2`,
        [campaignId, outcomeId],
      )
    ).rows[0]!.at;
    const current = async () => (await getOutcome(c, campaignId, outcomeId))!;
    let result: Extract<OutcomeChangeResult, { row: OutcomeRow }>;
    if (change.kind === "retract") {
      if (!locked.rows[0].retracted)
        await c.query(`UPDATE campaign_outcome SET retracted_at = $3 WHERE campaign_id = $1 AND outcome_id = $2`, [campaignId, outcomeId, at]);
      result = { status: locked.rows[0].retracted ? "unchanged" : "changed", row: await current() };
    } else {
      if (locked.rows[0].retracted) return { status: "retracted", row: await current() };
      const o = change.outcome;
      if ((await rejectedUsers(c, campaignId, [o.userId], ["treatment", "control", "global_control"])).count > 0) return { status: "user_not_assigned" };
      // $1 the campaign, $2 the outcome, $3–$6 user_id, name, occurred_at, value (compared as recordOutcomes compares a batch's items), $7 the change's instant.
      const values = [campaignId, outcomeId, o.userId, o.name, o.occurredAt, o.value, at];
      const replaced = await c.query(
        `INSERT INTO campaign_outcome_revision (campaign_id, outcome_id, revision, user_key, name, occurred_at, value, recorded_at, replaced_at)
         SELECT o.campaign_id, o.outcome_id, o.revision, o.user_key, o.name, o.occurred_at, o.value, COALESCE(o.corrected_at, o.created_at), $7::timestamptz
         FROM campaign_outcome o JOIN app_user u ON u.external_id = $3
         WHERE o.campaign_id = $1 AND o.outcome_id = $2
           AND (o.user_key, o.name, o.occurred_at, o.value) IS DISTINCT FROM (u.user_key, $4::text, $5::timestamptz, $6::float8)`,
        values,
      );
      if (replaced.rowCount)
        await c.query(
          `UPDATE campaign_outcome o SET user_key = u.user_key, name = $4, occurred_at = $5, value = $6, revision = o.revision + 1, corrected_at = $7
           FROM app_user u WHERE u.external_id = $3 AND o.campaign_id = $1 AND o.outcome_id = $2`,
          values,
        );
      result = { status: replaced.rowCount ? "changed" : "unchanged", row: await current() };
    }
    await hooks.after(c, result);
    return result;
  });
}
