import { randomUUID } from "node:crypto";
import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import { GROWTH_STATES, statusColumnsShape } from "../activation/layer-queries.js";
import type { AppContext } from "../context.js";
import type { PrismaClientOrTransaction } from "../db/client.js";
import type { Materialization } from "../generated/prisma/client.js";
import { badRequest, conflict, notFound } from "../http/problem.js";
import { afterCreatedAtId, createdAtIdCursor, decodeCursor, toPage, userKeyCursor, type PageQuery } from "../http/pagination.js";
import type { ExportFormat } from "../activation/postgres/copy-out.js";
import type { AudienceDefinition } from "./definition.js";
import { getAudienceRecord } from "./audiences.js";
import { resolveAudience } from "./resolve.js";
import { emitEvent } from "./webhooks.js";

/**
 * What asks for a materialization: POST /v1/audiences/{id}/materializations, an audience's cron refresh,
 * an audience refreshed on new data after a run of its fact (planRefreshesOnNewData), the demo and the
 * benchmarks.
 */
export const MATERIALIZATION_TRIGGERS = ["api", "schedule", "on_new_data", "demo", "bench"] as const;
export type MaterializationTrigger = (typeof MATERIALIZATION_TRIGGERS)[number];

export const materializationSchema = z
  .object({
    id: z.string().uuid(),
    audience_id: z.string().uuid(),
    version: z.number().int(),
    as_of: isoDate,
    status: z.enum(["queued", "running", "succeeded", "failed"]),
    trigger: z
      .enum(MATERIALIZATION_TRIGGERS)
      .describe("What asked for the list: api (POST /v1/audiences/{id}/materializations), schedule (the audience's cron refresh), on_new_data (the audience's refresh after a run of its fact), demo (`npm run demo`), bench (`npm run bench`)"),
    progress: z.number(),
    member_count: z.number().int().nullable(),
    error: z.string().nullable(),
    timings: z.record(z.string(), z.number()).nullable(),
    created_at: isoInstant,
    started_at: isoInstant.nullable(),
    finished_at: isoInstant.nullable(),
  })
  .meta({ id: "Materialization" });
export type MaterializationView = z.infer<typeof materializationSchema>;

/** A member of a list (or of a preview's sample) with its status columns as of the list's date. */
export const audienceMemberSchema = z
  .object({ ...statusColumnsShape(isoDate), growth_state: z.enum(GROWTH_STATES).nullable() })
  .meta({ id: "AudienceMember" });

const day = (d: Date) => d.toISOString().slice(0, 10);

export function materializationView(m: Materialization): MaterializationView {
  return {
    id: m.id,
    audience_id: m.audienceId,
    version: m.version,
    as_of: day(m.asOf),
    status: m.status as MaterializationView["status"],
    trigger: m.trigger as MaterializationTrigger,
    progress: m.progress,
    member_count: m.memberCount,
    error: m.error,
    timings: (m.timings as Record<string, number> | null) ?? null,
    created_at: m.createdAt.toISOString(),
    started_at: m.startedAt?.toISOString() ?? null,
    finished_at: m.finishedAt?.toISOString() ?? null,
  };
}

/**
 * Records a materialisation of the audience's current version as of a date (default: the fact's
 * watermark now, fixed at request time) and queues the job that computes it.
 */
/** Namespace of the advisory lock that makes the requests for one audience's lists one at a time. */
export const MATERIALIZATION_REQUEST_LOCK_NS = 4_274;

export interface MaterializationRequest {
  materialization: MaterializationView;
  /** An identical list (same audience version and date) was queued or running: this request joined it. */
  joined: boolean;
}

/**
 * Asks for a frozen list of the audience's current version as of `asOf` (default: its facts' watermark).
 * While an identical list is queued or running, the request joins it instead of queueing another: it
 * would hold the same members, and a retried request or a second click (or a cron firing while the
 * last one still runs) would otherwise build and store it twice. Requests for one audience take its
 * advisory lock in turn, so two that arrive together make one list.
 */
export async function requestMaterialization(
  ctx: AppContext, audienceId: string, asOf: string | undefined, trigger: MaterializationTrigger = "api",
): Promise<MaterializationRequest> {
  const audience = await getAudienceRecord(ctx, audienceId);
  const definition = audience.definition as unknown as AudienceDefinition;
  // Resolving now checks the facts are processed through as_of and fixes the default date.
  const resolved = await resolveAudience(ctx, definition, asOf, "definition");
  const asOfDate = new Date(`${resolved.asOf}T00:00:00Z`);
  const { m, joined } = await ctx.db.prisma.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${MATERIALIZATION_REQUEST_LOCK_NS}::int, hashtext(${audienceId}::text))`;
    const waiting = await tx.materialization.findFirst({
      where: { audienceId, version: audience.version, asOf: asOfDate, status: { in: ["queued", "running"] } },
      orderBy: { createdAt: "asc" },
    });
    if (waiting) return { m: waiting, joined: true };
    const created = await tx.materialization.create({
      data: { id: randomUUID(), audienceId, version: audience.version, asOf: asOfDate, status: "queued", trigger },
    });
    return { m: created, joined: false };
  });
  try {
    // Joined: queued again under its job id, which adds nothing while its job exists and revives one Redis lost.
    await ctx.queues.enqueueMaterialization({ materializationId: m.id });
  } catch (err) {
    if (!joined)
      await ctx.db.prisma.materialization.update({ where: { id: m.id }, data: { status: "failed", error: "job queue unavailable", finishedAt: new Date() } });
    throw err;
  }
  return { materialization: materializationView(m), joined };
}

/** The job's work. Idempotent: a finished one is left alone; a retried one recomputes in one transaction. */
export async function executeMaterialization(ctx: AppContext, id: string, opts: { finalAttempt: boolean } = { finalAttempt: true }): Promise<MaterializationView> {
  const m = await ctx.db.prisma.materialization.findUnique({ where: { id } });
  if (!m) throw new Error(`materialization ${id} not found`);
  if (m.status === "succeeded" || m.status === "failed") return materializationView(m);
  const started = new Date();
  await ctx.db.prisma.materialization.update({ where: { id }, data: { status: "running", startedAt: m.startedAt ?? started, progress: 0.05, error: null } });
  try {
    const version = await ctx.db.prisma.audienceVersion.findUnique({ where: { audienceId_version: { audienceId: m.audienceId, version: m.version } } });
    if (!version) throw new Error(`version ${m.version} of audience ${m.audienceId} is gone`);
    const t0 = performance.now();
    const resolved = await resolveAudience(ctx, version.definition as unknown as AudienceDefinition, day(m.asOf));
    const count = await ctx.engine.materializeMembers(id, resolved.query);
    const done = await ctx.db.prisma.materialization.update({
      where: { id },
      data: { status: "succeeded", progress: 1, memberCount: count, finishedAt: new Date(), timings: { compute_ms: Math.round(performance.now() - t0) } },
    });
    const view = materializationView(done);
    await emitEvent(ctx, "materialization.succeeded", { materialization: view });
    return view;
  } catch (err) {
    // Another job of this record (one queued again after Redis lost it) may have finished it meanwhile,
    // and this one then failed on its members' keys: the list stands, leave the record as it is.
    const now = await ctx.db.prisma.materialization.findUnique({ where: { id } }).catch(() => null);
    if (now?.status === "succeeded") return materializationView(now);
    const message = (err as Error).message;
    if (opts.finalAttempt) {
      const failed = await ctx.db.prisma.materialization.update({ where: { id }, data: { status: "failed", error: message, finishedAt: new Date() } });
      await emitEvent(ctx, "materialization.failed", { materialization: materializationView(failed) }).catch(() => {});
    } else await ctx.db.prisma.materialization.update({ where: { id }, data: { status: "queued", error: `${message} (will retry)` } });
    throw err;
  }
}

export async function getMaterializationRecord(ctx: AppContext, id: string): Promise<Materialization> {
  const m = await ctx.db.prisma.materialization.findUnique({ where: { id } });
  if (!m) throw notFound(`No materialization ${id}.`);
  return m;
}

export async function listMaterializations(ctx: AppContext, audienceId: string, q: PageQuery) {
  await getAudienceRecord(ctx, audienceId, true);
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  const rows = await ctx.db.prisma.materialization.findMany({
    where: {
      audienceId,
      ...afterCreatedAtId(after, "desc"),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], materializationView);
}

function assertFinished(m: Materialization) {
  if (m.status !== "succeeded") throw conflict(`Materialization ${m.id} is ${m.status}; members exist once it has succeeded.`, { materialization_status: m.status });
}

export async function membersPage(ctx: AppContext, id: string, q: PageQuery) {
  const m = await getMaterializationRecord(ctx, id);
  assertFinished(m);
  const after = decodeCursor(q.cursor, userKeyCursor);
  const rows = await ctx.engine.memberPage(id, { afterUserKey: after?.[0], limit: q.limit + 1 });
  return {
    ...toPage(rows, q.limit, (r) => [r.user_key], ({ user_key: _k, ...rest }) => rest),
    as_of: day(m.asOf),
    member_count: m.memberCount,
  };
}

export async function membersExport(ctx: AppContext, id: string, format: ExportFormat) {
  assertFinished(await getMaterializationRecord(ctx, id));
  return ctx.engine.memberExport(id, format);
}

async function comparable(ctx: AppContext, id: string, since: string) {
  const current = await getMaterializationRecord(ctx, id);
  const previous = await getMaterializationRecord(ctx, since).catch(() => {
    throw badRequest(`since: no materialization ${since}.`, [{ path: "since", message: "unknown materialization" }]);
  });
  if (previous.audienceId !== current.audienceId)
    throw badRequest("since must be a materialization of the same audience.", [{ path: "since", message: "another audience's materialization" }]);
  assertFinished(current);
  assertFinished(previous);
  return { current, previous };
}

export async function changesPage(ctx: AppContext, id: string, q: PageQuery & { since: string; kind: "entered" | "exited" }) {
  const { current, previous } = await comparable(ctx, id, q.since);
  const counts = await ctx.engine.changeCounts(current.id, previous.id);
  const after = decodeCursor(q.cursor, userKeyCursor);
  const rows = await ctx.engine.changePage(current.id, previous.id, q.kind, { afterUserKey: after?.[0], limit: q.limit + 1 });
  return {
    since: previous.id,
    current: current.id,
    counts,
    kind: q.kind,
    ...toPage(rows, q.limit, (r) => [r.user_key], (r) => ({ user_id: r.user_id })),
  };
}

export async function changesExport(ctx: AppContext, id: string, since: string, kind: "entered" | "exited", format: ExportFormat) {
  const { current, previous } = await comparable(ctx, id, since);
  return ctx.engine.changeExport(current.id, previous.id, kind, format);
}

export async function deleteMaterialization(ctx: AppContext, id: string) {
  const m = await getMaterializationRecord(ctx, id);
  if (m.status === "queued" || m.status === "running") throw conflict(`Materialization ${id} is ${m.status}; delete it once it has finished.`);
  await ctx.engine.deleteMembers(id);
  // Another deletion of the same list may have got here first: that one answers 204, this one the 404.
  const { count } = await ctx.db.prisma.materialization.deleteMany({ where: { id } });
  if (count === 0) throw notFound(`No materialization ${id}.`);
}

/** A materialization to record: an audience version as of a resolved date. */
export interface MaterializationPlan {
  audienceId: string;
  version: number;
  asOf: string;
}

/**
 * After a processing run: the lists to draw for every live audience that refreshes on new data and
 * reads that fact, each as of its facts' watermark now. An audience another fact of which lags behind
 * is left out; the next run of that fact refreshes it.
 */
export async function planRefreshesOnNewData(ctx: AppContext, factId: number): Promise<MaterializationPlan[]> {
  const audiences = await ctx.db.prisma.audience.findMany({ where: { deletedAt: null, factIds: { has: factId } } });
  const plans: MaterializationPlan[] = [];
  for (const a of audiences) {
    if (a.refresh !== "on_new_data") continue;
    try {
      const resolved = await resolveAudience(ctx, a.definition as unknown as AudienceDefinition, undefined, "definition");
      plans.push({ audienceId: a.id, version: a.version, asOf: resolved.asOf });
    } catch {
      // Not resolvable yet (another fact not processed): see above.
    }
  }
  return plans;
}

/** Records planned materializations on `db` (a transaction, with what set them off); returns their ids for queueMaterializations. */
export async function recordMaterializations(db: PrismaClientOrTransaction, plans: MaterializationPlan[], trigger: MaterializationTrigger): Promise<string[]> {
  const ids: string[] = [];
  for (const p of plans) {
    const id = randomUUID();
    await db.materialization.create({ data: { id, audienceId: p.audienceId, version: p.version, asOf: new Date(`${p.asOf}T00:00:00Z`), status: "queued", trigger } });
    ids.push(id);
  }
  return ids;
}

/** Queues recorded materializations; one Redis could not take is queued by the workers' recovery sweep. */
export async function queueMaterializations(ctx: AppContext, ids: string[]): Promise<void> {
  for (const id of ids) await ctx.queues.enqueueMaterialization({ materializationId: id });
}
