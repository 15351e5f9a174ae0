import type pg from "pg";
import { z } from "zod";
import { CONTROL_CHARACTER, longerThan } from "../util/text.js";
import type { AppContext } from "../context.js";
import { badRequest, ProblemError, type ProblemFieldError } from "../http/problem.js";
import { checkUserId, MAX_FUTURE_MS, MIN_OCCURRED_AT_MS, parseInstant, userIdString } from "../facts/event-validation.js";
import type { BatchOutcome, CampaignArm } from "../activation/postgres/campaigns.js";
import { lockAssigned, requireAssigned } from "./assigning.js";
import { getCampaignRecord, lockCampaign, queueResultsRecomputation, type LockReason } from "./campaigns.js";

/**
 * Sends and outcomes the CRM tool reports for a campaign, in batches: every item is checked before
 * anything is stored, and a batch that names a user who may not be recorded stores nothing. The first
 * batch stored launches the campaign (./campaigns.ts).
 */

export const SEND_STATUSES = ["sent", "delivered", "failed", "opened", "clicked"] as const;
export const MAX_BATCH = 10_000;
/** The longest outcome_id, in characters (code points), as user ids are counted. */
export const MAX_OUTCOME_ID_LENGTH = 200;
/**
 * The largest outcome value either way: results sum values and their squares over every member, which
 * must stay finite (a quadrillion allows revenue in micro-units of any currency).
 */
export const MAX_OUTCOME_VALUE = 1e15;


export const sendSchema = z
  .object({
    user_id: z.union([userIdString, z.number().int()]),
    sent_at: z.string().describe("RFC 3339 with an offset or Z"),
    channel: z.string().min(1).max(64).describe("e.g. push, email, sms"),
    status: z.enum(SEND_STATUSES),
  })
  .strict()
  .meta({ id: "CampaignSend" });

export const outcomeSchema = z
  .object({
    outcome_id: z
      .string()
      .min(1)
      .max(MAX_OUTCOME_ID_LENGTH)
      .describe(
        "The CRM's id of this conversion: recording it again changes nothing (with other values, or once it is retracted, the answer lists it under conflicts); " +
          "correct or retract it at /v1/campaigns/{id}/outcomes/{outcome_id}",
      ),
    user_id: z.union([userIdString, z.number().int()]),
    occurred_at: z.string().describe("RFC 3339 with an offset or Z"),
    name: z.string().min(1).max(100).describe("e.g. purchase; results report each name"),
    value: z
      .number()
      .min(-MAX_OUTCOME_VALUE)
      .max(MAX_OUTCOME_VALUE)
      .nullable()
      .optional()
      .describe(`e.g. revenue; absent counts 0 in the mean value; at most ${MAX_OUTCOME_VALUE.toExponential()} either way`),
  })
  .strict()
  .meta({ id: "CampaignOutcome" });

type ItemCheck<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

export function checkText(raw: unknown, field: string, max: number): ItemCheck<string> {
  if (typeof raw !== "string") return { ok: false, field, message: raw === undefined ? `${field} is required` : `${field} must be a string` };
  if (raw.length === 0 || longerThan(raw, max)) return { ok: false, field, message: `${field} must be 1–${max} characters` };
  if (CONTROL_CHARACTER.test(raw)) return { ok: false, field, message: `${field} contains a control character` };
  return { ok: true, value: raw };
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[]): ItemCheck<null> {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) return { ok: false, field: k, message: `unknown field '${k}'` };
  return { ok: true, value: null };
}

/** An instant the CRM reports, within the bounds events have (it happened: at most a day ahead of our clock). */
function checkInstant(raw: unknown, field: string): ItemCheck<string> {
  const at = parseInstant(raw);
  if (!at.ok) return { ok: false, field, message: at.message.replace(/^occurred_at/, field) };
  if (at.ms > Date.now() + MAX_FUTURE_MS) return { ok: false, field, message: `${field} is more than 1 day in the future` };
  if (at.ms < MIN_OCCURRED_AT_MS) return { ok: false, field, message: `${field} is before 1970-01-01T00:00:00Z` };
  return { ok: true, value: new Date(at.ms).toISOString() };
}

function checkSend(raw: unknown): ItemCheck<{ userId: string; sentAt: string; channel: string; status: string }> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, field: "", message: "a send must be an object" };
  const o = raw as Record<string, unknown>;
  const keys = checkKeys(o, ["user_id", "sent_at", "channel", "status"]);
  if (!keys.ok) return keys;
  const user = checkUserId(o.user_id);
  if (!user.ok) return { ok: false, field: "user_id", message: user.message };
  const at = checkInstant(o.sent_at, "sent_at");
  if (!at.ok) return at;
  const channel = checkText(o.channel, "channel", 64);
  if (!channel.ok) return channel;
  if (typeof o.status !== "string" || !(SEND_STATUSES as readonly string[]).includes(o.status))
    return { ok: false, field: "status", message: `status must be one of ${SEND_STATUSES.join(", ")}` };
  return { ok: true, value: { userId: user.value, sentAt: at.value, channel: channel.value, status: o.status } };
}

export function checkOutcome(raw: unknown): ItemCheck<{ outcomeId: string; userId: string; occurredAt: string; name: string; value: number | null }> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, field: "", message: "an outcome must be an object" };
  const o = raw as Record<string, unknown>;
  const keys = checkKeys(o, ["outcome_id", "user_id", "occurred_at", "name", "value"]);
  if (!keys.ok) return keys;
  const oid = checkText(o.outcome_id, "outcome_id", MAX_OUTCOME_ID_LENGTH);
  if (!oid.ok) return oid;
  const user = checkUserId(o.user_id);
  if (!user.ok) return { ok: false, field: "user_id", message: user.message };
  const at = checkInstant(o.occurred_at, "occurred_at");
  if (!at.ok) return at;
  const name = checkText(o.name, "name", 100);
  if (!name.ok) return name;
  if (o.value !== undefined && o.value !== null && (typeof o.value !== "number" || !Number.isFinite(o.value)))
    return { ok: false, field: "value", message: "value must be a finite number" };
  if (typeof o.value === "number" && Math.abs(o.value) > MAX_OUTCOME_VALUE)
    return { ok: false, field: "value", message: `value must be between -${MAX_OUTCOME_VALUE.toExponential()} and ${MAX_OUTCOME_VALUE.toExponential()}` };
  return { ok: true, value: { outcomeId: oid.value, userId: user.value, occurredAt: at.value, name: name.value, value: (o.value as number | null | undefined) ?? null } };
}

/** The items of a batch body `{<key>: [...]}`, with the checks every batch gets. */
function batchItems(body: unknown, key: string): unknown[] {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw badRequest(`The body must be an object {"${key}": [...]}.`, [{ path: "body", message: "expected an object" }]);
  const extra = Object.keys(body).filter((k) => k !== key);
  if (extra.length) throw badRequest(`Unknown field '${extra[0]}'.`, extra.map((k) => ({ path: k, message: `unknown field '${k}'` })));
  const items = (body as Record<string, unknown>)[key];
  if (!Array.isArray(items)) throw badRequest(`${key} must be an array.`, [{ path: key, message: "expected an array" }]);
  if (items.length === 0) throw badRequest(`The batch holds no ${key}.`, [{ path: key, message: "at least one item is required" }]);
  if (items.length > MAX_BATCH) throw new ProblemError(413, `A request holds at most ${MAX_BATCH} ${key}; this one has ${items.length}. Split it.`);
  return items;
}

function validateItems<T>(items: unknown[], key: string, check: (raw: unknown) => ItemCheck<T>): T[] {
  const out: T[] = [];
  const errors: ProblemFieldError[] = [];
  let count = 0;
  for (let i = 0; i < items.length; i++) {
    const c = check(items[i]);
    if (c.ok) out.push(c.value);
    else {
      count++;
      if (errors.length < 100) errors.push({ index: i, path: c.field ? `${key}[${i}].${c.field}` : `${key}[${i}]`, message: c.message });
    }
  }
  if (count) throw new ProblemError(400, `${count} of ${items.length} ${key} are invalid; nothing was stored.`, { errors, invalid_count: count });
  return out;
}

const ARM_REASON: Record<string, string> = {
  control: "the user is in the control group (held out): it must not be sent anything",
  global_control: "the user is in the global control group (held out of every campaign)",
  none: "the user is not in the campaign's list",
};

export interface BatchResult {
  received: number;
  inserted: number;
  duplicates: number;
  /** Outcomes only: items whose id is recorded with other values, or retracted; not stored (the stored record stands). */
  conflicting?: number;
  conflicts?: ProblemFieldError[];
}

type RecordResponse = (client: pg.ClientBase, response: { status: number; body: unknown }) => Promise<void>;
type StoreBatch<T> = (
  items: T[],
  hooks: { before: (tx: pg.PoolClient) => Promise<void>; after: (tx: pg.PoolClient, inserted: number, conflicting?: BatchOutcome["conflicting"]) => Promise<void> },
) => Promise<BatchOutcome>;

/**
 * What every batch goes through: the body's items checked (400 naming each bad one), the campaign
 * assigned (409 otherwise; checked again under its row lock first in the batch's transaction, see
 * lockAssigned), the items stored with the campaign launched and its data version bumped in the same
 * transaction (with the request's Idempotency-Key record), a batch naming users who may not be
 * recorded rejected whole, and the results queued for recomputation.
 */
async function recordBatch<T>(
  ctx: AppContext, id: string, body: unknown, record: RecordResponse | undefined,
  kind: { key: "sends" | "outcomes"; check: (raw: unknown) => ItemCheck<T>; lock: LockReason; refused: (arm: CampaignArm | null) => string },
  store: StoreBatch<T>,
): Promise<BatchResult> {
  const items = batchItems(body, kind.key);
  const valid = validateItems(items, kind.key, kind.check);
  const what = `record ${kind.key}`;
  requireAssigned(await getCampaignRecord(ctx, id), what);
  let response: BatchResult | null = null;
  const before = (tx: pg.PoolClient) => lockAssigned(tx, id, what);
  const after = async (tx: pg.PoolClient, inserted: number, conflicting?: BatchOutcome["conflicting"]) => {
    await lockCampaign(tx, id, kind.lock);
    if (inserted > 0) await tx.query(`UPDATE campaign SET data_version = data_version + 1 WHERE id = $1`, [id]);
    const differing = conflicting?.count ?? 0;
    response = { received: valid.length, inserted, duplicates: valid.length - inserted - differing };
    if (conflicting) {
      response.conflicting = differing;
      response.conflicts = conflicting.items.map(({ index, retracted }) => ({
        index,
        path: `${kind.key}[${index}].outcome_id`,
        message: retracted
          ? "this outcome_id was retracted and stays retracted (a late retry of its first report must not bring it back); record the conversion under a new outcome_id"
          : `this outcome_id is recorded with other values (user, name, occurred_at or value); the stored record stands (correct it with PUT /v1/campaigns/${id}/outcomes/{outcome_id})`,
      }));
    }
    await record?.(tx, { status: 200, body: response });
  };
  const outcome = await store(valid, { before, after });
  if (outcome.rejectedCount > 0) throw rejection(kind.key, items.length, outcome.rejected, outcome.rejectedCount, kind.refused);
  if (outcome.inserted > 0) await queueResultsRecomputation(ctx, [id], 1000);
  return response!;
}

/**
 * Records a batch of sends: a user who is held out (control, global control) or not in the list
 * rejects the whole batch with 400, naming each (index, path, reason). Idempotent per (user, channel,
 * status): a repeated send changes nothing.
 */
export function recordSends(ctx: AppContext, id: string, body: unknown, record?: RecordResponse): Promise<BatchResult> {
  return recordBatch(ctx, id, body, record, { key: "sends", check: checkSend, lock: "sends_recorded", refused: (arm) => ARM_REASON[arm ?? "none"]! }, (sends, hooks) =>
    ctx.engine.recordSends(id, sends, hooks),
  );
}

/** Records a batch of outcomes, idempotent by outcome_id; a user who is not assigned rejects the batch. */
export function recordOutcomes(ctx: AppContext, id: string, body: unknown, record?: RecordResponse): Promise<BatchResult> {
  return recordBatch(
    ctx, id, body, record,
    { key: "outcomes", check: checkOutcome, lock: "outcomes_recorded", refused: () => "the user is not assigned in this campaign" },
    (outcomes, hooks) => ctx.engine.recordOutcomes(id, outcomes, hooks),
  );
}

function rejection(key: string, total: number, rejected: Array<{ index: number; user_id: string; arm: CampaignArm | null }>, count: number, reason: (arm: CampaignArm | null) => string) {
  return new ProblemError(400, `${count} of ${total} ${key} name users who may not be recorded (${reason(rejected[0]!.arm)}: '${rejected[0]!.user_id}'${count > 1 ? ", …" : ""}); nothing was stored.`, {
    errors: rejected.map((r) => ({ index: r.index, path: `${key}[${r.index}].user_id`, message: `${reason(r.arm)} ('${r.user_id}')` })),
    invalid_count: count,
  });
}
