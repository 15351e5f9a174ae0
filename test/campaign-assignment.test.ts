// The campaign assignment rule: one pure TypeScript function, the same rule set-based in PostgreSQL
// (aa_assignment_bucket), equal on many ids (Unicode included), reproducible in another process, and a
// fair split.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { armOfBucket, assign, assignmentBucket, holdoutThreshold } from "../src/campaigns/assignment.js";
import { sampleRatioMismatch } from "../src/campaigns/statistics.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

/** Ids of every kind a CRM sends: ASCII, numbers, emails, Hangul, CJK, emoji, combining marks, long. */
function ids(n: number): string[] {
  const out: string[] = [];
  const extra = ["한국어사용자", "🙂", "👩‍👩‍👧", "e\u0301", "é", "日本語ユーザー", "Ünïcödé", "a b", "x'y", "quote\"d", "back\\slash", "tab-less", "Ω≈ç√∫", "0", "-1", "ｆｕｌｌ"];
  for (let i = 0; i < n; i++) {
    const k = i % 7;
    out.push(
      k === 0 ? `user-${i}` : k === 1 ? String(i * 7919) : k === 2 ? `u${i}@example.com` : k === 3 ? `사용자-${i}` : k === 4 ? `${extra[i % extra.length]}-${i}` : k === 5 ? `🙂${i}🚀` : `${"x".repeat(200)}${i}`,
    );
  }
  return out.concat(extra);
}

describe("the assignment hash", () => {
  it("matches sha256 vectors computed independently (Python hashlib)", () => {
    // python3: int.from_bytes(hashlib.sha256((salt + ':' + uid).encode('utf-8')).digest()[:4], 'big') % 10000
    const vectors: Array<[string, string, number]> = [
      ["c1", "u-1", 9812],
      ["c1", "u-2", 2269],
      ["spring-2026", "user-000042@demo", 4377],
      ["s", "한국어사용자", 7201],
      ["s", "🙂", 5538],
      ["", "x", 4660],
      ["salt:with:colons", "id", 8056],
    ];
    for (const [salt, user, bucket] of vectors) expect(assignmentBucket(salt, user), `${salt}:${user}`).toBe(bucket);
  });

  it("control when bucket < holdout_percent × 100", () => {
    expect(holdoutThreshold(10)).toBe(1000);
    expect(holdoutThreshold(12.34)).toBe(1234);
    expect(armOfBucket(999, 10)).toBe("control");
    expect(armOfBucket(1000, 10)).toBe("treatment");
    expect(armOfBucket(0, 0)).toBe("treatment");
    expect(armOfBucket(4999, 50)).toBe("control");
  });

  it("gives the same groups in a second process", () => {
    const sample = ids(2000);
    const mine = sample.map((u) => assign(u, { salt: "repro-salt", holdoutPercent: 20 }, { salt: "global", percent: 5 }));
    const script =
      `import { assign } from ${JSON.stringify(path.join(ROOT, "src/campaigns/assignment.ts"))};` +
      `let input = ""; process.stdin.on("data", (d) => (input += d)); process.stdin.on("end", () => {` +
      `const ids = JSON.parse(input); process.stdout.write(JSON.stringify(ids.map((u) => assign(u, { salt: "repro-salt", holdoutPercent: 20 }, { salt: "global", percent: 5 })))); });`;
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: ROOT,
      input: JSON.stringify(sample),
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(child.status, child.stderr).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual(mine);
    expect(mine.some((m) => m.arm === "global_control")).toBe(true);
  });

  it("splits 100,000 ids fairly: the sample-ratio test does not flag it", () => {
    for (const [salt, holdout] of [["campaign-a", 10], ["campaign-b", 50], ["campaign-c", 2.5]] as const) {
      let control = 0, treatment = 0;
      for (let i = 0; i < 100_000; i++) {
        if (armOfBucket(assignmentBucket(salt, `user-${i}`), holdout) === "control") control++;
        else treatment++;
      }
      const srm = sampleRatioMismatch(treatment, control, holdout / 100);
      expect(srm.flagged, `${salt}: ${treatment}/${control}, p = ${srm.p_value}`).toBe(false);
      expect(srm.p_value!).toBeGreaterThan(0.001);
    }
  });

  it("buckets are uniform over 0–9999 (chi-square over 10 deciles)", () => {
    const deciles = new Array(10).fill(0);
    for (let i = 0; i < 100_000; i++) deciles[Math.floor(assignmentBucket("uniform", `id${i}`) / 1000)]++;
    const chi = deciles.reduce((s, o) => s + (o - 10_000) ** 2 / 10_000, 0);
    expect(chi).toBeLessThan(27.88); // chi-square 9 df, p = 0.001
  });
});

describe("PostgreSQL computes the same buckets set-based (aa_assignment_bucket)", () => {
  it("equals the TypeScript function on 20,000 ids, Unicode included", async () => {
    const sample = ids(20_000);
    for (const salt of ["s", "salt-é-🙂", "4b7c1a52-2b7e-4a43-9a57-0f0f3f1b1e10"]) {
      const r = await env.ctx.db.pool.query<{ b: number }>(
        `SELECT aa_assignment_bucket($1, u) AS b FROM unnest($2::text[]) WITH ORDINALITY AS t(u, o) ORDER BY o`,
        [salt, sample],
      );
      const sql = r.rows.map((x) => x.b);
      const ts = sample.map((u) => assignmentBucket(salt, u));
      const diff = sample.filter((_, i) => sql[i] !== ts[i]);
      expect(diff, `first ids that differ: ${diff.slice(0, 3).join(", ")}`).toEqual([]);
    }
  });

  it("is the brief's expression, inlined", async () => {
    const r = await env.ctx.db.pool.query<{ a: number; b: string }>(
      `SELECT aa_assignment_bucket('c1', 'u-1') AS a,
              (('x' || encode(substr(sha256(convert_to('c1' || ':' || 'u-1', 'UTF8')), 1, 4), 'hex'))::bit(32)::bigint % 10000)::text AS b`,
    );
    expect(r.rows[0]).toEqual({ a: 9812, b: "9812" });
  });
});
