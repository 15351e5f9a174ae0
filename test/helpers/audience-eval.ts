import { FIELDS, type AudienceDefinition, type Condition, type FilterNode, type Scalar } from "../../src/audiences/definition.js";
import { periodOfDate, type Grain } from "../../src/activation/periods.js";
import type { CsvRow } from "./fixtures.js";

/**
 * An independent evaluator of audience filters over the spec's status rows (the fixture CSVs):
 * rows[fact] maps user -> period number -> row. It knows nothing of islands or SQL.
 */
export type StatusIndex = Map<string, Map<number, CsvRow>>;

export function indexStatus(rows: CsvRow[], grain: Grain): StatusIndex {
  const idx: StatusIndex = new Map();
  for (const r of rows) {
    const p = periodOfDate(grain, r.period!);
    let m = idx.get(r.user_id!);
    if (!m) idx.set(r.user_id!, (m = new Map()));
    m.set(p, r);
  }
  return idx;
}

function typed(field: Condition["field"], raw: string | undefined, grain: Grain): string | number | boolean | null {
  if (raw === undefined || raw === "") return null;
  const kind = FIELDS[field].kind;
  if (kind === "integer") return Number(raw);
  if (kind === "boolean") return raw === "true";
  if (kind === "period") return periodOfDate(grain, raw);
  return raw;
}

function value(field: Condition["field"], v: Scalar, grain: Grain, P: number): string | number | boolean {
  if (FIELDS[field].kind === "period") {
    if (typeof v === "string") return periodOfDate(grain, v);
    const pv = v as { date?: string; periods_ago?: number };
    return pv.date !== undefined ? periodOfDate(grain, pv.date) : P - pv.periods_ago!;
  }
  return v as string | number | boolean;
}

function test(c: Condition, x: string | number | boolean | null, grain: Grain, P: number): boolean {
  const vals = c.value === undefined ? [] : (Array.isArray(c.value) ? c.value : [c.value]).map((v) => value(c.field, v, grain, P));
  switch (c.op) {
    case "is_null":
      return x === null;
    case "is_not_null":
      return x !== null;
  }
  // A null is not the value: only neq and not_in hold for it.
  if (x === null) return c.op === "neq" || c.op === "not_in";
  switch (c.op) {
    case "eq":
      return x === vals[0];
    case "neq":
      return x !== vals[0];
    case "in":
      return vals.includes(x);
    case "not_in":
      return !vals.includes(x);
    case "gt":
      return x > vals[0]!;
    case "gte":
      return x >= vals[0]!;
    case "lt":
      return x < vals[0]!;
    case "lte":
      return x <= vals[0]!;
    case "between":
      return x >= vals[0]! && x <= vals[1]!;
  }
  return false;
}

export function evaluateAudience(def: AudienceDefinition, asOf: string, status: Record<string, StatusIndex>): Set<string> {
  const grain = def.grain;
  const P = periodOfDate(grain, asOf);
  const main = status[def.fact]!;
  const holds = (n: FilterNode, user: string): boolean => {
    if ("all" in n) return n.all.every((m) => holds(m, user));
    if ("any" in n) return n.any.some((m) => holds(m, user));
    if ("not" in n) return !holds(n.not, user);
    const idx = status[n.fact ?? def.fact]!;
    const rows = idx.get(user);
    if (n.within_periods) {
      for (let q = P - n.within_periods + 1; q <= P; q++) {
        const r = rows?.get(q);
        if (r && test({ ...n, within_periods: undefined }, typed(n.field, r[n.field], grain), grain, P)) return true;
      }
      return false;
    }
    const r = rows?.get(P);
    return test(n, r ? typed(n.field, r[n.field], grain) : null, grain, P);
  };
  const out = new Set<string>();
  for (const [user, rows] of main) if (rows.has(P) && holds(def.filter, user)) out.add(user);
  return out;
}
