/**
 * `npm run bench -- campaigns [--users N] [--keep]`
 *
 * Campaign results and assignment export at scale, on a dedicated database (aa_bench_campaigns,
 * dropped and recreated):
 *   1. a synthetic layer generated set-based in SQL: N users (default 1,000,000), 60 days of a
 *      deterministic hash-based activity model, processed with processFact through day 45;
 *   2. a fact-wide list (every user, as of day 45) materialized through the domain functions, and a
 *      campaign on it (holdout 10%, goal: active days in a 14-day window from day 46) — the frozen
 *      assignment of N users is timed;
 *   3. days 46–59 with a small lift for treatment users, processed as runs are (executeRun: its hook
 *      queues the results job, which an in-process worker runs): days 46–58 at once, then day 59 alone,
 *      the daily run — the time from that run's layer being processed to stored results is the figure
 *      (target ≤ 3 s); the results computation alone and from scratch are timed too;
 *   4. the assignment export streamed over HTTP as NDJSON (target ≥ 300,000 rows/s), and as CSV.
 * Prints figures with targets; writes bench/results/campaigns.json (figures, date, CPU count).
 */
import { adminQuery, timedWith, databaseUrlFor, figureTable } from "./common.js";
import os from "node:os";
import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { loadConfig } from "../src/config.js";
import { createContext } from "../src/bootstrap.js";
import { buildApp } from "../src/app.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { processFact } from "../src/activation/postgres/process.js";
import { executeRun } from "../src/activation/runs.js";
import { createAudience } from "../src/audiences/audiences.js";
import { executeMaterialization, requestMaterialization } from "../src/audiences/materializations.js";
import { createCampaign, getCampaign } from "../src/campaigns/campaigns.js";
import { executeCampaignAssignment } from "../src/campaigns/assigning.js";
import { computeAndStoreResults } from "../src/campaigns/results.js";
import { createApiKey } from "../src/keys/api-keys.js";
import { startWorkers } from "../src/jobs/workers.js";

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1];
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}
const USERS = Number(opt("users") ?? 1_000_000);
const KEEP = process.argv.includes("--keep");
if (!Number.isInteger(USERS) || USERS < 1000) {
  console.error("usage: npm run bench -- campaigns [--users N (>= 1000)] [--keep]");
  process.exit(2);
}
const DAYS = 60;
const LAUNCH_X = 46; // day index of launch_date; the list is as of the day before
const WINDOW = 14; // days 46..59
const HOLDOUT = 10;
const FIRST_DATE = "2026-05-02"; // day index 0
const FULL_SIZE = USERS >= 1_000_000;

const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const DB_NAME = "aa_bench_campaigns";
const DB_URL = databaseUrlFor(ADMIN_URL, DB_NAME);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const HERE = path.dirname(fileURLToPath(import.meta.url));

const ms = (t0: number) => performance.now() - t0;
const sec = (v: number) => `${(v / 1000).toFixed(2)} s`;
const fmtInt = (v: number) => Math.round(v).toLocaleString("en-US");
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const dateOf = (x: number) => {
  const d = new Date(`${FIRST_DATE}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + x);
  return d.toISOString().slice(0, 10);
};
const timed = <T>(label: string, fn: () => Promise<T>) => timedWith(fn, (t) => log(`${label}: ${sec(t)}`));
const admin = (sql: string) => adminQuery(ADMIN_URL, sql);

const { rows, row, print: printFigures } = figureTable();
const figures: Record<string, unknown> = {};

// ---------------------------------------------------------------- setup
const benchStart = performance.now();
log(`campaigns bench: ${fmtInt(USERS)} users, ${DAYS} days, a ${WINDOW}-day window from day ${LAUNCH_X}, on ${DB_NAME}`);
await admin(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
await migrateDatabase(DB_URL);
const config = loadConfig({ DATABASE_URL: DB_URL, REDIS_URL, REDIS_PREFIX: "aa-bench-campaigns", LOG_LEVEL: "silent", WORKERS: "1", PG_POOL_MAX: "8" });
const ctx = createContext(config);
for (const q of ctx.queues.all()) await q.obliterate({ force: true }).catch(() => {});
const pool = ctx.db.pool;

const machine = await (async () => {
  const v = await pool.query<{ version: string }>(`SELECT version()`);
  return { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? "unknown", memory_gb: Math.round(os.totalmem() / 1024 ** 3), node: process.version, postgres: v.rows[0]!.version.split(" on ")[0] };
})();
log(`machine: ${machine.cpus} × ${machine.cpu_model}, ${machine.memory_gb} GB, node ${machine.node}, ${machine.postgres}`);

const factRow = await ctx.db.prisma.fact.create({ data: { name: "app_opened", timezone: "UTC", description: "bench" } });
const fact = { id: factRow.id, name: factRow.name, timezone: "UTC" };

// ---------------------------------------------------------------- 1. the layer
/** A uniform [0, 1) draw from an integer key (hashint8 is PostgreSQL's own, deterministic). */
const u01 = (key: string) => `((hashint8(${key}) & 2147483647)::float8 / 2147483648.0)`;
await timed(`users and parameters (${fmtInt(USERS)})`, async () => {
  await pool.query(`INSERT INTO app_user (user_key, external_id) SELECT u, 'user_' || u FROM generate_series(1, $1::int) u`, [USERS]);
  await pool.query(`SELECT setval(pg_get_serial_sequence('app_user', 'user_key'), $1::int)`, [USERS]);
  // Signup in the first 40 days; regulars (25%, p 0.25–0.50), occasionals (35%, p 0.05–0.15), lapsing (40%, p 0.01–0.05).
  await pool.query(
    `CREATE UNLOGGED TABLE bench_user_param AS
     SELECT u, floor(h1 * 40)::int AS s,
            CASE WHEN h2 < 0.25 THEN 0.25 + 0.25 * h3 WHEN h2 < 0.60 THEN 0.05 + 0.10 * h3 ELSE 0.01 + 0.04 * h3 END AS p,
            0.0::float8 AS boost
     FROM (SELECT u, ${u01("u::bigint * 8 + 1")} AS h1, ${u01("u::bigint * 8 + 2")} AS h2, ${u01("u::bigint * 8 + 3")} AS h3
           FROM generate_series(1, $1::int) u) a`,
    [USERS],
  );
});

async function insertDays(from: number, to: number): Promise<number> {
  const days: number[] = [];
  for (let x = from; x <= to; x++) days.push(x);
  let n = 0;
  const worker = async () => {
    const c = await pool.connect();
    try {
      await c.query(`SET synchronous_commit = off`);
      for (let x = days.shift(); x !== undefined; x = days.shift()) {
        const d = `DATE '${dateOf(x)}'`;
        const r = await c.query(
          `INSERT INTO activity_day (fact_id, activity_date, user_key, first_at, last_at)
           SELECT $1, ${d}, u, ${d}::timestamp AT TIME ZONE 'UTC' + make_interval(secs => 28800 + (hd & 32767)),
                  ${d}::timestamp AT TIME ZONE 'UTC' + make_interval(secs => 28800 + (hd & 32767) + ((hd >> 16) & 8191))
           FROM (SELECT u, s, p, boost, hashint8(u::bigint * 1024 + ${x}) AS hd FROM bench_user_param WHERE s <= ${x}) q
           WHERE s = ${x} OR (hd & 2147483647)::float8 < 2147483648.0 * (p + boost)
           ORDER BY u`,
          [fact.id],
        );
        n += r.rowCount ?? 0;
      }
    } finally {
      await c.query(`RESET synchronous_commit`).catch(() => {});
      c.release();
    }
  };
  await Promise.all([worker(), worker()]);
  await pool.query(`UPDATE fact SET earliest_date = LEAST(earliest_date, $2::date), latest_date = GREATEST(latest_date, $3::date) WHERE id = $1`, [fact.id, dateOf(from), dateOf(to)]);
  return n;
}

const [preRows, tPreInsert] = await timed(`activity of days 0–${LAUNCH_X - 1}`, () => insertDays(0, LAUNCH_X - 1));
await pool.query(`VACUUM (ANALYZE) activity_day`);
const [, tPreProcess] = await timed(`processFact through day ${LAUNCH_X - 1} (${dateOf(LAUNCH_X - 1)})`, () => processFact(pool, fact, dateOf(LAUNCH_X - 1)));
await pool.query(`VACUUM (ANALYZE) layer_latest_pack, layer_latest_first, layer_closed_pack`);
figures.layer = { users: USERS, days_before_launch: LAUNCH_X, activity_rows_before_launch: preRows, insert_s: +(tPreInsert / 1000).toFixed(1), process_s: +(tPreProcess / 1000).toFixed(1) };

// ---------------------------------------------------------------- 2. list and campaign
const asOf = dateOf(LAUNCH_X - 1);
const [list, tList] = await timed(`fact-wide list as of ${asOf}`, async () => {
  const a = await createAudience(ctx, { name: "Everyone", fact: "app_opened", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
  const m = (await requestMaterialization(ctx, a.id, asOf, "bench")).materialization;
  return executeMaterialization(ctx, m.id);
});
log(`list ${list.id}: ${fmtInt(list.member_count ?? 0)} members`);
// The request (202) and the assignment job's work, timed together; the job queued at creation would
// find the campaign ready.
const [campaignId, tAssign] = await timed(`campaign: assignment of ${fmtInt(list.member_count ?? 0)} members frozen`, async () => {
  const created = await createCampaign(ctx, {
    name: "Bench win-back",
    materialization_id: list.id,
    holdout_percent: HOLDOUT,
    launch_date: dateOf(LAUNCH_X),
    goal: { fact: "app_opened", window_periods: WINDOW, metric: "active_periods" },
    salt: "bench",
  });
  const assigned = await executeCampaignAssignment(ctx, created.id, created.version);
  if (assigned.status !== "ready") throw new Error(`assignment ${assigned.status}: ${assigned.error ?? ""}`);
  return created.id;
});
const campaign = await getCampaign(ctx, campaignId);
// The campaign's jobs queued at creation are not part of the figures: drop them.
await ctx.queues.campaigns.obliterate({ force: true }).catch(() => {});
log(`split: ${fmtInt(campaign.counts.treatment)} treatment, ${fmtInt(campaign.counts.control)} control`);
figures.list = { members: list.member_count, materialize_s: +(tList / 1000).toFixed(1) };
figures.assignment = { users: campaign.counts.total, treatment: campaign.counts.treatment, control: campaign.counts.control, seconds: +(tAssign / 1000).toFixed(2) };
row(`assignment frozen (${fmtInt(campaign.counts.total)} users, SQL sha256)`, sec(tAssign));

// ---------------------------------------------------------------- 3. the window, processed; results
// A small true effect: treatment users are a little more likely to be active in the window.
await pool.query(`UPDATE bench_user_param p SET boost = 0.02 FROM campaign_assignment a WHERE a.campaign_id = $1 AND a.user_key = p.u AND a.arm = 'treatment'`, [campaign.id]);
const [postRows] = await timed(`activity of days ${LAUNCH_X}–${DAYS - 1} (treatment +2 pp a day)`, () => insertDays(LAUNCH_X, DAYS - 1));
await pool.query(`VACUUM (ANALYZE) activity_day`);
for (const q of ctx.queues.all()) await q.obliterate({ force: true }).catch(() => {});
// Workers run the results jobs the runs' hook queues. Runs are recorded and executed here with the same
// domain function a worker calls (not queued, so no worker races for them).
const workers = startWorkers(ctx, { info() {}, error() {} });
async function runThrough(x: number) {
  const run = await ctx.db.prisma.processingRun.create({ data: { id: randomUUID(), factId: fact.id, status: "queued", throughDate: new Date(`${dateOf(x)}T00:00:00Z`), trigger: "bench" } });
  const t0 = performance.now();
  const done = await executeRun(ctx, run.id);
  const processedAt = performance.now();
  const version = (await ctx.db.prisma.campaign.findUniqueOrThrow({ where: { id: campaign.id } })).dataVersion;
  for (;;) {
    const r = await pool.query<{ data_version: number; duration_ms: number }>(`SELECT data_version, duration_ms FROM campaign_result WHERE campaign_id = $1`, [campaign.id]);
    if ((r.rows[0]?.data_version ?? -1) >= version) return { runMs: processedAt - t0, afterMs: ms(processedAt), jobMs: r.rows[0]!.duration_ms, timings: done.timings, from: done.from };
    if (ms(processedAt) > 180_000) throw new Error("the results job did not finish in 3 minutes");
    await new Promise((res) => setTimeout(res, 10));
  }
}
// Days 46–58 in one run (the window so far), then day 59 alone: the daily run whose results are timed.
const catchUp = await runThrough(DAYS - 2);
log(`processing run of days ${LAUNCH_X}–${DAYS - 2}: ${sec(catchUp.runMs)}; results stored ${sec(catchUp.afterMs)} later (job ${catchUp.jobMs} ms, most members touched)`);
// The catch-up rewrote most members' rows; between two daily runs autovacuum has long reclaimed them
// (and the next day's updates are HOT again): do here what it would have done.
await pool.query(`VACUUM (ANALYZE) campaign_assignment`);
const daily = await runThrough(DAYS - 1);
log(`daily processing run of day ${DAYS - 1} (${dateOf(DAYS - 1)}): ${sec(daily.runMs)} ${JSON.stringify(daily.timings)}`);
log(`results stored by the job ${sec(daily.afterMs)} after the layer was processed (job ${daily.jobMs} ms)`);
const computeRuns: number[] = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  await computeAndStoreResults(ctx, campaign.id);
  computeRuns.push(ms(t0));
}
// From scratch: every member's window and covariate days recomputed from the islands, then the results.
await pool.query(`UPDATE campaign SET metrics_full_refresh = true WHERE id = $1`, [campaign.id]);
const [, tScratch] = await timed("results from scratch (every member recomputed from the layer)", () => computeAndStoreResults(ctx, campaign.id));
const stored = await pool.query<{ result: Record<string, any> }>(`SELECT result FROM campaign_result WHERE campaign_id = $1`, [campaign.id]);
const res = stored.rows[0]!.result;
const g = res.goal;
log(
  `goal: treatment ${g.groups.treatment.mean.toFixed(4)} vs control ${g.groups.control.mean.toFixed(4)} active days; lift ${g.absolute_lift.toFixed(4)} ` +
    `[${g.absolute_ci95.map((v: number) => v.toFixed(4)).join(", ")}], p = ${g.p_value.toExponential(2)}; CUPED lift ${g.cuped.absolute_lift.toFixed(4)} ` +
    `[${g.cuped.absolute_ci95.map((v: number) => v.toFixed(4)).join(", ")}], θ = ${g.cuped.theta.toFixed(3)}; SRM p = ${res.srm.p_value.toFixed(3)} (${res.srm.flagged ? "FLAGGED" : "ok"})`,
);
figures.window = {
  activity_rows: postRows,
  catch_up_run: { days: `${LAUNCH_X}-${DAYS - 2}`, processing_s: +(catchUp.runMs / 1000).toFixed(2), results_after_ms: Math.round(catchUp.afterMs), job_ms: catchUp.jobMs },
  daily_run: { day: DAYS - 1, processing_s: +(daily.runMs / 1000).toFixed(2), timings_ms: daily.timings },
};
figures.results = {
  after_daily_processing_ms: Math.round(daily.afterMs),
  job_compute_ms: daily.jobMs,
  compute_runs_ms: computeRuns.map(Math.round),
  compute_median_ms: Math.round(median(computeRuns)),
  from_scratch_ms: Math.round(tScratch),
  goal: { treatment: g.groups.treatment, control: g.groups.control, absolute_lift: g.absolute_lift, absolute_ci95: g.absolute_ci95, p_value: g.p_value, cuped: g.cuped },
  srm: res.srm,
  window: res.window,
};
row(`results stored after the daily run is processed (job, ${fmtInt(campaign.counts.total)} users, ${WINDOW}-day window)`, sec(daily.afterMs), "≤ 3 s", daily.afterMs <= 3000);
row(`results computation, nothing new to fold in (median of 3)`, sec(median(computeRuns)), "≤ 3 s", median(computeRuns) <= 3000);
row(`results after a run of ${WINDOW - 1} window days at once`, sec(catchUp.afterMs));
row(`results from scratch (every member recomputed from the layer)`, sec(tScratch));

// ---------------------------------------------------------------- 4. export over HTTP
const app = await buildApp(ctx);
await app.listen({ host: "127.0.0.1", port: 0 });
const exportFigures = await (async () => {
  const port = (app.server.address() as AddressInfo).port;
  const { key } = await createApiKey(ctx.db.prisma, { name: "bench", scopes: ["read"] });
  const runOnce = async (accept: string) => {
    const t0 = performance.now();
    const r = await fetch(`http://127.0.0.1:${port}/v1/campaigns/${campaign.id}/assignments`, { headers: { authorization: `Bearer ${key}`, accept } });
    if (r.status !== 200) throw new Error(`export: HTTP ${r.status} ${await r.text()}`);
    const reader = r.body!.getReader();
    let bytes = 0, lines = 0, first: string | null = null;
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      if (first === null) first = Buffer.from(value).toString("utf8").split("\n")[0]!;
      bytes += value.length;
      for (let i = 0; i < value.length; i++) if (value[i] === 10) lines++;
    }
    return { ms: ms(t0), lines, bytes, first };
  };
  await runOnce("application/x-ndjson"); // warm
  const nd = [await runOnce("application/x-ndjson"), await runOnce("application/x-ndjson")];
  const best = nd.reduce((a, b) => (a.ms < b.ms ? a : b));
  const csv = await runOnce("text/csv");
  return { ndjson: best, csv };
})();
await app.close();
const ndRate = exportFigures.ndjson.lines / (exportFigures.ndjson.ms / 1000);
const csvRate = (exportFigures.csv.lines - 1) / (exportFigures.csv.ms / 1000);
log(`NDJSON export: ${fmtInt(exportFigures.ndjson.lines)} rows in ${sec(exportFigures.ndjson.ms)}; first row ${exportFigures.ndjson.first}`);
figures.export = {
  ndjson: { rows: exportFigures.ndjson.lines, seconds: +(exportFigures.ndjson.ms / 1000).toFixed(2), rows_per_s: Math.round(ndRate), mb: +(exportFigures.ndjson.bytes / 1024 / 1024).toFixed(1) },
  csv: { rows: exportFigures.csv.lines - 1, seconds: +(exportFigures.csv.ms / 1000).toFixed(2), rows_per_s: Math.round(csvRate) },
};
row(`assignment export, HTTP NDJSON (${fmtInt(exportFigures.ndjson.lines)} rows)`, `${fmtInt(ndRate)} rows/s (${sec(exportFigures.ndjson.ms)})`, "≥ 300,000 rows/s", ndRate >= 300_000);
row(`assignment export, HTTP CSV`, `${fmtInt(csvRate)} rows/s (${sec(exportFigures.csv.ms)})`);

// ---------------------------------------------------------------- report
await workers.close();
for (const q of ctx.queues.all()) await q.obliterate({ force: true }).catch(() => {});
const totalS = ms(benchStart) / 1000;
figures.total_run_s = Math.round(totalS);
console.log("");
console.log(`Campaigns benchmark — ${machine.cpus} × ${machine.cpu_model}, ${machine.memory_gb} GB RAM, node ${machine.node}, ${machine.postgres}`);
printFigures((r) => r.pass === null ? "" : !FULL_SIZE ? "n/a (small run)" : r.pass ? "PASS" : "FAIL");
console.log(`total run: ${totalS.toFixed(0)} s`);

const out = { bench: "campaigns", date: new Date().toISOString(), machine, options: { users: USERS, days: DAYS, window_days: WINDOW, holdout_percent: HOLDOUT, full_size: FULL_SIZE }, figures, table: rows };
const outDir = path.join(HERE, "results");
mkdirSync(outDir, { recursive: true });
const outFile = path.join(outDir, FULL_SIZE ? "campaigns.json" : "campaigns-small.json");
writeFileSync(outFile, JSON.stringify(out, null, 2) + "\n");
log(`wrote ${path.relative(process.cwd(), outFile)}`);
await ctx.close();
if (!KEEP) await admin(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
process.exit(0);
