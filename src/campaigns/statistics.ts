/**
 * The statistics of campaign results, exactly as the spec writes them, as pure functions of group
 * aggregates (n, Σy, Σy², Σx, Σx², Σxy per group: the layer engine computes those set-based, so no
 * per-user rows reach Node).
 *
 * - absolute lift m_t − m_c, 95% CI ± 1.959964·sqrt(v_t/n_t + v_c/n_c) (rates: v = p(1−p));
 * - relative lift (m_t − m_c)/m_c, 95% CI by the delta method, variance v_t/(n_t m_c²) + m_t² v_c/(n_c m_c⁴);
 * - p-value: rates by the two-proportion z-test with pooled variance, means by Welch's t-test with
 *   Welch–Satterthwaite degrees of freedom;
 * - CUPED: θ = cov(Y, X)/var(X) over all assigned users, Y' = Y − θ(X − mean X), lift, CI and Welch p on Y';
 * - sample-ratio mismatch: chi-square (1 df) of n_t, n_c against the expected split, flagged when p < 0.001.
 *
 * A statistic that cannot be computed is null, and `reasons` says why: never NaN or Infinity.
 * The special functions are implemented here (no dependency): erfc by W. J. Cody's rational
 * approximations (relative error ~1e-16), ln Γ by Lanczos (g = 7, n = 9), the regularized incomplete
 * beta function by its continued fraction evaluated with the modified Lentz method.
 */

export const Z95 = 1.959964;
/** Sample-ratio mismatch is flagged below this p-value. */
export const SRM_ALPHA = 0.001;

// ---------------------------------------------------------------- special functions

const SQRPI = 0.56418958354775628695; // 1/sqrt(pi)
const ERF_A = [3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153];
const ERF_B = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
const ERF_C = [
  0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.95222124176909, 1712.04761263407058,
  2051.07837782607147, 1230.33935479799725, 2.15311535474403846e-8,
];
const ERF_D = [15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942];
const ERF_P = [0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766, 6.58749161529837803e-4, 0.0163153871373020978];
const ERF_Q = [2.56852019228982242, 1.87295284992346725, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185];

/** exp(-x²) without the rounding error of squaring x (Cody's split of x into 1/16ths). */
function expMinusSquare(x: number): number {
  const ysq = Math.trunc(x * 16) / 16;
  const del = (x - ysq) * (x + ysq);
  return Math.exp(-ysq * ysq) * Math.exp(-del);
}

/** The complementary error function, W. J. Cody (1969) "Rational Chebyshev approximations for the error function". */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const y = Math.abs(x);
  let result: number;
  if (y <= 0.46875) {
    const ysq = y > 1.11e-16 ? y * y : 0;
    let num = ERF_A[4]! * ysq;
    let den = ysq;
    for (let i = 0; i < 3; i++) {
      num = (num + ERF_A[i]!) * ysq;
      den = (den + ERF_B[i]!) * ysq;
    }
    const erf = (x * (num + ERF_A[3]!)) / (den + ERF_B[3]!);
    return 1 - erf;
  } else if (y <= 4) {
    let num = ERF_C[8]! * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + ERF_C[i]!) * y;
      den = (den + ERF_D[i]!) * y;
    }
    result = (num + ERF_C[7]!) / (den + ERF_D[7]!);
    result *= expMinusSquare(y);
  } else {
    if (y >= 26.55) result = 0;
    else {
      const ysq = 1 / (y * y);
      let num = ERF_P[5]! * ysq;
      let den = ysq;
      for (let i = 0; i < 4; i++) {
        num = (num + ERF_P[i]!) * ysq;
        den = (den + ERF_Q[i]!) * ysq;
      }
      result = (ysq * (num + ERF_P[4]!)) / (den + ERF_Q[4]!);
      result = (SQRPI - result) / y;
      result *= expMinusSquare(y);
    }
  }
  return x < 0 ? 2 - result : result;
}

export function erf(x: number): number {
  return Math.abs(x) <= 0.46875 ? 1 - erfc(x) : x < 0 ? erfc(-x) - 1 : 1 - erfc(x);
}

/** Φ(x), the standard normal CDF. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** Two-sided p-value of a standard normal statistic: P(|Z| ≥ |z|). */
export function normalTwoSidedP(z: number): number {
  return erfc(Math.abs(z) / Math.SQRT2);
}

const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7,
];
const HALF_LOG_2PI = 0.91893853320467274178;

/** ln Γ(x) for x > 0 (Lanczos approximation; reflection below 0.5). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + LANCZOS_G + 0.5;
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i]! / (z + i);
  return HALF_LOG_2PI + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** lnΓ(x) − Stirling's approximation, for x ≥ 10 (its asymptotic series; error below 1e-17 there). */
function stirlingCorrection(x: number): number {
  const r = 1 / x, r2 = r * r;
  const COEFS = [1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400];
  let sum = 0;
  for (let i = COEFS.length - 1; i >= 0; i--) sum = sum * r2 + COEFS[i]!;
  return sum * r;
}

/**
 * ln B(a, b). With a large argument the three ln Γ terms are large and nearly cancel, so the
 * difference is formed analytically from Stirling's series instead (as R's lbeta does).
 */
export function logBeta(a: number, b: number): number {
  const p = Math.min(a, b), q = Math.max(a, b);
  if (q < 10) return logGamma(p) + logGamma(q) - logGamma(p + q);
  const ratio = p / (p + q);
  if (p >= 10) {
    const corr = stirlingCorrection(p) + stirlingCorrection(q) - stirlingCorrection(p + q);
    return -0.5 * Math.log(q) + HALF_LOG_2PI + corr + (p - 0.5) * Math.log(ratio) + q * Math.log1p(-ratio);
  }
  const corr = stirlingCorrection(q) - stirlingCorrection(p + q);
  return logGamma(p) + corr + p - p * Math.log(p + q) + (q - 0.5) * Math.log1p(-ratio);
}

/** The continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes' betacf). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const MAXIT = 100_000;
  const EPS = 1e-16;
  const FPMIN = 1e-300;
  const qab = a + b, qap = a + 1, qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < FPMIN) d = FPMIN;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= MAXIT; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = 1 + aa / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) return h;
  }
  return h;
}

/**
 * The regularized incomplete beta function I_x(a, b), given x and y = 1 − x separately (so that a
 * caller who knows 1 − x exactly loses no precision forming it).
 */
export function regularizedIncompleteBeta(x: number, a: number, b: number, y = 1 - x): number {
  if (!(a > 0) || !(b > 0) || Number.isNaN(x)) return NaN;
  if (x <= 0) return 0;
  if (y <= 0) return 1;
  // ln x and ln y from whichever of x, y is known exactly (the other may be a rounded 1 − it).
  const lx = x < 0.5 ? Math.log(x) : Math.log1p(-y);
  const ly = y < 0.5 ? Math.log(y) : Math.log1p(-x);
  const front = Math.exp(a * lx + b * ly - logBeta(a, b));
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, y)) / b;
}

/** Two-sided p-value of Student's t with df degrees of freedom (df may be fractional): I_{df/(df+t²)}(df/2, 1/2). */
export function studentTTwoSidedP(t: number, df: number): number {
  if (!(df > 0) || Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return 0;
  const t2 = t * t;
  const x = df / (df + t2);
  const y = t2 / (df + t2);
  return Math.min(1, Math.max(0, regularizedIncompleteBeta(x, df / 2, 0.5, y)));
}

/** The Student t CDF P(T ≤ t). */
export function studentTCdf(t: number, df: number): number {
  const tail = studentTTwoSidedP(t, df) / 2;
  return t >= 0 ? 1 - tail : tail;
}

/** P(χ²₁ ≥ q): a chi-square with 1 degree of freedom is the square of a standard normal. */
export function chiSquare1Sf(q: number): number {
  if (!(q >= 0)) return q < 0 ? 1 : NaN;
  return erfc(Math.sqrt(q / 2));
}

// ---------------------------------------------------------------- group aggregates

/** Aggregates of one group: Y the metric, X the CUPED covariate, per user. */
export interface GroupSums {
  n: number;
  sy: number;
  syy: number;
  sx: number;
  sxx: number;
  sxy: number;
}

export const EMPTY_SUMS: GroupSums = { n: 0, sy: 0, syy: 0, sx: 0, sxx: 0, sxy: 0 };

export function addSums(a: GroupSums, b: GroupSums): GroupSums {
  return { n: a.n + b.n, sy: a.sy + b.sy, syy: a.syy + b.syy, sx: a.sx + b.sx, sxx: a.sxx + b.sxx, sxy: a.sxy + b.sxy };
}

/** The aggregates of per-user values (tests and simulations; the service gets them from SQL). */
export function sumsOf(ys: ArrayLike<number>, xs?: ArrayLike<number>): GroupSums {
  const s = { ...EMPTY_SUMS };
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i]!, x = xs ? xs[i]! : 0;
    s.n++;
    s.sy += y;
    s.syy += y * y;
    s.sx += x;
    s.sxx += x * x;
    s.sxy += x * y;
  }
  return s;
}

/** Unbiased (n − 1) sample variance from sums, clamped at 0 against rounding. */
function sampleVariance(n: number, s: number, ss: number): number {
  return Math.max(0, (ss - (s * s) / n) / (n - 1));
}
function sampleCovariance(n: number, sx: number, sy: number, sxy: number): number {
  return (sxy - (sx * sy) / n) / (n - 1);
}

/** A variance this small next to the scale of the data is rounding noise: treat it as zero. */
function isZeroVariance(v: number, scale: number): boolean {
  return !(v > 1e-12 * Math.max(scale, 1e-300));
}

// ---------------------------------------------------------------- tests

export type Ci = [number, number];
export type NullableCi = Ci | null;

export interface WelchResult {
  t: number;
  df: number;
  p_value: number;
}

/** Welch's t-test from means, unbiased variances and sizes (both n ≥ 2, not both variances zero). */
export function welchTest(mt: number, vt: number, nt: number, mc: number, vc: number, nc: number): WelchResult | null {
  if (nt < 2 || nc < 2) return null;
  const a = vt / nt, b = vc / nc;
  const se2 = a + b;
  if (!(se2 > 0)) return null;
  const t = (mt - mc) / Math.sqrt(se2);
  const df = (se2 * se2) / ((a * a) / (nt - 1) + (b * b) / (nc - 1));
  return { t, df, p_value: studentTTwoSidedP(t, df) };
}

/** Two-proportion z-test with the pooled proportion; null when the pooled variance is zero. */
export function twoProportionZTest(xt: number, nt: number, xc: number, nc: number): { z: number; p_value: number } | null {
  if (nt < 1 || nc < 1) return null;
  const pooled = (xt + xc) / (nt + nc);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / nt + 1 / nc));
  if (!(se > 0)) return null;
  const z = (xt / nt - xc / nc) / se;
  return { z, p_value: normalTwoSidedP(z) };
}

export interface SrmResult {
  expected_control_share: number;
  n_treatment: number;
  n_control: number;
  chi_square: number | null;
  p_value: number | null;
  flagged: boolean;
  reason: string | null;
}

/** Sample-ratio mismatch: chi-square (1 df) of the observed split against the expected control share. */
export function sampleRatioMismatch(nt: number, nc: number, expectedControlShare: number): SrmResult {
  const base = { expected_control_share: expectedControlShare, n_treatment: nt, n_control: nc };
  const N = nt + nc;
  if (N === 0) return { ...base, chi_square: null, p_value: null, flagged: false, reason: "no assigned users" };
  if (expectedControlShare <= 0 || expectedControlShare >= 1) {
    // One arm is expected empty: any member in it is a mismatch by construction, none is a perfect split.
    const wrong = expectedControlShare <= 0 ? nc : nt;
    return {
      ...base,
      chi_square: null,
      p_value: null,
      flagged: wrong > 0,
      reason: `the expected split puts every user in one arm (holdout ${expectedControlShare * 100}%): no chi-square test`,
    };
  }
  const ec = N * expectedControlShare, et = N - ec;
  const chi = ((nt - et) ** 2) / et + ((nc - ec) ** 2) / ec;
  const p = chiSquare1Sf(chi);
  return { ...base, chi_square: chi, p_value: p, flagged: p < SRM_ALPHA, reason: null };
}

// ---------------------------------------------------------------- the result of one metric

export type MetricKind = "rate" | "mean";

export interface CupedResult {
  absolute_lift: number | null;
  absolute_ci95: NullableCi;
  p_value: number | null;
  theta: number | null;
  reasons: Record<string, string>;
}

export interface MetricComparison {
  groups: { treatment: { n: number; mean: number | null }; control: { n: number; mean: number | null } };
  absolute_lift: number | null;
  absolute_ci95: NullableCi;
  relative_lift: number | null;
  relative_ci95: NullableCi;
  p_value: number | null;
  cuped: CupedResult;
  /** Why a statistic is null, by field name. */
  reasons: Record<string, string>;
}

const finite = (v: number | null): number | null => (v === null || Number.isFinite(v) ? v : null);
const ci = (center: number, se: number): NullableCi => {
  const lo = center - Z95 * se, hi = center + Z95 * se;
  return Number.isFinite(lo) && Number.isFinite(hi) ? [lo, hi] : null;
};

/**
 * Compares treatment with control on one metric from their aggregates, as the spec defines every
 * figure. `kind` "rate" is a 0/1 metric (returned, converted): v = p(1−p) and the pooled z-test;
 * "mean" uses unbiased variances and Welch's t-test. CUPED always works on Y' with Welch.
 */
export function compareGroups(t: GroupSums, c: GroupSums, kind: MetricKind): MetricComparison {
  const reasons: Record<string, string> = {};
  const cupedReasons: Record<string, string> = {};
  const mean = (g: GroupSums) => (g.n > 0 ? g.sy / g.n : null);
  const mt = mean(t), mc = mean(c);
  const out: MetricComparison = {
    groups: { treatment: { n: t.n, mean: mt }, control: { n: c.n, mean: mc } },
    absolute_lift: null,
    absolute_ci95: null,
    relative_lift: null,
    relative_ci95: null,
    p_value: null,
    cuped: { absolute_lift: null, absolute_ci95: null, p_value: null, theta: null, reasons: cupedReasons },
    reasons,
  };
  const setAll = (why: string, fields: string[], target: Record<string, string>) => {
    for (const f of fields) target[f] ??= why;
  };
  if (mt === null || mc === null) {
    const why = `the ${mt === null ? "treatment" : "control"} group has no users`;
    setAll(why, ["absolute_lift", "absolute_ci95", "relative_lift", "relative_ci95", "p_value"], reasons);
    setAll(why, ["absolute_lift", "absolute_ci95", "p_value", "theta"], cupedReasons);
    return out;
  }
  out.absolute_lift = mt - mc;
  if (mc === 0) setAll("the control mean is 0: a relative lift is undefined", ["relative_lift", "relative_ci95"], reasons);
  else out.relative_lift = finite((mt - mc) / mc);

  const small = t.n < 2 ? "treatment" : c.n < 2 ? "control" : null;
  if (small) {
    const why = `the ${small} group has fewer than 2 users: its variance is undefined`;
    setAll(why, ["absolute_ci95", "relative_ci95", "p_value"], reasons);
    setAll(why, ["absolute_ci95", "p_value"], cupedReasons);
  } else {
    // Variances of Y per the spec: rates p(1−p) (n denominator), means unbiased.
    const vt = kind === "rate" ? mt * (1 - mt) : sampleVariance(t.n, t.sy, t.syy);
    const vc = kind === "rate" ? mc * (1 - mc) : sampleVariance(c.n, c.sy, c.syy);
    const scale = Math.max(Math.abs(mt), Math.abs(mc), 1) ** 2;
    const zeroVar = isZeroVariance(vt, scale) && isZeroVariance(vc, scale);
    const se = Math.sqrt(vt / t.n + vc / c.n);
    if (zeroVar) setAll("zero variance: every user in both groups has the same value", ["absolute_ci95", "p_value"], reasons);
    else out.absolute_ci95 = ci(mt - mc, se);

    if (!zeroVar) {
      if (kind === "rate") {
        const z = twoProportionZTest(t.sy, t.n, c.sy, c.n);
        if (z) out.p_value = finite(z.p_value);
        else reasons.p_value = "zero pooled variance: no user or every user converted";
      } else {
        const w = welchTest(mt, vt, t.n, mc, vc, c.n);
        if (w) out.p_value = finite(w.p_value);
        else reasons.p_value = "zero variance";
      }
    }
    if (mc !== 0) {
      const varRel = vt / (t.n * mc * mc) + (mt * mt * vc) / (c.n * mc ** 4);
      if (zeroVar || !(varRel > 0)) reasons.relative_ci95 ??= "zero variance: every user in both groups has the same value";
      else out.relative_ci95 = ci((mt - mc) / mc, Math.sqrt(varRel));
    }
  }

  // CUPED: θ over all assigned users of both arms.
  const all = addSums(t, c);
  if (all.n < 2) {
    setAll("fewer than 2 assigned users", ["theta", "absolute_lift", "absolute_ci95", "p_value"], cupedReasons);
    return out;
  }
  const varX = sampleVariance(all.n, all.sx, all.sxx);
  const meanXAll = all.sx / all.n;
  if (isZeroVariance(varX, Math.max(meanXAll * meanXAll, 1))) {
    setAll("the covariate (active days in the 28 days before launch) has no variance", ["theta", "absolute_lift", "absolute_ci95", "p_value"], cupedReasons);
    return out;
  }
  const theta = sampleCovariance(all.n, all.sx, all.sy, all.sxy) / varX;
  out.cuped.theta = finite(theta);
  // Y'_i = Y_i − θ(X_i − X̄): group means shift by θ(m_x − X̄), within-group variances follow from the sums.
  const adjMean = (g: GroupSums) => g.sy / g.n - theta * (g.sx / g.n - meanXAll);
  out.cuped.absolute_lift = finite(adjMean(t) - adjMean(c));
  if (small) return out;
  const adjVar = (g: GroupSums) => {
    const vy = sampleVariance(g.n, g.sy, g.syy), vx = sampleVariance(g.n, g.sx, g.sxx), cxy = sampleCovariance(g.n, g.sx, g.sy, g.sxy);
    const v = vy + theta * theta * vx - 2 * theta * cxy;
    return { v: Math.max(0, v), scale: vy + theta * theta * vx };
  };
  const at = adjVar(t), ac = adjVar(c);
  if (isZeroVariance(at.v, at.scale + ac.scale) && isZeroVariance(ac.v, at.scale + ac.scale)) {
    setAll("zero variance of the adjusted metric in both groups", ["absolute_ci95", "p_value"], cupedReasons);
    return out;
  }
  const lift = adjMean(t) - adjMean(c);
  out.cuped.absolute_ci95 = ci(lift, Math.sqrt(at.v / t.n + ac.v / c.n));
  const w = welchTest(adjMean(t), at.v, t.n, adjMean(c), ac.v, c.n);
  if (w) out.cuped.p_value = finite(w.p_value);
  else cupedReasons.p_value = "zero variance of the adjusted metric";
  return out;
}
