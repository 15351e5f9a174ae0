import type { FieldName, Op } from "../../audiences/definition.js";
import { statusColumnExprs } from "./status-sql.js";
import { decodedIsland } from "./pack-sql.js";

/**
 * The audience compiler: a resolved filter tree (values checked, dates turned into period numbers,
 * fact names into ids) becomes one parameterised SQL query over the layer's islands. Every value is a
 * bind parameter; the only text spliced in is ours (column expressions, aliases, the grain code).
 */
export type ResolvedValue = string | number | boolean;
export interface ResolvedCondition {
  field: FieldName;
  op: Op;
  values: ResolvedValue[];
  within?: number;
  /** null: the audience's own fact. */
  factId: number | null;
}
export type ResolvedNode = { all: ResolvedNode[] } | { any: ResolvedNode[] } | { not: ResolvedNode } | ResolvedCondition;

export interface AudienceQuery {
  factId: number;
  grain: number;
  period: number;
  /**
   * P is the period of the fact's watermark, and every other fact the filter reads is processed through
   * P's period, not beyond: every governing island is then a latest one.
   */
  latest: boolean;
  /** The watermark `latest` was decided on (confirmed again in the query's own snapshot). */
  watermark?: string | null;
  /** The other facts `latest` was decided on, and the last day of P, which none may be processed beyond. */
  otherFacts?: number[];
  periodEnd?: string;
  filter: ResolvedNode;
}

/** Every column of a member row: user_key, then the status columns (periods as numbers). */
export const MEMBER_STATUS_FIELDS = [
  "state", "previous_state", "transition_segment", "is_active", "first_active_period", "last_active_period",
  "inactivity_periods", "consecutive_active_periods", "last_streak_periods", "return_interval_periods",
  "last_active_state", "active_periods_total", "tenure_periods", "growth_state",
] as const;

/** Status columns that can be null on a user's own status (the rest never are). */
const NULLABLE_STATUS_FIELDS = new Set<string>(["previous_state", "return_interval_periods", "growth_state"]);

const PG_TYPE: Record<string, string> = { string: "text", number: "int", boolean: "boolean" };

class Params {
  list: unknown[] = [];
  add(v: unknown, type: string): string {
    this.list.push(v);
    return `$${this.list.length}::${type}`;
  }
}

/** Position intervals [a, b] within one island at which a within-able field takes a value (NULL: never). */
function valueIntervals(field: FieldName, value: string): Array<[string, string, string]> {
  // [condition, a, b] over island j; N is its next start (or far away), so N - 1 is its last governed period.
  const N = "COALESCE(j.next_start, 1000000000)";
  const first = "j.prev_end IS NULL", react = "j.prev_end IS NOT NULL", gap = "(j.start_p - j.prev_end)";
  const s = "j.start_p", e = "j.end_p";
  const T = "TRUE";
  const table: Record<string, Record<string, Array<[string, string, string]>>> = {
    state: {
      new: [[first, s, s]],
      reactivated: [[react, s, s]],
      retained: [[T, `${s} + 1`, e]],
      inactive: [[T, `${e} + 1`, `${N} - 1`]],
    },
    transition_segment: {
      new: [[first, s, s]],
      new_to_retained: [[`${first} AND ${e} >= ${s} + 1`, `${s} + 1`, `${s} + 1`]],
      new_to_inactive: [[`${first} AND ${e} = ${s}`, `${e} + 1`, `${e} + 1`]],
      retained_to_retained: [[T, `${s} + 2`, e]],
      retained_to_inactive: [[`${e} >= ${s} + 1`, `${e} + 1`, `${e} + 1`]],
      reactivated_to_retained: [[`${react} AND ${e} >= ${s} + 1`, `${s} + 1`, `${s} + 1`]],
      reactivated_to_inactive: [[`${react} AND ${e} = ${s}`, `${e} + 1`, `${e} + 1`]],
      inactive_to_reactivated: [[react, s, s]],
      inactive_to_inactive: [[T, `${e} + 2`, `${N} - 1`]],
    },
    growth_state: {
      new: [[first, s, s]],
      current: [[T, `${s} + 1`, e], [`${react} AND ${gap} <= 6`, s, s]],
      reactivated: [[`${react} AND ${gap} BETWEEN 7 AND 29`, s, s]],
      resurrected: [[`${react} AND ${gap} >= 30`, s, s]],
      at_risk_wau: [[T, `${e} + 1`, `LEAST(${e} + 6, ${N} - 1)`]],
      at_risk_mau: [[T, `${e} + 7`, `LEAST(${e} + 29, ${N} - 1)`]],
      dormant: [[T, `${e} + 30`, `${N} - 1`]],
    },
  };
  return table[field]?.[value] ?? [];
}

const ENUM_VALUES: Record<string, readonly string[]> = {
  state: ["new", "retained", "reactivated", "inactive"],
  transition_segment: [
    "new", "new_to_retained", "new_to_inactive", "retained_to_retained", "retained_to_inactive",
    "reactivated_to_retained", "reactivated_to_inactive", "inactive_to_reactivated", "inactive_to_inactive",
  ],
  growth_state: ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"],
};

/** The island columns the latest path carries for within tests (as <alias>_island_<column>). */
const ISLAND_COLUMNS = ["user_key", "start_p", "end_p", "prev_end", "active_before", "first_p"] as const;

/**
 * The island of each user that governs period P. At the watermark's period that is the user's latest
 * island: read from islandsGoverning(true), the latest packs alone.
 */
export function governs(alias: string, P: string, latest: boolean): string {
  return latest ? `${alias}.next_start IS NULL` : `${alias}.start_p <= ${P} AND (${alias}.next_start IS NULL OR ${alias}.next_start > ${P})`;
}

/** The view to read the islands governing P from: the latest islands alone at the watermark's period. */
export const islandsGoverning = (latest: boolean): string => (latest ? "layer_latest_island" : "layer_island");

export function compileAudienceQuery(q: AudienceQuery): { sql: string; params: unknown[] } {
  const g = Number(q.grain) | 0;
  const params = new Params();
  const fact = params.add(q.factId, "int");
  const P = params.add(q.period, "int");
  const others = new Map<number, string>(); // fact id -> alias
  const joins: string[] = [];
  const packJoins: string[] = []; // latest: per chunk, before its islands are unpacked
  const extraCols: string[] = [];

  const aliasFor = (factId: number) => {
    let alias = others.get(factId);
    if (!alias) {
      alias = `x${others.size + 1}`;
      others.set(factId, alias);
      const fid = params.add(factId, "int");
      if (q.latest) {
        // The user's latest island on that fact (the one governing P: that fact is processed through P's
        // period, not beyond, see AudienceQuery.latest), read from the same chunk's pack of that fact:
        // its arrays fetched once per chunk, then one element per user.
        packJoins.push(
          `LEFT JOIN LATERAL (SELECT o.s || '{}'::bigint[] AS s, of.fp || '{}'::int[] AS fp
        FROM layer_latest_pack o JOIN layer_latest_first of ON of.fact_id = o.fact_id AND of.grain = o.grain AND of.chunk = o.chunk
        WHERE o.fact_id = ${fid} AND o.grain = ${g} AND o.chunk = p.chunk OFFSET 0) ${alias}p ON TRUE`,
        );
        joins.push(
          `LEFT JOIN LATERAL (SELECT ${decodedIsland("v.x", "v.f", "i.user_key")}, NULL::int AS next_start
        FROM (SELECT ${alias}p.s[u.o] AS x, ${alias}p.fp[u.o] AS f) v WHERE v.x <> -1) ${alias} ON TRUE`,
        );
        for (const col of ISLAND_COLUMNS) extraCols.push(`${alias}.${col} AS ${alias}_island_${col}`);
      } else
        // The islands governing P on that fact as one set (a hash join): a lookup per user would unpack
        // the user's chunk once per user.
        joins.push(
          `LEFT JOIN (
        SELECT x.* FROM layer_island x
        WHERE x.fact_id = ${fid} AND x.grain = ${g} AND ${governs("x", P, false)}) ${alias} ON ${alias}.user_key = i.user_key`,
        );
      const exprs = statusColumnExprs(alias, P, g);
      // A user without status on that fact has only nulls there.
      for (const [name, expr] of Object.entries(exprs))
        extraCols.push(`CASE WHEN ${alias}.user_key IS NULL THEN NULL ELSE ${expr} END AS ${alias}_${name}`);
    }
    return alias;
  };

  const valueTest = (col: string, c: ResolvedCondition, nullable: boolean): string => {
    const type = PG_TYPE[typeof c.values[0]] ?? "text";
    // A comparison with a null is null, which NOT would keep null: a nullable column's comparisons
    // read as false instead. Columns that are never null go bare, which also lets the planner
    // estimate them (a COALESCE hides the comparison, and a wrong guess of the candidates' number
    // turns a few index probes into scans of whole partitions).
    const test = (sqlTest: string) => (nullable ? `COALESCE(${sqlTest}, FALSE)` : `(${sqlTest})`);
    switch (c.op) {
      case "is_null":
        return `(${col} IS NULL)`;
      case "is_not_null":
        return `(${col} IS NOT NULL)`;
      case "eq":
        return test(`${col} = ${params.add(c.values[0], type)}`);
      // A null is not the value: neq and not_in keep users whose value is null (no previous state, no
      // status on another fact), as not(eq) and not(in) do.
      case "neq":
        return nullable ? `(${col} IS DISTINCT FROM ${params.add(c.values[0], type)})` : test(`${col} <> ${params.add(c.values[0], type)}`);
      case "in":
        return test(`${col} = ANY(${params.add(c.values, `${type}[]`)})`);
      case "not_in":
        return nullable ? `(${col} IS NULL OR ${col} <> ALL(${params.add(c.values, `${type}[]`)}))` : test(`${col} <> ALL(${params.add(c.values, `${type}[]`)})`);
      case "gt":
        return test(`${col} > ${params.add(c.values[0], type)}`);
      case "gte":
        return test(`${col} >= ${params.add(c.values[0], type)}`);
      case "lt":
        return test(`${col} < ${params.add(c.values[0], type)}`);
      case "lte":
        return test(`${col} <= ${params.add(c.values[0], type)}`);
      case "between":
        return test(`${col} BETWEEN ${params.add(c.values[0], type)} AND ${params.add(c.values[1], type)}`);
    }
  };

  // "Held in at least one of the last n periods": some island governing a period of the window has
  // the value at a position inside the window.
  const withinTest = (c: ResolvedCondition): string => {
    const all = ENUM_VALUES[c.field]!;
    const vs = c.values as string[];
    const wanted = c.op === "eq" || c.op === "in" ? vs : all.filter((v) => !vs.includes(v));
    if (wanted.length === 0) return "FALSE";
    const w0 = params.add(q.period - c.within! + 1, "int");
    const fid = c.factId === null ? fact : params.add(c.factId, "int");
    const hits = wanted.flatMap((v) =>
      valueIntervals(c.field, v).map(([cond, a, b]) => `(${cond} AND GREATEST(${a}, ${w0}) <= LEAST(${b}, ${P}))`),
    );
    if (q.latest) {
      // The islands governing a period of the window: the user's latest island on that fact and, only
      // when it starts inside the window, the closed islands whose next starts there, found in the rows
      // of the user's chunk by next start.
      const L = c.factId === null ? "i" : aliasFor(c.factId);
      const latestIsland = ISLAND_COLUMNS.map((col) => `s.${L}_island_${col} AS ${col}`).join(", ");
      return `(EXISTS (SELECT 1 FROM (SELECT ${latestIsland}, NULL::int AS next_start) j WHERE j.start_p IS NOT NULL AND (${hits.join(" OR ")}))
        OR (s.${L}_island_start_p > ${w0} AND EXISTS (
          SELECT 1 FROM layer_closed_pack c
          CROSS JOIN LATERAL (SELECT ${decodedIsland("z.x", "z.f", "z.k")}, c.next_start FROM unnest(c.uk, c.s, c.fp) AS z(k, x, f) WHERE z.k = s.user_key) j
          WHERE c.fact_id = ${fid} AND c.grain = ${g} AND c.chunk = s.user_key >> 10 AND c.next_start > ${w0} AND s.user_key = ANY(c.uk)
            AND (${hits.join(" OR ")}))))`;
    }
    // The islands governing some period of the window [w0, P] as one set.
    return `s.user_key IN (SELECT j.user_key FROM layer_island j
        WHERE j.fact_id = ${fid} AND j.grain = ${g} AND j.start_p <= ${P} AND (j.next_start IS NULL OR j.next_start > ${w0})
          AND (${hits.join(" OR ")}))`;
  };

  const compileNode = (n: ResolvedNode): string => {
    if ("all" in n) return `(${n.all.map(compileNode).join(" AND ")})`;
    if ("any" in n) return `(${n.any.map(compileNode).join(" OR ")})`;
    if ("not" in n) return `(NOT ${compileNode(n.not)})`;
    // The field becomes a column name: only the status columns, whatever reached the compiler.
    if (!Object.hasOwn(main, n.field)) throw new Error(`the audience compiler has no status field '${String(n.field)}'`);
    if (n.within) return withinTest(n);
    const own = n.factId === null;
    const col = own ? `s.${n.field}` : `s.${aliasFor(n.factId!)}_${n.field}`;
    // On another fact every column is null for a user without status there.
    return valueTest(col, n, !own || NULLABLE_STATUS_FIELDS.has(n.field) || (n.field === "growth_state" && g !== 0));
  };

  const main = statusColumnExprs("i", P, g);
  if (g !== 0) main.growth_state = "NULL::text";
  const where = compileNode(q.filter);
  const mainCols = MEMBER_STATUS_FIELDS.map((f) => `${main[f]} AS ${f}`).join(",\n      ");
  const extra = extraCols.length ? `,\n      ${extraCols.join(",\n      ")}` : "";
  const out = `SELECT s.user_key, ${MEMBER_STATUS_FIELDS.map((f) => `s.${f}`).join(", ")} FROM`;
  const sql = q.latest
    ? // Every user's latest island, unpacked chunk by chunk with the other facts' packs of the chunk.
      `${out} (
    SELECT i.user_key, ${ISLAND_COLUMNS.map((col) => `i.${col} AS i_island_${col}`).join(", ")},
      ${mainCols}${extra}
    FROM layer_latest_pack p JOIN layer_latest_first pf ON pf.fact_id = p.fact_id AND pf.grain = p.grain AND pf.chunk = p.chunk
    ${packJoins.join("\n    ")}
    CROSS JOIN LATERAL unnest(p.s, pf.fp) WITH ORDINALITY AS u(x, f, o)
    CROSS JOIN LATERAL (SELECT ${decodedIsland("u.x", "u.f", "(p.chunk << 10) + (u.o::int - 1)")}, NULL::int AS next_start) i
    ${joins.join("\n    ")}
    WHERE p.fact_id = ${fact} AND p.grain = ${g} AND u.x <> -1
  ) s WHERE ${where}`
    : `${out} (
    SELECT i.user_key,
      ${mainCols}${extra}
    FROM layer_island i
    ${joins.join("\n    ")}
    WHERE i.fact_id = ${fact} AND i.grain = ${g} AND ${governs("i", P, false)}
  ) s WHERE ${where}`;
  return { sql, params: params.list };
}
