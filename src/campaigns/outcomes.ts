import type pg from "pg";
import { z } from "zod";
import type { AppContext } from "../context.js";
import { badRequest, conflict, notFound, ProblemError } from "../http/problem.js";
import { cursorText, decodeCursor, pageQuerySchema, toPage, type PageQuery } from "../http/pagination.js";
import { userIdString } from "../facts/event-validation.js";
import { OUTCOME_STATUSES, type OutcomeChange, type OutcomeRevisionRow, type OutcomeRow, type OutcomeStatus } from "../activation/postgres/campaign-outcomes.js";
import { lockAssigned, requireAssigned } from "./assigning.js";
import { getCampaignRecord, queueResultsRecomputation } from "./campaigns.js";
import { checkOutcome, checkText, MAX_OUTCOME_ID_LENGTH, MAX_OUTCOME_VALUE } from "./recording.js";

/**
 * Reading, correcting and retracting the outcomes a CRM recorded (POST …/outcomes, ./recording.ts).
 *
 * The outcome_id is the outcome's identity; every other field is what the CRM knows of the conversion
 * and may have got wrong, so a correction (PUT) replaces them all: value (a refund), occurred_at, name,
 * and user_id (a conversion attributed to the wrong account), under the checks recording makes. A
 * correction that changes something keeps the revision it replaces (campaign_outcome_revision), bumps
 * the outcome's revision and sets corrected_at; the same values again change nothing.
 *
 * A retraction (DELETE: a conversion recorded in error) keeps the outcome, marked retracted_at, and the
 * results no longer count it. It is final: the outcome_id is never recorded again — a POST naming it is
 * reported under `conflicts` and stores nothing, and a PUT is a 409. A CRM delivers at least once and
 * retries late: were the id free again, a retry of the first report arriving after the retraction
 * would silently bring the conversion back. A conversion that does count after all is recorded under a
 * new id. Retracting again, like correcting with the same values, answers as the first time did.
 *
 * Any change bumps the campaign's data version in its transaction and queues the recomputation of its
 * results after it, as a recorded outcome does.
 */

/** The earlier revisions a single outcome's read shows (corrections are rare; the revision number counts them all). */
const MAX_HISTORY = 100;

const outcomeIdParam = z
  .string()
  .superRefine((raw, ctx) => {
    const c = checkText(raw, "outcome_id", MAX_OUTCOME_ID_LENGTH);
    if (!c.ok) ctx.addIssue({ code: "custom", message: c.message });
  })
  .meta({ minLength: 1, maxLength: MAX_OUTCOME_ID_LENGTH });
export const outcomeParams = z.object({ id: z.string().uuid(), outcome_id: outcomeIdParam });

const outcomeFields = {
  user_id: z.string(),
  name: z.string(),
  occurred_at: z.string(),
  value: z.number().nullable(),
};

export const outcomeRecordSchema = z
  .object({
    outcome_id: z.string(),
    ...outcomeFields,
    status: z
      .enum(OUTCOME_STATUSES)
      .describe("`recorded` as first reported; `corrected` since (see revision, corrected_at); `retracted`: no longer counted in the results, final"),
    revision: z.number().int().describe("1 as first recorded, plus one per correction that changed something"),
    recorded_at: z.string().describe("When the outcome was first recorded"),
    corrected_at: z.string().nullable().describe("When the last correction that changed something was made"),
    retracted_at: z.string().nullable(),
  })
  .meta({ id: "CampaignOutcomeRecord" });
export type OutcomeView = z.infer<typeof outcomeRecordSchema>;

const revisionSchema = z
  .object({
    revision: z.number().int(),
    ...outcomeFields,
    recorded_at: z.string().describe("When this revision was recorded (first reported, or corrected to it)"),
    replaced_at: z.string().describe("When a correction replaced it"),
  })
  .meta({ id: "CampaignOutcomeRevision" });

export const outcomeDetailSchema = outcomeRecordSchema
  .extend({ history: z.array(revisionSchema).describe(`The revisions corrections replaced, newest first (the latest ${MAX_HISTORY})`) })
  .meta({ id: "CampaignOutcomeDetail" });

/** Documents the body of a correction; it is checked in the handler, as a recorded outcome is. */
export const outcomeCorrectionSchema = z
  .object({
    outcome_id: z.string().optional().describe("When sent, the outcome_id of the URL (an outcome's id does not change)"),
    user_id: userIdString,
    occurred_at: z.string().describe("RFC 3339 with an offset or Z"),
    name: z.string().min(1).max(100),
    value: z.number().min(-MAX_OUTCOME_VALUE).max(MAX_OUTCOME_VALUE).nullable().optional().describe("Absent or null: no value"),
  })
  .strict()
  .meta({ id: "CampaignOutcomeCorrection" });

export const outcomeListQuerySchema = pageQuerySchema.extend({
  user_id: userIdString.optional().describe("Only this user's outcomes"),
  status: z.enum(OUTCOME_STATUSES).optional().describe("Only outcomes in this status"),
});

const statusOf = (r: OutcomeRow): OutcomeStatus => (r.retracted_at ? "retracted" : r.corrected_at ? "corrected" : "recorded");

function outcomeView(r: OutcomeRow): OutcomeView {
  return {
    outcome_id: r.outcome_id,
    user_id: r.user_id,
    name: r.name,
    occurred_at: r.occurred_at.toISOString(),
    value: r.value,
    status: statusOf(r),
    revision: r.revision,
    recorded_at: r.recorded_at.toISOString(),
    corrected_at: r.corrected_at?.toISOString() ?? null,
    retracted_at: r.retracted_at?.toISOString() ?? null,
  };
}

const revisionView = (r: OutcomeRevisionRow) => ({
  revision: r.revision,
  user_id: r.user_id,
  name: r.name,
  occurred_at: r.occurred_at.toISOString(),
  value: r.value,
  recorded_at: r.recorded_at.toISOString(),
  replaced_at: r.replaced_at.toISOString(),
});

const missing = (id: string, outcomeId: string) =>
  notFound(`Campaign ${id} has no outcome '${outcomeId}'. Outcomes are recorded with POST /v1/campaigns/${id}/outcomes.`);

async function assignedCampaign(ctx: AppContext, id: string, what: string) {
  requireAssigned(await getCampaignRecord(ctx, id), what);
}

export async function listOutcomes(ctx: AppContext, id: string, q: PageQuery & { user_id?: string; status?: OutcomeStatus }) {
  const after = decodeCursor(q.cursor, z.tuple([cursorText]));
  await assignedCampaign(ctx, id, "read its outcomes");
  const rows = await ctx.engine.campaignOutcomePage(id, { userId: q.user_id, status: q.status, afterOutcomeId: after?.[0], limit: q.limit + 1 });
  return toPage(rows, q.limit, (r) => [r.outcome_id], outcomeView);
}

export async function getOutcome(ctx: AppContext, id: string, outcomeId: string) {
  await assignedCampaign(ctx, id, "read its outcomes");
  const row = await ctx.engine.campaignOutcome(id, outcomeId);
  if (!row) throw missing(id, outcomeId);
  return { ...outcomeView(row), history: (await ctx.engine.campaignOutcomeRevisions(id, outcomeId, row.revision, MAX_HISTORY)).map(revisionView) };
}

type RecordResponse = (client: pg.ClientBase, response: { status: number; body: unknown }) => Promise<void>;

/** The correction a PUT body asks for, checked as a recorded outcome is (400 naming the field). */
function correctionOf(body: unknown, outcomeId: string): OutcomeChange {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw badRequest("The body must be an object {user_id, occurred_at, name, value}.", [{ path: "body", message: "expected an object" }]);
  const sent = (body as Record<string, unknown>).outcome_id;
  if (sent !== undefined && sent !== outcomeId)
    throw badRequest(`outcome_id: the body names another outcome than the URL ('${outcomeId}'); an outcome's id does not change.`, [
      { path: "outcome_id", message: "must be the outcome_id of the URL" },
    ]);
  const c = checkOutcome({ ...body, outcome_id: outcomeId });
  if (!c.ok) throw badRequest(`${c.field}: ${c.message}.`, [{ path: c.field || "body", message: c.message }]);
  const { outcomeId: _id, ...outcome } = c.value;
  return { kind: "correct", outcome };
}

/**
 * Applies a correction or a retraction (see the module comment): the campaign must be assigned (409
 * otherwise), the outcome recorded (404). Answers the outcome as it now is, recorded with the request's
 * Idempotency-Key in the change's transaction.
 */
/**
 * The revision an If-Match header names: the outcome's ETag as a read gives it (`"3"`), `*` (any
 * revision: no check) or absent (no check). Anything else is a 400 naming the header.
 */
export function revisionOfIfMatch(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === "*") return undefined;
  const m = /^\s*(?:W\/)?"(\d{1,9})"\s*$/.exec(header);
  if (!m) throw badRequest(`If-Match: expected the outcome's ETag ("<revision>", as GET answers it) or *; got ${header}.`, [{ path: "If-Match", message: "expected \"<revision>\" or *" }]);
  return Number(m[1]);
}

/** The ETag of an outcome's current revision (If-Match takes it back). */
export const outcomeEtag = (revision: number) => `"${revision}"`;

async function changeOutcome(ctx: AppContext, id: string, outcomeId: string, change: OutcomeChange, record?: RecordResponse): Promise<OutcomeView> {
  const what = change.kind === "retract" ? "retract an outcome" : "correct an outcome";
  await assignedCampaign(ctx, id, what);
  let view: OutcomeView | null = null;
  const result = await ctx.engine.changeCampaignOutcome(id, outcomeId, change, {
    // The campaign's row first, as a batch of outcomes takes it: a batch naming this outcome_id waits
    // for this change, or this change for the batch, never each for the other.
    before: (tx) => lockAssigned(tx, id, what),
    after: async (tx, r) => {
      if (r.status === "changed") await tx.query(`UPDATE campaign SET data_version = data_version + 1 WHERE id = $1`, [id]);
      view = outcomeView(r.row);
      await record?.(tx, { status: 200, body: view });
    },
  });
  if (result.status === "missing") throw missing(id, outcomeId);
  if (result.status === "revision_mismatch")
    throw new ProblemError(
      412,
      `Outcome '${outcomeId}' of campaign ${id} is at revision ${result.row.revision}, not the one If-Match names: it changed since it was read; ` +
        "nothing was changed. Read it again and decide.",
      { revision: result.row.revision, headers: { etag: outcomeEtag(result.row.revision) } },
    );
  if (result.status === "retracted")
    throw conflict(
      `Outcome '${outcomeId}' of campaign ${id} was retracted at ${result.row.retracted_at!.toISOString()}; a retraction is final. ` +
        "A conversion that counts after all is recorded under a new outcome_id.",
      { outcome_status: "retracted" },
    );
  if (result.status === "user_not_assigned") {
    const user = (change as Extract<OutcomeChange, { kind: "correct" }>).outcome.userId;
    throw badRequest(`user_id: '${user}' is not assigned in campaign ${id}; nothing was changed.`, [
      { path: "user_id", message: `the user is not assigned in this campaign ('${user}')` },
    ]);
  }
  // Like a recorded batch: a burst of corrections makes one recomputation.
  if (result.status === "changed") await queueResultsRecomputation(ctx, [id], 1000);
  return view!;
}

export function correctOutcome(
  ctx: AppContext, id: string, outcomeId: string, body: unknown, ifMatch: string | undefined, record?: RecordResponse,
): Promise<OutcomeView> {
  return changeOutcome(ctx, id, outcomeId, { ...correctionOf(body, outcomeId), ifRevision: revisionOfIfMatch(ifMatch) }, record);
}

export function retractOutcome(ctx: AppContext, id: string, outcomeId: string, ifMatch: string | undefined, record?: RecordResponse): Promise<OutcomeView> {
  return changeOutcome(ctx, id, outcomeId, { kind: "retract", ifRevision: revisionOfIfMatch(ifMatch) }, record);
}
