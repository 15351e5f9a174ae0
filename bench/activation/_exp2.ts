import pg from "pg";
import "../../src/db/client.js";
import { insertActivity, dateOfX } from "./generate.js";
import { mergeNewPeriods } from "../../src/activation/postgres/islands.js";
const pool = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:5432/aa_bench_activation" });
const x = Number(process.argv[2] ?? 2), g = Number(process.argv[3] ?? 0);
const have = Number((await pool.query(`SELECT count(*) n FROM activity_day WHERE fact_id=1 AND activity_date=$1`, [dateOfX(x)])).rows[0].n);
if (!have) console.log("inserted", await insertActivity(pool, 1, x, x));
const c = await pool.connect();
const orig = c.query.bind(c) as (...a: unknown[]) => Promise<pg.QueryResult>;
(c as unknown as { query: unknown }).query = async (sql: string, params?: unknown[]) => {
  const t0 = performance.now();
  if (/^\s*(UPDATE|INSERT|DELETE|CREATE TEMP TABLE (lat|nw))/.test(sql)) {
    const q = sql.replace(/^\s*CREATE TEMP TABLE (\w+) ON COMMIT DROP AS/, "CREATE TEMP TABLE $1 ON COMMIT DROP AS");
    const r = await orig(`EXPLAIN (ANALYZE, BUFFERS, WAL) ${q}`, params);
    console.log(`---- ${(performance.now() - t0).toFixed(0)} ms\n` + r.rows.map((x: Record<string, string>) => x["QUERY PLAN"]).join("\n"));
    return { rows: [], rowCount: 0 } as unknown as pg.QueryResult;
  }
  const r = await orig(sql, params);
  console.log(`${(performance.now() - t0).toFixed(0).padStart(6)} ms ${sql.replace(/\s+/g, " ").slice(0, 90)}`);
  return r;
};
await c.query("BEGIN");
await c.query("SET LOCAL work_mem = '256MB'");
const from = dateOfX(x);
await mergeNewPeriods(c, 1, g, from, from);
await orig("ROLLBACK");
c.release(); await pool.end();
