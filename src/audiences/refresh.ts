import { z } from "zod";
import type { AppContext } from "../context.js";
import { badRequest } from "../http/problem.js";
import { cronProblem } from "../jobs/cron.js";

/** Keep an audience's list fresh: on a cron (in a timezone) or after each processing run of its facts. */
export type Refresh = "on_new_data" | { cron: string; timezone: string };

export const refreshSchema = z
  .union([z.literal("on_new_data"), z.object({ cron: z.string().min(9).max(100), timezone: z.string().default("UTC") }).strict()])
  .nullable()
  .optional()
  .meta({ id: "AudienceRefresh" });

export function checkRefresh(raw: unknown): Refresh | null {
  if (raw === undefined || raw === null) return null;
  if (raw === "on_new_data") return raw;
  if (typeof raw === "object" && !Array.isArray(raw)) {
    const r = raw as Record<string, unknown>;
    const extra = Object.keys(r).filter((k) => k !== "cron" && k !== "timezone");
    if (extra.length) throw badRequest(`Unknown key refresh.${extra[0]}.`, [{ path: `refresh.${extra[0]}`, message: "unknown key" }]);
    const cron = r.cron;
    const tz = r.timezone ?? "UTC";
    if (typeof cron !== "string" || cron.length > 100)
      throw badRequest("refresh.cron must be a cron expression of 5 or 6 fields.", [{ path: "refresh.cron", message: "expected a cron expression (a string of at most 100 characters)" }]);
    if (typeof tz !== "string") throw badRequest("refresh.timezone must be an IANA zone.", [{ path: "refresh.timezone", message: "invalid" }]);
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
    } catch {
      throw badRequest(`'${tz}' is not an IANA time zone.`, [{ path: "refresh.timezone", message: "unknown IANA time zone" }]);
    }
    const problem = cronProblem(cron, tz);
    if (problem) throw badRequest(`refresh.cron '${cron}' cannot schedule a refresh: ${problem}.`, [{ path: "refresh.cron", message: problem }]);
    return { cron: cron.trim(), timezone: tz };
  }
  throw badRequest('refresh must be "on_new_data", {"cron", "timezone"} or null.', [{ path: "refresh", message: "invalid" }]);
}

/** One BullMQ job scheduler per cron-refreshed audience; upsert and remove keep it idempotent across restarts. */
export async function applyRefreshSchedule(ctx: AppContext, audienceId: string, refresh: Refresh | null) {
  const schedulerId = `audience-refresh-${audienceId}`;
  if (refresh && typeof refresh === "object") await ctx.queues.upsertAudienceRefresh(schedulerId, audienceId, refresh.cron, refresh.timezone);
  else await ctx.queues.removeScheduler(schedulerId);
}

/**
 * At startup: make Redis's schedulers match the audiences in PostgreSQL (Redis may have been flushed,
 * or an audience deleted while Redis was away). Upserts are idempotent, so restarts change nothing.
 */
export async function syncRefreshSchedules(ctx: AppContext): Promise<{ upserted: number; removed: number }> {
  const audiences = await ctx.db.prisma.audience.findMany({ where: { deletedAt: null }, select: { id: true, refresh: true } });
  const wanted = new Map<string, Refresh>();
  for (const a of audiences) {
    if (!a.refresh || typeof a.refresh !== "object") continue;
    const refresh = a.refresh as { cron: string; timezone: string };
    // Stored before expressions were checked: one bad schedule must not keep the service from starting.
    const problem = cronProblem(refresh.cron, refresh.timezone);
    if (problem) console.error(`audience ${a.id}: refresh.cron '${refresh.cron}' is not scheduled (${problem}); change it with PATCH /v1/audiences/${a.id}`);
    else wanted.set(`audience-refresh-${a.id}`, refresh);
  }
  for (const [schedulerId, refresh] of wanted) await applyRefreshSchedule(ctx, schedulerId.slice("audience-refresh-".length), refresh);
  let removed = 0;
  for (const s of await ctx.queues.schedules.getJobSchedulers()) {
    const id = s.key ?? s.id;
    if (id?.startsWith("audience-refresh-") && !wanted.has(id)) {
      await ctx.queues.removeScheduler(id);
      removed++;
    }
  }
  return { upserted: wanted.size, removed };
}
