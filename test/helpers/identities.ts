import { expect } from "vitest";
import { nextPeriodStart, type RefGrain } from "../../src/activation/status-rules.js";

type Row = Record<string, unknown>;

const ENDS_ACTIVE = ["new", "new_to_retained", "retained_to_retained", "reactivated_to_retained", "inactive_to_reactivated"];
const ENDS_INACTIVE = ["new_to_inactive", "retained_to_inactive", "reactivated_to_inactive", "inactive_to_inactive"];
const GROWTH = ["new", "current", "reactivated", "resurrected", "at_risk_wau", "at_risk_mau", "dormant"];

/**
 * The identities of the spec's Metrics section, exactly, on every row of a metrics answer (rows in
 * period order, from the first period with a user): each a separate expectation naming the period.
 */
export function expectMetricIdentities(rows: Row[], grain: RefGrain, label = "") {
  let prev: Record<string, number> | null = null;
  let prevPeriod: string | null = null;
  for (const raw of rows) {
    const r = raw as Record<string, number> & { period: string };
    const at = `${label} ${grain} ${r.period}`;
    const sum = (keys: string[], prefix: string) => keys.reduce((s, k) => s + (r[`${prefix}${k}`] as number), 0);
    if (prevPeriod !== null) expect(r.period, `${at}: periods are consecutive`).toBe(nextPeriodStart(grain, prevPeriod));
    expect(r.active, `${at}: active = new + retained + reactivated`).toBe(r.new + r.retained + r.reactivated);
    expect(r.users_total, `${at}: users_total = active + inactive`).toBe(r.active + r.inactive);
    const before = prev?.active ?? 0;
    expect(r.active, `${at}: active(P) = active(P-1) - churned + new + reactivated`).toBe(before - r.churned + r.new + r.reactivated);
    if (prev) expect(r.users_total, `${at}: users_total = users_total(P-1) + new`).toBe(prev.users_total! + r.new);
    else expect(r.churned, `${at}: nobody churns in the first period`).toBe(0);
    expect(sum(ENDS_ACTIVE, "segment_"), `${at}: segments ending active sum to active`).toBe(r.active);
    expect(sum(ENDS_INACTIVE, "segment_"), `${at}: segments ending inactive sum to inactive`).toBe(r.inactive);
    expect(r.segment_new, `${at}: segment new = new`).toBe(r.new);
    expect(r.segment_inactive_to_reactivated, `${at}: inactive_to_reactivated = reactivated`).toBe(r.reactivated);
    expect(r.segment_new_to_retained + r.segment_retained_to_retained + r.segment_reactivated_to_retained, `${at}: *_to_retained = retained`).toBe(r.retained);
    expect(r.segment_new_to_inactive + r.segment_retained_to_inactive + r.segment_reactivated_to_inactive, `${at}: churned = active *_to_inactive`).toBe(r.churned);
    if (prev) {
      expect(r.segment_new_to_retained + r.segment_new_to_inactive, `${at}: new(P-1) go on to retained or inactive`).toBe(prev.new);
      expect(r.churned, `${at}: churned ≤ active(P-1)`).toBeLessThanOrEqual(prev.active!);
    }
    if (grain === "day") {
      expect(sum(GROWTH, "growth_"), `${at}: growth states sum to users_total`).toBe(r.users_total);
      expect(r.growth_new, `${at}: growth new = new`).toBe(r.new);
      expect(r.growth_current + r.growth_reactivated + r.growth_resurrected, `${at}: active growth states = retained + reactivated`).toBe(r.retained + r.reactivated);
      expect(r.wau, `${at}: wau = active + at_risk_wau`).toBe(r.active + r.growth_at_risk_wau);
      expect(r.mau, `${at}: mau = wau + at_risk_mau`).toBe(r.wau + r.growth_at_risk_mau);
    } else {
      for (const k of [...GROWTH.map((g) => `growth_${g}`), "wau", "mau"]) expect(raw, `${at}: no ${k} at ${grain} grain`).not.toHaveProperty(k);
    }
    for (const [k, v] of Object.entries(r)) if (typeof v === "number") expect(v, `${at}: ${k} ≥ 0`).toBeGreaterThanOrEqual(0);
    prev = r;
    prevPeriod = r.period;
  }
}
