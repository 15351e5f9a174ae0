import pg from "pg";
import "../../src/db/client.js";
import { insertActivity } from "./generate.js";
const pool = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:5432/aa_bench_activation" });
const have = (await pool.query(`SELECT count(*) n FROM activity_day WHERE fact_id=1 AND activity_date='2026-07-01'`)).rows[0].n;
if (!have) console.log("inserted", await insertActivity(pool, 1, 1, 1));
const c = await pool.connect();
const EXPLAIN = process.argv.includes("--explain");
const t = async (label: string, sql: string, params: unknown[] = []) => {
  if (EXPLAIN && /^(UPDATE|INSERT|DELETE|CREATE TEMP TABLE lat)/.test(sql.trim())) {
    const q = sql.replace(/^CREATE TEMP TABLE \w+ ON COMMIT DROP AS/, "");
    await c.query("SAVEPOINT e");
    const r = await c.query(`EXPLAIN (ANALYZE, BUFFERS) ${q}`, params);
    console.log(r.rows.map((x) => x["QUERY PLAN"]).join("\n"));
    await c.query("ROLLBACK TO SAVEPOINT e");
  }
  const t0 = performance.now();
  const r = await c.query(sql, params);
  console.log(`${(performance.now() - t0).toFixed(0).padStart(6)} ms  ${label} ${r.rowCount ?? ""}`);
  return r;
};
const g = Number(process.argv[2] ?? 0);
const T = 20635; // 2026-07-01
await c.query("BEGIN");
await t("np", `CREATE TEMP TABLE np ON COMMIT DROP AS SELECT user_key, activity_date - DATE '1970-01-01' AS p FROM activity_day WHERE fact_id = 1 AND activity_date = '2026-07-01'`);
await t("analyze", `ANALYZE np`);
await t("latest join", `CREATE TEMP TABLE lat ON COMMIT DROP AS SELECT np.user_key, np.p AS m, i.start_p, i.end_p, i.active_before, i.first_p FROM np LEFT JOIN layer_island i ON i.fact_id = 1 AND i.grain = ${g} AND i.user_key = np.user_key AND i.next_start IS NULL`);
await t("analyze", `ANALYZE lat`);
console.log((await c.query(`SELECT count(*) FILTER (WHERE end_p = m - 1) ext, count(*) FILTER (WHERE end_p < m - 1) gap, count(*) FILTER (WHERE end_p IS NULL) newu FROM lat`)).rows);
await t("extend", `UPDATE layer_island i SET end_p = l.m FROM lat l WHERE i.fact_id = 1 AND i.grain = ${g} AND i.user_key = l.user_key AND i.start_p = l.start_p AND l.end_p = l.m - 1`);
await t("next_start", `UPDATE layer_island i SET next_start = l.m FROM lat l WHERE i.fact_id = 1 AND i.grain = ${g} AND i.user_key = l.user_key AND i.start_p = l.start_p AND l.end_p < l.m - 1`);
await t("insert", `INSERT INTO layer_island (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
  SELECT 1, ${g}, user_key, m, m, end_p, NULL, COALESCE(active_before + end_p - start_p + 1, 0), COALESCE(first_p, m) FROM lat WHERE end_p IS NULL OR end_p < m - 1 ORDER BY user_key`);
await t("rollback", "ROLLBACK");
c.release(); await pool.end();
