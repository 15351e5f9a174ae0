// Statistics of campaign results against reference values computed independently of the code under
// test, with SciPy 1.17 / NumPy 2.4 / mpmath 1.3 by the script below; its output is pasted as REF.
// (Welch via scipy.stats.ttest_ind(equal_var=False); the pooled two-proportion z-test via the
// uncorrected 2×2 chi-square of scipy.stats.chi2_contingency, whose p-value is the same test's;
// SRM via scipy.stats.chisquare; CUPED with numpy on the raw per-user values.)
/*
  # Reference values for test/campaign-statistics.test.ts, computed with SciPy/NumPy/mpmath
  # (independently of the TypeScript under test). Run: python3 gen.py
  import json
  import numpy as np
  import mpmath
  from scipy import stats

  mpmath.mp.dps = 50
  rng = np.random.default_rng(20261127)
  out = {}

  # special functions
  zs = [-6.0, -3.0, -1.959964, -1.0, -0.3, 0.0, 0.2, 0.46875, 0.5, 1.0, 1.959964, 2.5, 3.9, 4.2, 6.0, 9.0]
  out["erfc"] = [[x, float(mpmath.erfc(x))] for x in zs]
  out["normal_cdf"] = [[x, float(stats.norm.cdf(x))] for x in zs]
  tcases = [(0.0, 5.0), (0.5, 3.0), (1.0, 1.0), (1.96, 10.0), (2.0, 2.5), (2.228, 10.0), (3.5, 17.3), (1.2, 0.6), (4.0, 200.0), (12.0, 30.0), (2.0, 5000.0), (3.0, 1e6)]
  out["t_two_sided"] = [[t, df, float(2 * mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True) / 2)] for t, df in tcases]
  out["t_cdf_scipy"] = [[t, df, float(stats.t.cdf(t, df))] for t, df in tcases]
  out["chi2_1"] = [[q, float(stats.chi2.sf(q, 1))] for q in [0.0, 0.1, 1.0, 3.841458820694124, 10.827566170662733, 25.0, 100.0]]

  def welch(a, b):
      r = stats.ttest_ind(a, b, equal_var=False)
      return float(r.pvalue)

  def cuped(yt, xt, yc, xc):
      y = np.concatenate([yt, yc]); x = np.concatenate([xt, xc])
      theta = np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1)
      at = yt - theta * (xt - x.mean()); ac = yc - theta * (xc - x.mean())
      lift = at.mean() - ac.mean()
      se = np.sqrt(np.var(at, ddof=1) / len(at) + np.var(ac, ddof=1) / len(ac))
      return {"theta": float(theta), "absolute_lift": float(lift), "absolute_ci95": [float(lift - 1.959964 * se), float(lift + 1.959964 * se)], "p_value": welch(at, ac)}

  # (a) a mean metric (active days in a 14-day window) with a correlated covariate
  xt = rng.integers(0, 29, 40); yt = np.clip(np.round(xt * 0.4 + rng.normal(1.0, 2.0, 40)), 0, 14).astype(int)
  xc = rng.integers(0, 29, 25); yc = np.clip(np.round(xc * 0.4 + rng.normal(0.0, 2.0, 25)), 0, 14).astype(int)
  mt, mc = yt.mean(), yc.mean(); vt, vc = yt.var(ddof=1), yc.var(ddof=1)
  se = np.sqrt(vt / 40 + vc / 25)
  rel = (mt - mc) / mc; rse = np.sqrt(vt / (40 * mc**2) + mt**2 * vc / (25 * mc**4))
  out["mean_case"] = {
      "yt": yt.tolist(), "xt": xt.tolist(), "yc": yc.tolist(), "xc": xc.tolist(),
      "mt": float(mt), "mc": float(mc), "absolute_lift": float(mt - mc), "absolute_ci95": [float(mt - mc - 1.959964 * se), float(mt - mc + 1.959964 * se)],
      "relative_lift": float(rel), "relative_ci95": [float(rel - 1.959964 * rse), float(rel + 1.959964 * rse)],
      "p_value": welch(yt, yc), "cuped": cuped(yt, xt, yc, xc),
  }

  # (b) a rate (returned): pooled two-proportion z-test; its square is the uncorrected 2x2 chi-square
  def rate_case(kt, nt, kc, nc):
      table = [[kt, nt - kt], [kc, nc - kc]]
      p_chi = float(stats.chi2_contingency(table, correction=False)[1])
      pt, pc = kt / nt, kc / nc
      se = np.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
      d = {"kt": kt, "nt": nt, "kc": kc, "nc": nc, "absolute_lift": pt - pc, "absolute_ci95": [pt - pc - 1.959964 * se, pt - pc + 1.959964 * se], "p_value": p_chi}
      if pc > 0:
          rel = (pt - pc) / pc; rse = np.sqrt(pt * (1 - pt) / (nt * pc**2) + pt**2 * pc * (1 - pc) / (nc * pc**4))
          d["relative_lift"] = rel; d["relative_ci95"] = [rel - 1.959964 * rse, rel + 1.959964 * rse]
      return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}
  out["rate_cases"] = [rate_case(118, 400, 21, 100), rate_case(5230, 9000, 540, 1000), rate_case(3, 50, 0, 50), rate_case(1, 2, 1, 3)]

  # (c) sample-ratio mismatch
  out["srm"] = [[nt, nc, share, float(stats.chisquare([nt, nc], f_exp=[(nt + nc) * (1 - share), (nt + nc) * share]).pvalue)]
                for nt, nc, share in [(9000, 1000, 0.1), (9100, 900, 0.1), (8880, 1120, 0.1), (50210, 49790, 0.5), (790, 210, 0.2)]]

  # (d) zero variance in one group only (Welch still defined: df = n_other - 1)
  a = np.array([2, 2, 2, 2, 2]); b = np.array([0, 1, 3, 1, 2, 4])
  out["one_constant"] = {"yt": a.tolist(), "yc": b.tolist(), "p_value": welch(a, b)}

  print(json.dumps(out))
*/
import { describe, expect, it } from "vitest";
import {
  chiSquare1Sf, compareGroups, erfc, normalCdf, sampleRatioMismatch, studentTCdf, studentTTwoSidedP, sumsOf, type MetricComparison,
} from "../src/campaigns/statistics.js";

const REF = {
  erfc: [[-6.0, 2.0], [-3.0, 1.9999779095030015], [-1.959964, 1.994425403693618], [-1.0, 1.8427007929497148], [-0.3, 1.3286267594591274], [0.0, 1.0], [0.2, 0.7772974107895215], [0.46875, 0.507386526782062], [0.5, 0.4795001221869535], [1.0, 0.15729920705028513], [1.959964, 0.005574596306381993], [2.5, 0.0004069520174449589], [3.9, 3.4792248597231765e-08], [4.2, 2.8554941795921843e-09], [6.0, 2.1519736712498913e-17], [9.0, 4.13703174651381e-37]],
  normal_cdf: [[-6.0, 9.865876450376946e-10], [-3.0, 0.0013498980316300933], [-1.959964, 0.024999999096442398], [-1.0, 0.15865525393145707], [-0.3, 0.3820885778110474], [0.0, 0.5], [0.2, 0.579259709439103], [0.46875, 0.6803758284828824], [0.5, 0.6914624612740131], [1.0, 0.8413447460685429], [1.959964, 0.9750000009035577], [2.5, 0.9937903346742238], [3.9, 0.9999519036559824], [4.2, 0.9999866542509841], [6.0, 0.9999999990134123], [9.0, 1.0]],
  t_two_sided: [[0.0, 5.0, 1.0], [0.5, 3.0, 0.6514479648481512], [1.0, 1.0, 0.5], [1.96, 10.0, 0.07843624024769971], [2.0, 2.5, 0.157391495757966], [2.228, 10.0, 0.05001177181711137], [3.5, 17.3, 0.002684788370514296], [1.2, 0.6, 0.5268002162303662], [4.0, 200.0, 8.913095218593442e-05], [12.0, 30.0, 5.580185415199262e-13], [2.0, 5000.0, 0.04555425998829965], [3.0, 1000000.0, 0.0026998625414374577]],
  t_cdf_scipy: [[0.0, 5.0, 0.5], [0.5, 3.0, 0.6742760175759245], [1.0, 1.0, 0.75], [1.96, 10.0, 0.9607818798761502], [2.0, 2.5, 0.9213042521210171], [2.228, 10.0, 0.9749941140914443], [3.5, 17.3, 0.9986576058147428], [1.2, 0.6, 0.736599891884817], [4.0, 200.0, 0.999955434523907], [12.0, 30.0, 0.999999999999721], [2.0, 5000.0, 0.9772228700058531], [3.0, 1000000.0, 0.9986500687292891]],
  chi2_1: [[0.0, 1.0], [0.1, 0.7518296340458492], [1.0, 0.31731050786291115], [3.841458820694124, 0.04999999999999989], [10.827566170662733, 0.0010000000000000007], [25.0, 5.733031437583875e-07], [100.0, 1.5239706048320995e-23]],
  mean_case: {"yt": [13, 5, 5, 5, 11, 5, 9, 2, 8, 12, 14, 5, 6, 7, 14, 10, 12, 6, 5, 4, 9, 7, 0, 3, 0, 13, 12, 1, 5, 5, 8, 4, 2, 7, 4, 9, 1, 9, 12, 5], "xt": [22, 10, 9, 4, 23, 14, 24, 9, 21, 27, 27, 5, 16, 18, 26, 21, 22, 11, 3, 15, 10, 4, 15, 9, 3, 26, 25, 3, 9, 10, 12, 4, 4, 21, 12, 25, 2, 16, 27, 16], "yc": [7, 12, 4, 11, 4, 1, 9, 5, 7, 1, 4, 1, 5, 5, 1, 0, 11, 7, 9, 9, 9, 5, 5, 0, 10], "xc": [23, 24, 10, 22, 6, 3, 11, 10, 20, 5, 6, 5, 13, 11, 1, 1, 21, 26, 18, 21, 16, 13, 10, 1, 17], "mt": 6.85, "mc": 5.68, "absolute_lift": 1.17, "absolute_ci95": [-0.7289878224924902, 3.06898782249249], "relative_lift": 0.20598591549295775, "relative_ci95": [-0.16991678231812507, 0.5818886133040406], "p_value": 0.23249204953288838, "cuped": {"theta": 0.4034145307578182, "absolute_lift": 0.3873758103298348, "absolute_ci95": [-0.5996674062712269, 1.3744190269308967], "p_value": 0.4448129867174575}},
  rate_cases: [{"kt": 118, "nt": 400, "kc": 21, "nc": 100, "absolute_lift": 0.08499999999999999, "absolute_ci95": [-0.006489337144630708, 0.1764893371446307], "p_value": 0.08970325016158369, "relative_lift": 0.40476190476190477, "relative_ci95": [-0.17009837534152172, 0.9796221848653313]}, {"kt": 5230, "nt": 9000, "kc": 540, "nc": 1000, "absolute_lift": 0.0411111111111111, "absolute_ci95": [0.008582393559548762, 0.07363982866267343], "p_value": 0.012544435474263631, "relative_lift": 0.07613168724279833, "relative_ci95": [0.011743124331895435, 0.14052025015370123]}, {"kt": 3, "nt": 50, "kc": 0, "nc": 50, "absolute_lift": 0.06, "absolute_ci95": [-0.005826784959482023, 0.12582678495948202], "p_value": 0.07864017934882862}, {"kt": 1, "nt": 2, "kc": 1, "nc": 3, "absolute_lift": 0.16666666666666669, "absolute_ci95": [-0.7078245396285308, 1.0411578729618642], "p_value": 0.7093881150142265, "relative_lift": 0.5000000000000001, "relative_ci95": [-2.675504615553566, 3.675504615553566]}],
  srm: [[9000, 1000, 0.1, 1.0], [9100, 900, 0.1, 0.0008581206663936758], [8880, 1120, 0.1, 6.334248366623988e-05], [50210, 49790, 0.5, 0.1841263727849757], [790, 210, 0.2, 0.42919530044034926]],
  one_constant: {"yt": [2, 2, 2, 2, 2], "yc": [0, 1, 3, 1, 2, 4], "p_value": 0.7926128706672518},
} as const;

/** |a − b| ≤ rel·|b| (+ a tiny absolute slack for values at 0). */
function close(a: number | null | undefined, b: number, rel = 1e-9, abs = 1e-14) {
  expect(a, `expected ${b}`).not.toBeNull();
  expect(Math.abs((a as number) - b), `${a} vs ${b}`).toBeLessThanOrEqual(rel * Math.abs(b) + abs);
}
function closeCi(a: [number, number] | null, b: readonly number[], rel = 1e-9) {
  expect(a).not.toBeNull();
  close(a![0], b[0]!, rel, 1e-12);
  close(a![1], b[1]!, rel, 1e-12);
}
const rateSums = (k: number, n: number) => sumsOf(Array.from({ length: n }, (_, i) => (i < k ? 1 : 0)));
/** Nothing in a result is NaN or infinite: every number is finite or null. */
function expectNoNonFinite(v: unknown, at = "result") {
  if (typeof v === "number") expect(Number.isFinite(v), `${at} = ${v}`).toBe(true);
  else if (Array.isArray(v)) v.forEach((x, i) => expectNoNonFinite(x, `${at}[${i}]`));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) expectNoNonFinite(x, `${at}.${k}`);
}

describe("special functions", () => {
  it("erfc and the normal CDF to ~1e-15", () => {
    for (const [x, want] of REF.erfc) close(erfc(x), want, 2e-15, 1e-300);
    // Φ(x) = erfc(−x/√2)/2: rounding x/√2 costs up to ~x² ulps in the far tail.
    for (const [x, want] of REF.normal_cdf) close(normalCdf(x), want, 1e-14, 1e-300);
  });

  it("Student t: two-sided p-values (incomplete beta by Lentz) and the CDF, fractional and huge df", () => {
    for (const [t, df, want] of REF.t_two_sided) close(studentTTwoSidedP(t, df), want, df > 1e5 ? 1e-10 : 1e-13, 1e-300);
    for (const [t, df, want] of REF.t_cdf_scipy) close(studentTCdf(t, df), want, df > 1e5 ? 1e-10 : 1e-12, 1e-300);
    // Textbook table values: t(0.975; 10) = 2.228, t(0.995; 1) = 63.657.
    expect(studentTCdf(2.228138851986, 10)).toBeCloseTo(0.975, 12);
    expect(studentTCdf(63.65674116287, 1)).toBeCloseTo(0.995, 12);
    expect(studentTTwoSidedP(Infinity, 4)).toBe(0);
  });

  it("chi-square with 1 df", () => {
    for (const [q, want] of REF.chi2_1) close(chiSquare1Sf(q), want, 1e-13, 1e-300);
  });
});

describe("a mean metric (Welch) with CUPED", () => {
  const c = REF.mean_case;
  const r = compareGroups(sumsOf(c.yt, c.xt), sumsOf(c.yc, c.xc), "mean");
  it("means, absolute lift and CI, relative lift and delta-method CI, Welch p", () => {
    expect(r.groups).toEqual({ treatment: { n: c.yt.length, mean: expect.any(Number) }, control: { n: c.yc.length, mean: expect.any(Number) } });
    close(r.groups.treatment.mean, c.mt);
    close(r.groups.control.mean, c.mc);
    close(r.absolute_lift, c.absolute_lift);
    closeCi(r.absolute_ci95, c.absolute_ci95);
    close(r.relative_lift, c.relative_lift);
    closeCi(r.relative_ci95, c.relative_ci95);
    close(r.p_value, c.p_value, 1e-10);
    expect(r.reasons).toEqual({});
  });
  it("CUPED: θ over all assigned users, lift, CI and Welch p on Y'", () => {
    close(r.cuped.theta, c.cuped.theta);
    close(r.cuped.absolute_lift, c.cuped.absolute_lift);
    closeCi(r.cuped.absolute_ci95, c.cuped.absolute_ci95);
    close(r.cuped.p_value, c.cuped.p_value, 1e-9);
    // The covariate explains variance: CUPED's interval is narrower.
    expect(r.cuped.absolute_ci95![1] - r.cuped.absolute_ci95![0]).toBeLessThan(r.absolute_ci95![1] - r.absolute_ci95![0]);
  });
  it("one group with zero variance still has a Welch test", () => {
    const o = compareGroups(sumsOf(REF.one_constant.yt), sumsOf(REF.one_constant.yc), "mean");
    close(o.p_value, REF.one_constant.p_value, 1e-10);
  });
});

describe("a rate (two-proportion z-test, pooled)", () => {
  it.each(REF.rate_cases.map((c) => [c.kt, c.nt, c.kc, c.nc, c] as const))("%i/%i vs %i/%i", (kt, nt, kc, nc, c) => {
    const r = compareGroups(rateSums(kt, nt), rateSums(kc, nc), "rate");
    close(r.groups.treatment.mean, kt / nt);
    close(r.absolute_lift, c.absolute_lift, 1e-12);
    closeCi(r.absolute_ci95, c.absolute_ci95);
    close(r.p_value, c.p_value, 1e-9);
    if ("relative_lift" in c) {
      close(r.relative_lift, c.relative_lift as number);
      closeCi(r.relative_ci95, c.relative_ci95 as readonly number[]);
    } else {
      // Zero conversions in control: m_c = 0, no relative lift.
      expect(r.relative_lift).toBeNull();
      expect(r.relative_ci95).toBeNull();
      expect(r.reasons.relative_lift).toMatch(/control mean is 0/);
    }
    expectNoNonFinite(r);
  });
});

describe("sample-ratio mismatch", () => {
  it("chi-square (1 df) against the expected split; flagged when p < 0.001", () => {
    for (const [nt, nc, share, want] of REF.srm) {
      const s = sampleRatioMismatch(nt, nc, share);
      close(s.p_value, want, 1e-12, 1e-300);
      expect(s.flagged).toBe(want < 0.001);
    }
    expect(sampleRatioMismatch(9000, 1000, 0.1).flagged).toBe(false);
    expect(sampleRatioMismatch(9100, 900, 0.1).flagged).toBe(true);
  });
  it("holdout 0 and empty campaigns: no test, a reason", () => {
    expect(sampleRatioMismatch(1000, 0, 0)).toMatchObject({ p_value: null, chi_square: null, flagged: false, reason: expect.stringMatching(/one arm/) });
    expect(sampleRatioMismatch(990, 10, 0).flagged).toBe(true);
    expect(sampleRatioMismatch(0, 0, 0.1)).toMatchObject({ p_value: null, flagged: false, reason: "no assigned users" });
  });
});

describe("statistics that cannot be computed are null with a reason, never NaN", () => {
  const expectNull = (r: MetricComparison, fields: Array<keyof MetricComparison>, reason: RegExp) => {
    for (const f of fields) {
      expect(r[f], f).toBeNull();
      expect(r.reasons[f], f).toMatch(reason);
    }
    expectNoNonFinite(r);
  };

  it("a group of size 0 (holdout 0: no control)", () => {
    for (const kind of ["rate", "mean"] as const) {
      const r = compareGroups(sumsOf([1, 0, 1, 1], [3, 1, 4, 1]), sumsOf([]), kind);
      expect(r.groups.control).toEqual({ n: 0, mean: null });
      expectNull(r, ["absolute_lift", "absolute_ci95", "relative_lift", "relative_ci95", "p_value"], /control group has no users/);
      expect(r.cuped.theta).toBeNull();
      expect(r.cuped.reasons.theta).toMatch(/no users/);
    }
    const t0 = compareGroups(sumsOf([]), sumsOf([1, 2]), "mean");
    expectNull(t0, ["absolute_lift", "p_value"], /treatment group has no users/);
  });

  it("a group of size 1: lift, but no variance, CI or p-value", () => {
    for (const kind of ["rate", "mean"] as const) {
      const r = compareGroups(sumsOf([1, 0, 1, 0, 1], [2, 0, 3, 1, 2]), sumsOf([1], [2]), kind);
      close(r.absolute_lift, 0.6 - 1, 1e-12);
      expectNull(r, ["absolute_ci95", "relative_ci95", "p_value"], /control group has fewer than 2 users/);
      expect(r.cuped.absolute_ci95).toBeNull();
      expect(r.cuped.p_value).toBeNull();
      expect(r.cuped.reasons.p_value).toMatch(/fewer than 2/);
    }
  });

  it("zero conversions in both groups", () => {
    const r = compareGroups(rateSums(0, 500), rateSums(0, 120), "rate");
    expect(r.absolute_lift).toBe(0);
    expectNull(r, ["absolute_ci95", "p_value"], /zero variance/);
    expectNull(r, ["relative_lift", "relative_ci95"], /control mean is 0/);
  });

  it("everybody converts in both groups; a constant mean metric", () => {
    expectNull(compareGroups(rateSums(40, 40), rateSums(9, 9), "rate"), ["absolute_ci95", "p_value", "relative_ci95"], /zero variance/);
    const m = compareGroups(sumsOf([3, 3, 3], [1, 2, 3]), sumsOf([3, 3], [4, 0]), "mean");
    expect(m.absolute_lift).toBe(0);
    expect(m.relative_lift).toBe(0);
    expectNull(m, ["absolute_ci95", "p_value", "relative_ci95"], /zero variance/);
    // Y is constant, so Y' = Y − θ(X − X̄) with θ = 0 is too.
    expect(m.cuped.theta).toBe(0);
    expect(m.cuped.p_value).toBeNull();
  });

  it("a covariate without variance: CUPED is null with a reason", () => {
    const r = compareGroups(sumsOf([1, 4, 2, 6], [5, 5, 5, 5]), sumsOf([0, 2, 1], [5, 5, 5]), "mean");
    expect(r.p_value).not.toBeNull();
    expect(r.cuped).toMatchObject({ theta: null, absolute_lift: null, absolute_ci95: null, p_value: null });
    expect(r.cuped.reasons.theta).toMatch(/covariate/);
  });
});
