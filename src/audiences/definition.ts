import { z } from "zod";
import { longerThan } from "../util/text.js";
import { GRAINS, parseDate, type Grain } from "../activation/periods.js";
import { ACTIVE_STATES, GROWTH_STATES, STATES, TRANSITION_SEGMENTS } from "../activation/layer-queries.js";
import { FACT_NAME } from "../facts/facts.js";
import type { ProblemFieldError } from "../http/problem.js";

/** Typed syntax tree of an audience filter. Both the validator and the SQL compiler work on it. */
export type FieldKind = "enum" | "boolean" | "integer" | "period";

export const FIELDS = {
  state: { kind: "enum", values: STATES, nullable: false },
  previous_state: { kind: "enum", values: STATES, nullable: true },
  transition_segment: { kind: "enum", values: TRANSITION_SEGMENTS, nullable: false },
  last_active_state: { kind: "enum", values: ACTIVE_STATES, nullable: false },
  growth_state: { kind: "enum", values: GROWTH_STATES, nullable: false, dayOnly: true },
  is_active: { kind: "boolean", nullable: false },
  first_active_period: { kind: "period", nullable: false },
  last_active_period: { kind: "period", nullable: false },
  inactivity_periods: { kind: "integer", nullable: false },
  consecutive_active_periods: { kind: "integer", nullable: false },
  last_streak_periods: { kind: "integer", nullable: false },
  return_interval_periods: { kind: "integer", nullable: true },
  active_periods_total: { kind: "integer", nullable: false },
  tenure_periods: { kind: "integer", nullable: false },
} as const satisfies Record<string, { kind: FieldKind; values?: readonly string[]; nullable: boolean; dayOnly?: boolean }>;
export type FieldName = keyof typeof FIELDS;
export const FIELD_NAMES = Object.keys(FIELDS) as FieldName[];
/** Fields whose condition may hold "within the last n periods". */
export const WITHIN_FIELDS: readonly FieldName[] = ["state", "transition_segment", "growth_state"];

export const OPS = ["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between", "is_null", "is_not_null"] as const;
export type Op = (typeof OPS)[number];

export const MAX_DEPTH = 6;
export const MAX_CONDITIONS = 50;
export const MAX_WITHIN = 366;

/** A date value: a calendar date or n periods before the one containing as_of. */
export type PeriodValue = { date: string } | { periods_ago: number };
export type Scalar = string | number | boolean | PeriodValue;

export interface Condition {
  field: FieldName;
  op: Op;
  value?: Scalar | Scalar[];
  within_periods?: number;
  fact?: string;
}
export type FilterNode = { all: FilterNode[] } | { any: FilterNode[] } | { not: FilterNode } | Condition;

export interface AudienceDefinition {
  name: string;
  fact: string;
  grain: Grain;
  filter: FilterNode;
  description?: string | null;
}

// ---- zod schemas: they document the API (OpenAPI); the semantic checks below give path-precise errors.
const periodValueDoc = z.union([
  z.string().describe("YYYY-MM-DD: the period containing this date"),
  z.object({ periods_ago: z.number().int().min(0) }).describe("n periods before the period containing as_of"),
]);
const scalarDoc = z.union([z.string(), z.number(), z.boolean(), periodValueDoc]);
export const conditionDoc = z
  .object({
    field: z.enum(FIELD_NAMES as [FieldName, ...FieldName[]]),
    op: z
      .enum(OPS)
      .describe("A null (previous_state in a first period, return_interval_periods when inactive, any column of a fact the user has no status on) matches is_null, neq and not_in only"),
    value: z.union([scalarDoc, z.array(scalarDoc)]).optional().describe("Omitted for is_null/is_not_null; an array for in/not_in; [low, high] for between"),
    within_periods: z.number().int().min(1).max(MAX_WITHIN).optional().describe("state, transition_segment, growth_state: held in at least one of the last n periods"),
    fact: z.string().optional().describe("Evaluate on another fact's status at the same as_of"),
  })
  .meta({ id: "AudienceCondition" });

export const filterNodeDoc: z.ZodType<unknown> = z
  .union([
    z.object({ get all() { return z.array(filterNodeDoc); } }),
    z.object({ get any() { return z.array(filterNodeDoc); } }),
    z.object({ get not() { return filterNodeDoc; } }),
    conditionDoc,
  ])
  .meta({ id: "AudienceFilter", description: `all / any / not nodes and conditions; depth ≤ ${MAX_DEPTH}, ≤ ${MAX_CONDITIONS} conditions` });

export const definitionDoc = z
  .object({
    name: z.string().min(1).max(200),
    fact: z.string(),
    grain: z.enum(GRAINS).default("day"),
    filter: filterNodeDoc,
    description: z.string().max(2000).nullable().optional(),
  })
  .meta({ id: "AudienceDefinition" });

// ---- semantic validation with paths like `filter.all[2].value`

class Errors {
  list: ProblemFieldError[] = [];
  add(path: string, message: string) {
    if (this.list.length < 100) this.list.push({ path, message });
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

function checkPeriodValue(v: unknown, path: string, errs: Errors): PeriodValue | undefined {
  if (typeof v === "string") {
    if (parseDate(v) === null) return errs.add(path, "expected a date YYYY-MM-DD or {\"periods_ago\": n}"), undefined;
    return { date: v };
  }
  if (isObj(v) && Object.keys(v).length === 1 && "periods_ago" in v) {
    const n = v.periods_ago;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 100_000) return errs.add(`${path}.periods_ago`, "expected an integer ≥ 0"), undefined;
    return { periods_ago: n };
  }
  errs.add(path, "expected a date YYYY-MM-DD or {\"periods_ago\": n}");
  return undefined;
}

function checkScalar(field: FieldName, v: unknown, path: string, errs: Errors, grain: Grain): Scalar | undefined {
  const spec = FIELDS[field];
  switch (spec.kind) {
    case "enum": {
      const values = spec.values as readonly string[];
      if (typeof v !== "string") return errs.add(path, `expected one of ${values.join(", ")} for ${field}`), undefined;
      if (!values.includes(v)) {
        const what = field === "transition_segment" ? "unknown transition segment" : `unknown ${field.replace(/_/g, " ")}`;
        return errs.add(path, `${what} '${v}' (one of ${values.join(", ")})`), undefined;
      }
      return v;
    }
    case "boolean":
      if (typeof v !== "boolean") return errs.add(path, `expected true or false for ${field}`), undefined;
      return v;
    case "integer":
      if (typeof v !== "number" || !Number.isInteger(v)) return errs.add(path, `expected an integer number of ${grain}s for ${field}`), undefined;
      if (Math.abs(v) > 1_000_000) return errs.add(path, "out of range"), undefined;
      return v;
    case "period":
      return checkPeriodValue(v, path, errs);
  }
}

function checkCondition(raw: Record<string, unknown>, path: string, errs: Errors, grain: Grain, facts: Set<string>): Condition | undefined {
  for (const k of Object.keys(raw)) {
    if (!["field", "op", "value", "within_periods", "fact"].includes(k)) errs.add(`${path}.${k}`, `unknown key '${k}'`);
  }
  const field = raw.field;
  // Own fields only: `in` would take toString or constructor (every object has them) for a field, and
  // the compiler would write that name into the SQL.
  if (typeof field !== "string" || !Object.hasOwn(FIELDS, field)) {
    errs.add(`${path}.field`, `unknown field${typeof field === "string" ? ` '${field}'` : ""} (one of ${FIELD_NAMES.join(", ")})`);
    return undefined;
  }
  const f = field as FieldName;
  const spec = FIELDS[f];
  if ("dayOnly" in spec && spec.dayOnly && grain !== "day") errs.add(`${path}.field`, `${f} exists at day grain only`);
  const op = raw.op;
  if (typeof op !== "string" || !OPS.includes(op as Op)) {
    errs.add(`${path}.op`, `unknown op (one of ${OPS.join(", ")})`);
    return undefined;
  }
  const cond: Condition = { field: f, op: op as Op };
  const valuePath = `${path}.value`;
  const ordered = spec.kind === "integer" || spec.kind === "period";
  switch (op as Op) {
    case "is_null":
    case "is_not_null":
      if (raw.value !== undefined) errs.add(valuePath, `${op} takes no value`);
      break;
    case "eq":
    case "neq": {
      const v = checkScalar(f, raw.value, valuePath, errs, grain);
      if (v !== undefined) cond.value = v;
      break;
    }
    case "in":
    case "not_in": {
      if (!Array.isArray(raw.value) || raw.value.length === 0) errs.add(valuePath, `${op} needs a non-empty array`);
      else if (raw.value.length > 1000) errs.add(valuePath, "at most 1000 values");
      else {
        const vs = raw.value.map((v, i) => checkScalar(f, v, `${valuePath}[${i}]`, errs, grain));
        if (vs.every((v) => v !== undefined)) cond.value = vs as Scalar[];
      }
      break;
    }
    case "gt":
    case "gte":
    case "lt":
    case "lte": {
      if (!ordered) errs.add(`${path}.op`, `${op} applies to numbers and dates, not to ${f}`);
      else {
        const v = checkScalar(f, raw.value, valuePath, errs, grain);
        if (v !== undefined) cond.value = v;
      }
      break;
    }
    case "between": {
      if (!ordered) errs.add(`${path}.op`, `between applies to numbers and dates, not to ${f}`);
      else if (!Array.isArray(raw.value) || raw.value.length !== 2) errs.add(valuePath, "between needs [low, high]");
      else {
        const lo = checkScalar(f, raw.value[0], `${valuePath}[0]`, errs, grain);
        const hi = checkScalar(f, raw.value[1], `${valuePath}[1]`, errs, grain);
        if (lo !== undefined && hi !== undefined) {
          if (typeof lo === "number" && typeof hi === "number" && lo > hi) errs.add(valuePath, "between bounds are reversed (low > high)");
          else if (isObj(lo) && isObj(hi)) {
            const a = lo as PeriodValue, b = hi as PeriodValue;
            if ("date" in a && "date" in b && a.date > b.date) errs.add(valuePath, "between bounds are reversed (low > high)");
            if ("periods_ago" in a && "periods_ago" in b && a.periods_ago < b.periods_ago) errs.add(valuePath, "between bounds are reversed (low is later than high)");
          }
          cond.value = [lo, hi];
        }
      }
      break;
    }
  }
  if (raw.within_periods !== undefined) {
    const n = raw.within_periods;
    if (!WITHIN_FIELDS.includes(f)) errs.add(`${path}.within_periods`, `within_periods applies to ${WITHIN_FIELDS.join(", ")} only`);
    else if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_WITHIN) errs.add(`${path}.within_periods`, `expected an integer 1–${MAX_WITHIN}`);
    else if (op === "is_null" || op === "is_not_null") errs.add(`${path}.within_periods`, "within_periods needs a value test, not a null test");
    else cond.within_periods = n;
  }
  if (raw.fact !== undefined) {
    if (typeof raw.fact !== "string" || !FACT_NAME.test(raw.fact)) errs.add(`${path}.fact`, "expected a fact name");
    else {
      cond.fact = raw.fact;
      facts.add(raw.fact);
    }
  }
  return cond;
}

function checkNode(raw: unknown, path: string, depth: number, errs: Errors, counter: { n: number }, grain: Grain, facts: Set<string>): FilterNode | undefined {
  if (depth > MAX_DEPTH) {
    errs.add(path, `the filter is nested deeper than ${MAX_DEPTH} levels`);
    return undefined;
  }
  if (!isObj(raw)) {
    errs.add(path, "expected an object: {all: [...]}, {any: [...]}, {not: {...}} or a condition {field, op, value}");
    return undefined;
  }
  const keys = Object.keys(raw);
  for (const group of ["all", "any"] as const) {
    if (group in raw) {
      if (keys.length !== 1) errs.add(path, `a '${group}' node has no other keys`);
      const items = raw[group];
      if (!Array.isArray(items) || items.length === 0) {
        errs.add(`${path}.${group}`, "expected a non-empty array of nodes");
        return undefined;
      }
      const nodes = items.map((it, i) => checkNode(it, `${path}.${group}[${i}]`, depth + 1, errs, counter, grain, facts));
      return nodes.every(Boolean) ? ({ [group]: nodes } as FilterNode) : undefined;
    }
  }
  if ("not" in raw) {
    if (keys.length !== 1) errs.add(path, "a 'not' node has no other keys");
    const inner = checkNode(raw.not, `${path}.not`, depth + 1, errs, counter, grain, facts);
    return inner ? { not: inner } : undefined;
  }
  counter.n++;
  if (counter.n === MAX_CONDITIONS + 1) errs.add(path, `more than ${MAX_CONDITIONS} conditions`);
  return checkCondition(raw, path, errs, grain, facts);
}

/**
 * A checked filter in the notation clients write it, which the API answers with: a period value as its
 * date string (the checked tree holds `{date}`, which the SQL compiler reads and no client sends).
 */
export function filterAsWritten(node: FilterNode): unknown {
  if ("all" in node) return { all: node.all.map(filterAsWritten) };
  if ("any" in node) return { any: node.any.map(filterAsWritten) };
  if ("not" in node) return { not: filterAsWritten(node.not) };
  const written = (v: Scalar) => (isObj(v) && "date" in v ? v.date : v);
  if (node.value === undefined) return node;
  return { ...node, value: Array.isArray(node.value) ? node.value.map(written) : written(node.value) };
}

/** A stored definition in the notation clients write it (see filterAsWritten). */
export function definitionAsWritten(definition: AudienceDefinition): Omit<AudienceDefinition, "filter"> & { filter: unknown } {
  return { ...definition, filter: filterAsWritten(definition.filter) };
}

export type DefinitionCheck =
  | { ok: true; definition: AudienceDefinition; referencedFacts: string[] }
  | { ok: false; errors: ProblemFieldError[] };

/** Validates a raw definition; every error names its path and the reason. */
export function checkDefinition(raw: unknown, root = "definition"): DefinitionCheck {
  const errs = new Errors();
  const p = (k: string) => (root ? `${root}.${k}` : k);
  if (!isObj(raw)) return { ok: false, errors: [{ path: root || "body", message: "expected an object" }] };
  for (const k of Object.keys(raw)) if (!["name", "fact", "grain", "filter", "description"].includes(k)) errs.add(p(k), `unknown key '${k}'`);
  if (typeof raw.name !== "string" || raw.name.trim() === "" || longerThan(raw.name, 200)) errs.add(p("name"), "expected a name of 1–200 characters");
  if (typeof raw.fact !== "string" || !FACT_NAME.test(raw.fact)) errs.add(p("fact"), "expected a fact name");
  const grain = (raw.grain ?? "day") as Grain;
  if (!GRAINS.includes(grain)) errs.add(p("grain"), "expected day, week or month");
  if (raw.description !== undefined && raw.description !== null && (typeof raw.description !== "string" || longerThan(raw.description, 2000)))
    errs.add(p("description"), "expected text of at most 2000 characters");
  const facts = new Set<string>();
  const filter = raw.filter === undefined ? (errs.add(p("filter"), "a filter is required"), undefined) : checkNode(raw.filter, p("filter"), 1, errs, { n: 0 }, grain, facts);
  if (errs.list.length || !filter) return { ok: false, errors: errs.list.length ? errs.list : [{ path: p("filter"), message: "invalid filter" }] };
  const definition: AudienceDefinition = { name: (raw.name as string).trim(), fact: raw.fact as string, grain, filter };
  if (typeof raw.description === "string" || raw.description === null) definition.description = raw.description as string | null;
  return { ok: true, definition, referencedFacts: [...new Set([definition.fact, ...facts])] };
}
