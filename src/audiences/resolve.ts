import type { AppContext } from "../context.js";
import type { Fact } from "../generated/prisma/client.js";
import { GRAIN_CODE, dateToDay, dayToDate, parseDate, periodEndDay, periodOfDate, periodOfDay, periodToDate, type Grain } from "../activation/periods.js";
import type { AudienceQuery, ResolvedNode, ResolvedValue } from "../activation/postgres/audience-sql.js";
import { badRequest, conflict } from "../http/problem.js";
import { FIELDS, type AudienceDefinition, type FilterNode, type Scalar } from "./definition.js";

const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : null);

export interface ResolvedAudience {
  query: AudienceQuery;
  mainFact: Fact;
  asOf: string;
  period: number;
}

/** 400 naming each unknown fact at the field that names it (`root` "" for a definition that is the body). */
export function unknownFacts(missing: string[], def: AudienceDefinition, root: string) {
  const at = (k: string) => (root ? `${root}.${k}` : k);
  return badRequest(
    `Unknown fact${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}.`,
    missing.map((m) => ({ path: m === def.fact ? at("fact") : at("filter"), message: `unknown fact '${m}'` })),
  );
}

/**
 * Binds a validated definition to data: facts by name, as_of (default: the fact's watermark) to its
 * period, dates and `periods_ago` to period numbers. Every fact read must be processed through as_of.
 */
export async function resolveAudience(ctx: AppContext, def: AudienceDefinition, asOf: string | undefined, root = "definition"): Promise<ResolvedAudience> {
  const names = new Set<string>([def.fact]);
  const collect = (n: FilterNode) => {
    if ("all" in n) n.all.forEach(collect);
    else if ("any" in n) n.any.forEach(collect);
    else if ("not" in n) collect(n.not);
    else if (n.fact) names.add(n.fact);
  };
  collect(def.filter);
  const facts = await ctx.db.prisma.fact.findMany({ where: { name: { in: [...names] } } });
  const byName = new Map(facts.map((f) => [f.name, f]));
  const missing = [...names].filter((n) => !byName.has(n));
  if (missing.length) throw unknownFacts(missing, def, root);
  const main = byName.get(def.fact)!;
  const T = day(main.processedThrough);
  if (!T) throw conflict(`'${main.name}' has not been processed yet: there is no status to select from.`, { processed_through: null });
  const when = asOf ?? T;
  if (parseDate(when) === null) throw badRequest("as_of must be a date (YYYY-MM-DD).", [{ path: "as_of", message: "invalid date" }]);
  const grain: Grain = def.grain;
  const P = periodOfDay(grain, dateToDay(when));
  for (const f of byName.values()) {
    const ft = day(f.processedThrough);
    if (!ft || periodOfDate(grain, ft) < P)
      throw conflict(`as_of ${when} is beyond what '${f.name}' is processed through (${ft ?? "never processed"}).`, { fact: f.name, processed_through: ft });
  }
  const value = (field: keyof typeof FIELDS, v: Scalar): ResolvedValue => {
    if (FIELDS[field].kind === "period") {
      const pv = v as { date: string } | { periods_ago: number };
      return "date" in pv ? periodOfDate(grain, pv.date) : P - pv.periods_ago;
    }
    return v as ResolvedValue;
  };
  const resolve = (n: FilterNode): ResolvedNode => {
    if ("all" in n) return { all: n.all.map(resolve) };
    if ("any" in n) return { any: n.any.map(resolve) };
    if ("not" in n) return { not: resolve(n.not) };
    const raw = n.value === undefined ? [] : Array.isArray(n.value) ? n.value : [n.value];
    const other = n.fact && n.fact !== def.fact ? byName.get(n.fact)!.id : null;
    return { field: n.field, op: n.op, values: raw.map((v) => value(n.field, v)), within: n.within_periods, factId: other };
  };
  // The latest-island shortcut holds only while no islands exist beyond the watermark (see isLatest),
  // and while the other facts are processed through P's period, not beyond (their latest islands then
  // govern P too).
  const others = [...byName.values()].filter((f) => f.id !== main.id);
  const periodEnd = dayToDate(periodEndDay(grain, P));
  return {
    query: {
      factId: main.id, grain: GRAIN_CODE[grain], period: P, watermark: T,
      latest: P === periodOfDate(grain, T) && main.runningThrough === null && main.dirtyFrom === null
        && others.every((f) => day(f.processedThrough)! <= periodEnd),
      otherFacts: others.map((f) => f.id),
      periodEnd,
      filter: resolve(def.filter),
    },
    mainFact: main,
    asOf: when,
    period: P,
  };
}

export const periodLabel = (grain: Grain, p: number) => periodToDate(grain, p);
