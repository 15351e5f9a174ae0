import { randomUUID } from "node:crypto";
import { z } from "zod";
import { isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import type { Audience } from "../generated/prisma/client.js";
import { Prisma } from "../generated/prisma/client.js";
import { badRequest, notFound } from "../http/problem.js";
import { afterCreatedAtId, createdAtIdCursor, cursorInt4, decodeCursor, toPage, type PageQuery } from "../http/pagination.js";
import { checkDefinition, definitionAsWritten, definitionDoc, filterAsWritten, filterNodeDoc, type AudienceDefinition } from "./definition.js";
import { resolveAudience, unknownFacts } from "./resolve.js";
import { applyRefreshSchedule, checkRefresh, type Refresh } from "./refresh.js";
import { holdFacts } from "../facts/lifecycle-lock.js";
import type { PrismaTransaction } from "../db/client.js";

export const audienceSchema = z
  .object({
    id: z.string().uuid(),
    name: z.string(),
    fact: z.string(),
    grain: z.enum(["day", "week", "month"]),
    filter: filterNodeDoc,
    description: z.string().nullable(),
    version: z.number().int(),
    refresh: z.union([z.literal("on_new_data"), z.object({ cron: z.string(), timezone: z.string() })]).nullable(),
    created_at: isoInstant,
    updated_at: isoInstant,
  })
  .meta({ id: "Audience" });
export type AudienceView = z.infer<typeof audienceSchema>;

export function audienceView(a: Audience): AudienceView {
  const d = a.definition as unknown as AudienceDefinition;
  return {
    id: a.id,
    name: d.name,
    fact: d.fact,
    grain: d.grain,
    filter: filterAsWritten(d.filter),
    description: d.description ?? null,
    version: a.version,
    refresh: (a.refresh as Refresh | null) ?? null,
    created_at: a.createdAt.toISOString(),
    updated_at: a.updatedAt.toISOString(),
  };
}

/** Validates a definition and the facts it names; throws 400 with paths. */
export async function validatedDefinition(ctx: AppContext, raw: unknown, root: string) {
  const check = checkDefinition(raw, root);
  if (!check.ok) throw badRequest(`The audience definition is invalid: ${check.errors.map((e) => `${e.path}: ${e.message}`).slice(0, 3).join("; ")}`, check.errors);
  const facts = await ctx.db.prisma.fact.findMany({ where: { name: { in: check.referencedFacts } }, select: { id: true, name: true } });
  const missing = check.referencedFacts.filter((n) => !facts.some((f) => f.name === n));
  if (missing.length) throw unknownFacts(missing, check.definition, root);
  return { definition: check.definition, facts, factIds: facts.map((f) => f.id), mainFactId: facts.find((f) => f.name === check.definition.fact)!.id };
}

/**
 * First in the transaction that stores a definition: keeps the facts it names from being deleted until
 * it commits (a deletion then sees the audience and refuses), and refuses as validatedDefinition does
 * a fact whose deletion committed since.
 */
async function holdDefinitionFacts(tx: PrismaTransaction, v: Awaited<ReturnType<typeof validatedDefinition>>) {
  const existing = await holdFacts(tx, v.factIds);
  const gone = v.facts.filter((f) => !existing.has(f.id)).map((f) => f.name);
  if (gone.length) throw unknownFacts(gone, v.definition, "");
}

export async function previewDefinition(ctx: AppContext, raw: unknown, asOf: string | undefined) {
  const t0 = performance.now();
  const { definition } = await validatedDefinition(ctx, raw, "definition");
  const resolved = await resolveAudience(ctx, definition, asOf);
  const result = await ctx.engine.previewAudience(resolved.query, 20);
  return { ...result, as_of: resolved.asOf, grain: definition.grain, took_ms: Math.round(performance.now() - t0) };
}

/** A transaction that stores a definition may wait behind a large fact's deletion: Prisma's default of 5 s in all would fail it. */
const WAITS_FOR_A_DELETION = 120_000;

export async function createAudience(ctx: AppContext, body: Record<string, unknown>) {
  const { refresh: rawRefresh, ...rawDef } = body;
  const refresh = checkRefresh(rawRefresh);
  const validated = await validatedDefinition(ctx, rawDef, "");
  const { definition, factIds, mainFactId } = validated;
  const id = randomUUID();
  const audience = await ctx.db.prisma.$transaction(async (tx) => {
    await holdDefinitionFacts(tx, validated);
    const a = await tx.audience.create({
      data: {
        id,
        name: definition.name,
        factId: mainFactId,
        grain: definition.grain,
        definition: definition as unknown as Prisma.InputJsonValue,
        factIds,
        refresh: refresh === null ? Prisma.DbNull : (refresh as unknown as Prisma.InputJsonValue),
      },
    });
    await tx.audienceVersion.create({ data: { audienceId: id, version: 1, definition: definition as unknown as Prisma.InputJsonValue } });
    return a;
  }, { timeout: WAITS_FOR_A_DELETION });
  await applyRefreshSchedule(ctx, audience.id, refresh);
  return audienceView(audience);
}

export async function getAudienceRecord(ctx: AppContext, id: string, includeDeleted = false): Promise<Audience> {
  const a = await ctx.db.prisma.audience.findUnique({ where: { id } });
  if (!a || (a.deletedAt && !includeDeleted)) throw notFound(`No audience ${id}.`);
  return a;
}

export async function listAudiences(ctx: AppContext, q: PageQuery & { fact?: string }) {
  const after = decodeCursor(q.cursor, createdAtIdCursor);
  let factId: number | undefined;
  if (q.fact) factId = (await ctx.db.prisma.fact.findUnique({ where: { name: q.fact } }))?.id ?? -1;
  const rows = await ctx.db.prisma.audience.findMany({
    where: {
      deletedAt: null,
      ...(factId !== undefined ? { factIds: { has: factId } } : {}),
      ...afterCreatedAtId(after, "desc"),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.createdAt.toISOString(), r.id], audienceView);
}

/** JSON with sorted keys: jsonb reorders keys, so equality of definitions is checked on this form. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v as object)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/** Any change of the definition is a new version; a change of `refresh` alone is not. */
export async function updateAudience(ctx: AppContext, id: string, body: Record<string, unknown>) {
  const current = await getAudienceRecord(ctx, id);
  const { refresh: rawRefresh, ...patch } = body;
  const before = current.definition as unknown as AudienceDefinition;
  const merged: Record<string, unknown> = { ...before, ...patch };
  const validated = await validatedDefinition(ctx, merged, "");
  const { definition, factIds, mainFactId } = validated;
  const changed = canonicalJson(definition) !== canonicalJson(before);
  const refresh = rawRefresh === undefined ? ((current.refresh as Refresh | null) ?? null) : checkRefresh(rawRefresh);
  const updated = await ctx.db.prisma.$transaction(async (tx) => {
    await holdDefinitionFacts(tx, validated);
    const version = changed ? current.version + 1 : current.version;
    if (changed) await tx.audienceVersion.create({ data: { audienceId: id, version, definition: definition as unknown as Prisma.InputJsonValue } });
    return tx.audience.update({
      where: { id },
      data: {
        name: definition.name,
        factId: mainFactId,
        grain: definition.grain,
        definition: definition as unknown as Prisma.InputJsonValue,
        factIds,
        version,
        refresh: refresh === null ? Prisma.DbNull : (refresh as unknown as Prisma.InputJsonValue),
      },
    });
  }, { timeout: WAITS_FOR_A_DELETION });
  if (rawRefresh !== undefined) await applyRefreshSchedule(ctx, id, refresh);
  return audienceView(updated);
}

/** Soft delete: finished materialisations stay readable until they are deleted themselves. */
export async function deleteAudience(ctx: AppContext, id: string) {
  await getAudienceRecord(ctx, id);
  await ctx.db.prisma.audience.update({ where: { id }, data: { deletedAt: new Date(), refresh: Prisma.DbNull } });
  await applyRefreshSchedule(ctx, id, null);
}

export const versionSchema = z.object({ version: z.number().int(), definition: definitionDoc, created_at: isoInstant }).meta({ id: "AudienceVersion" });

export async function listVersions(ctx: AppContext, id: string, q: PageQuery) {
  await getAudienceRecord(ctx, id, true);
  const after = decodeCursor(q.cursor, z.tuple([cursorInt4]));
  const rows = await ctx.db.prisma.audienceVersion.findMany({
    where: { audienceId: id, ...(after ? { version: { lt: after[0] } } : {}) },
    orderBy: { version: "desc" },
    take: q.limit + 1,
  });
  return toPage(rows, q.limit, (r) => [r.version], (r) => ({
    version: r.version,
    definition: definitionAsWritten(r.definition as unknown as AudienceDefinition),
    created_at: r.createdAt.toISOString(),
  }));
}
