import type pg from "pg";

const IANA_NAME = /^(UTC|[A-Za-z][A-Za-z0-9_+\-]*(\/[A-Za-z0-9_+\-]+)+|Etc\/[A-Za-z0-9_+\-]+|GMT)$/;

/** An IANA zone name known to both Node's ICU and PostgreSQL (they decide activity dates alike). */
export async function isKnownTimezone(pool: pg.Pool, tz: string): Promise<boolean> {
  if (!IANA_NAME.test(tz)) return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
  } catch {
    return false;
  }
  const r = await pool.query(`SELECT 1 FROM pg_timezone_names WHERE name = $1`, [tz]);
  return r.rowCount! > 0;
}

/** The calendar date (YYYY-MM-DD) of an instant in a zone. */
export function localDate(tz: string, at: Date = new Date()): string {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(at);
  return parts;
}
