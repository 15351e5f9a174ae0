/**
 * `npm run bench -- activation [--users N] [--days D] [--no-baselines] [--no-flat] [--keep]`
 *
 * The activation layer at scale on this machine, in one run, on a dedicated database
 * (aa_bench_activation, dropped and recreated): a synthetic log of N users over D days generated
 * set-based in PostgreSQL (bench/activation/generate.ts), then
 *   - the initial build of every grain (processFact from nothing),
 *   - one more day, late events 30 days back,
 *   - storage of the layer next to the plain (user, date) activity table,
 *   - the status of one period for all users streamed through the HTTP API as NDJSON,
 *   - two full recomputations of the layer for comparison: hand-written PostgreSQL and DuckDB,
 *   - one more day with D/2 and 2·D days of history of the same users (flat cost).
 * Prints a table of figures, targets and pass/fail; writes bench/results/activation.json.
 */
import { adminQuery, calibrate, timedWith, databaseUrlFor, figureTable } from "./common.js";
import os from "node:os";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import "../src/db/client.js"; // pg type parsers (DATE as text, int8 as number) the engine relies on
import { migrateDatabase } from "../src/db/migrate.js";
import { processFact } from "../src/activation/postgres/process.js";
import { ingestEventBatch } from "../src/activation/postgres/ingest.js";
import { withTransaction } from "../src/activation/postgres/tx.js";
import { GRAIN_CODE, periodOfDate, type Grain } from "../src/activation/periods.js";
import type { FactRef } from "../src/activation/engine.js";
import { copyActivity, createUsersAndParams, dateOfX, insertActivity, lateEvents } from "./activation/generate.js";
import { BASELINE_GRAINS, baselineSteps, comparedColumns, dropSql, statusCompareColumns } from "./activation/baseline-sql.js";
import { statusColumnsSql } from "../src/activation/postgres/status-sql.js";
import { streamStatus } from "./activation/stream.js";

// ---------------------------------------------------------------- options
function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}
const flag = (name: string) => process.argv.includes(`--${name}`);
const USERS = Number(opt("users") ?? 1_000_000);
const DAYS = Number(opt("days") ?? 180);
const LATE_DAYS_BACK = 30;
const LATE_EVENTS = Number(opt("late") ?? Math.max(100, Math.round(USERS / 200))); // 5,000 at 1M users
const RUN_BASELINES = !flag("no-baselines");
const RUN_FLAT = !flag("no-flat");
const FULL_SIZE = USERS >= 1_000_000 && DAYS >= 180;
if (!Number.isInteger(USERS) || USERS < 100 || !Number.isInteger(DAYS) || DAYS < 40) {
  console.error("usage: npm run bench -- activation [--users N (>= 100)] [--days D (>= 40)] [--no-baselines] [--no-flat] [--keep]");
  process.exit(2);
}
const SHORT_DAYS = Math.round(DAYS / 2);
const LONG_DAYS = DAYS * 2;

const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const DB_NAME = "aa_bench_activation";
const DB_URL = databaseUrlFor(ADMIN_URL, DB_NAME);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXPORT_FILE = path.join(os.tmpdir(), "aa_bench_activation_activity.csv");

// ---------------------------------------------------------------- helpers
const ms = (t0: number) => performance.now() - t0;
const sec = (v: number) => `${(v / 1000).toFixed(2)} s`;
const fmtInt = (v: number) => Math.round(v).toLocaleString("en-US");
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const timed = <T>(label: string, fn: () => Promise<T>) => timedWith(fn, (t) => log(`${label}: ${sec(t)}`));

const admin = (sql: string) => adminQuery(ADMIN_URL, sql);

async function createFactRow(pool: pg.Pool, name: string): Promise<FactRef> {
  const r = await pool.query<{ id: number }>(`INSERT INTO fact (name, timezone) VALUES ($1, 'UTC') RETURNING id`, [name]);
  return { id: r.rows[0]!.id, name, timezone: "UTC" };
}

async function vacuumAnalyze(pool: pg.Pool, tables: string[]) {
  for (const t of tables) await pool.query(`VACUUM (ANALYZE) ${t}`);
}

// Other work on the machine skews every figure: the 1-minute load average is kept beside each run.
const load = () => +os.loadavg()[0]!.toFixed(2);
async function process_(pool: pg.Pool, fact: FactRef, x: number) {
  const load_before = load();
  const t0 = performance.now();
  const r = await processFact(pool, fact, dateOfX(x));
  return { ms: ms(t0), from: r.from, timings: r.timings, load_before };
}

const mb = (bytes: number) => bytes / 1024 / 1024;

// ---------------------------------------------------------------- figures
const { rows, row, print: printFigures } = figureTable();
const results: Record<string, unknown> = {};

// ---------------------------------------------------------------- run
const benchStart = performance.now();
const loadAtStart = os.loadavg();
log(`activation bench: ${fmtInt(USERS)} users, ${DAYS} days (flat history: ${SHORT_DAYS} vs ${LONG_DAYS} days) on ${DB_NAME}`);
await admin(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
await migrateDatabase(DB_URL);
const pool = new pg.Pool({ connectionString: DB_URL, max: 6 });
pool.on("error", () => {});

const machine = await (async () => {
  const v = await pool.query<{ version: string }>(`SELECT version()`);
  const settings = await pool.query<{ name: string; v: string }>(
    `SELECT name, current_setting(name) AS v FROM pg_settings
     WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_parallel_workers_per_gather', 'max_wal_size', 'wal_compression')
     ORDER BY name`,
  );
  return {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? "unknown",
    memory_gb: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    postgres: v.rows[0]!.version.split(" on ")[0],
    postgres_settings: Object.fromEntries(settings.rows.map((s) => [s.name, s.v])),
  };
})();
log(`machine: ${machine.cpus} × ${machine.cpu_model}, ${machine.memory_gb} GB, node ${machine.node}, ${machine.postgres}`);
const calibration = await calibrate(pool);
log(`calibration (fixed PostgreSQL work; lower is faster): cpu ${calibration.cpu_ms} ms, write ${calibration.write_ms} ms`);

// 1. data
const gen = await (async () => {
  const c = await pool.connect();
  try {
    await c.query(`SET work_mem = '1GB'`);
    const [, tUsers] = await timed("users and their parameters", () => createUsersAndParams(c, USERS));
    const main = await createFactRow(pool, "bench_main");
    const [rowsMain, tAct] = await timed(`activity of ${DAYS} days`, () => insertActivity(pool, main.id, -DAYS, -1, 2));
    return { main, tUsers, tAct, rowsMain };
  } finally {
    c.release();
  }
})();
const { main } = gen;
const [, tVac] = await timed("VACUUM ANALYZE activity_day", () => vacuumAnalyze(pool, ["activity_day", "app_user"]));
const lastDayActives = Number(
  (await pool.query(`SELECT count(*) AS n FROM activity_day WHERE fact_id = $1 AND activity_date = $2`, [main.id, dateOfX(-1)])).rows[0].n,
);
log(`generated ${fmtInt(gen.rowsMain)} active user-days; ${fmtInt(lastDayActives)} actives on the last day`);
results.data = {
  users: USERS, days: DAYS, active_user_days: gen.rowsMain, last_day_actives: lastDayActives,
  generate_s: +((gen.tUsers + gen.tAct + tVac) / 1000).toFixed(1),
};
row("synthetic log", `${fmtInt(USERS)} users × ${DAYS} d: ${fmtInt(gen.rowsMain)} active user-days, ${fmtInt(lastDayActives)} actives last day`);

// 2. initial build
log("initial build of every grain ...");
const build = await process_(pool, main, -1);
log(`initial build: ${sec(build.ms)} ${JSON.stringify(build.timings)}`);
const islandCounts = Object.fromEntries(
  (await pool.query<{ grain: number; n: number }>(`SELECT grain, count(*) AS n FROM layer_island WHERE fact_id = $1 GROUP BY grain ORDER BY grain`, [main.id])).rows.map(
    (r) => [["day", "week", "month"][r.grain]!, Number(r.n)],
  ),
);
const usersSeen = islandCounts.users_with_activity = Number(
  (await pool.query(`SELECT count(*) AS n FROM layer_island WHERE fact_id = $1 AND grain = 0 AND next_start IS NULL`, [main.id])).rows[0].n,
);
(results.data as Record<string, unknown>).users_with_activity = usersSeen;
await timed("VACUUM ANALYZE layer tables", () => vacuumAnalyze(pool, ["layer_latest_pack", "layer_latest_first", "layer_closed_pack", "layer_metric"]));
results.initial_build = { seconds: +(build.ms / 1000).toFixed(2), timings_ms: build.timings, islands: islandCounts, load_before: build.load_before };
row("initial build, all grains", sec(build.ms), "≤ 180 s", FULL_SIZE ? build.ms <= 180_000 : null);

// 3. one more day
const dayRows = await insertActivity(pool, main.id, 0, 0);
const day = await process_(pool, main, 0);
log(`one more day (${fmtInt(dayRows)} actives): ${sec(day.ms)} ${JSON.stringify(day.timings)}`);
results.one_more_day = { seconds: +(day.ms / 1000).toFixed(3), actives: dayRows, timings_ms: day.timings, fraction_of_build: day.ms / build.ms, load_before: day.load_before };
row(`one more day (${fmtInt(dayRows)} actives)`, sec(day.ms), "≤ 1.5 s", FULL_SIZE ? day.ms <= 1500 : null);
row("  one more day / initial build", `1/${(build.ms / day.ms).toFixed(0)}`, "≤ 1/40", build.ms / day.ms >= 40);

// 4. late events
const late = await (async () => {
  const c = await pool.connect();
  try {
    const events = await lateEvents(c, main.id, -LATE_DAYS_BACK, LATE_EVENTS);
    return events;
  } finally {
    c.release();
  }
})();
const [, tIngestLate] = await timed(`ingest ${late.length} late events dated ${dateOfX(-LATE_DAYS_BACK)}`, () =>
  withTransaction(pool, (c) => ingestEventBatch(c, main, late)),
);
const lateRun = await process_(pool, main, 0);
log(`reprocessing from ${lateRun.from}: ${sec(lateRun.ms)} ${JSON.stringify(lateRun.timings)}`);
results.late_events = {
  events: late.length, dated: dateOfX(-LATE_DAYS_BACK), from: lateRun.from, seconds: +(lateRun.ms / 1000).toFixed(3),
  ratio_to_one_day: lateRun.ms / day.ms, timings_ms: lateRun.timings, ingest_ms: Math.round(tIngestLate),
};
row(`late events, ${late.length} rows ${LATE_DAYS_BACK} d back`, `${sec(lateRun.ms)} = ${(lateRun.ms / day.ms).toFixed(1)} × one day`, "≤ 30 × one day", lateRun.ms <= 30 * day.ms);

// 5. storage (only the main fact exists at this point)
const storage = await (async () => {
  // A partitioned table's size is its partitions' (the parent itself holds nothing); pg_partition_tree
  // lists nothing for a plain table.
  const sizeBy = async (fn: "pg_total_relation_size" | "pg_table_size", rel: string) =>
    Number(
      (await pool.query(`SELECT COALESCE((SELECT sum(${fn}(relid)) FROM pg_partition_tree($1)), ${fn}($1)) AS s`, [rel])).rows[0].s,
    );
  const size = (rel: string) => sizeBy("pg_total_relation_size", rel);
  const heap = (rel: string) => sizeBy("pg_table_size", rel);
  // The islands: the packs the layer_island view decodes.
  const packs = ["layer_latest_pack", "layer_latest_first", "layer_closed_pack"];
  const island = (await Promise.all(packs.map(size))).reduce((a, b) => a + b, 0), metric = await size("layer_metric");
  const counts = (await size("layer_start_count")) + (await size("layer_end_count"));
  const activity = await size("activity_day");
  return {
    layer_island_mb: mb(island), layer_island_heap_mb: mb((await Promise.all(packs.map(heap))).reduce((a, b) => a + b, 0)), layer_counts_mb: mb(counts), layer_metric_mb: mb(metric),
    layer_mb: mb(island + counts + metric), activity_day_mb: mb(activity), activity_day_heap_mb: mb(await heap("activity_day")),
    ratio: (island + counts + metric) / activity,
  };
})();
log(`storage: layer ${storage.layer_mb.toFixed(0)} MB (islands ${storage.layer_island_mb.toFixed(0)} MB, island counts ${storage.layer_counts_mb.toFixed(2)} MB, metrics ${storage.layer_metric_mb.toFixed(2)} MB), activity_day ${storage.activity_day_mb.toFixed(0)} MB`);
results.storage = { ...storage, method: "pg_total_relation_size (heap + indexes + toast, over every partition) with only the measured fact in the database" };
row("storage: layer (islands, their counts, metrics)", `${storage.layer_mb.toFixed(0)} MB = ${storage.ratio.toFixed(2)} × activity_day (${storage.activity_day_mb.toFixed(0)} MB)`, "≤ 2×", storage.ratio <= 2);

// 6. status of one period for all users through the API
const stream = await streamStatus(DB_URL, REDIS_URL, main.name, dateOfX(0));
const rowsPerSec = stream.rows / (stream.ms / 1000);
log(`status stream: ${fmtInt(stream.rows)} rows, ${(stream.bytes / 1e6).toFixed(1)} MB in ${sec(stream.ms)} (${fmtInt(rowsPerSec)} rows/s), RSS ${stream.rss_before_mb.toFixed(0)} → peak ${stream.rss_peak_mb.toFixed(0)} MB`);
results.status_stream = { ...stream, rows_per_s: rowsPerSec, period: dateOfX(0), grain: "day", note: "second of two identical requests, pulled by curl in a process of its own; RSS of the bench process (the server)" };
row(`status stream (NDJSON, ${fmtInt(stream.rows)} rows)`, `${fmtInt(rowsPerSec)} rows/s (${sec(stream.ms)}, peak RSS ${stream.rss_peak_mb.toFixed(0)} MB)`, "≥ 500,000 rows/s", rowsPerSec >= 500_000);

// 7. baselines
const T = dateOfX(0);
async function ourMetrics(g: number, from: number, to: number) {
  const r = await pool.query(`SELECT * FROM layer_metric WHERE fact_id = $1 AND grain = $2 AND period BETWEEN $3 AND $4 ORDER BY period`, [main.id, g, from, to]);
  return r.rows as Array<Record<string, number>>;
}
function compare(label: string, g: number, ours: Array<Record<string, number>>, theirs: Array<Record<string, number>>) {
  const cols = comparedColumns(g);
  const byP = new Map(theirs.map((r) => [Number(r.period), r]));
  const diffs: string[] = [];
  for (const o of ours) {
    const t = byP.get(Number(o.period));
    if (!t) {
      diffs.push(`period ${o.period} missing`);
      continue;
    }
    for (const c of cols) if (Number(o[c]) !== Number(t[c])) diffs.push(`period ${o.period} ${c}: ours ${o[c]} vs ${t[c]}`);
  }
  if (ours.length === 0) diffs.push("no rows");
  log(`${label}: ${diffs.length === 0 ? `agrees on ${ours.length} periods × ${cols.length} metrics` : `DISAGREES: ${diffs.slice(0, 5).join("; ")}`}`);
  return { periods: ours.length, metrics: cols.length, agree: diffs.length === 0, diffs: diffs.slice(0, 20) };
}
const lastPeriods = (grain: Grain) => {
  const Tp = periodOfDate(grain, T);
  return { Tp, from: Tp - 6 };
};

if (RUN_BASELINES) {
  // (a) hand-written PostgreSQL
  const pgBase = await (async () => {
    const c = await pool.connect();
    const steps: Record<string, number> = {};
    const agreement: Record<string, unknown> = {};
    const statusAgreement: Record<string, { users: number; differing: number }> = {};
    let statusDaySize = 0, statusDayRows = 0;
    try {
      // What a nightly batch job would set for itself (the engine's runs get the same memory).
      await c.query(`SET work_mem = '1GB'`);
      await c.query(`SET maintenance_work_mem = '1GB'`);
      for (const { grain } of BASELINE_GRAINS) for (const s of dropSql(grain)) await c.query(s);
      const t0 = performance.now();
      for (const { grain, g } of BASELINE_GRAINS) {
        const src = `(SELECT user_key, activity_date FROM activity_day WHERE fact_id = ${main.id} AND activity_date <= DATE '${T}') src`;
        for (const step of baselineSteps("postgres", g, grain, periodOfDate(grain, T), src)) {
          const [, t] = await timed(`baseline PostgreSQL ${grain} ${step.name}`, () => c.query(step.sql));
          steps[`${grain}_${step.name}_ms`] = Math.round(t);
        }
      }
      const total = ms(t0);
      for (const { grain, g } of BASELINE_GRAINS) {
        const { Tp, from } = lastPeriods(grain);
        const theirs = (await c.query(`SELECT * FROM bl_metric_${grain} WHERE period BETWEEN $1 AND $2 ORDER BY period`, [from, Tp])).rows;
        agreement[grain] = compare(`baseline PostgreSQL vs layer, ${grain}`, g, await ourMetrics(g, from, Tp), theirs);
      }
      // Every status field of every user, as the layer derives it from the islands, against the
      // baseline's status table: at the last period and at an earlier one, at every grain.
      for (const { grain, g } of BASELINE_GRAINS) {
        const Tp = periodOfDate(grain, T);
        for (const P of [Tp, Tp - ({ day: 10, week: 4, month: 2 } as const)[grain]]) {
          const cols = statusCompareColumns(g);
          const r = await c.query(
            `SELECT count(*) AS rows, count(*) FILTER (WHERE o.user_key IS NULL OR b.user_key IS NULL OR ${cols.map((k) => `o.${k} IS DISTINCT FROM b.${k}`).join(" OR ")}) AS diff
             FROM (SELECT i.user_key, ${statusColumnsSql("i", String(P), g)} FROM layer_island i
                   WHERE i.fact_id = ${main.id} AND i.grain = ${g} AND i.start_p <= ${P} AND (i.next_start IS NULL OR i.next_start > ${P})) o
             FULL JOIN (SELECT * FROM bl_status_${grain} WHERE period = ${P}) b ON b.user_key = o.user_key`,
          );
          const { rows: n, diff } = r.rows[0];
          statusAgreement[`${grain}_${P}`] = { users: Number(n), differing: Number(diff) };
          log(`status of every user, ${grain} period ${P}: ${Number(diff) === 0 ? `agrees (${fmtInt(Number(n))} users × ${cols.length} fields)` : `${diff} of ${n} users DIFFER`}`);
        }
      }
      statusDaySize = Number((await c.query(`SELECT pg_total_relation_size('bl_status_day') AS s`)).rows[0].s);
      statusDayRows = Number((await c.query(`SELECT count(*) AS n FROM bl_status_day`)).rows[0].n);
      for (const { grain } of BASELINE_GRAINS) for (const s of dropSql(grain)) await c.query(s);
      return { ms: total, steps, agreement, statusAgreement, status_day_mb: mb(statusDaySize), status_day_rows: statusDayRows };
    } finally {
      c.release();
    }
  })();
  log(`baseline PostgreSQL: ${sec(pgBase.ms)}; its day-grain status table: ${fmtInt(pgBase.status_day_rows)} rows, ${pgBase.status_day_mb.toFixed(0)} MB`);

  // (b) DuckDB in-process
  const duck = await (async () => {
    const { DuckDBInstance } = await import("@duckdb/node-api");
    rmSync(EXPORT_FILE, { force: true });
    const [, tExport] = await timed("export activity to CSV (COPY)", () =>
      pool.query(
        `COPY (SELECT user_key, activity_date - DATE '1970-01-01' AS day FROM activity_day WHERE fact_id = ${main.id} AND activity_date <= DATE '${T}')
         TO '${EXPORT_FILE}' WITH (FORMAT csv)`,
      ),
    );
    const instance = await DuckDBInstance.create(":memory:", { threads: String(os.cpus().length) });
    const conn = await instance.connect();
    const steps: Record<string, number> = {};
    const agreement: Record<string, unknown> = {};
    try {
      const [, tLoad] = await timed("DuckDB load", () =>
        conn.run(`CREATE TABLE activity AS SELECT * FROM read_csv('${EXPORT_FILE}', header = false, columns = {'user_key': 'INTEGER', 'day': 'INTEGER'})`),
      );
      const t0 = performance.now();
      for (const { grain, g } of BASELINE_GRAINS) {
        for (const step of baselineSteps("duckdb", g, grain, periodOfDate(grain, T), "activity")) {
          const [, t] = await timed(`baseline DuckDB ${grain} ${step.name}`, () => conn.run(step.sql));
          steps[`${grain}_${step.name}_ms`] = Math.round(t);
        }
      }
      const tCompute = ms(t0);
      for (const { grain, g } of BASELINE_GRAINS) {
        const { Tp, from } = lastPeriods(grain);
        const reader = await conn.runAndReadAll(`SELECT * FROM bl_metric_${grain} WHERE period BETWEEN ${from} AND ${Tp} ORDER BY period`);
        const theirs = reader.getRowObjectsJS().map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])));
        agreement[grain] = compare(`baseline DuckDB vs layer, ${grain}`, g, await ourMetrics(g, from, Tp), theirs);
      }
      return { export_ms: tExport, load_ms: tLoad, compute_ms: tCompute, steps, agreement };
    } finally {
      conn.closeSync();
      instance.closeSync();
      rmSync(EXPORT_FILE, { force: true });
    }
  })();
  const duckTotal = duck.export_ms + duck.load_ms + duck.compute_ms;
  log(`baseline DuckDB: export ${sec(duck.export_ms)}, load ${sec(duck.load_ms)}, compute ${sec(duck.compute_ms)}`);
  const agreeAll = (a: Record<string, unknown>) => Object.values(a).every((x) => (x as { agree: boolean }).agree);
  results.baselines = {
    postgres: { seconds: +(pgBase.ms / 1000).toFixed(1), steps_ms: pgBase.steps, agreement: pgBase.agreement, status_agreement: pgBase.statusAgreement, status_day_rows: pgBase.status_day_rows, status_day_mb: pgBase.status_day_mb, vs_one_more_day: pgBase.ms / day.ms },
    duckdb: {
      seconds: +(duckTotal / 1000).toFixed(1), export_s: +(duck.export_ms / 1000).toFixed(1), load_s: +(duck.load_ms / 1000).toFixed(1),
      compute_s: +(duck.compute_ms / 1000).toFixed(1), steps_ms: duck.steps, agreement: duck.agreement,
      vs_one_more_day: duckTotal / day.ms, compute_vs_one_more_day: duck.compute_ms / day.ms,
    },
  };
  row("baseline (a) PostgreSQL SQL, full layer", `${sec(pgBase.ms)} = ${(pgBase.ms / day.ms).toFixed(0)} × our one more day`, "daily path ≪", pgBase.ms >= 10 * day.ms);
  row("  metrics agree with the layer (last 7 periods)", agreeAll(pgBase.agreement) ? "yes, every grain" : "NO", "yes", agreeAll(pgBase.agreement));
  const statusOk = Object.values(pgBase.statusAgreement).every((x) => x.differing === 0);
  row("  status of every user agrees (2 periods × 3 grains)", statusOk ? "yes, every field" : "NO", "yes", statusOk);
  row("  its users × days status table", `${fmtInt(pgBase.status_day_rows)} rows, ${pgBase.status_day_mb.toFixed(0)} MB = ${(pgBase.status_day_mb / storage.activity_day_mb).toFixed(1)} × activity_day`);
  row(
    "baseline (b) DuckDB, full layer",
    `${sec(duckTotal)} (export ${sec(duck.export_ms)} + load ${sec(duck.load_ms)} + compute ${sec(duck.compute_ms)}) = ${(duckTotal / day.ms).toFixed(0)} × our one more day`,
    "daily path ≪",
    duckTotal >= 10 * day.ms,
  );
  row("  DuckDB compute alone", `${sec(duck.compute_ms)} = ${(duck.compute_ms / day.ms).toFixed(0)} × our one more day`);
  row("  metrics agree with the layer (last 7 periods)", agreeAll(duck.agreement) ? "yes, every grain" : "NO", "yes", agreeAll(duck.agreement));
}

// 8. flat history: the same users with DAYS/2 and DAYS*2 days of history
if (RUN_FLAT) {
  const short = await createFactRow(pool, "bench_short");
  const long = await createFactRow(pool, "bench_long");
  // The same users and days as the main fact: its rows are copied (but for the day that got late
  // events), the days before its history are generated.
  const lateX = [-LATE_DAYS_BACK];
  await timed(`activity of ${SHORT_DAYS} days (copied)`, () => copyActivity(pool, main.id, short.id, -SHORT_DAYS, -1, lateX));
  await timed(`activity of ${LONG_DAYS} days (${LONG_DAYS - DAYS} generated, ${DAYS} copied)`, async () => {
    await insertActivity(pool, long.id, -LONG_DAYS, -DAYS - 1, 2);
    await copyActivity(pool, main.id, long.id, -DAYS, -1, lateX);
  });
  await timed("VACUUM ANALYZE activity_day", () => vacuumAnalyze(pool, ["activity_day"]));
  const bShort = await process_(pool, short, -1);
  log(`initial build, ${SHORT_DAYS} days: ${sec(bShort.ms)}`);
  const bLong = await process_(pool, long, -1);
  log(`initial build, ${LONG_DAYS} days: ${sec(bLong.ms)}`);
  await timed("VACUUM ANALYZE layer tables", () => vacuumAnalyze(pool, ["layer_latest_pack", "layer_latest_first", "layer_closed_pack", "layer_metric"]));
  const tShort: number[] = [], tLong: number[] = [], actives: number[] = [];
  for (let x = 0; x < 3; x++) {
    for (const [f, out] of [[short, tShort], [long, tLong]] as const) {
      // x = 0 is already in the main fact (with no late rows): copied; later days generated.
      const n = x === 0 ? await copyActivity(pool, main.id, f.id, 0, 0) : await insertActivity(pool, f.id, x, x);
      if (f === short) actives.push(n);
      const r = await process_(pool, f, x);
      out.push(r.ms);
      log(`one more day ${dateOfX(x)} with ${f === short ? SHORT_DAYS : LONG_DAYS} days of history (${fmtInt(n)} actives): ${sec(r.ms)} ${JSON.stringify(r.timings)}`);
    }
  }
  const mShort = median(tShort), mLong = median(tLong);
  results.flat_history = {
    short_days: SHORT_DAYS, long_days: LONG_DAYS, actives_per_day: actives,
    short_runs_ms: tShort.map(Math.round), long_runs_ms: tLong.map(Math.round), short_median_ms: mShort, long_median_ms: mLong, ratio: mLong / mShort,
    initial_build_s: { [SHORT_DAYS]: +(bShort.ms / 1000).toFixed(1), [LONG_DAYS]: +(bLong.ms / 1000).toFixed(1) },
  };
  row(`one more day, ${SHORT_DAYS} d of history (median of 3)`, sec(mShort));
  row(`one more day, ${LONG_DAYS} d of history (median of 3)`, `${sec(mLong)} = ${(mLong / mShort).toFixed(2)} × ${SHORT_DAYS} d`, "≤ 1.2 ×", mLong <= 1.2 * mShort);
}

// ---------------------------------------------------------------- report
const totalS = ms(benchStart) / 1000;
results.total_run_s = +totalS.toFixed(0);
results.load_average = { at_start: loadAtStart.map((v) => +v.toFixed(2)), at_end: os.loadavg().map((v) => +v.toFixed(2)) };
console.log("");
console.log(`Activation layer benchmark — ${machine.cpus} × ${machine.cpu_model}, ${machine.memory_gb} GB RAM, node ${machine.node}, ${machine.postgres}`);
console.log(`PostgreSQL settings: ${Object.entries(machine.postgres_settings).map(([k, v]) => `${k}=${v}`).join(", ")}`);
console.log(`calibration at the start (see bench/common.ts calibrate): cpu ${calibration.cpu_ms} ms, write ${calibration.write_ms} ms`);
printFigures((r) => r.pass === null ? (r.target ? "n/a (small run)" : "") : r.pass ? "PASS" : "FAIL");
console.log(`total run: ${totalS.toFixed(0)} s; load average (1/5/15 min) at start ${loadAtStart.map((v) => v.toFixed(1)).join("/")}, at end ${os.loadavg().map((v) => v.toFixed(1)).join("/")} on ${machine.cpus} CPUs`);

const out = {
  bench: "activation",
  date: new Date().toISOString(),
  machine: { ...machine, calibration },
  options: { users: USERS, days: DAYS, late_events: LATE_EVENTS, full_size: FULL_SIZE },
  figures: results,
  table: rows,
};
const outDir = path.join(HERE, "results");
mkdirSync(outDir, { recursive: true });
const outFile = path.join(outDir, FULL_SIZE ? "activation.json" : "activation-small.json");
writeFileSync(outFile, JSON.stringify(out, null, 2) + "\n");
log(`wrote ${path.relative(process.cwd(), outFile)}`);
await pool.end();
if (!flag("keep")) await admin(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
