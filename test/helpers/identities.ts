import { expect } from "vitest";
import { nextPeriodStart, type RefGrain } from "../../src/activation/status-rules.js";

type Row = Record<string, unknown>;

const ENDS_ACTIVE = ["new", "new_to_retained", "retained_to_retained", "reactivated_to_retained", "inactive_to_reactivated"];
const ENDS_INACTIVE = ["new_to_inactive", "retained_to_inactive", "reactivated_to_inactive", "inactive_to_inactive"];
const GROWTH = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"];

/** A count of a row by name; a missing or non-numeric count is NaN, so no identity holds by accident. */
const countOf = (row: Row) => (k: string): number => (typeof row[k] === "number" ? (row[k] as number) : Number.NaN);

/**
 * The identities of the spec's Metrics section, exactly, on every row of a metrics answer (rows in
 * period order, from the first period with a user): each a separate expectation naming the period.
 */
export function expectMetricIdentities(rows: Row[], grain: RefGrain, label = "") {
  let p: ((k: string) => number) | null = null;
  let prevPeriod: string | null = null;
  for (const raw of rows) {
    const c = countOf(raw);
    const period = String(raw.period);
    const at = `${label} ${grain} ${period}`;
    const sum = (keys: string[], prefix: string) => keys.reduce((s, k) => s + c(`${prefix}${k}`), 0);
    if (prevPeriod !== null) expect(period, `${at}: periods are consecutive`).toBe(nextPeriodStart(grain, prevPeriod));
    expect(c("active"), `${at}: active = new + retained + reactivated`).toBe(c("new") + c("retained") + c("reactivated"));
    expect(c("users_total"), `${at}: users_total = active + inactive`).toBe(c("active") + c("inactive"));
    const before = p ? p("active") : 0;
    expect(c("active"), `${at}: active(P) = active(P-1) - churned + new + reactivated`).toBe(before - c("churned") + c("new") + c("reactivated"));
    if (p) expect(c("users_total"), `${at}: users_total = users_total(P-1) + new`).toBe(p("users_total") + c("new"));
    else expect(c("churned"), `${at}: nobody churns in the first period`).toBe(0);
    expect(sum(ENDS_ACTIVE, "segment_"), `${at}: segments ending active sum to active`).toBe(c("active"));
    expect(sum(ENDS_INACTIVE, "segment_"), `${at}: segments ending inactive sum to inactive`).toBe(c("inactive"));
    expect(c("segment_new"), `${at}: segment new = new`).toBe(c("new"));
    expect(c("segment_inactive_to_reactivated"), `${at}: inactive_to_reactivated = reactivated`).toBe(c("reactivated"));
    expect(sum(["new_to_retained", "retained_to_retained", "reactivated_to_retained"], "segment_"), `${at}: *_to_retained = retained`).toBe(c("retained"));
    expect(sum(["new_to_inactive", "retained_to_inactive", "reactivated_to_inactive"], "segment_"), `${at}: churned = active *_to_inactive`).toBe(c("churned"));
    if (p) {
      expect(c("segment_new_to_retained") + c("segment_new_to_inactive"), `${at}: new(P-1) go on to retained or inactive`).toBe(p("new"));
      expect(c("churned"), `${at}: churned ≤ active(P-1)`).toBeLessThanOrEqual(p("active"));
    }
    if (grain === "day") {
      expect(sum(GROWTH, "growth_"), `${at}: growth states sum to users_total`).toBe(c("users_total"));
      expect(c("growth_new"), `${at}: growth new = new`).toBe(c("new"));
      expect(sum(["current", "reactivated", "resurrected"], "growth_"), `${at}: active growth states = retained + reactivated`).toBe(c("retained") + c("reactivated"));
      expect(c("wau"), `${at}: wau = active + at_risk_wau`).toBe(c("active") + c("growth_at_risk_wau"));
      expect(c("mau"), `${at}: mau = wau + at_risk_mau`).toBe(c("wau") + c("growth_at_risk_mau"));
    } else {
      for (const k of [...GROWTH.map((g) => `growth_${g}`), "wau", "mau"]) expect(raw, `${at}: no ${k} at ${grain} grain`).not.toHaveProperty(k);
    }
    for (const [k, v] of Object.entries(raw)) if (typeof v === "number") expect(v, `${at}: ${k} ≥ 0`).toBeGreaterThanOrEqual(0);
    p = c;
    prevPeriod = period;
  }
}
