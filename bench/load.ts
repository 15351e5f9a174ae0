/**
 * `npm run bench -- load [--seconds 60] [--clients 50] [--users 50000] [--days 60] [--max-requests 2000000] [--pool N]`
 *
 * The service under mixed load, on a database of its own (aa_bench_load, dropped and recreated) and a
 * Redis prefix of its own (aa-bench-load). The real server runs as a child process (`src/server.ts`:
 * API and one in-process worker, its default pool of 10 connections unless `--pool`) on a random
 * loopback port. This process is the load generator: `--clients` concurrent clients, each with an API
 * key of its own (read, write), each a loop of requests until `--seconds` have passed or
 * `--max-requests` were sent in all, mixing
 *   - event ingestion: 1,000-event JSON batches into the fact being processed, on dates after its
 *     history, each event a new (user, date) pair so that every stored event is one row;
 *   - audience previews (a filter with a transition segment within 14 periods);
 *   - member pages of a materialised audience (1,000 members, walking the cursor);
 *   - metrics reads (day, week or month grain);
 * while a processing run (the last 10 days of history) and materialisations execute as jobs.
 * Afterwards it checks that no accepted event was lost: the stored rows after the history equal the
 * accepted events, and once processed, the day metrics count every one of them as an active user.
 * Prints a table; writes bench/results/load.json.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import pg from "pg";
import "../src/db/client.js";
import { processFact } from "../src/activation/postgres/process.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { createApiKey } from "../src/keys/api-keys.js";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../src/generated/prisma/client.js";
import { mulberry32 } from "../src/util/prng.js";
import { adminQuery, databaseUrlFor } from "./common.js";
import { freePort } from "../test/helpers/private-services.js";
import { createUsersAndParams, dateOfX, insertActivity } from "./activation/generate.js";

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    seconds: { type: "string", default: "60" },
    clients: { type: "string", default: "50" },
    users: { type: "string", default: "50000" },
    days: { type: "string", default: "60" },
    "max-requests": { type: "string", default: "2000000" },
    pool: { type: "string" },
  },
});
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);
const USERS = Number(values.users);
const DAYS = Number(values.days);
const MAX_REQUESTS = Number(values["max-requests"]);
const POOL = values.pool === undefined ? undefined : Number(values.pool);
for (const [k, v] of Object.entries({ SECONDS, CLIENTS, USERS, DAYS, MAX_REQUESTS, POOL: POOL ?? 10 }))
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`bad --${k.toLowerCase()}; usage: npm run bench -- load [--seconds S] [--clients C] [--users U] [--days D] [--max-requests N] [--pool N]`);
    process.exit(2);
  }
if (DAYS <= 11) {
  console.error("--days must be at least 12 (the processing run under load covers the last 10 days)");
  process.exit(2);
}

const BATCH = 1_000;
const UNPROCESSED_DAYS = 10; // the processing run under load covers these
const DB_NAME = "aa_bench_load";
const REDIS_PREFIX = "aa-bench-load";
const FACT = "app_opened";
const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DB_URL = databaseUrlFor(ADMIN_URL, DB_NAME);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const load = () => os.loadavg().map((x) => +x.toFixed(2));

const OPS = ["ingest", "preview", "members", "metrics"] as const;
type Op = (typeof OPS)[number];
// Share of requests per operation.
const MIX: Record<Op, number> = { ingest: 0.25, preview: 0.2, members: 0.3, metrics: 0.25 };

const lapsed = {
  name: "Lapsed streakers",
  fact: FACT,
  grain: "day",
  filter: {
    all: [
      { field: "inactivity_periods", op: "between", value: [3, 30] },
      { field: "last_streak_periods", op: "gte", value: 3 },
      { field: "transition_segment", op: "in", value: ["retained_to_inactive"], within_periods: 14 },
    ],
  },
};

async function prepareDatabase(): Promise<void> {
  await adminQuery(ADMIN_URL, `DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await adminQuery(ADMIN_URL, `CREATE DATABASE ${DB_NAME}`);
  await migrateDatabase(DB_URL);
  const pool = new pg.Pool({ connectionString: DB_URL, max: 4 });
  try {
    const factId = (await pool.query(`INSERT INTO fact (name, timezone) VALUES ($1, 'UTC') RETURNING id`, [FACT])).rows[0].id as number;
    const c = await pool.connect();
    await createUsersAndParams(c, USERS);
    c.release();
    const processedX = -UNPROCESSED_DAYS;
    const old = await insertActivity(pool, factId, -(DAYS - 1), processedX, 2);
    await pool.query("ANALYZE activity_day");
    await processFact(pool, { id: factId, name: FACT, timezone: "UTC" }, dateOfX(processedX));
    const recent = await insertActivity(pool, factId, processedX + 1, 0, 2);
    await pool.query("VACUUM ANALYZE");
    log(`${fmt(USERS)} users × ${DAYS} days: ${fmt(old + recent)} active user-days, processed through ${dateOfX(processedX)}, ${fmt(recent)} rows after it`);
  } finally {
    await pool.end();
  }
}

async function clearRedisPrefix(): Promise<void> {
  const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${REDIS_PREFIX}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
}

async function startServer(port: number) {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(HERE, "../src/server.ts")], {
    env: { ...process.env, DATABASE_URL: DB_URL, REDIS_URL, REDIS_PREFIX, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn", WORKERS: "1", ...(POOL ? { PG_POOL_MAX: String(POOL) } : {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    if (await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)) return { child, output: () => out };
    if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
function cpuSecondsOf(pid: number | undefined): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

interface OpStats {
  latencies: number[];
  errors: number;
  samples: string[];
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

async function main() {
  const t0 = performance.now();
  log(`preparing ${DB_NAME}: ${fmt(USERS)} users × ${DAYS} days`);
  await prepareDatabase();
  await clearRedisPrefix();
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: DB_URL }) });
  const key = (await createApiKey(prisma, { name: "bench-load", scopes: ["admin"] })).key;
  // Each client is a separate integration with a key of its own, as per-key rate limits expect.
  const clientKeys: string[] = [];
  for (let i = 0; i < CLIENTS; i++) clientKeys.push((await createApiKey(prisma, { name: `bench-load-client-${i}`, scopes: ["read", "write"] })).key);
  await prisma.$disconnect();
  const port = await freePort();
  const server = await startServer(port);
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, url: string, body?: unknown, as = key) => {
    const headers = { authorization: `Bearer ${as}`, "content-type": "application/json" };
    const res = await fetch(`${base}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: () => JSON.parse(text), text };
  };
  const waitFor = async (url: string) => {
    for (;;) {
      const r = (await call("GET", url)).json();
      if (r.status === "succeeded" || r.status === "failed") return r;
      await new Promise((res) => setTimeout(res, 200));
    }
  };

  // A materialised list for the member pages (as of the watermark), made before the load.
  const audience = (await call("POST", "/v1/audiences", lapsed)).json();
  const firstList = await waitFor(`/v1/materializations/${(await call("POST", `/v1/audiences/${audience.id}/materializations`, {})).json().id}`);
  if (firstList.status !== "succeeded") throw new Error(`materialisation failed: ${JSON.stringify(firstList)}`);
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`setup done in ${setupSeconds.toFixed(0)} s; list of ${fmt(firstList.member_count)} members; load: ${SECONDS} s × ${CLIENTS} clients`);

  const stats = Object.fromEntries(OPS.map((op) => [op, { latencies: [], errors: 0, samples: [] } as OpStats])) as Record<Op, OpStats>;
  let accepted = 0;
  let sent = 0;
  let nextEvent = 0; // global index of the next event: user = index mod USERS, day after history = index div USERS
  const historyEnd = dateOfX(0);
  const loadSamples: number[][] = [load()];
  const loadTimer = setInterval(() => loadSamples.push(load()), 5_000);

  const ingestBody = () => {
    const events = new Array(BATCH);
    for (let i = 0; i < BATCH; i++, nextEvent++) {
      const user = (nextEvent % USERS) + 1;
      const x = 1 + Math.floor(nextEvent / USERS);
      events[i] = { user_id: `user_${user}`, occurred_at: `${dateOfX(x)}T${String(8 + (user % 12)).padStart(2, "0")}:00:00Z` };
    }
    return { events };
  };

  const request = async (op: Op, rnd: () => number, cursor: { value: string | null }, as: string) => {
    switch (op) {
      case "ingest": {
        const r = await call("POST", `/v1/facts/${FACT}/events`, ingestBody(), as);
        if (r.status === 202) accepted += r.json().accepted as number;
        return r;
      }
      case "preview":
        return call("POST", "/v1/audiences/preview", { definition: lapsed }, as);
      case "members": {
        const r = await call("GET", `/v1/materializations/${firstList.id}/members?limit=1000${cursor.value ? `&cursor=${encodeURIComponent(cursor.value)}` : ""}`, undefined, as);
        if (r.status === 200) cursor.value = r.json().next_cursor;
        return r;
      }
      case "metrics": {
        const grain = (["day", "week", "month"] as const)[Math.floor(rnd() * 3)]!;
        // Every period from the start of the history through the watermark (which the run moves).
        return call("GET", `/v1/facts/${FACT}/metrics?grain=${grain}&from=${dateOfX(-DAYS + 1)}`, undefined, as);
      }
    }
  };

  const serverCpu0 = cpuSecondsOf(server.child.pid);
  const ownCpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const jobs: Record<string, unknown> = {};
  // The jobs that execute under load: a processing run of the last 10 days, a materialisation as of
  // the old watermark at once, and another as of the new watermark when the run has finished.
  const background = (async () => {
    const t = performance.now();
    const mat1 = call("POST", `/v1/audiences/${audience.id}/materializations`, {}).then((r) => waitFor(`/v1/materializations/${r.json().id}`));
    const run = await call("POST", `/v1/facts/${FACT}/runs`, { through: historyEnd });
    const done = await waitFor(`/v1/runs/${run.json().id}`);
    jobs.processing_run = { status: done.status, from: done.from, through: done.through, duration_ms: done.duration_ms, finished_after_s: +((performance.now() - t) / 1000).toFixed(1) };
    const m1 = await mat1;
    jobs.materialization_old_watermark = { status: m1.status, members: m1.member_count, compute_ms: m1.timings?.compute_ms };
    const r2 = await call("POST", `/v1/audiences/${audience.id}/materializations`, {});
    const m2 = await waitFor(`/v1/materializations/${r2.json().id}`);
    jobs.materialization_new_watermark = { status: m2.status, as_of: m2.as_of, members: m2.member_count, compute_ms: m2.timings?.compute_ms, finished_after_s: +((performance.now() - t) / 1000).toFixed(1) };
  })();

  const client = async (id: number) => {
    const rnd = mulberry32(1000 + id);
    const cursor = { value: null as string | null };
    while (performance.now() < deadline && sent < MAX_REQUESTS) {
      sent++;
      let u = rnd();
      let op: Op = "metrics";
      for (const o of OPS) {
        if (u < MIX[o]) {
          op = o;
          break;
        }
        u -= MIX[o];
      }
      const s = stats[op];
      const q0 = performance.now();
      try {
        const r = await request(op, rnd, cursor, clientKeys[id]!);
        if (r.status >= 400) {
          s.errors++;
          if (s.samples.length < 5) s.samples.push(`${r.status} ${r.text.slice(0, 200)}`);
        } else s.latencies.push(performance.now() - q0);
      } catch (err) {
        s.errors++;
        if (s.samples.length < 5) s.samples.push(String((err as Error).message));
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
  const elapsed = (performance.now() - start) / 1000;
  const serverCpu1 = cpuSecondsOf(server.child.pid);
  const ownCpu = process.cpuUsage(ownCpu0);
  // Cores each process kept busy on average during the load (2 = both cores of this machine).
  const cores = {
    server_process: serverCpu0 === null || serverCpu1 === null ? null : +((serverCpu1 - serverCpu0) / elapsed).toFixed(2),
    load_generator: +((ownCpu.user + ownCpu.system) / 1e6 / elapsed).toFixed(2),
  };
  clearInterval(loadTimer);
  loadSamples.push(load());
  log(`load done: ${fmt(sent)} requests in ${elapsed.toFixed(1)} s; waiting for the jobs`);
  await background;

  // No loss: every accepted event is a row after the history, and the layer counts each one.
  const pool = new pg.Pool({ connectionString: DB_URL, max: 2 });
  const stored = (await pool.query(`SELECT count(*)::int AS n, max(activity_date) AS last FROM activity_day a JOIN fact f ON f.id = a.fact_id WHERE f.name = $1 AND a.activity_date > $2`, [FACT, historyEnd])).rows[0];
  let counted = 0;
  if (stored.n > 0) {
    const run = await call("POST", `/v1/facts/${FACT}/runs`, { through: stored.last });
    const done = await waitFor(`/v1/runs/${run.json().id}`);
    if (done.status !== "succeeded") throw new Error(`final run failed: ${JSON.stringify(done)}`);
    const m = (await call("GET", `/v1/facts/${FACT}/metrics?grain=day&from=${dateOfX(1)}&to=${stored.last}`)).json();
    counted = (m.data as Array<{ active: number }>).reduce((a, r) => a + Number(r.active), 0);
  }
  await pool.end();
  server.child.kill("SIGTERM");
  await new Promise((r) => server.child.once("exit", r));

  const rows = OPS.map((op) => {
    const s = stats[op];
    const sorted = [...s.latencies].sort((a, b) => a - b);
    return {
      op,
      requests: s.latencies.length + s.errors,
      ok: s.latencies.length,
      errors: s.errors,
      per_second: +(s.latencies.length / elapsed).toFixed(1),
      p50_ms: +percentile(sorted, 0.5).toFixed(1),
      p95_ms: +percentile(sorted, 0.95).toFixed(1),
      p99_ms: +percentile(sorted, 0.99).toFixed(1),
      error_samples: s.samples,
    };
  });
  const errors = rows.reduce((a, r) => a + r.errors, 0);
  const lossFree = stored.n === accepted && counted === accepted;
  const result = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), note: "shared with other agents' builds, tests and benchmarks" },
    load_average: { start: loadSamples[0]!, end: loadSamples.at(-1)!, max_1min: Math.max(...loadSamples.map((l) => l[0]!)), samples_every_5s: loadSamples.map((l) => l[0]) },
    options: { seconds: SECONDS, clients: CLIENTS, users: USERS, days: DAYS, batch: BATCH, mix: MIX, max_requests: MAX_REQUESTS, server: `src/server.ts, WORKERS=1, PG_POOL_MAX=${POOL ?? "10 (default)"}` },
    cores_busy: cores,
    setup_seconds: +setupSeconds.toFixed(1),
    elapsed_seconds: +elapsed.toFixed(1),
    requests: sent,
    requests_per_second: +(rows.reduce((a, r) => a + r.ok, 0) / elapsed).toFixed(1),
    events_per_second: +(accepted / elapsed).toFixed(0),
    operations: rows,
    errors,
    jobs,
    no_loss: { accepted_events: accepted, stored_rows_after_history: stored.n, counted_active_by_day_metrics: counted, ok: lossFree },
  };
  mkdirSync(path.join(HERE, "results"), { recursive: true });
  writeFileSync(path.join(HERE, "results", "load.json"), `${JSON.stringify(result, null, 2)}\n`);

  console.log("");
  console.log(`Load: ${CLIENTS} clients for ${elapsed.toFixed(1)} s (load average ${result.load_average.start.join(" ")} → max ${result.load_average.max_1min})`);
  console.log("| operation | ok | errors | per second | p50 ms | p95 ms | p99 ms |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(`| ${r.op} | ${fmt(r.ok)} | ${r.errors} | ${r.per_second} | ${r.p50_ms} | ${r.p95_ms} | ${r.p99_ms} |`);
  console.log(`events accepted ${fmt(accepted)} (${fmt(accepted / elapsed)}/s); stored ${fmt(stored.n)}; counted by the layer ${fmt(counted)}: ${lossFree ? "no loss" : "LOSS"}`);
  console.log(`jobs: ${JSON.stringify(jobs)}`);
  console.log(`cores kept busy: server process ${cores.server_process ?? "n/a"}, load generator ${cores.load_generator} (the rest: PostgreSQL, Redis, other work)`);
  for (const r of rows) if (r.error_samples.length) console.log(`${r.op} errors: ${r.error_samples.join(" | ")}`);
  if (errors > 0 || !lossFree) process.exitCode = 1;
}

await main();
