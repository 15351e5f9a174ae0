import pg from "pg";
import { spawn } from "node:child_process";

/** Helpers the benchmarks share. */

/** The URL of database `name` on the server of `adminUrl` (each bench has a database of its own). */
export function databaseUrlFor(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs one statement on a short-lived connection (CREATE/DROP DATABASE cannot use a pool's transaction). */
export async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Times `fn`, reports the milliseconds to `report`, and returns the result with them. */
export async function timedWith<T>(fn: () => Promise<T>, report: (ms: number) => void): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  const t = performance.now() - t0;
  report(t);
  return [out, t];
}

/** One line of a benchmark's report: a figure, its value, its target and whether it was met (null: no target). */
export interface FigureRow {
  figure: string;
  value: string;
  target: string;
  pass: boolean | null;
}

/** The figures a benchmark collects, printed as an aligned table. */
export function figureTable() {
  const rows: FigureRow[] = [];
  const row = (figure: string, value: string, target = "", pass: boolean | null = null) => rows.push({ figure, value, target, pass });
  const print = (passLabel: (r: FigureRow) => string) => {
    const w0 = Math.max(...rows.map((r) => r.figure.length)), w1 = Math.max(...rows.map((r) => r.value.length)), w2 = Math.max(...rows.map((r) => r.target.length), 6);
    const line = (a: string, b: string, c: string, d: string) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c.padEnd(w2)}  ${d}`;
    console.log(line("figure", "value", "target", "pass"));
    console.log(line("-".repeat(w0), "-".repeat(w1), "-".repeat(w2), "----"));
    for (const r of rows) console.log(line(r.figure, r.value, r.target, passLabel(r)));
  };
  return { rows, row, print };
}

export interface Pulled {
  ms: number;
  ttfb_ms: number;
  lines: number;
  bytes: number;
}

/**
 * GETs `url` with curl in a process of its own, as a CRM tool or analyst pulling an export would, and
 * counts the response's lines and bytes with wc: a client inside the benchmark process would spend
 * the server's CPU on reading. Fails on an HTTP error.
 */
export function pullWithCurl(url: string, headers: Record<string, string>): Promise<Pulled> {
  const args = Object.keys(headers).map((_, i) => `-H "$H${i}"`).join(" ");
  const env = { ...process.env, ...Object.fromEntries(Object.entries(headers).map(([k, v], i) => [`H${i}`, `${k}: ${v}`])), URL: url };
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    // curl writes the time to its first byte on stderr (%{stderr}), the body goes to wc.
    const p = spawn("sh", ["-c", `curl -sS -f -w '%{stderr}ttfb=%{time_starttransfer}' ${args} "$URL" | wc -lc`], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("close", (code) => {
      const ms = performance.now() - t0;
      const [lines, bytes] = out.trim().split(/\s+/).map(Number);
      const ttfb = /ttfb=([\d.]+)/.exec(err);
      if (code !== 0 || !bytes || !ttfb) reject(new Error(`curl ${url} failed (exit ${code}): ${err.trim()}`));
      else resolve({ ms, ttfb_ms: Number(ttfb[1]) * 1000, lines: lines!, bytes: bytes! });
    });
  });
}

/** What `calibrate` measured: the same fixed PostgreSQL work on any machine, in milliseconds. */
export interface Calibration {
  /** sum over 5M rows of generate_series, in memory: one core's speed at executor work. */
  cpu_ms: number;
  /** 500k rows in random key order into a logged table with a primary key: heap, btree and WAL. */
  write_ms: number;
}

/**
 * A fixed amount of PostgreSQL work, timed at the start of a benchmark. Figures taken on a shared
 * machine on different days differ by more than most optimisations do (the same code and data have
 * measured 3× apart); these two times say how fast the machine was during the run, so figures of
 * different runs can be compared.
 */
export async function calibrate(pool: pg.Pool): Promise<Calibration> {
  const c = await pool.connect();
  try {
    await c.query(`SET work_mem = '1GB'`);
    await c.query(`SELECT sum(i) FROM generate_series(1, 200000) i`); // warm-up
    let t0 = performance.now();
    await c.query(`SELECT sum(i) FROM generate_series(1, 5000000) i`);
    const cpu_ms = performance.now() - t0;
    await c.query(`DROP TABLE IF EXISTS bench_calibration`);
    await c.query(`CREATE TABLE bench_calibration (k int PRIMARY KEY, v int NOT NULL)`);
    await c.query(`CHECKPOINT`);
    t0 = performance.now();
    // A multiplicative permutation of 1..500000: random-looking key order, the same on every run.
    await c.query(`INSERT INTO bench_calibration SELECT (i::bigint * 7919 % 500009)::int, i FROM generate_series(1, 500000) i`);
    const write_ms = performance.now() - t0;
    await c.query(`DROP TABLE bench_calibration`);
    return { cpu_ms: Math.round(cpu_ms), write_ms: Math.round(write_ms) };
  } finally {
    c.release();
  }
}
