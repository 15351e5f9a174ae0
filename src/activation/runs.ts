import { randomUUID } from "node:crypto";
import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { ProcessingRun, Fact } from "../generated/prisma/client.js";
import { conflict, notFound, badRequest } from "../http/problem.js";
import { afterCreatedAtId, createdAtIdCursor, decodeCursor, toPage, type PageQuery } from "../http/pagination.js";
import { localDate } from "../facts/timezones.js";
import { holdFact } from "../facts/lifecycle-lock.js";
import { MAX_FUTURE_MS } from "../facts/event-validation.js";
import { dateToDay, dayToDate, parseDate } from "./periods.js";
import type { ProcessProgress, ProcessResult } from "./engine.js";
import { emitEvent, queueDeliveries, recordEvent } from "../audiences/webhooks.js";
import { planRefreshesOnNewData, queueMaterializations, recordMaterializations } from "../audiences/materializations.js";
import { markCampaignsChangedByRun } from "../campaigns/results.js";
import { queueResultsRecomputation } from "../campaigns/campaigns.js";
import { reviveRunJob } from "../jobs/recovery.js";

/**
 * What asks for a run: POST /v1/facts/{name}/runs, the daily schedule (every fact through yesterday,
 * processAllFactsThroughYesterday), the CLI's `process`, the demo and the benchmarks.
 */
export const RUN_TRIGGERS = ["api", "schedule", "cli", "demo", "bench"] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

export const runSchema = z
  .object({
    id: z.string().uuid(),
    fact: z.string(),
    status: z.enum(["queued", "running", "succeeded", "failed"]),
    trigger: z
      .enum(RUN_TRIGGERS)
      .describe("What asked for the run: api (POST /v1/facts/{name}/runs), schedule (the daily run of every fact through yesterday), cli (`npm run cli -- process`), demo (`npm run demo`), bench (`npm run bench`)"),
    from: isoDate.nullable().describe("First date recomputed (earliest changed date or the day after the previous watermark)"),
    through: isoDate,
    progress: z.number(),
    error: z.string().nullable(),
    note: z
      .string()
      .nullable()
      .describe("Set when the run was overtaken: another run had processed the fact through a later date first, so this one processed through that date (recomputing late data, or nothing)"),
    timings: z.record(z.string(), z.number()).nullable(),
    created_at: isoInstant,
    started_at: isoInstant.nullable(),
    finished_at: isoInstant.nullable(),
    duration_ms: z.number().nullable(),
  })
  .meta({ id: "ProcessingRun" });
export type RunView = z.infer<typeof runSchema>;

const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : null);

export function runView(r: ProcessingRun, factName: string): RunView {
  return {
    id: r.id,
    fact: factName,
    status: r.status as RunView["status"],
    trigger: r.trigger as RunTrigger,
    from: day(r.fromDate),
    through: day(r.throughDate)!,
    progress: r.progress,
    error: r.error,
    note: r.note,
    timings: (r.timings as Record<string, number> | null) ?? null,
    created_at: r.createdAt.toISOString(),
    started_at: r.startedAt?.toISOString() ?? null,
    finished_at: r.finishedAt?.toISOString() ?? null,
    duration_ms: r.startedAt && r.finishedAt ? r.finishedAt.getTime() - r.startedAt.getTime() : null,
  };
}

/**
 * Run requests of one fact serialise on this advisory lock (second key the fact id). Against the
 * fact's deletion they hold its lifecycle lock, shared like ingestion's: a run request neither waits for
 * a batch or a bulk load of its fact nor holds one up, and a waiting request never queues new batches
 * behind it. (Beyond the fact's existence, its transaction reads and writes runs only, which ingestion never touches.)
 */
export const RUN_REQUEST_LOCK_NS = 4_273;

/**
 * Asks for a run through `through` (default: the latest activity date). A queued or running run of the
 * same fact and date is joined rather than duplicated; different runs of one fact queue behind each
 * other (the engine serialises them).
 */
export async function requestRun(ctx: AppContext, fact: Fact, through: string | undefined, trigger: RunTrigger = "api"): Promise<{ run: RunView; joined: boolean }> {
  const latest = fact.latestDate ? day(fact.latestDate)! : null;
  // Without events there is nothing to process, whatever the date asked for (and no watermark to set).
  if (!latest) throw conflict(`'${fact.name}' has no events yet: there is nothing to process.`);
  const processed = day(fact.processedThrough);
  // By default through the latest activity date, or the watermark when it is later (the daily runs go
  // through yesterday, events or not): late data before it is then reprocessed, never refused.
  const target = through ?? (processed && processed > latest ? processed : latest);
  if (parseDate(target) === null) throw badRequest("through must be a date (YYYY-MM-DD).", [{ path: "through", message: "invalid date" }]);
  // No event can be dated later (ingestion refuses them), and a watermark never goes back: a run
  // through a later date would mark days that have not happened as processed, for good.
  const lastPossible = localDate(fact.timezone, new Date(Date.now() + MAX_FUTURE_MS));
  if (target > lastPossible)
    throw badRequest(
      `through ${target} is after ${lastPossible}, the last date an event of '${fact.name}' can have now (${fact.timezone}); days that have not happened cannot be processed.`,
      [{ path: "through", message: `must be on or before ${lastPossible}` }],
    );
  if (processed && target < processed)
    throw conflict(`'${fact.name}' is already processed through ${processed}; a run cannot go back to ${target}.`, { processed_through: processed });
  // Holding the fact: its deletion either sees this run and refuses, or this request finds no fact.
  // Then the fact's run-request lock: requests of one fact that arrive together join one run.
  // The transaction may wait behind a large fact's deletion: Prisma's default of 5 s in all would fail it.
  const { run, joined } = await ctx.db.prisma.$transaction(async (tx) => {
    await holdFact(tx, fact);
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${RUN_REQUEST_LOCK_NS}::int, ${fact.id}::int)`;
    const existing = await tx.processingRun.findFirst({
      where: { factId: fact.id, throughDate: new Date(`${target}T00:00:00Z`), status: { in: ["queued", "running"] } },
      orderBy: { createdAt: "desc" },
    });
    if (existing) return { run: existing, joined: true };
    const created = await tx.processingRun.create({
      data: { id: randomUUID(), factId: fact.id, status: "queued", throughDate: new Date(`${target}T00:00:00Z`), trigger },
    });
    return { run: created, joined: false };
  }, { timeout: 120_000 });
  if (joined) {
    // Its job may have ended without the record knowing (a last attempt failing while PostgreSQL was
    // unreachable) or been lost with Redis's data: joining a record nothing will finish would wait forever.
    await reviveRunJob(ctx, run.id).catch(() => {});
    return { run: runView(run, fact.name), joined: true };
  }
  try {
    await ctx.queues.enqueueProcessRun({ runId: run.id });
  } catch (err) {
    // Without Redis the run would sit queued forever: record why and let the caller see a 503.
    await ctx.db.prisma.processingRun.update({ where: { id: run.id }, data: { status: "failed", error: "job queue unavailable", finishedAt: new Date() } });
    throw err;
  }
  return { run: runView(run, fact.name), joined: false };
}

export async function getRun(ctx: AppContext, id: string): Promise<RunView> {
  const r = await ctx.db.prisma.processingRun.findUnique({ where: { id }, include: { fact: { select: { name: true } } } });
  if (!r) throw notFound(`No processing run ${id}.`);
  return runView(r, r.fact.name);
}

export async function listRuns(ctx: AppContext, fact: Fact, q: PageQuery) {
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  const rows = await ctx.db.prisma.processingRun.findMany({
    where: {
      factId: fact.id,
      ...afterCreatedAtId(after, "desc"),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], (r) => runView(r, fact.name));
}

class RunAlreadyFinishedError extends Error {}

/**
 * Executes a run record (the job processor and the CLI call this). Idempotent: a finished run is left
 * as it is, and a run whose worker died resumes from the start date it had claimed.
 */
export async function executeRun(ctx: AppContext, runId: string, opts: { finalAttempt: boolean; progress?: ProcessProgress } = { finalAttempt: true }): Promise<RunView> {
  const run = await ctx.db.prisma.processingRun.findUnique({ where: { id: runId }, include: { fact: true } });
  if (!run) throw new Error(`run ${runId} not found`);
  if (run.status === "succeeded" || run.status === "failed") return runView(run, run.fact.name);
  const fact = { id: run.fact.id, name: run.fact.name, timezone: run.fact.timezone };
  let lastWrite = 0;
  // The run is "running" from the moment it holds its fact (runs of one fact wait for each other in the
  // engine) until the watermark moved, both stamped while it holds the fact: the records of two runs of
  // one fact never overlap, and a run waiting its turn still reads "queued".
  let doneAt: Date | null = null;
  try {
    const asked = day(run.throughDate)!;
    const result = await ctx.engine.process(fact, asked, {
      resumeFrom: day(run.fromDate),
      onClaimed: async (from, client) => {
        const claimed = (await client.query(
          // LEAST: a retry resumes at or before the start it had claimed; a second job of the run
          // (queued again after Redis lost it) that finds the work done claims nothing earlier.
          `UPDATE processing_run SET from_date = LEAST(from_date, $2::date), status = 'running', started_at = COALESCE(started_at, $3), error = NULL
           WHERE id = $1 AND status IN ('queued', 'running')`,
          [runId, from, new Date()],
        )) as { rowCount: number | null };
        // Another job of this run (one queued again after Redis lost it) finished it while this one
        // waited for the fact: give the claim back untouched.
        if (claimed.rowCount === 0) throw new RunAlreadyFinishedError();
      },
      progress: async (fraction, step) => {
        if (fraction >= 1) doneAt ??= new Date();
        await opts.progress?.(fraction, step);
        const now = Date.now();
        if (now - lastWrite > 250 || fraction >= 1) {
          lastWrite = now;
          await ctx.db.prisma.processingRun.updateMany({ where: { id: runId, status: "running" }, data: { progress: Math.round(fraction * 1000) / 1000 } });
        }
      },
    });
    // A retry recomputes from the start its earlier attempt claimed, so this covers that attempt's work too.
    const recomputed = result.from !== null;
    const plans = recomputed ? await planRefreshesOnNewData(ctx, run.fact.id) : [];
    // The run's end and what it sets off commit together (an outbox): a worker killed right after
    // cannot lose the webhook, the lists or the campaigns' staleness. Their jobs are queued after it.
    // Marking campaigns waits for their row locks, which a results recomputation or an assignment holds
    // for seconds on a large list: Prisma's default of 5 s would fail a run whose layer has committed.
    const ended = await ctx.db.prisma.$transaction(async (tx) => {
      const finished = await tx.processingRun.updateMany({
        where: { id: runId, status: { in: ["queued", "running"] } },
        data: { status: "succeeded", progress: 1, timings: result.timings, finishedAt: doneAt ?? new Date(), note: overtakenNote(run.fact.name, asked, result) },
      });
      // Another job of this run finished (and announced) it first: the record is theirs.
      if (finished.count === 0) return null;
      const view = runView(await tx.processingRun.findUniqueOrThrow({ where: { id: runId } }), run.fact.name);
      return {
        view,
        deliveries: await recordEvent(tx, "run.succeeded", { run: view }),
        materializations: await recordMaterializations(tx, plans, "on_new_data"),
        campaigns: recomputed ? await markCampaignsChangedByRun(tx, run.fact.id, view) : [],
      };
    }, { timeout: 600_000 });
    if (!ended) return getRun(ctx, runId);
    // Records Redis cannot take now are queued by the workers' recovery sweep (deliveries, lists, and
    // the campaigns' results, behind their new data version).
    await queueDeliveries(ctx, ended.deliveries).catch(() => {});
    await queueMaterializations(ctx, ended.materializations).catch(() => {});
    await queueResultsRecomputation(ctx, ended.campaigns);
    return ended.view;
  } catch (err) {
    if (err instanceof RunAlreadyFinishedError) return getRun(ctx, runId);
    const message = `processing failed: ${(err as Error).message}`;
    const final = opts.finalAttempt;
    const updated = await ctx.db.prisma.processingRun.updateMany({
      where: { id: runId, status: { in: ["queued", "running"] } },
      data: final ? { status: "failed", error: message, finishedAt: new Date() } : { status: "queued", error: `${message} (will retry)` },
    });
    if (updated.count === 0) return getRun(ctx, runId);
    if (final) await emitEvent(ctx, "run.failed", { run: await getRun(ctx, runId) }).catch(() => {});
    throw err;
  }
}

/** A run that found itself behind the watermark says so, and what it did instead. */
function overtakenNote(factName: string, asked: string, result: ProcessResult): string | null {
  if (result.through === asked) return null;
  const done = result.from === null ? "nothing was left to recompute" : `it recomputed late data from ${result.from} through ${result.through}`;
  return `Overtaken: another run had already processed '${factName}' through ${result.through}, so this run processed through that date instead of ${asked}; ${done}.`;
}

/** The scheduler's work: every fact through yesterday in its own timezone, when behind or dirty. */
export async function processAllFactsThroughYesterday(ctx: AppContext, now = new Date()): Promise<RunView[]> {
  const facts = await ctx.db.prisma.fact.findMany({ where: { earliestDate: { not: null } } });
  const runs: RunView[] = [];
  for (const fact of facts) {
    const yesterday = dayToDate(dateToDay(localDate(fact.timezone, now)) - 1);
    const processed = day(fact.processedThrough);
    if (processed && processed > yesterday) continue;
    if (processed === yesterday && !fact.dirtyFrom) continue;
    runs.push((await requestRun(ctx, fact, yesterday, "schedule")).run);
  }
  return runs;
}
