// `npm run bench -- ingest [--events N] [--keep]`
//
// Ingestion throughput on a database of its own (aa_bench_ingest, dropped and recreated):
//   (a) HTTP: the real server in-process on a random loopback port, a local client posting
//       10,000-event JSON batches, 4 requests in flight;
//   (b) bulk: a generated CSV file loaded end to end through the CLI's code path (bulkLoadFile);
//   (c) raw: PostgreSQL COPY of the same file into an UNLOGGED table, the ceiling for (b); run before
//       and after (b), the faster run counts (other work on the machine skews single runs).
// Both draw on one population of USERS users (the HTTP run comes first, so the bulk load mostly
// meets known users, as a backfill of a new fact on a live system would; the count of users it adds
// is reported). Prints a table and writes bench/results/ingest.json.
import { databaseUrlFor } from "./common.js";
import { mulberry32 } from "../src/util/prng.js";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, stat, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { buildApp } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { loadConfig } from "../src/config.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { createFact } from "../src/facts/facts.js";
import { bulkLoadFile } from "../src/facts/bulk-load.js";
import { createApiKey } from "../src/keys/api-keys.js";

const DB_NAME = "aa_bench_ingest";
const BATCH = 10_000;
const CONCURRENCY = 4;
const USERS = 200_000;
const DAYS = 30;
const SESSION_MEAN = 4;
const TARGET_RATIO = 0.3;
const TARGET_HTTP = 50_000;

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: { events: { type: "string" }, "http-events": { type: "string" }, keep: { type: "boolean", default: false } },
});
const bulkEvents = values.events ? Number(values.events) : 5_000_000;
const httpEvents = values["http-events"] ? Number(values["http-events"]) : Math.min(2_000_000, Math.max(BATCH, Math.round(bulkEvents * 0.4)));
if (!Number.isInteger(bulkEvents) || bulkEvents <= 0 || !Number.isInteger(httpEvents) || httpEvents <= 0) {
  console.error("usage: npm run bench -- ingest [--events N] [--http-events M] [--keep]");
  process.exit(2);
}

const baseUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/activation_audiences";
const dbUrl = databaseUrlFor(baseUrl, DB_NAME);
const adminUrl = (() => {
  const u = new URL(baseUrl);
  u.pathname = "/postgres";
  return u.toString();
})();

async function admin(sql: string) {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const rng = mulberry32;

/**
 * Events of USERS users over the last DAYS days, in arrival order (time order, give or take the
 * length of a session). Events come in sessions, as product analytics do: a session is one user
 * doing a few things (geometric, SESSION_MEAN events on average, 10 s to 5 min apart). Some users
 * are far more active than others (the square of a uniform draw picks the user). Instants alternate
 * between UTC and +09:00 offsets, with milliseconds.
 */
function eventGenerator(prefix: string, total: number, seed: number) {
  const rnd = rng(seed);
  const end = Date.now() - 3_600_000;
  const start = end - DAYS * 86_400_000;
  const sessions = Math.max(1, Math.round(total / SESSION_MEAN));
  let i = 0;
  let left = 0;
  let user = "";
  let at = 0;
  let session = 0;
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const kst = (ms: number) => {
    const d = new Date(ms + 9 * 3_600_000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}+09:00`;
  };
  return (): { user_id: string; occurred_at: string } | null => {
    if (i >= total) return null;
    if (left === 0) {
      const r = rnd();
      user = `${prefix}${String(Math.floor(r * r * USERS)).padStart(7, "0")}`;
      at = Math.floor(start + ((end - start) * Math.min(session, sessions - 1)) / sessions);
      session++;
      left = 1;
      while (rnd() > 1 / SESSION_MEAN) left++;
    } else at += 10_000 + Math.floor(rnd() * 290_000);
    left--;
    i++;
    const ms = Math.min(end, at);
    return { user_id: user, occurred_at: i % 2 ? new Date(ms).toISOString() : kst(ms) };
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const secs = (ms: number) => ms / 1000;

async function writeCsv(file: string, total: number) {
  const next = eventGenerator("u", total, 42);
  const out = createWriteStream(file);
  out.write("user_id,occurred_at\n");
  for (;;) {
    let chunk = "";
    let n = 0;
    while (n < 10_000) {
      const e = next();
      if (!e) break;
      chunk += `${e.user_id},${e.occurred_at}\n`;
      n++;
    }
    if (n === 0) break;
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((resolve, reject) => {
    out.once("error", reject);
    out.end(resolve);
  });
}

async function rawCopy(file: string): Promise<{ rows: number; ms: number }> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    await c.query(`DROP TABLE IF EXISTS bench_raw_copy`);
    await c.query(`CREATE UNLOGGED TABLE bench_raw_copy (user_id text, occurred_at timestamptz)`);
    const t0 = performance.now();
    const copy = c.query(copyFrom(`COPY bench_raw_copy (user_id, occurred_at) FROM STDIN WITH (FORMAT csv, HEADER true)`));
    await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), copy);
    const ms = performance.now() - t0;
    const rows = copy.rowCount;
    await c.query(`DROP TABLE bench_raw_copy`);
    return { rows, ms };
  } finally {
    await c.end();
  }
}

async function httpIngest(ctx: ReturnType<typeof createContext>, fact: string, total: number) {
  const app = await buildApp(ctx, { logger: false });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("no server address");
  const url = `http://127.0.0.1:${addr.port}/v1/facts/${fact}/events`;
  const { key } = await createApiKey(ctx.db.prisma, { name: "bench-ingest", scopes: ["write"] });
  // Bodies are built before the clock starts: the client stands for other machines.
  const next = eventGenerator("u", total, 7);
  const bodies: string[] = [];
  for (;;) {
    const events: Array<{ user_id: string; occurred_at: string }> = [];
    while (events.length < BATCH) {
      const e = next();
      if (!e) break;
      events.push(e);
    }
    if (events.length === 0) break;
    bodies.push(JSON.stringify({ events }));
  }
  let cursor = 0;
  let accepted = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (;;) {
        const i = cursor++;
        if (i >= bodies.length) return;
        const s = performance.now();
        const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: bodies[i] });
        const text = await res.text();
        if (res.status !== 202) throw new Error(`batch ${i}: HTTP ${res.status} ${text.slice(0, 500)}`);
        accepted += (JSON.parse(text) as { accepted: number }).accepted;
        latencies.push(performance.now() - s);
      }
    }),
  );
  const ms = performance.now() - t0;
  await app.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0);
  return { events: accepted, batches: bodies.length, ms, p50: pct(0.5), p95: pct(0.95) };
}

async function main() {
  const started = performance.now();
  const loadStart = os.loadavg()[0]!;
  console.log(`ingest bench: ${fmt(httpEvents)} events over HTTP, ${fmt(bulkEvents)} in the bulk file; ${os.cpus().length} cpus, node ${process.version}`);
  await admin(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB_NAME)} WITH (FORCE)`);
  await migrateDatabase(dbUrl);
  const config = loadConfig({ ...process.env, DATABASE_URL: dbUrl, REDIS_PREFIX: "aa-bench-ingest", LOG_LEVEL: "warn", WORKERS: "0" });
  const ctx = createContext(config);
  const file = path.join(os.tmpdir(), `aa-bench-ingest-${process.pid}.csv`);
  try {
    await createFact(ctx, { name: "bench_http", timezone: "Asia/Seoul" });
    await createFact(ctx, { name: "bench_bulk", timezone: "Asia/Seoul" });
    const pgVersion = (await ctx.db.pool.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;

    // (a) HTTP
    process.stdout.write(`(a) HTTP: ${fmt(httpEvents)} events in ${BATCH.toLocaleString("en-US")}-event batches, ${CONCURRENCY} in flight … `);
    const http = await httpIngest(ctx, "bench_http", httpEvents);
    const httpRate = http.events / secs(http.ms);
    console.log(`${fmt(httpRate)} events/s`);

    // The file for (b) and (c)
    process.stdout.write(`generating ${fmt(bulkEvents)} events into ${file} … `);
    let t = performance.now();
    await writeCsv(file, bulkEvents);
    const fileBytes = (await stat(file)).size;
    console.log(`${(fileBytes / 1e6).toFixed(0)} MB in ${secs(performance.now() - t).toFixed(1)} s`);

    // (c) raw COPY first (it also warms the file into the page cache for both), and again after
    // (b): the faster of the two is the ceiling the ratio is taken against.
    process.stdout.write(`(c) raw COPY into an UNLOGGED table … `);
    const raw1 = await rawCopy(file);
    console.log(`${fmt(raw1.rows / secs(raw1.ms))} rows/s`);

    // (b) bulk load, the CLI's code path
    process.stdout.write(`(b) bulk load (parse, validate, COPY to staging, users, fold into activity_day) … `);
    const userCount = async () => (await ctx.db.pool.query<{ n: number }>(`SELECT count(*) AS n FROM app_user`)).rows[0]!.n;
    const usersBefore = await userCount();
    t = performance.now();
    const bulk = await bulkLoadFile(ctx, "bench_bulk", file);
    const bulkMs = performance.now() - t;
    const bulkRate = bulk.rows / secs(bulkMs);
    console.log(`${fmt(bulkRate)} rows/s`);
    const newUsers = (await userCount()) - usersBefore;
    process.stdout.write(`(c) raw COPY again … `);
    const raw2 = await rawCopy(file);
    console.log(`${fmt(raw2.rows / secs(raw2.ms))} rows/s`);
    const raw = raw2.ms < raw1.ms ? raw2 : raw1;
    const rawRate = raw.rows / secs(raw.ms);
    const activityRows = (await ctx.db.pool.query<{ n: number }>(`SELECT count(*) AS n FROM activity_day WHERE fact_id = (SELECT id FROM fact WHERE name = 'bench_bulk')`)).rows[0]!.n;

    const ratio = bulkRate / rawRate;
    const rows: Array<[string, string, string, string]> = [
      ["HTTP ingestion (10k batches × 4)", fmt(http.events), secs(http.ms).toFixed(1), `${fmt(httpRate)} events/s`],
      ["bulk load, end to end", fmt(bulk.rows), secs(bulkMs).toFixed(1), `${fmt(bulkRate)} rows/s`],
      ["raw COPY (UNLOGGED table), best of 2", fmt(raw.rows), secs(raw.ms).toFixed(1), `${fmt(rawRate)} rows/s`],
    ];
    const w = [38, 11, 8, 20];
    const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join("  ");
    console.log("");
    console.log(line(["measure", "rows", "s", "throughput"]));
    console.log(line(w.map((n) => "-".repeat(n))));
    for (const r of rows) console.log(line(r));
    console.log("");
    console.log(`HTTP: ${fmt(httpRate)} events/s (target ≥ ${fmt(TARGET_HTTP)}): ${httpRate >= TARGET_HTTP ? "met" : "MISSED"}; batch latency p50 ${http.p50} ms, p95 ${http.p95} ms`);
    console.log(`bulk/raw: ${(ratio * 100).toFixed(1)}% (target ≥ ${TARGET_RATIO * 100}%): ${ratio >= TARGET_RATIO ? "met" : "MISSED"}`);
    console.log(
      `bulk phases (ms): ${Object.entries(bulk.timings).map(([k, v]) => `${k} ${v}`).join(", ")} over ${bulk.segments} segments; ` +
        `${fmt(activityRows)} activity rows, ${fmt(newUsers)} new users`,
    );

    const result = {
      bench: "ingest",
      date: new Date().toISOString(),
      cpus: os.cpus().length,
      node: process.version,
      postgres: pgVersion,
      http: {
        events: http.events,
        batch_size: BATCH,
        concurrency: CONCURRENCY,
        batches: http.batches,
        users: USERS,
        seconds: +secs(http.ms).toFixed(3),
        events_per_s: Math.round(httpRate),
        batch_latency_ms: { p50: http.p50, p95: http.p95 },
        target_events_per_s: TARGET_HTTP,
        target_met: httpRate >= TARGET_HTTP,
      },
      bulk: {
        rows: bulk.rows,
        file_bytes: fileBytes,
        users: USERS,
        days: DAYS,
        seconds: +secs(bulkMs).toFixed(3),
        rows_per_s: Math.round(bulkRate),
        session_mean_events: SESSION_MEAN,
        segments: bulk.segments,
        phases_ms: bulk.timings,
        activity_rows: activityRows,
        new_users: newUsers,
      },
      raw_copy: {
        rows: raw.rows,
        seconds: +secs(raw.ms).toFixed(3),
        rows_per_s: Math.round(rawRate),
        runs_seconds: [+secs(raw1.ms).toFixed(3), +secs(raw2.ms).toFixed(3)],
      },
      ratio_bulk_raw: +ratio.toFixed(4),
      target_ratio: TARGET_RATIO,
      ratio_target_met: ratio >= TARGET_RATIO,
      total_seconds: +secs(performance.now() - started).toFixed(1),
      // Other work on the machine skews every figure: the 1-minute load average at the start and end.
      load_average: [+loadStart.toFixed(2), +os.loadavg()[0]!.toFixed(2)],
    };
    const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "results");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "ingest.json"), `${JSON.stringify(result, null, 2)}\n`);
    console.log(`written bench/results/ingest.json (total ${result.total_seconds} s; load average ${result.load_average.join(" → ")} on ${result.cpus} cpus)`);
  } finally {
    await unlink(file).catch(() => {});
    await ctx.close();
    if (!values.keep) await admin(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB_NAME)} WITH (FORCE)`).catch(() => {});
  }
}

await main();
process.exit(0);
