import type { ProblemFieldError } from "../http/problem.js";

/** An event that passed validation: the user id string and the instant in epoch milliseconds. */
export interface ValidEvent {
  userId: string;
  occurredAtMs: number;
}

export const MAX_USER_ID_LENGTH = 256;
export const MAX_FUTURE_MS = 86_400_000;
// RFC 3339 date-time; the offset (or Z) is mandatory: a local time is never guessed.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-](\d{2}):(\d{2}))$/;
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;
// C0 and C1 control characters (and DEL).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export type EventCheck = { ok: true; event: ValidEvent } | { ok: false; path: string; message: string };

export function checkUserId(raw: unknown): { ok: true; value: string } | { ok: false; message: string } {
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw)) return { ok: false, message: "user_id must be a string or an integer" };
    return { ok: true, value: String(raw) };
  }
  if (typeof raw !== "string") return { ok: false, message: raw === undefined ? "user_id is required" : "user_id must be a string or an integer" };
  if (raw.length === 0) return { ok: false, message: "user_id must not be empty" };
  if (raw.length > MAX_USER_ID_LENGTH) return { ok: false, message: `user_id is longer than ${MAX_USER_ID_LENGTH} characters` };
  if (CONTROL.test(raw)) return { ok: false, message: "user_id contains a control character" };
  return { ok: true, value: raw };
}

function daysInMonth(y: number, m: number) {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** Parses an RFC 3339 timestamp with an offset to epoch ms (sub-millisecond digits are truncated). */
export function parseInstant(raw: unknown): { ok: true; ms: number } | { ok: false; message: string } {
  if (typeof raw !== "string") return { ok: false, message: raw === undefined ? "occurred_at is required" : "occurred_at must be an RFC 3339 string" };
  const m = RFC3339.exec(raw);
  if (!m) {
    if (LOCAL_TIME.test(raw)) return { ok: false, message: "occurred_at has no UTC offset (add Z or ±hh:mm)" };
    return { ok: false, message: "occurred_at is not an RFC 3339 timestamp" };
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 60)
    return { ok: false, message: "occurred_at is not a valid date and time" };
  let offsetMin = 0;
  if (m[8] !== "Z" && m[8] !== "z") {
    const oh = Number(m[9]), om = Number(m[10]);
    if (oh > 23 || om > 59) return { ok: false, message: "occurred_at has an invalid UTC offset" };
    offsetMin = (m[8]!.startsWith("-") ? -1 : 1) * (oh * 60 + om);
  }
  const ms = (m[7] ?? "").padEnd(3, "0").slice(0, 3);
  // A leap second (":60") is folded onto the next second, as RFC 3339 readers commonly do.
  const t = Date.UTC(y, mo - 1, d, h, mi, s, Number(ms)) - offsetMin * 60_000;
  if (!Number.isFinite(t)) return { ok: false, message: "occurred_at is out of range" };
  return { ok: true, ms: t };
}

/** Validates one raw event object. `now` bounds how far in the future an event may be. */
export function checkEvent(raw: unknown, nowMs: number): EventCheck {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, path: "", message: "an event must be an object" };
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k !== "user_id" && k !== "occurred_at") return { ok: false, path: k, message: `unknown field '${k}'` };
  }
  const user = checkUserId(obj.user_id);
  if (!user.ok) return { ok: false, path: "user_id", message: user.message };
  const at = parseInstant(obj.occurred_at);
  if (!at.ok) return { ok: false, path: "occurred_at", message: at.message };
  if (at.ms > nowMs + MAX_FUTURE_MS) return { ok: false, path: "occurred_at", message: "occurred_at is more than 1 day in the future" };
  return { ok: true, event: { userId: user.value, occurredAtMs: at.ms } };
}

export const MAX_REPORTED_ERRORS = 100;

/**
 * Validates a whole batch. The batch is atomic, so every bad event is reported (the first 100) and
 * none of the good ones are kept when there is any.
 */
export function validateBatch(
  raws: readonly unknown[],
  nowMs: number,
  pathOf: (index: number, field: string) => string = (i, f) => (f ? `events[${i}].${f}` : `events[${i}]`),
): { events: ValidEvent[]; errors: ProblemFieldError[]; errorCount: number } {
  const events: ValidEvent[] = [];
  const errors: ProblemFieldError[] = [];
  let errorCount = 0;
  for (let i = 0; i < raws.length; i++) {
    const c = checkEvent(raws[i], nowMs);
    if (c.ok) {
      if (errorCount === 0) events.push(c.event);
    } else {
      errorCount++;
      if (errors.length < MAX_REPORTED_ERRORS) errors.push({ index: i, path: pathOf(i, c.path), message: c.message });
    }
  }
  return { events: errorCount ? [] : events, errors, errorCount };
}
