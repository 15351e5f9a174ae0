/**
 * Development aid: times every statement of one processing run on a kept bench database
 * (`npm run bench -- activation ... --keep` first), e.g.
 *   npx tsx bench/activation/profile.ts <fact name> <through YYYY-MM-DD> [--top N] [--insert-x X]
 * (--insert-x first inserts the generated activity of day x = X, see generate.ts).
 * Prints the statements sorted by duration. Not part of `npm run bench`.
 */
import pg from "pg";
import "../../src/db/client.js";
import { processFact } from "../../src/activation/postgres/process.js";
import { insertActivity } from "./generate.js";

const [factName, through] = process.argv.slice(2);
const topI = process.argv.indexOf("--top");
const TOP = topI >= 0 ? Number(process.argv[topI + 1]) : 25;
if (!factName || !through) {
  console.error("usage: npx tsx bench/activation/profile.ts <fact> <through>");
  process.exit(2);
}
const url = process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/aa_bench_activation";
const timings: Array<{ ms: number; sql: string }> = [];
const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
(pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
  const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string })?.text;
  const t0 = performance.now();
  const res = original.apply(this, args);
  if (text && res && typeof (res as Promise<unknown>).then === "function") {
    return (res as Promise<unknown>).then((r) => {
      timings.push({ ms: performance.now() - t0, sql: text.replace(/\s+/g, " ").slice(0, 160) });
      return r;
    });
  }
  return res;
};
// BENCH_PG_OPTIONS, e.g. "-c wal_compression=lz4", tries server settings for the run's sessions.
const pool = new pg.Pool({ connectionString: url, max: 4, ...(process.env.BENCH_PG_OPTIONS ? { options: process.env.BENCH_PG_OPTIONS } : {}) });
const f = (await pool.query(`SELECT id, name, timezone FROM fact WHERE name = $1`, [factName])).rows[0];
const insI = process.argv.indexOf("--insert-x");
if (insI >= 0) {
  const x = Number(process.argv[insI + 1]);
  console.log(`inserted ${await insertActivity(pool, f.id, x, x)} rows`);
}
timings.length = 0;
const t0 = performance.now();
const r = await processFact(pool, f, through);
console.log(`run ${r.from} → ${r.through}: ${(performance.now() - t0).toFixed(0)} ms ${JSON.stringify(r.timings)}`);
for (const t of timings.sort((a, b) => b.ms - a.ms).slice(0, TOP)) console.log(`${t.ms.toFixed(1).padStart(9)} ms  ${t.sql}`);
await pool.end();
