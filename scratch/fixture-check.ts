import { readFileSync } from "node:fs";
import pg from "pg";
import { migrateDatabase } from "../src/db/migrate.js";
import { ingestEventBatch } from "../src/activation/postgres/ingest.js";
import { processFact } from "../src/activation/postgres/process.js";
import { statusQuery, activationQuery, firstLastQuery, metricsRange } from "../src/activation/postgres/queries.js";
import { withTransaction } from "../src/activation/postgres/tx.js";
import { checkEvent } from "../src/facts/event-validation.js";
import { GRAINS, GRAIN_CODE, periodOfDate, dateToDay, dayToDate, periodStartDay } from "../src/activation/periods.js";
import "../src/db/client.js";

const url = "postgresql://postgres@127.0.0.1:5432/aa_scratch";
const fx = process.argv[2] ?? "seoul-70d";
const dir = `../shared/fixtures/${fx}`;
const meta = JSON.parse(readFileSync(`${dir}/fixture.json`, "utf8"));
function csv(path: string) {
  const lines = readFileSync(path, "utf8").trim().split(/\r?\n/);
  const head = lines[0]!.split(",");
  return lines.slice(1).map((l) => { const c = l.split(","); return Object.fromEntries(head.map((h, i) => [h, c[i]])); });
}
await migrateDatabase(url, console.log);
const pool = new pg.Pool({ connectionString: url });
await pool.query("TRUNCATE fact, activity_day, layer_island, layer_metric, app_user RESTART IDENTITY CASCADE");
const { rows: [f] } = await pool.query("INSERT INTO fact (name, timezone) VALUES ('x', $1) RETURNING id", [meta.fact_timezone]);
const fact = { id: f.id, name: "x", timezone: meta.fact_timezone };
async function load(file: string) {
  const ev = csv(`${dir}/${file}`).map((r) => { const c = checkEvent(r, Date.now()); if (!c.ok) throw new Error(JSON.stringify(c)); return c.event; });
  await withTransaction(pool, (c) => ingestEventBatch(c, fact, ev));
}
const mode = process.argv[3] ?? "whole";
if (mode === "whole") { await load("events.csv"); await processFact(pool, fact, meta.through); }
else if (mode === "daily") {
  await load("events.csv");
  const start = dateToDay("2026-02-20");
  for (let d = start; d <= dateToDay(meta.through); d++) await processFact(pool, fact, dayToDate(d));
}
else { await load("events_part1.csv"); await processFact(pool, fact, meta.part1_through); await load("events_part2.csv"); await processFact(pool, fact, meta.through); }
const T = meta.through;
let bad = 0;
function cmp(name: string, exp: Record<string, string>[], got: Record<string, string>[], cols: string[]) {
  const key = (r: any) => cols.map((c) => r[c] ?? "").join(",");
  const e = exp.map(key).sort(), g = got.map(key).sort();
  const es = new Set(e), gs = new Set(g);
  const miss = e.filter((x) => !gs.has(x)), extra = g.filter((x) => !es.has(x));
  if (miss.length || extra.length || e.length !== g.length) { bad++; console.log(`${name}: FAIL exp ${e.length} got ${g.length}`, miss.slice(0, 3), extra.slice(0, 3)); }
  else console.log(`${name}: ok (${e.length})`);
}
const norm = (r: any) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null || v === undefined ? "" : v instanceof Date ? v.toISOString() : String(v)]));
for (const grain of GRAINS) {
  const g = GRAIN_CODE[grain];
  const exp = csv(`${dir}/expected/status_${grain}.csv`);
  const cols = Object.keys(exp[0]!);
  const got: any[] = [];
  const first = Math.min(...exp.map((r) => periodOfDate(grain, r.period!)));
  for (let p = first; p <= periodOfDate(grain, T); p++) {
    const q = statusQuery(g, {});
    got.push(...(await pool.query(q.sql, [fact.id, p, ...q.extraParams])).rows.map(norm));
  }
  cmp(`status_${grain}`, exp, got, cols);
  const expA = csv(`${dir}/expected/activation_${grain}.csv`);
  const gotA: any[] = [];
  for (let p = first; p <= periodOfDate(grain, T); p++) {
    const q = activationQuery(g, undefined);
    gotA.push(...(await pool.query(q.sql, [fact.id, p, ...q.extraParams])).rows.map(norm));
  }
  cmp(`activation_${grain}`, expA, gotA, Object.keys(expA[0]!));
  const expM = csv(`${dir}/expected/metrics_${grain}.csv`);
  const gotM = (await metricsRange(pool, fact.id, g, -100000, 100000)).map((r) => {
    const o: any = {}; for (const [k, v] of Object.entries(r)) o[k.replace(/^seg_/, "segment_")] = String(v); return o;
  });
  cmp(`metrics_${grain}`, expM, gotM, Object.keys(expM[0]!));
}
const expF = csv(`${dir}/expected/first_last.csv`);
const gotF: any[] = [];
for (let d = Math.min(...expF.map((r) => dateToDay(r.snapshot_date!))); d <= dateToDay(T); d++) {
  const q = firstLastQuery({});
  gotF.push(...(await pool.query(q.sql, [fact.id, d, ...q.extraParams])).rows.map(norm));
}
cmp("first_last", expF, gotF, Object.keys(expF[0]!));
await pool.end();
process.exit(bad ? 1 : 0);
