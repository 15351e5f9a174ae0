import pg from "pg";
import { compileAudienceQuery } from "../src/activation/postgres/audience-sql.js";
import "../src/db/client.js";
const pool = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:5432/activation_audiences" });
const f = (await pool.query("select id, processed_through from fact where name='app_opened'")).rows[0];
const c = (await pool.query("select id from fact where name='chat_sent'")).rows[0];
const P = Math.round(new Date(f.processed_through).getTime() / 86400000);
const filters: any = {
  a: { field: "transition_segment", op: "eq", values: ["new_to_inactive"], within: 3, factId: null },
  b: { all: [{ field: "inactivity_periods", op: "between", values: [7, 30], factId: null }, { field: "last_streak_periods", op: "gte", values: [5], factId: null }] },
  c: { all: [{ field: "inactivity_periods", op: "between", values: [2, 14], factId: null }, { field: "state", op: "in", values: ["new", "retained", "reactivated"], within: 7, factId: c.id }] },
};
for (const [k, filter] of Object.entries(filters)) {
  const q = compileAudienceQuery({ factId: f.id, grain: 0, period: P, latest: true, filter });
  const t0 = Date.now();
  const cl = await pool.connect(); await cl.query("SET jit = off"); const r = await cl.query(`EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM (${q.sql}) z`, q.params); cl.release();
  console.log(k, Date.now() - t0, "ms");
  console.log(r.rows.map((x: any) => x["QUERY PLAN"]).join("\n").slice(0, 3000));
}
await pool.end();
