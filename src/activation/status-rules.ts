/**
 * The spec (spec/activation-layer.md) as a naive, pure reference: one user at a time, one period at a
 * time, straight from the definitions. It shares nothing with the engine's SQL (no islands, no
 * difference arrays, not even the integer period numbering of ./periods.ts): periods are named by
 * their first day and stepped through the calendar. The tests hold the engine to it (and it to the
 * shared fixtures); it is far too slow for production and is meant to be.
 */
import type { ActivationRow, FirstLastRow, GrowthState, StatusRow, StatusState, TransitionSegment } from "./engine.js";

export type RefGrain = "day" | "week" | "month";

/** One active (user, activity date) pair; duplicates are harmless. */
export interface Activity {
  user_id: string;
  /** Activity date, YYYY-MM-DD, in the fact's timezone. */
  date: string;
}

/** One event as an instant (for FirstLast, which reports instants). */
export interface TimedEvent {
  user_id: string;
  /** Epoch milliseconds. */
  at: number;
}

export type RefMetricsRow = Record<string, string | number | boolean> & { period: string };

export interface ReferenceLayer {
  status: StatusRow[];
  activation: ActivationRow[];
  metrics: RefMetricsRow[];
}

export const REF_TRANSITION_SEGMENTS: readonly TransitionSegment[] = [
  "new", "new_to_retained", "new_to_inactive", "retained_to_retained", "retained_to_inactive",
  "reactivated_to_retained", "reactivated_to_inactive", "inactive_to_reactivated", "inactive_to_inactive",
];
export const REF_GROWTH_STATES: readonly GrowthState[] = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"];

// ---------------------------------------------------------------------------------------------------
// Calendar, by hand.

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

function ymd(date: string): [number, number, number] {
  const m = DATE_RE.exec(date);
  if (!m) throw new RangeError(`not a date: ${date}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function fmt(y: number, m: number, d: number): string {
  return `${String(y).padStart(4, "0")}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
}

function asUtc(date: string): Date {
  const [y, m, d] = ymd(date);
  return new Date(Date.UTC(y, m - 1, d));
}

export function addDays(date: string, n: number): string {
  const t = asUtc(date);
  t.setUTCDate(t.getUTCDate() + n);
  return fmt(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate());
}

/** The first day of the period containing `date`: itself, the Monday of its ISO week, or the 1st. */
export function periodStartOf(grain: RefGrain, date: string): string {
  if (grain === "day") return date;
  if (grain === "week") {
    const weekday = asUtc(date).getUTCDay(); // 0 = Sunday
    return addDays(date, -((weekday + 6) % 7));
  }
  const [y, m] = ymd(date);
  return fmt(y, m, 1);
}

/** The first day of the period after the one starting on `start`. */
export function nextPeriodStart(grain: RefGrain, start: string): string {
  if (grain === "day") return addDays(start, 1);
  if (grain === "week") return addDays(start, 7);
  const [y, m] = ymd(start);
  return m === 12 ? fmt(y + 1, 1, 1) : fmt(y, m + 1, 1);
}

/** The last day of the period starting on `start`. */
export function periodLastDay(grain: RefGrain, start: string): string {
  return addDays(nextPeriodStart(grain, start), -1);
}

/** The calendar date of an instant in an IANA zone. */
export function activityDateOf(at: number | string, timezone: string): string {
  const ms = typeof at === "number" ? at : Date.parse(at);
  if (!Number.isFinite(ms)) throw new RangeError(`not an instant: ${at}`);
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: timezone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(ms);
  const part = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  return fmt(part("year"), part("month"), part("day"));
}

// ---------------------------------------------------------------------------------------------------
// The spec, one user at a time.

/** Growth-model lens of a day-grain status row. */
export function growthStateOf(row: Pick<StatusRow, "state" | "is_active" | "return_interval_periods" | "inactivity_periods">): GrowthState {
  if (row.state === "new") return "new";
  if (row.is_active) {
    const r = row.return_interval_periods!;
    if (r <= 6) return "current";
    if (r <= 29) return "reactivated";
    return "resurrected";
  }
  const n = row.inactivity_periods;
  if (n <= 6) return "at_risk_wau";
  if (n <= 29) return "at_risk_mau";
  return "dormant";
}

export function transitionSegmentOf(previous: StatusState | null, state: StatusState): TransitionSegment {
  if (previous === null) return "new";
  return `${previous}_to_${state}` as TransitionSegment;
}

/**
 * Every model of one grain as of `through`: Activation Status rows (one per user and period from the
 * user's first active period through the period containing `through`), Activation rows, and metrics
 * (one row per period from the first period with a user). Activity dated after `through` is unseen.
 */
export function referenceLayer(activity: Iterable<Activity>, grain: RefGrain, through: string): ReferenceLayer {
  const lastPeriod = periodStartOf(grain, through);
  const activeDaysByUser = new Map<string, Set<string>>();
  for (const a of activity) {
    ymd(a.date);
    if (a.date > through) continue;
    let s = activeDaysByUser.get(a.user_id);
    if (!s) activeDaysByUser.set(a.user_id, (s = new Set()));
    s.add(a.date);
  }
  if (activeDaysByUser.size === 0) return { status: [], activation: [], metrics: [] };

  // The periods from the earliest active period through the period of `through`, in order; an index
  // into this list is what "P - 1" and "P - Q" count.
  let earliest = lastPeriod;
  for (const days of activeDaysByUser.values()) for (const d of days) if (periodStartOf(grain, d) < earliest) earliest = periodStartOf(grain, d);
  const periods: string[] = [];
  for (let p = earliest; p <= lastPeriod; p = nextPeriodStart(grain, p)) periods.push(p);
  const indexOf = new Map(periods.map((p, i) => [p, i]));

  const status: StatusRow[] = [];
  const activation: ActivationRow[] = [];
  // Per user, which period indexes are active: kept for wau/mau and churn.
  const activeByUser = new Map<string, boolean[]>();

  const users = [...activeDaysByUser.keys()].sort(byteOrder);
  for (const user of users) {
    const active = periods.map(() => false);
    for (const d of activeDaysByUser.get(user)!) active[indexOf.get(periodStartOf(grain, d))!] = true;
    activeByUser.set(user, active);
    const first = active.indexOf(true);

    const stateAt = (p: number): StatusState => {
      if (!active[p]) return "inactive";
      if (p === first) return "new";
      return active[p - 1] ? "retained" : "reactivated";
    };
    const lastActiveUpTo = (p: number): number => {
      for (let q = p; q >= first; q--) if (active[q]) return q;
      throw new Error("unreachable: the first period is active");
    };
    const runEndingAt = (p: number): number => {
      let n = 0;
      for (let q = p; q >= 0 && active[q]; q--) n++;
      return n;
    };
    const previousActiveBefore = (p: number): number | null => {
      for (let q = p - 1; q >= first; q--) if (active[q]) return q;
      return null;
    };

    for (let p = first; p < periods.length; p++) {
      const state = stateAt(p);
      const isActive = active[p]!;
      const previous = p === first ? null : stateAt(p - 1);
      const last = lastActiveUpTo(p);
      const prevActive = previousActiveBefore(p);
      const returnInterval = isActive && prevActive !== null ? p - prevActive : null;
      let total = 0;
      for (let q = first; q <= p; q++) if (active[q]) total++;
      const row: StatusRow = {
        user_id: user,
        period: periods[p]!,
        state,
        previous_state: previous,
        transition_segment: transitionSegmentOf(previous, state),
        is_active: isActive,
        first_active_period: periods[first]!,
        last_active_period: periods[last]!,
        inactivity_periods: p - last,
        consecutive_active_periods: isActive ? runEndingAt(p) : 0,
        last_streak_periods: runEndingAt(last),
        return_interval_periods: returnInterval,
        last_active_state: stateAt(last) as Exclude<StatusState, "inactive">,
        active_periods_total: total,
        tenure_periods: p - first,
      };
      if (grain === "day") row.growth_state = growthStateOf(row);
      status.push(row);
      if (isActive) activation.push({ user_id: user, period: periods[p]!, state: state as ActivationRow["state"], return_interval_periods: returnInterval });
    }
  }

  // Metrics: counted from the status rows of each period, wau/mau from the active days themselves.
  const rowsByPeriod = new Map<string, StatusRow[]>(periods.map((p) => [p, []]));
  for (const r of status) rowsByPeriod.get(r.period)!.push(r);
  const metrics: RefMetricsRow[] = [];
  for (const [p, period] of periods.entries()) {
    const rows = rowsByPeriod.get(period)!;
    const count = (f: (r: StatusRow) => boolean) => rows.filter(f).length;
    const m: RefMetricsRow = {
      period,
      period_complete: periodLastDay(grain, period) <= through,
      users_total: rows.length,
      active: count((r) => r.is_active),
      new: count((r) => r.state === "new"),
      retained: count((r) => r.state === "retained"),
      reactivated: count((r) => r.state === "reactivated"),
      inactive: count((r) => r.state === "inactive"),
      churned: users.filter((u) => p > 0 && activeByUser.get(u)![p - 1] && !activeByUser.get(u)![p]).length,
    };
    for (const s of REF_TRANSITION_SEGMENTS) m[`segment_${s}`] = count((r) => r.transition_segment === s);
    if (grain === "day") {
      for (const g of REF_GROWTH_STATES) m[`growth_${g}`] = count((r) => r.growth_state === g);
      const activeWithin = (days: number) => {
        const from = addDays(period, -(days - 1));
        let n = 0;
        for (const u of users) if ([...activeDaysByUser.get(u)!].some((d) => d >= from && d <= period)) n++;
        return n;
      };
      m.wau = activeWithin(7);
      m.mau = activeWithin(30);
    }
    metrics.push(m);
  }
  return { status, activation, metrics };
}

/** Metrics of every grain at once. */
export function referenceAllGrains(activity: readonly Activity[], through: string): Record<RefGrain, ReferenceLayer> {
  return { day: referenceLayer(activity, "day", through), week: referenceLayer(activity, "week", through), month: referenceLayer(activity, "month", through) };
}

function isoMs(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * FirstLast snapshots of every date from each user's first active date through `through`: first and
 * last active date as of the snapshot, and the earliest instant of the first date and the latest
 * instant of the last date.
 */
export function referenceFirstLast(events: Iterable<TimedEvent>, timezone: string, through: string): FirstLastRow[] {
  const byUser = new Map<string, Map<string, { min: number; max: number }>>();
  for (const e of events) {
    const d = activityDateOf(e.at, timezone);
    if (d > through) continue;
    let days = byUser.get(e.user_id);
    if (!days) byUser.set(e.user_id, (days = new Map()));
    const cur = days.get(d);
    if (!cur) days.set(d, { min: e.at, max: e.at });
    else {
      cur.min = Math.min(cur.min, e.at);
      cur.max = Math.max(cur.max, e.at);
    }
  }
  const out: FirstLastRow[] = [];
  for (const user of [...byUser.keys()].sort(byteOrder)) {
    const days = byUser.get(user)!;
    const dates = [...days.keys()].sort();
    const first = dates[0]!;
    for (let snap = first; snap <= through; snap = addDays(snap, 1)) {
      const last = dates.filter((d) => d <= snap).pop()!;
      out.push({
        snapshot_date: snap,
        user_id: user,
        first_active_date: first,
        last_active_date: last,
        first_event_at: isoMs(days.get(first)!.min),
        last_event_at: isoMs(days.get(last)!.max),
      });
    }
  }
  return out;
}

/** Byte order of UTF-8 strings (the fixtures' sort order), not UTF-16 code-unit order. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
