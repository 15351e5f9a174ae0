/**
 * Periods as integers: days since 1970-01-01, ISO weeks since the week of 1969-12-29 (a Monday), or
 * months since 1970-01. Period arithmetic is then plain integer arithmetic ("the week after").
 * The SQL of the layer engine uses the same numbering (see postgres/sql-periods.ts).
 */
export const GRAINS = ["day", "week", "month"] as const;
export type Grain = (typeof GRAINS)[number];
export const GRAIN_CODE: Record<Grain, number> = { day: 0, week: 1, month: 2 };

const MS_PER_DAY = 86_400_000;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Parses `YYYY-MM-DD` strictly (a real calendar date); null when it is not one. */
export function parseDate(s: string): number | null {
  const m = DATE_RE.exec(s);
  if (!m) return null;
  const y = Number(m[1]), mo = Number(m[2]), d = Number(m[3]);
  const ms = Date.UTC(y, mo - 1, d);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return null;
  return ms / MS_PER_DAY;
}

/** A DATE column's value (midnight UTC) as YYYY-MM-DD. */
export function isoDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export function dayToDate(day: number): string {
  return new Date(day * MS_PER_DAY).toISOString().slice(0, 10);
}

export function dateToDay(date: string): number {
  const d = parseDate(date);
  if (d === null) throw new RangeError(`not a date: ${date}`);
  return d;
}

export function periodOfDay(grain: Grain, day: number): number {
  switch (grain) {
    case "day":
      return day;
    case "week":
      return Math.floor((day + 3) / 7);
    case "month": {
      const d = new Date(day * MS_PER_DAY);
      return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
    }
  }
}

/** First day of a period. */
export function periodStartDay(grain: Grain, period: number): number {
  switch (grain) {
    case "day":
      return period;
    case "week":
      return period * 7 - 3;
    case "month": {
      const y = 1970 + Math.floor(period / 12);
      const m = ((period % 12) + 12) % 12;
      return Date.UTC(y, m, 1) / MS_PER_DAY;
    }
  }
}

export function periodEndDay(grain: Grain, period: number): number {
  return periodStartDay(grain, period + 1) - 1;
}

export function periodToDate(grain: Grain, period: number): string {
  return dayToDate(periodStartDay(grain, period));
}

export function periodOfDate(grain: Grain, date: string): number {
  return periodOfDay(grain, dateToDay(date));
}

/** The period a date names, or null unless the date is the period's first day. */
export function periodNamedBy(grain: Grain, date: string): number | null {
  const day = parseDate(date);
  if (day === null) return null;
  const p = periodOfDay(grain, day);
  return periodStartDay(grain, p) === day ? p : null;
}
