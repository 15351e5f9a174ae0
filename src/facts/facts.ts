import type pg from "pg";
import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { Fact } from "../generated/prisma/client.js";
import { conflict, badRequest } from "../http/problem.js";
import { cursorText, decodeCursor, toPage, type PageQuery } from "../http/pagination.js";
import { isKnownTimezone } from "./timezones.js";
import { withTransaction } from "../activation/postgres/tx.js";
import { lockFactForDeletion, noFactNamed } from "./lifecycle-lock.js";

export const FACT_NAME = /^[a-z][a-z0-9_]{1,62}$/;

export const factNameSchema = z.string().regex(FACT_NAME, "must match ^[a-z][a-z0-9_]{1,62}$ (lowercase letters, digits, underscores)");

export const createFactSchema = z
  .object({
    name: factNameSchema,
    timezone: z.string().min(1).max(64).default("UTC").describe("IANA time zone that decides each event's activity date"),
    service: z.string().min(1).max(100).nullable().optional().describe("Owning service, for core-action tracking"),
    description: z.string().max(2000).nullable().optional(),
  })
  .strict();

export const updateFactSchema = z
  .object({
    timezone: z.string().min(1).max(64).optional(),
    service: z.string().min(1).max(100).nullable().optional(),
    description: z.string().max(2000).nullable().optional(),
  })
  .strict();

export const factSchema = z
  .object({
    name: z.string(),
    timezone: z.string(),
    service: z.string().nullable(),
    description: z.string().nullable(),
    created_at: isoInstant,
    updated_at: isoInstant,
    processed_through: isoDate.nullable().describe("Every model answers as of this date"),
    dirty_from: isoDate.nullable().describe("Earliest date late data changed; the next run recomputes from it"),
    earliest_activity_date: isoDate.nullable(),
    latest_activity_date: isoDate.nullable(),
    user_count: z.number().int().describe("Users with processed activity (as of processed_through)"),
  })
  .meta({ id: "Fact" });
export type FactView = z.infer<typeof factSchema>;

const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : null);

async function userCounts(ctx: AppContext, factIds: number[]): Promise<Map<number, number>> {
  if (factIds.length === 0) return new Map();
  // users_total of the latest processed day: one indexed row per fact.
  const r = await ctx.db.pool.query<{ fact_id: number; users_total: number }>(
    `SELECT DISTINCT ON (fact_id) fact_id, users_total FROM layer_metric
     WHERE fact_id = ANY($1::int[]) AND grain = 0 ORDER BY fact_id, period DESC`,
    [factIds],
  );
  return new Map(r.rows.map((x) => [x.fact_id, x.users_total]));
}

function view(f: Fact, users: number): FactView {
  return {
    name: f.name,
    timezone: f.timezone,
    service: f.service,
    description: f.description,
    created_at: f.createdAt.toISOString(),
    updated_at: f.updatedAt.toISOString(),
    processed_through: day(f.processedThrough),
    dirty_from: day(f.dirtyFrom),
    earliest_activity_date: day(f.earliestDate),
    latest_activity_date: day(f.latestDate),
    user_count: users,
  };
}

export async function getFactRecord(ctx: AppContext, name: string): Promise<Fact> {
  const f = await ctx.db.prisma.fact.findUnique({ where: { name } });
  if (!f) throw noFactNamed(name);
  return f;
}

export async function getFact(ctx: AppContext, name: string): Promise<FactView> {
  const f = await getFactRecord(ctx, name);
  return view(f, (await userCounts(ctx, [f.id])).get(f.id) ?? 0);
}

async function assertTimezone(ctx: AppContext, tz: string) {
  if (!(await isKnownTimezone(ctx.db.pool, tz)))
    throw badRequest(`'${tz}' is not an IANA time zone name.`, [{ path: "timezone", message: "unknown IANA time zone (e.g. Asia/Seoul, UTC)" }]);
}

export async function createFact(ctx: AppContext, input: z.infer<typeof createFactSchema>): Promise<FactView> {
  await assertTimezone(ctx, input.timezone);
  try {
    const f = await ctx.db.prisma.fact.create({
      data: { name: input.name, timezone: input.timezone, service: input.service ?? null, description: input.description ?? null },
    });
    return view(f, 0);
  } catch (err) {
    if ((err as { code?: string }).code === "P2002") throw conflict(`A fact named '${input.name}' already exists.`);
    throw err;
  }
}

export async function listFacts(ctx: AppContext, q: PageQuery & { service?: string }) {
  const after = decodeCursor(q.cursor, z.tuple([cursorText]));
  const rows = await ctx.db.prisma.fact.findMany({
    where: { ...(q.service ? { service: q.service } : {}), ...(after ? { name: { gt: after[0] } } : {}) },
    orderBy: { name: "asc" },
    take: q.limit + 1,
  });
  const counts = await userCounts(ctx, rows.map((r) => r.id));
  return toPage(rows, q.limit, (r) => [r.name], (r) => view(r, counts.get(r.id) ?? 0));
}

export async function updateFact(ctx: AppContext, name: string, input: z.infer<typeof updateFactSchema>): Promise<FactView> {
  const f = await getFactRecord(ctx, name);
  if (input.timezone !== undefined && input.timezone !== f.timezone) {
    await assertTimezone(ctx, input.timezone);
    // Changing the zone would move events between days after the fact: refuse once any exist.
    const updated = await ctx.db.prisma.fact.updateMany({ where: { id: f.id, earliestDate: null }, data: { timezone: input.timezone } });
    if (updated.count === 0) throw conflict(`The timezone of '${name}' cannot change: it already has events.`);
  }
  const data: { service?: string | null; description?: string | null } = {};
  if (input.service !== undefined) data.service = input.service;
  if (input.description !== undefined) data.description = input.description;
  if (Object.keys(data).length) await ctx.db.prisma.fact.update({ where: { id: f.id }, data });
  return getFact(ctx, name);
}

/** What still uses a fact, in words (deleting it is refused while this is not empty), read on `db`: the deleting transaction's client. */
export async function factReferences(db: pg.ClientBase | pg.Pool, factId: number): Promise<string[]> {
  const refs: string[] = [];
  const active = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM processing_run WHERE fact_id = $1 AND status IN ('queued', 'running')`, [factId])).rows[0]!.n;
  if (active) refs.push(`${active} processing run(s) queued or running`);
  const audiences = (await db.query<{ name: string }>(`SELECT name FROM audience WHERE deleted_at IS NULL AND $1 = ANY(fact_ids) ORDER BY created_at`, [factId])).rows;
  if (audiences.length) refs.push(`audience(s) ${audiences.map((a) => `'${a.name}'`).join(", ")}`);
  // A campaign measures its goal on this fact's layer: without it, its results would read as no one returning.
  const campaigns = (await db.query<{ name: string; id: string }>(`SELECT name, id::text AS id FROM campaign WHERE goal_fact_id = $1 ORDER BY created_at`, [factId])).rows;
  if (campaigns.length) refs.push(`the goal of campaign(s) ${campaigns.map((c) => `'${c.name}' (${c.id})`).join(", ")}`);
  return refs;
}

export async function deleteFact(ctx: AppContext, name: string): Promise<void> {
  const f = await getFactRecord(ctx, name);
  await withTransaction(ctx.db.pool, async (c) => {
    // Once the lock is ours, no ingestion, run request or new reference of the fact is under way: those
    // that committed before are deleted with it or named in the 409, later ones will find the fact gone.
    await lockFactForDeletion(c, f);
    if (!(await c.query(`SELECT id FROM fact WHERE id = $1`, [f.id])).rowCount) throw noFactNamed(name);
    const refs = await factReferences(c, f.id);
    if (refs.length) throw conflict(`'${name}' is still referenced: ${refs.join("; ")}.`, { references: refs });
    await ctx.engine.deleteFactData(f.id, c);
    await c.query(`DELETE FROM fact WHERE id = $1`, [f.id]);
  });
}
