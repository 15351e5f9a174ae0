import { CronExpressionParser } from "cron-parser";

/**
 * Cron expressions of job schedulers, checked with the parser BullMQ itself uses (cron-parser, pinned
 * to BullMQ's version in package.json): an expression it cannot parse would fail in Redis's scheduler
 * later, at every start of the service, instead of at the request that brought it.
 */

/** The shortest time between two runs a schedule may ask for. */
export const MIN_CRON_INTERVAL_S = 60;
// Enough following runs to see the shortest gap of any expression that repeats within the hour.
const RUNS_CHECKED = 120;

/** Why `expression` cannot schedule a job in `timezone`, or null when it can. */
export function cronProblem(expression: string, timezone = "UTC"): string | null {
  const fields = expression.trim().split(/\s+/);
  if (fields.length < 5 || fields.length > 6) return `a cron expression has 5 fields (or 6 with seconds first), not ${fields.length}`;
  let runs: number[];
  try {
    const parsed = CronExpressionParser.parse(expression, { tz: timezone, currentDate: new Date(Date.UTC(2026, 0, 1)) });
    runs = [];
    for (let i = 0; i < RUNS_CHECKED && parsed.hasNext(); i++) runs.push(parsed.next().getTime());
  } catch (err) {
    return (err as Error).message;
  }
  if (runs.length === 0) return "the expression never runs";
  for (let i = 1; i < runs.length; i++)
    if (runs[i]! - runs[i - 1]! < MIN_CRON_INTERVAL_S * 1000) return `runs less than ${MIN_CRON_INTERVAL_S} s apart (at most once a minute)`;
  return null;
}
