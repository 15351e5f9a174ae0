// Calibration of the campaign statistics on simulated A/A campaigns (no true effect), on the pure
// statistics module with simulated per-user data: the 95% CI of the absolute lift must cover zero in
// 93.5–96.5% of 1,000 campaigns, for `returned` (a rate), `active_periods` (a mean) and for CUPED on
// both; and false positives (p < 0.05) must stay near 5%. The PRNG is seeded: the run is deterministic.
import { describe, expect, it } from "vitest";
import { compareGroups, EMPTY_SUMS, type GroupSums } from "../src/campaigns/statistics.js";
import { mulberry32 } from "../src/util/prng.js";


const CAMPAIGNS = 1000;
const USERS = 2000;
const HOLDOUT = 0.2;
const WINDOW = 14;
const PRE = 28;

interface Tally {
  covered: number;
  positives: number;
  computed: number;
}
const tally = (): Tally => ({ covered: 0, positives: 0, computed: 0 });
function count(t: Tally, ci: [number, number] | null, p: number | null) {
  if (!ci || p === null) return;
  t.computed++;
  if (ci[0] <= 0 && 0 <= ci[1]) t.covered++;
  if (p < 0.05) t.positives++;
}
function add(s: GroupSums, y: number, x: number) {
  s.n++;
  s.sy += y;
  s.syy += y * y;
  s.sx += x;
  s.sxx += x * x;
  s.sxy += x * y;
}

/**
 * One A/A campaign: each user has an activity propensity (a skewed mix, like a lapsed list: many
 * nearly gone, some regulars); the pre-launch covariate and the window's activity are drawn from the
 * same propensity, independently of the arm.
 */
function simulate(rnd: () => number) {
  const ret = { t: { ...EMPTY_SUMS }, c: { ...EMPTY_SUMS } };
  const act = { t: { ...EMPTY_SUMS }, c: { ...EMPTY_SUMS } };
  for (let u = 0; u < USERS; u++) {
    const kind = rnd();
    const p = kind < 0.6 ? 0.02 * rnd() : kind < 0.9 ? 0.1 + 0.2 * rnd() : 0.5 + 0.4 * rnd();
    let x = 0, y = 0;
    for (let d = 0; d < PRE; d++) if (rnd() < p) x++;
    for (let d = 0; d < WINDOW; d++) if (rnd() < p) y++;
    const arm = rnd() < HOLDOUT ? "c" : "t";
    add(ret[arm], y > 0 ? 1 : 0, x);
    add(act[arm], y, x);
  }
  return { ret, act };
}

describe("calibration over 1,000 simulated A/A campaigns", () => {
  const rnd = mulberry32(20261127);
  const returned = tally(), active = tally(), returnedCuped = tally(), activeCuped = tally();
  let cupedNarrower = 0;
  for (let i = 0; i < CAMPAIGNS; i++) {
    const { ret, act } = simulate(rnd);
    const r = compareGroups(ret.t, ret.c, "rate");
    const a = compareGroups(act.t, act.c, "mean");
    count(returned, r.absolute_ci95, r.p_value);
    count(active, a.absolute_ci95, a.p_value);
    count(returnedCuped, r.cuped.absolute_ci95, r.cuped.p_value);
    count(activeCuped, a.cuped.absolute_ci95, a.cuped.p_value);
    if (a.cuped.absolute_ci95 && a.absolute_ci95 && a.cuped.absolute_ci95[1] - a.cuped.absolute_ci95[0] < a.absolute_ci95[1] - a.absolute_ci95[0]) cupedNarrower++;
  }

  it.each([
    ["returned (rate, z-test)", returned],
    ["active_periods (mean, Welch)", active],
    ["returned with CUPED", returnedCuped],
    ["active_periods with CUPED", activeCuped],
  ] as const)("%s: the 95%% CI covers 0 in 93.5–96.5%% of campaigns, p < 0.05 in 3.5–6.5%%", (_name, t) => {
    expect(t.computed).toBe(CAMPAIGNS);
    const coverage = t.covered / t.computed;
    expect(coverage).toBeGreaterThanOrEqual(0.935);
    expect(coverage).toBeLessThanOrEqual(0.965);
    const fpr = t.positives / t.computed;
    expect(fpr).toBeGreaterThanOrEqual(0.035);
    expect(fpr).toBeLessThanOrEqual(0.065);
  });

  it("CUPED narrows the interval when the covariate predicts the metric", () => {
    expect(cupedNarrower / CAMPAIGNS).toBeGreaterThan(0.95);
  });
});
