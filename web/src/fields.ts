// The audience filter's fields and operators, as the API's definition validator accepts them
// (src/audiences/definition.ts): the builder offers only what can be valid; the API still judges.
export const STATES = ["new", "retained", "reactivated", "inactive"];
export const ACTIVE_STATES = ["new", "retained", "reactivated"];
export const TRANSITION_SEGMENTS = [
  "new", "new_to_retained", "new_to_inactive", "retained_to_retained", "retained_to_inactive",
  "reactivated_to_retained", "reactivated_to_inactive", "inactive_to_reactivated", "inactive_to_inactive",
];
export const GROWTH_STATES = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"];
export const GRAINS = ["day", "week", "month"] as const;
export type Grain = (typeof GRAINS)[number];

export type FieldKind = "enum" | "boolean" | "integer" | "period";
export interface FieldSpec {
  kind: FieldKind;
  values?: string[];
  nullable: boolean;
  dayOnly?: boolean;
  within?: boolean;
}
export const FIELDS: Record<string, FieldSpec> = {
  inactivity_periods: { kind: "integer", nullable: false },
  state: { kind: "enum", values: STATES, nullable: false, within: true },
  transition_segment: { kind: "enum", values: TRANSITION_SEGMENTS, nullable: false, within: true },
  growth_state: { kind: "enum", values: GROWTH_STATES, nullable: false, dayOnly: true, within: true },
  previous_state: { kind: "enum", values: STATES, nullable: true },
  last_active_state: { kind: "enum", values: ACTIVE_STATES, nullable: false },
  is_active: { kind: "boolean", nullable: false },
  last_streak_periods: { kind: "integer", nullable: false },
  consecutive_active_periods: { kind: "integer", nullable: false },
  return_interval_periods: { kind: "integer", nullable: true },
  active_periods_total: { kind: "integer", nullable: false },
  tenure_periods: { kind: "integer", nullable: false },
  first_active_period: { kind: "period", nullable: false },
  last_active_period: { kind: "period", nullable: false },
};

export const OP_LABELS: Record<string, string> = {
  eq: "is", neq: "is not", in: "is any of", not_in: "is none of", gt: ">", gte: "≥", lt: "<", lte: "≤", between: "between",
  is_null: "is empty", is_not_null: "is not empty",
};

export function opsFor(field: string): string[] {
  const f = FIELDS[field]!;
  const ordered = f.kind === "integer" || f.kind === "period";
  const ops = ordered ? ["eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in"] : f.kind === "boolean" ? ["eq", "neq"] : ["eq", "neq", "in", "not_in"];
  return f.nullable ? [...ops, "is_null", "is_not_null"] : ops;
}

export type PeriodValue = string | { periods_ago: number };
export type Scalar = string | number | boolean | PeriodValue;
export interface Condition {
  field: string;
  op: string;
  value?: Scalar | Scalar[];
  within_periods?: number;
  fact?: string;
}
export type FilterNode = { all: FilterNode[] } | { any: FilterNode[] } | { not: FilterNode } | Condition;

export const isCondition = (n: FilterNode): n is Condition => "field" in n;

/** A fresh value for a field and operator (keeps what still fits when the user changes one of them). */
export function defaultValue(field: string, op: string, previous?: Condition["value"]): Condition["value"] {
  const f = FIELDS[field]!;
  const one = (): Scalar => (f.kind === "enum" ? f.values![0]! : f.kind === "boolean" ? true : f.kind === "integer" ? 7 : { periods_ago: 7 });
  const sameKind = previous !== undefined && typeof (Array.isArray(previous) ? previous[0] : previous) === typeof one();
  if (op === "is_null" || op === "is_not_null") return undefined;
  if (op === "in" || op === "not_in") return sameKind ? (Array.isArray(previous) ? previous : [previous as Scalar]) : [one()];
  if (op === "between") {
    if (f.kind === "integer") return sameKind && Array.isArray(previous) && previous.length === 2 ? previous : [7, 30];
    return [{ periods_ago: 30 }, { periods_ago: 7 }];
  }
  return sameKind ? (Array.isArray(previous) ? previous[0] : previous) : one();
}

export const newCondition = (): Condition => ({ field: "inactivity_periods", op: "gte", value: 7 });
