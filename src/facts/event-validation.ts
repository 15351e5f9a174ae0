import { z } from "zod";
import { CONTROL_CHARACTER, longerThan } from "../util/text.js";
import type { ProblemFieldError } from "../http/problem.js";

/** An event that passed validation: the user id string and the instant in epoch milliseconds. */
export interface ValidEvent {
  userId: string;
  occurredAtMs: number;
}

export const MAX_USER_ID_LENGTH = 256;
export const MAX_FUTURE_MS = 86_400_000;
/**
 * The earliest instant accepted. Processing covers every period from a fact's first activity on, so
 * one event dated in year 1000 would cost a million periods of work; nothing real predates 1970.
 */
export const MIN_OCCURRED_AT_MS = 0;
// RFC 3339 date-time; the offset (or Z) is mandatory: a local time is never guessed.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-](\d{2}):(\d{2}))$/;
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;

export type EventCheck = { ok: true; event: ValidEvent } | { ok: false; path: string; message: string };

export function checkUserId(raw: unknown): { ok: true; value: string } | { ok: false; message: string } {
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw)) return { ok: false, message: "user_id must be a string or an integer" };
    return { ok: true, value: String(raw) };
  }
  if (typeof raw !== "string") return { ok: false, message: raw === undefined ? "user_id is required" : "user_id must be a string or an integer" };
  if (raw.length === 0) return { ok: false, message: "user_id must not be empty" };
  if (longerThan(raw, MAX_USER_ID_LENGTH)) return { ok: false, message: `user_id is longer than ${MAX_USER_ID_LENGTH} characters` };
  if (CONTROL_CHARACTER.test(raw)) return { ok: false, message: "user_id contains a control character" };
  // An unpaired surrogate would be stored as U+FFFD: another id than the one sent.
  if (!(raw as unknown as { isWellFormed(): boolean }).isWellFormed()) return { ok: false, message: "user_id is not valid Unicode (an unpaired UTF-16 surrogate)" };
  return { ok: true, value: raw };
}

/**
 * A user_id string in a request schema (a path or query parameter, or documenting a body): checked by
 * checkUserId, so an id in a URL meets the rule, and gets the messages, an event's id does. JSON
 * Schema's maxLength counts characters, as the spec does, so the limit is published as that.
 */
export const userIdString = z
  .string()
  .superRefine((raw, ctx) => {
    const user = checkUserId(raw);
    if (!user.ok) ctx.addIssue({ code: "custom", message: user.message });
  })
  .meta({ minLength: 1, maxLength: MAX_USER_ID_LENGTH });

// 400 Gregorian years are exactly this many ms; shifting by them keeps every date's calendar.
const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;

/** Date.UTC for every year: Date.UTC itself reads years 0–99 as 1900–1999. */
function utcMs(y: number, monthIndex: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number {
  return y < 100 ? Date.UTC(y + 400, monthIndex, d, h, mi, s, ms) - GREGORIAN_CYCLE_MS : Date.UTC(y, monthIndex, d, h, mi, s, ms);
}

function daysInMonth(y: number, m: number) {
  return new Date(utcMs(y, m, 0)).getUTCDate();
}

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Two ASCII digits at i as a number, or a negative number. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  // >>> 0 turns a negative difference into a large number. (Past the end of the string it would
  // read NaN as 0: callers check the length first.)
  return a >>> 0 <= 9 && b >>> 0 <= 9 ? a * 10 + b : -1;
}

/**
 * The common case of parseInstant without a regex or a Date (the bulk loader parses millions): a
 * well-formed, valid RFC 3339 instant with a year from 100 on gives its epoch ms; anything else gives
 * NaN and goes through the full parser, which has the last word and the error messages.
 */
function fastInstant(s: string): number {
  const len = s.length;
  if (len < 20 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return NaN;
  const y100 = twoDigits(s, 0), y1 = twoDigits(s, 2), mo = twoDigits(s, 5), d = twoDigits(s, 8);
  const h = twoDigits(s, 11), mi = twoDigits(s, 14), sec = twoDigits(s, 17);
  if (y100 < 1 || y1 < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60) return NaN;
  const sep = s.charCodeAt(10);
  if (sep !== 84 && sep !== 116 && sep !== 32) return NaN; // T t space
  const y = y100 * 100 + y1;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (d > (mo === 2 && leap ? 29 : DAYS_IN_MONTH[mo]!)) return NaN;
  let i = 19;
  let frac = 0;
  if (s.charCodeAt(i) === 46) {
    const start = ++i;
    while (i < len) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      if (i - start < 3) frac = frac * 10 + c;
      i++;
    }
    const n = i - start;
    if (n < 1 || n > 9) return NaN;
    if (n === 1) frac *= 100;
    else if (n === 2) frac *= 10;
  }
  let offsetMin: number;
  const c = s.charCodeAt(i);
  if ((c === 90 || c === 122) && i === len - 1) offsetMin = 0; // Z z
  else if ((c === 43 || c === 45) && i === len - 6 && s.charCodeAt(i + 3) === 58) {
    const oh = twoDigits(s, i + 1), om = twoDigits(s, i + 4);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return NaN;
    offsetMin = (c === 45 ? -1 : 1) * (oh * 60 + om);
  } else return NaN;
  // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
  const yy = mo <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  return days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + frac - offsetMin * 60_000;
}

/** Parses an RFC 3339 timestamp with an offset to epoch ms (sub-millisecond digits are truncated). */
export function parseInstant(raw: unknown): { ok: true; ms: number } | { ok: false; message: string } {
  if (typeof raw !== "string") return { ok: false, message: raw === undefined ? "occurred_at is required" : "occurred_at must be an RFC 3339 string" };
  const fast = fastInstant(raw);
  if (!Number.isNaN(fast)) return { ok: true, ms: fast };
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
  const t = utcMs(y, mo - 1, d, h, mi, s, Number(ms)) - offsetMin * 60_000;
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
  if (at.ms < MIN_OCCURRED_AT_MS) return { ok: false, path: "occurred_at", message: "occurred_at is before 1970-01-01T00:00:00Z" };
  return { ok: true, event: { userId: user.value, occurredAtMs: at.ms } };
}

export const MAX_REPORTED_ERRORS = 100;

/**
 * Validates a whole batch. The batch is atomic, so every bad event is reported (the first 100) and
 * none of the good ones are kept when there is any. An error names raws[i] as `collection[indexOf(i)]`:
 * its place in the request, which for NDJSON is its line, blank lines included.
 */
export function validateBatch(
  raws: readonly unknown[],
  nowMs: number,
  collection = "events",
  indexOf: (i: number) => number = (i) => i,
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
      if (errors.length < MAX_REPORTED_ERRORS) {
        const index = indexOf(i);
        errors.push({ index, path: c.path ? `${collection}[${index}].${c.path}` : `${collection}[${index}]`, message: c.message });
      }
    }
  }
  return { events: errorCount ? [] : events, errors, errorCount };
}
