import pg from "pg";
import { periodOfDateSql } from "../../src/activation/postgres/islands.js";
const pool = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:5432/aa_bench_activation" });
const g = Number(process.argv[2] ?? 0);
const wm = process.argv[3] ?? "4MB";
const periods = g === 0
  ? `SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p FROM activity_day a WHERE a.fact_id = 1 AND a.activity_date BETWEEN '2025-01-01' AND '2026-06-29'`
  : `SELECT a.user_key, ${periodOfDateSql(g, "a.activity_date")} AS p FROM activity_day a WHERE a.fact_id = 1 AND a.activity_date BETWEEN '2025-01-01' AND '2026-06-29' GROUP BY 1, 2`;
const sql = `SELECT count(*), sum(end_p), sum(next_start), sum(prev_p), sum(rn), sum(first_p) FROM (
       SELECT user_key, p, prev_p, rn, first_p, is_start,
              CASE WHEN is_end THEN p ELSE lead(p) OVER w END AS end_p,
              CASE WHEN is_end THEN next_p ELSE lead(next_p) OVER w END AS next_start
       FROM (
         SELECT user_key, p, prev_p, next_p, rn, first_p,
                prev_p IS NULL OR prev_p < p - 1 AS is_start,
                next_p IS NULL OR next_p > p + 1 AS is_end
         FROM (
           SELECT user_key, p, lag(p) OVER w AS prev_p, lead(p) OVER w AS next_p,
                  row_number() OVER w AS rn, first_value(p) OVER w AS first_p
           FROM (${periods}) s
           WINDOW w AS (PARTITION BY user_key ORDER BY p)
         ) a
       ) b
       WHERE is_start OR is_end
       WINDOW w AS (PARTITION BY user_key ORDER BY p)
     ) c
     WHERE is_start`;
const c = await pool.connect();
await c.query(`SET work_mem = '${wm}'`);
const r = await c.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`);
console.log(r.rows.map((x) => x["QUERY PLAN"]).join("\n"));
c.release(); await pool.end();
