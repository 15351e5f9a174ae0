/**
 * `npm run bench -- audiences [--users N] [--days D] [--keep]`
 *
 * Audiences at scale on a dedicated database (aa_bench_audiences): the activation bench's synthetic
 * log (1M users × 180 days by default; bench/activation/generate.ts) for app_opened, and a third of
 * it as chat_sent; both processed. Then, timed in one run on this machine:
 *   - preview at as_of = latest and 60 days back (the example filter, incl. within_periods and
 *     a condition on another fact), next to the same count by hand-written SQL over the same tables;
 *   - materialising a ~500k-member audience (the job's work), and the changes between two such lists;
 *   - exporting it through the HTTP endpoint as NDJSON and CSV (pulled by curl in a process of its own),
 *     next to raw `COPY … TO STDOUT` of the same rows, with the peak RSS of the server while exporting.
 * Prints figures, targets and pass/fail; writes bench/results/audiences.json.
 */
import { databaseUrlFor, pullWithCurl } from "./common.js";
import os from "node:os";
import { writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { processFact } from "../src/activation/postgres/process.js";
import { loadConfig } from "../src/config.js";
import { createContext } from "../src/bootstrap.js";
import { buildApp } from "../src/app.js";
import { createApiKey } from "../src/keys/api-keys.js";
import { createAudience, previewDefinition } from "../src/audiences/audiences.js";
import { executeMaterialization, requestMaterialization } from "../src/audiences/materializations.js";
import { createUsersAndParams, dateOfX, insertActivity } from "./activation/generate.js";

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const USERS = Number(opt("users") ?? 1_000_000);
const DAYS = Number(opt("days") ?? 180);
const KEEP = process.argv.includes("--keep");
const DB_NAME = "aa_bench_audiences";
const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const DB_URL = databaseUrlFor(ADMIN_URL, DB_NAME);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function timeIt<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

async function prepare(): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const exists = (await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [DB_NAME])).rowCount! > 0;
  if (exists && KEEP) {
    await admin.end();
    log(`reusing ${DB_NAME} (--keep)`);
    return;
  }
  await admin.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB_NAME}`);
  await admin.end();
  await migrateDatabase(DB_URL);
  const pool = new pg.Pool({ connectionString: DB_URL, max: 4 });
  const app = (await pool.query(`INSERT INTO fact (name, timezone) VALUES ('app_opened', 'UTC') RETURNING id`)).rows[0].id as number;
  const chat = (await pool.query(`INSERT INTO fact (name, timezone) VALUES ('chat_sent', 'UTC') RETURNING id`)).rows[0].id as number;
  const c = await pool.connect();
  await createUsersAndParams(c, USERS);
  c.release();
  log("generating activity");
  const rows = await insertActivity(pool, app, -(DAYS - 1), 0, 2);
  // chat_sent: about a third of the app_opened days, chosen by hash.
  await pool.query(
    `INSERT INTO activity_day (fact_id, activity_date, user_key, first_at, last_at)
     SELECT $2, activity_date, user_key, first_at, last_at FROM activity_day
     WHERE fact_id = $1 AND (hashint8(user_key::bigint * 7919 + (activity_date - DATE '2000-01-01')) & 3) = 0`,
    [app, chat],
  );
  await pool.query(`UPDATE fact f SET earliest_date = s.e, latest_date = s.l FROM (SELECT min(activity_date) e, max(activity_date) l FROM activity_day WHERE fact_id = $1) s WHERE f.id = $1`, [chat]);
  await pool.query(`ANALYZE activity_day`);
  log(`${fmt(rows)} active user-days; processing`);
  for (const [id, name] of [[app, "app_opened"], [chat, "chat_sent"]] as const) {
    const [, t] = await timeIt(() => processFact(pool, { id, name, timezone: "UTC" }, dateOfX(0)));
    log(`processed ${name} in ${(t / 1000).toFixed(1)} s`);
  }
  await pool.query(`VACUUM ANALYZE layer_latest_pack, layer_latest_first, layer_closed_pack`);
  await pool.end();
}

async function main() {
  await prepare();
  const config = loadConfig({ ...process.env, DATABASE_URL: DB_URL, LOG_LEVEL: "silent", REDIS_PREFIX: "aa-bench-audiences", WORKERS: "0" });
  const ctx = createContext(config);
  const T = dateOfX(0);
  const back60 = dateOfX(-60);
  const example = {
    name: "Lapsed streakers",
    fact: "app_opened",
    grain: "day",
    filter: {
      all: [
        { field: "inactivity_periods", op: "between", value: [7, 30] },
        { field: "last_streak_periods", op: "gte", value: 5 },
        { field: "transition_segment", op: "in", value: ["retained_to_inactive"], within_periods: 14 },
        { not: { field: "state", op: "eq", value: "inactive", fact: "chat_sent" } },
      ],
    },
  };
  const results: Record<string, number | string | boolean> = {};

  // Hand-written SQL a DBA would write for the same count over our tables (the baseline).
  const app = (await ctx.db.pool.query(`SELECT id FROM fact WHERE name = 'app_opened'`)).rows[0].id as number;
  const chat = (await ctx.db.pool.query(`SELECT id FROM fact WHERE name = 'chat_sent'`)).rows[0].id as number;
  // Set-based (IN, NOT IN): the islands are packed by chunks of users behind the layer_island view, and a
  // lookup per user would unpack a chunk per user.
  const baselineSql = (P: number) => `
    SELECT count(*) FROM layer_island i
    WHERE i.fact_id = ${app} AND i.grain = 0 AND i.start_p <= ${P} AND (i.next_start IS NULL OR i.next_start > ${P})
      AND ${P} - i.end_p BETWEEN 7 AND 30
      AND i.end_p - i.start_p + 1 >= 5
      AND i.user_key IN (SELECT j.user_key FROM layer_island j WHERE j.fact_id = ${app} AND j.grain = 0
                    AND (j.next_start IS NULL OR j.next_start > ${P - 13})
                    AND j.end_p >= j.start_p + 1 AND j.end_p + 1 BETWEEN ${P - 13} AND ${P})
      AND i.user_key NOT IN (SELECT c.user_key FROM layer_island c WHERE c.fact_id = ${chat} AND c.grain = 0
                        AND c.start_p <= ${P} AND (c.next_start IS NULL OR c.next_start > ${P}) AND c.end_p < ${P})`;
  const dayNo = (d: string) => Math.round(Date.parse(`${d}T00:00:00Z`) / 86_400_000);

  for (const [label, asOf, target] of [["latest", T, 300], ["60 days back", back60, 3000]] as const) {
    const times: number[] = [];
    let count = 0;
    for (let i = 0; i < 5; i++) {
      const [p, t] = await timeIt(() => previewDefinition(ctx, example, asOf));
      times.push(t);
      count = p.count;
    }
    const base: number[] = [];
    let baseCount = 0;
    for (let i = 0; i < 5; i++) {
      const [r, t] = await timeIt(() => ctx.db.pool.query(baselineSql(dayNo(asOf))));
      base.push(t);
      baseCount = Number(r.rows[0].count);
    }
    const key = label === "latest" ? "preview_latest" : "preview_60d";
    results[`${key}_ms`] = Math.round(median(times));
    results[`${key}_count`] = count;
    results[`${key}_baseline_sql_ms`] = Math.round(median(base));
    results[`${key}_baseline_count`] = baseCount;
    log(`preview ${label}: ${count} members, median ${median(times).toFixed(0)} ms (target ≤ ${target}); hand-written SQL ${median(base).toFixed(0)} ms (${baseCount} members); ratio ${(median(times) / median(base)).toFixed(2)}× (target ≤ 1.5×)`);
  }

  // An audience of about 500k: "active at least N of their days so far", N found by preview.
  let lo = 1, hi = DAYS;
  let chosen = { n: 1, count: 0 };
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2);
    const p = await previewDefinition(ctx, { ...example, filter: { field: "active_periods_total", op: "gte", value: mid } }, T);
    if (Math.abs(p.count - USERS / 2) < Math.abs(chosen.count - USERS / 2)) chosen = { n: mid, count: p.count };
    if (p.count > USERS / 2) lo = mid + 1;
    else hi = mid - 1;
  }
  const big = await createAudience(ctx, { name: "big", fact: "app_opened", grain: "day", filter: { field: "active_periods_total", op: "gte", value: chosen.n } });
  const m1 = (await requestMaterialization(ctx, big.id, dateOfX(-7), "bench")).materialization;
  const m2 = (await requestMaterialization(ctx, big.id, T, "bench")).materialization;
  const [done1, tMat1] = await timeIt(() => executeMaterialization(ctx, m1.id));
  const [done2, tMat2] = await timeIt(() => executeMaterialization(ctx, m2.id));
  results.materialize_members = done2.member_count ?? 0;
  results.materialize_ms = Math.round(tMat2);
  results.materialize_other_ms = Math.round(tMat1);
  log(`materialised ${fmt(done2.member_count ?? 0)} members in ${(tMat2 / 1000).toFixed(2)} s (target ≤ 5 s); the week-earlier list (${fmt(done1.member_count ?? 0)}) in ${(tMat1 / 1000).toFixed(2)} s`);

  const [counts, tChanges] = await timeIt(() => ctx.engine.changeCounts(m2.id, m1.id));
  const [, tPage] = await timeIt(() => ctx.engine.changePage(m2.id, m1.id, "entered", { limit: 1000 }));
  results.changes_ms = Math.round(tChanges);
  results.changes_first_page_ms = Math.round(tPage);
  log(`changes between the two lists: ${fmt(counts.entered)} entered, ${fmt(counts.exited)} exited, ${fmt(counts.stayed)} stayed in ${(tChanges / 1000).toFixed(2)} s (target ≤ 3 s); first page of 1,000 in ${tPage.toFixed(0)} ms`);

  // Export through the HTTP endpoint, next to raw COPY of the same rows.
  const server = await buildApp(ctx);
  await server.listen({ port: 0, host: "127.0.0.1" });
  const port = (server.server.address() as AddressInfo).port;
  const { key } = await createApiKey(ctx.db.prisma, { name: "bench", scopes: ["read"] });
  let peakRss = process.memoryUsage().rss;
  const rssBefore = peakRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  // The client is curl in a process of its own (bench/common.ts), as a CRM tool pulling the list would be.
  const membersUrl = `http://127.0.0.1:${port}/v1/materializations/${m2.id}/members`;
  for (const format of ["ndjson", "csv"] as const) {
    const accept = format === "csv" ? "text/csv" : "application/x-ndjson";
    const runs: Array<{ t: number; rows: number; bytes: number }> = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const { lines, bytes } = await pullWithCurl(membersUrl, { authorization: `Bearer ${key}`, accept });
      runs.push({ t: performance.now() - t0, rows: format === "csv" ? lines - 1 : lines, bytes });
    }
    const best = runs.sort((a, b) => a.t - b.t)[1]!; // the median of three
    if (runs.some((r) => r.rows !== done2.member_count)) throw new Error(`export ${format}: ${runs.map((r) => r.rows)} rows, expected ${done2.member_count}`);
    results[`export_${format}_rows_per_s`] = Math.round(best.rows / (best.t / 1000));
    results[`export_${format}_mb`] = Math.round(best.bytes / 1e5) / 10;
    log(`export ${format}: ${fmt(best.rows)} rows, ${(best.bytes / 1e6).toFixed(1)} MB in ${(best.t / 1000).toFixed(2)} s = ${fmt(best.rows / (best.t / 1000))} rows/s (target ≥ 800k)`);
  }
  clearInterval(sampler);
  results.export_rss_before_mb = Math.round(rssBefore / 1e6);
  results.export_peak_rss_mb = Math.round(peakRss / 1e6);
  log(`process RSS ${Math.round(rssBefore / 1e6)} MB before exporting, peak ${Math.round(peakRss / 1e6)} MB while exporting`);

  // Raw COPY … TO STDOUT of the same rows (same join, no HTTP, no JSON/CSV shaping by the service).
  for (const format of ["ndjson", "csv"] as const) {
    const cols = `u.external_id AS user_id, m.state, m.previous_state, m.transition_segment, m.is_active, m.first_active_period, m.last_active_period,
      m.inactivity_periods, m.consecutive_active_periods, m.last_streak_periods, m.return_interval_periods, m.last_active_state,
      m.active_periods_total, m.tenure_periods, m.growth_state`;
    const inner = `SELECT ${cols} FROM audience_member m JOIN app_user u ON u.user_key = m.user_key WHERE m.materialization_id = '${m2.id}' ORDER BY m.user_key`;
    const sql =
      format === "csv"
        ? `COPY (${inner}) TO STDOUT WITH (FORMAT csv, HEADER true)`
        : `COPY (SELECT row_to_json(r)::text FROM (${inner}) r) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')`;
    const times: number[] = [];
    let rows = 0;
    for (let i = 0; i < 3; i++) {
      const client = await ctx.db.pool.connect();
      const t0 = performance.now();
      const stream = client.query(copyTo(sql));
      let lines = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) for (let j = chunk.indexOf(10); j >= 0; j = chunk.indexOf(10, j + 1)) lines++;
      times.push(performance.now() - t0);
      client.release();
      rows = format === "csv" ? lines - 1 : lines;
    }
    const t = median(times);
    results[`raw_copy_${format}_rows_per_s`] = Math.round(rows / (t / 1000));
    const ours = results[`export_${format}_rows_per_s`] as number;
    results[`export_${format}_vs_raw`] = Math.round((ours / (rows / (t / 1000))) * 100) / 100;
    log(`raw COPY ${format}: ${fmt(rows / (t / 1000))} rows/s; the HTTP export reaches ${((ours / (rows / (t / 1000))) * 100).toFixed(0)}% of it (target ≥ 50%)`);
  }
  await server.close();
  await ctx.close();

  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    users: USERS,
    days: DAYS,
    ...results,
  };
  mkdirSync(path.join(HERE, "results"), { recursive: true });
  writeFileSync(path.join(HERE, "results", USERS >= 1_000_000 ? "audiences.json" : "audiences-small.json"), JSON.stringify(out, null, 2) + "\n");
  console.log(JSON.stringify(out, null, 2));
}

await main();
process.exit(0);
