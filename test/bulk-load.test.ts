import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseInstant } from "../src/facts/event-validation.js";
import { BulkLoadFileError, BulkLoadRejected, bulkLoadFile, parseEventChunks } from "../src/facts/bulk-load.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { createFact, ingest, processThrough } from "./helpers/api.js";
import { FIXTURES_DIR, FIXTURE_NAMES, fixtureMeta, parseCsv } from "./helpers/fixtures.js";
import { expectLayerEquals } from "./helpers/layer-compare.js";
import { REDIS_URL } from "./helpers/databases.js";
import { arrayEventSource, ensureUserKeys, foldEventsIntoActivity, ingestEventBatch, recordFold } from "../src/activation/postgres/ingest.js";
import { withTransaction } from "../src/activation/postgres/tx.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
let env: TestEnv;
let dir: string;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  dir = mkdtempSync(path.join(os.tmpdir(), "aa-bulk-test-"));
});
afterAll(async () => {
  await env?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let fileNo = 0;
function file(name: string, content: string | Buffer): string {
  const p = path.join(dir, `${fileNo++}-${name}`);
  writeFileSync(p, content);
  return p;
}

async function q<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await env.ctx.db.pool.query(sql, params)).rows as T[];
}

/** The fact's activity rows as `user_id,date,first,last` (instants in UTC ISO). */
async function activity(fact: string): Promise<string[]> {
  const rows = await q<{ r: string }>(
    `SELECT u.external_id || ',' || a.activity_date || ',' || to_char(a.first_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') || ',' ||
            to_char(a.last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS r
     FROM activity_day a JOIN app_user u USING (user_key) JOIN fact f ON f.id = a.fact_id
     WHERE f.name = $1 ORDER BY 1`,
    [fact],
  );
  return rows.map((r) => r.r);
}

/** Scratch tables of the loader that outlived a load (there must be none). */
async function stagedTables(): Promise<string[]> {
  return (await q<{ relname: string }>(`SELECT relname FROM pg_class WHERE relname LIKE 'bulk\\_%' AND relpersistence <> 't'`)).map((r) => r.relname);
}

async function countActivity(): Promise<number> {
  return (await q<{ n: number }>(`SELECT count(*)::int AS n FROM activity_day`))[0]!.n;
}

async function rejection(p: Promise<unknown>): Promise<BulkLoadRejected> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, "the load should have been rejected").toBeInstanceOf(BulkLoadRejected);
  return err as BulkLoadRejected;
}

// Two users over two Seoul days; u1 twice on 2026-03-02 (local), the second event an hour after
// local midnight written in UTC.
const CSV_SMALL = [
  "user_id,occurred_at",
  "u1,2026-03-02T10:00:00+09:00",
  "u2,2026-03-02T11:30:00.250Z",
  "u1,2026-03-02T01:00:00Z",
  "u1,2026-03-01T14:59:59.999Z",
  "",
].join("\n");
const EXPECTED_SMALL = [
  "u1,2026-03-01,2026-03-01T14:59:59.999,2026-03-01T14:59:59.999",
  "u1,2026-03-02,2026-03-02T01:00:00.000,2026-03-02T01:00:00.000",
  "u2,2026-03-02,2026-03-02T11:30:00.250,2026-03-02T11:30:00.250",
];
const NDJSON_SMALL = [
  '{"user_id":"u1","occurred_at":"2026-03-02T10:00:00+09:00"}',
  '{"occurred_at":"2026-03-02T11:30:00.250Z","user_id":"u2"}',
  "",
  '{"user_id":"u1","occurred_at":"2026-03-02T01:00:00Z"}',
  '  {"user_id": "u1", "occurred_at": "2026-03-01T14:59:59.999Z"}  ',
].join("\n");

describe("bulk loader: formats", () => {
  it.each([
    ["csv", "events.csv", CSV_SMALL],
    ["ndjson", "events.ndjson", NDJSON_SMALL],
    ["csv, gzipped", "events.csv.gz", gzipSync(CSV_SMALL)],
    ["ndjson, gzipped", "events.ndjson.gz", gzipSync(NDJSON_SMALL)],
    ["csv with CRLF line endings", "events.csv", CSV_SMALL.replace(/\n/g, "\r\n")],
    ["gzip without a .gz name (magic bytes)", "events.csv", gzipSync(CSV_SMALL)],
    ["ndjson without a telling name (first character)", "events.txt", NDJSON_SMALL],
    ["csv with a byte order mark", "events.csv", `\uFEFF${CSV_SMALL}`],
    ["ndjson with a byte order mark", "events.jsonl", `\uFEFF${NDJSON_SMALL}`],
  ])("loads %s", async (label, name, content) => {
    const fact = `fmt_${label.replace(/[^a-z]+/g, "_")}`.slice(0, 60);
    await createFact(env, fact, "Asia/Seoul");
    const res = await bulkLoadFile(env.ctx, fact, file(name, content));
    expect(res).toMatchObject({ rows: 4, rejected: 0, fact, earliest_date: "2026-03-01", latest_date: "2026-03-02" });
    expect(res.gzip).toBe(name.endsWith(".gz") || Buffer.isBuffer(content));
    expect(await activity(fact)).toEqual(EXPECTED_SMALL);
    const f = (await q<{ earliest_date: string; latest_date: string; dirty_from: string | null }>(
      `SELECT earliest_date, latest_date, dirty_from FROM fact WHERE name = $1`,
      [fact],
    ))[0]!;
    expect(f).toEqual({ earliest_date: "2026-03-01", latest_date: "2026-03-02", dirty_from: null });
  });

  it("turns an integer user_id in NDJSON into its decimal string", async () => {
    await createFact(env, "ndjson_int_ids", "UTC");
    const res = await bulkLoadFile(
      env.ctx,
      "ndjson_int_ids",
      file("ints.ndjson", '{"user_id":12345,"occurred_at":"2026-03-02T10:00:00Z"}\n{"user_id":"12345","occurred_at":"2026-03-02T11:00:00Z"}\n'),
    );
    expect(res.rows).toBe(2);
    expect(await activity("ndjson_int_ids")).toEqual(["12345,2026-03-02,2026-03-02T10:00:00.000,2026-03-02T11:00:00.000"]);
  });

  it("reads RFC 4180 quoted fields: commas, doubled quotes, either column order, CRLF", async () => {
    await createFact(env, "quoted", "UTC");
    const csv =
      'occurred_at,user_id\r\n"2026-03-02T10:00:00Z","a,b"\r\n2026-03-02T10:00:01Z,"say ""hi"""\r\n' +
      '2026-03-02T10:00:02Z,"plain"\r\n2026-03-02T10:00:03Z,"€ ü 名前"\r\n2026-03-02T10:00:04Z,""""\r\n2026-03-02T10:00:05Z,back\\slash';
    const res = await bulkLoadFile(env.ctx, "quoted", file("quoted.csv", csv));
    expect(res.rows).toBe(6);
    const ids = (await activity("quoted")).map((r) => r.slice(0, r.indexOf(",2026-")));
    expect(ids).toEqual(['"', "a,b", "back\\slash", "plain", 'say "hi"', "€ ü 名前"].sort());
  });

  it("parses the same rows whatever the chunk boundaries (quotes, CRLF, line breaks inside quotes)", () => {
    const text =
      'user_id,occurred_at\r\n"a,""b""",2026-03-02T10:00:00Z\r\nplain,2026-03-02T10:00:00.5+01:00\n\n"multi\nline",2026-03-02T10:00:00Z\n' +
      'x,2026-03-02T10:00\n"",2026-03-02T10:00:00Z\nlast,2026-03-02T10:00:00Z';
    const whole = parseEventChunks([text], "csv", Date.now());
    expect(whole.userIds).toEqual(['a,"b"', "plain", "last"]);
    expect(whole.bad.map((b) => [b.line, b.message])).toEqual([
      [5, "user_id contains a control character"],
      [7, "occurred_at has no UTC offset (add Z or ±hh:mm)"],
      [8, "user_id must not be empty"],
    ]);
    for (let i = 0; i <= text.length; i++)
      for (const j of [i, i + 1, i + 7]) {
        const got = parseEventChunks([text.slice(0, i), text.slice(i, j), text.slice(j)], "csv", Date.now());
        expect(got, `split at ${i}/${j}`).toEqual(whole);
      }
    const nd = '{"user_id":"a","occurred_at":"2026-03-02T10:00:00Z"}\r\n\r\nnot json\n{"user_id":"b","occurred_at":"2026-03-02T10:00:00Z"}';
    const ndWhole = parseEventChunks([nd], "ndjson", Date.now());
    expect(ndWhole.userIds).toEqual(["a", "b"]);
    expect(ndWhole.bad.map((b) => [b.line, b.message])).toEqual([[3, "line is not valid JSON"]]);
    for (let i = 0; i <= nd.length; i++) expect(parseEventChunks([nd.slice(0, i), nd.slice(i)], "ndjson", Date.now())).toEqual(ndWhole);
  });
});

describe("bulk loader: the fixtures give the expected layer", () => {
  it.each(FIXTURE_NAMES)("%s: events.csv loaded in bulk, then processed", async (fixture) => {
    const meta = fixtureMeta(fixture);
    const fact = `${fixture.replace(/-/g, "_")}_bulk`;
    await createFact(env, fact, meta.fact_timezone);
    const res = await bulkLoadFile(env.ctx, fact, path.join(FIXTURES_DIR, fixture, "events.csv"));
    expect(res.rows).toBe(parseCsv(readFileSync(path.join(FIXTURES_DIR, fixture, "events.csv"), "utf8")).length);
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });

  it.each(FIXTURE_NAMES)("%s: the same in many small segments (days straddle segments, duplicates fold twice)", async (fixture) => {
    const meta = fixtureMeta(fixture);
    const fact = `${fixture.replace(/-/g, "_")}_segments`;
    await createFact(env, fact, meta.fact_timezone);
    const res = await bulkLoadFile(env.ctx, fact, path.join(FIXTURES_DIR, fixture, "events.csv"), { segmentRows: 40, readChunkBytes: 512 });
    expect(res.segments).toBeGreaterThan(10);
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
    expect(await stagedTables()).toEqual([]);
  });

  it("seoul-70d: part 1, processed, then a late part 2 gzipped, marks the fact dirty and ends equal to the whole log", async () => {
    const fixture = "seoul-70d";
    const meta = fixtureMeta(fixture);
    const fact = "seoul_bulk_late";
    await createFact(env, fact, meta.fact_timezone);
    await bulkLoadFile(env.ctx, fact, path.join(FIXTURES_DIR, fixture, "events_part1.csv"));
    await processThrough(env, fact, meta.part1_through);
    await expectLayerEquals(env, fact, fixture, "expected_part1", meta.part1_through);
    const part2 = file("part2.csv.gz", gzipSync(readFileSync(path.join(FIXTURES_DIR, fixture, "events_part2.csv"))));
    await bulkLoadFile(env.ctx, fact, part2);
    const f = (await q<{ dirty_from: string | null }>(`SELECT dirty_from FROM fact WHERE name = $1`, [fact]))[0]!;
    expect(f.dirty_from).not.toBeNull();
    expect(f.dirty_from! <= meta.part1_through).toBe(true);
    const run = await processThrough(env, fact, meta.through);
    expect(run.from <= meta.part1_through).toBe(true);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });
});

describe("bulk loader: alongside HTTP ingestion", () => {
  it("a bulk load and HTTP batches of the same fact at the same time add up to the whole log", async () => {
    const fixture = "seoul-70d";
    const meta = fixtureMeta(fixture);
    const fact = "seoul_bulk_and_http";
    await createFact(env, fact, meta.fact_timezone);
    const part2 = parseCsv(readFileSync(path.join(FIXTURES_DIR, fixture, "events_part2.csv"), "utf8")).map((r) => ({ user_id: r.user_id!, occurred_at: r.occurred_at! }));
    await Promise.all([
      bulkLoadFile(env.ctx, fact, path.join(FIXTURES_DIR, fixture, "events_part1.csv"), { segmentRows: 30, readChunkBytes: 256 }),
      ingest(env, fact, part2, 50),
    ]);
    await processThrough(env, fact, meta.through);
    await expectLayerEquals(env, fact, fixture, "expected", meta.through);
  });
});

describe("bulk loader: a deadlock with an HTTP batch", () => {
  it("aborts the batch (which retries), not the load", async () => {
    const fact = "deadlock_bulk_http";
    await createFact(env, fact, "UTC");
    const factRef = { id: (await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: fact } })).id, name: fact, timezone: "UTC" };
    // Two users, keyed b before a, known beforehand; both active on the contested day.
    await ingest(env, fact, [{ user_id: "dl-b", occurred_at: "2026-03-01T10:00:00Z" }]);
    await ingest(env, fact, [{ user_id: "dl-a", occurred_at: "2026-03-01T10:00:00Z" }]);
    const at = Date.parse("2026-03-02T10:00:00Z");
    // The load folds a's day in its first segment, then waits for the gate before b's.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    async function* events() {
      yield { userIds: ["dl-a"], timesMs: [at] };
      await gate;
      yield { userIds: ["dl-b"], timesMs: [at + 1000] };
    }
    const load = env.ctx.engine.bulkLoad(factRef, events(), { segmentRows: 1 });
    const pool = env.ctx.db.pool;
    const storedDays = async (user: string) =>
      (await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM activity_day a JOIN app_user u ON u.user_key = a.user_key
         WHERE a.fact_id = $1 AND u.external_id = $2 AND a.activity_date = '2026-03-02'`, [factRef.id, user],
      )).rows[0]!.n;
    // The batch's transaction, held open by the test: it takes b's day first, as an HTTP batch of b
    // and a would (its rows go in key order).
    const batch = await pool.connect();
    try {
      // (This test's database only: other test files run beside it.)
      await expect
        .poll(async () => (await pool.query(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
           WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND c.relname = 'activity_day' AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()`,
        )).rows[0].n, { timeout: 10_000 })
        .toBeGreaterThan(0);
      expect(await storedDays("dl-a")).toBe(0); // not committed: invisible to others
      await batch.query("BEGIN");
      await ingestEventBatch(batch, factRef, [{ userId: "dl-b", occurredAtMs: at + 2000 }]);
      // The load now wants b's day and waits for the batch: its wait starts first.
      openGate();
      await expect
        .poll(async () => (await pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%activity_day%'`,
        )).rows[0].n, { timeout: 10_000 })
        .toBe(1);
      // The batch wants a's day: the cycle closes. The batch's check comes first and aborts it.
      const second = await ingestEventBatch(batch, factRef, [{ userId: "dl-a", occurredAtMs: at + 3000 }]).then(
        () => "completed",
        (err: { code?: string }) => err.code,
      );
      expect(second).toBe("40P01");
    } finally {
      await batch.query("ROLLBACK").catch(() => {});
      batch.release();
      openGate();
    }
    expect(await load).toMatchObject({ rows: 2 });
    expect(await storedDays("dl-a")).toBe(1);
    expect(await storedDays("dl-b")).toBe(1);
  });
});

describe("fold bookkeeping", () => {
  it("marks dates it did not track dirty when a run passes them before the transaction ends", async () => {
    await createFact(env, "fold_race", "UTC");
    const fact = (await q<{ id: number }>(`SELECT id FROM fact WHERE name = 'fold_race'`))[0]!;
    const ref = { id: fact.id, name: "fold_race", timezone: "UTC" };
    const ms = (iso: string) => Date.parse(iso);
    await withTransaction(env.ctx.db.pool, async (c) => {
      await ensureUserKeys(c, ["race1", "race2"]);
      const fold = await foldEventsIntoActivity(c, ref, arrayEventSource(["race1", "race2"], [ms("2026-03-05T10:00:00Z"), ms("2026-03-09T10:00:00Z")]));
      // Never processed when the fold ran: nothing tracked, everything after the watermark.
      expect(fold).toEqual({ earliest_date: "2026-03-05", latest_date: "2026-03-09", min_new_date: null, untracked_from: "2026-03-05" });
      // A run claims through 2026-03-07 meanwhile (another connection, committed).
      await env.ctx.db.pool.query(`UPDATE fact SET running_through = '2026-03-07' WHERE id = $1`, [fact.id]);
      await recordFold(c, fact.id, fold);
    });
    const f = (await q<{ dirty_from: string | null }>(`SELECT dirty_from FROM fact WHERE id = $1`, [fact.id]))[0]!;
    expect(f.dirty_from).toBe("2026-03-05");
    // Once processed through 03-07, a late event on 03-06 is tracked exactly: dirty from 03-06 only
    // (dirty_from is already 03-05 here, so check on a fresh fact state).
    await env.ctx.db.pool.query(`UPDATE fact SET running_through = NULL, processed_through = '2026-03-07', dirty_from = NULL WHERE id = $1`, [fact.id]);
    await withTransaction(env.ctx.db.pool, async (c) => {
      const fold = await foldEventsIntoActivity(c, ref, arrayEventSource(["race1", "race1"], [ms("2026-03-06T10:00:00Z"), ms("2026-03-05T09:00:00Z")]));
      expect(fold).toEqual({ earliest_date: "2026-03-05", latest_date: "2026-03-06", min_new_date: "2026-03-06", untracked_from: null });
      await recordFold(c, fact.id, fold);
    });
    expect((await q<{ dirty_from: string | null }>(`SELECT dirty_from FROM fact WHERE id = $1`, [fact.id]))[0]!.dirty_from).toBe("2026-03-06");
  });
});

describe("bulk loader: bad input", () => {
  const future = new Date(Date.now() + 2 * 86_400_000).toISOString();
  const nearFuture = new Date(Date.now() + 3_600_000).toISOString();
  const bad = [
    "user_id,occurred_at",
    "good1,2026-03-02T10:00:00Z", // 2
    "good2,2026-03-02T10:00:00", // 3 missing offset
    `good3,${future}`, // 4 more than a day ahead
    ",2026-03-02T10:00:00Z", // 5 empty user id
    `${"x".repeat(257)},2026-03-02T10:00:00Z`, // 6 too long
    '"tab\there",2026-03-02T10:00:00Z', // 7 control character
    "good4,2026-03-02T10:00:00Z,extra", // 8 three fields
    "good5,2026-02-30T10:00:00Z", // 9 no such date
    `good6,${nearFuture}`, // 10 fine: less than a day ahead
    "good7,yesterday", // 11 not a timestamp
    'bad"quote,2026-03-02T10:00:00Z', // 12 quote in an unquoted field
  ].join("\n");
  const expectedErrors = [
    [3, "occurred_at has no UTC offset (add Z or ±hh:mm)"],
    [4, "occurred_at is more than 1 day in the future"],
    [5, "user_id must not be empty"],
    [6, "user_id is longer than 256 characters"],
    [7, "user_id contains a control character"],
    [8, "expected 2 fields, got 3"],
    [9, "occurred_at is not a valid date and time"],
    [11, "occurred_at is not an RFC 3339 timestamp"],
    [12, "a quote inside an unquoted field (quote the whole field and double inner quotes)"],
  ];

  it("rejects the whole file with line numbers and stores nothing", async () => {
    await createFact(env, "rejected", "UTC");
    const before = await countActivity();
    const users = (await q<{ n: number }>(`SELECT count(*)::int AS n FROM app_user`))[0]!.n;
    const err = await rejection(bulkLoadFile(env.ctx, "rejected", file("bad.csv", bad)));
    expect(err.errors.map((e) => [e.line, e.message])).toEqual(expectedErrors);
    expect(err.errorCount).toBe(9);
    expect(err.message).toContain("9 invalid rows");
    expect(err.message).toContain("line 3: occurred_at has no UTC offset");
    expect(await countActivity()).toBe(before);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM app_user`))[0]!.n).toBe(users);
    const f = (await q<{ earliest_date: string | null }>(`SELECT earliest_date FROM fact WHERE name = 'rejected'`))[0]!;
    expect(f.earliest_date).toBeNull();
    // The pool is fine afterwards (the aborted COPY's connection was discarded, not reused).
    const ok = await bulkLoadFile(env.ctx, "rejected", file("ok.csv", "user_id,occurred_at\nz,2026-03-02T10:00:00Z\n"));
    expect(ok.rows).toBe(1);
  });

  it("rejects a file whose bad row comes after segments were already folded, and stores nothing", async () => {
    await createFact(env, "late_bad", "UTC");
    const before = await countActivity();
    const lines = ["user_id,occurred_at"];
    for (let i = 0; i < 3000; i++) lines.push(`late${i % 700},2026-03-${String(1 + (i % 28)).padStart(2, "0")}T10:00:00Z`);
    lines.push("late1,2026-03-02T10:00:00+25:00");
    const err = await rejection(bulkLoadFile(env.ctx, "late_bad", file("late.csv", lines.join("\n")), { segmentRows: 200, readChunkBytes: 4096 }));
    expect(err.errors.map((e) => [e.line, e.message])).toEqual([[3002, "occurred_at has an invalid UTC offset"]]);
    expect(await countActivity()).toBe(before);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM app_user WHERE external_id LIKE 'late%'`))[0]!.n).toBe(0);
    expect(await stagedTables()).toEqual([]);
  });

  it("drops scratch tables a crashed load left behind, and only those", async () => {
    await createFact(env, "orphans", "UTC");
    const live = (await q<{ pid: number }>(`SELECT pg_backend_pid() AS pid`))[0]!.pid;
    await q(`CREATE UNLOGGED TABLE bulk_day_999999_0badc0de_0 (uid text)`);
    await q(`CREATE UNLOGGED TABLE bulk_day_999999_0badc0de_1 (uid text)`);
    await q(`CREATE UNLOGGED TABLE bulk_day_${live}_0badc0de_0 (uid text)`);
    await bulkLoadFile(env.ctx, "orphans", file("o.csv", CSV_SMALL));
    expect(await stagedTables()).toEqual([`bulk_day_${live}_0badc0de_0`]);
    await q(`DROP TABLE bulk_day_${live}_0badc0de_0`);
  });

  it("reports the first 100 errors and the total count", async () => {
    await createFact(env, "many_bad", "UTC");
    const lines = ["user_id,occurred_at"];
    for (let i = 0; i < 250; i++) lines.push(i % 2 ? `u${i},2026-03-02T10:00:00Z` : `u${i},not-a-time`);
    const err = await rejection(bulkLoadFile(env.ctx, "many_bad", file("many.csv", lines.join("\n"))));
    expect(err.errorCount).toBe(125);
    expect(err.errors).toHaveLength(100);
    expect(err.errors[0]!.line).toBe(2);
    expect(err.errors[99]!.line).toBe(200);
    expect(err.message).toContain("125 invalid rows");
    expect(err.message).toContain("and 25 more");
  });

  it("with a reject file, loads the good rows and lists exactly the bad ones with reasons", async () => {
    await createFact(env, "with_rejects", "UTC");
    const rejectFile = path.join(dir, "rejects.csv");
    const res = await bulkLoadFile(env.ctx, "with_rejects", file("bad.csv", bad), { rejectFile });
    expect(res).toMatchObject({ rows: 2, rejected: 9 });
    expect((await activity("with_rejects")).map((r) => r.split(",")[0])).toEqual(["good1", "good6"]);
    const text = readFileSync(rejectFile, "utf8");
    const rows = parseRejects(text);
    expect(rows[0]).toEqual(["line", "user_id", "occurred_at", "reason"]);
    expect(rows.slice(1).map((r) => [Number(r[0]), r[3]])).toEqual(expectedErrors);
    const byLine = new Map(rows.slice(1).map((r) => [Number(r[0]), r]));
    expect(byLine.get(3)!.slice(1, 3)).toEqual(["good2", "2026-03-02T10:00:00"]);
    expect(byLine.get(5)!.slice(1, 3)).toEqual(["", "2026-03-02T10:00:00Z"]);
    expect(byLine.get(7)![1]).toBe("tab\there");
    expect(byLine.get(4)![2]).toBe(future);
  });

  it("with a reject file, a file of only bad rows loads nothing and lists them all", async () => {
    await createFact(env, "all_bad", "UTC");
    const rejectFile = path.join(dir, "all-bad-rejects.csv");
    const res = await bulkLoadFile(env.ctx, "all_bad", file("allbad.ndjson", '{"user_id":"a"}\n{"user_id":"b","occurred_at":"2026-03-02T10:00:00Z","x":1}\n[1]\n'), { rejectFile });
    expect(res).toMatchObject({ rows: 0, rejected: 3 });
    expect(parseRejects(readFileSync(rejectFile, "utf8")).slice(1).map((r) => [r[0], r[3]])).toEqual([
      ["1", "occurred_at is required"],
      ["2", "unknown field 'x'"],
      ["3", "an event must be an object"],
    ]);
  });

  it("refuses a CSV with an unknown or a missing column, and an empty file", async () => {
    await createFact(env, "bad_header", "UTC");
    await expect(bulkLoadFile(env.ctx, "bad_header", file("h1.csv", "user_id,occurred_at,country\nu,2026-03-02T10:00:00Z,KR\n"))).rejects.toThrow(
      /line 1: unknown column 'country'/,
    );
    await expect(bulkLoadFile(env.ctx, "bad_header", file("h2.csv", "user_id\nu\n"))).rejects.toThrow(/missing column 'occurred_at'/);
    await expect(bulkLoadFile(env.ctx, "bad_header", file("h3.csv", ""))).rejects.toBeInstanceOf(BulkLoadFileError);
    await expect(bulkLoadFile(env.ctx, "bad_header", file("h4.csv.gz", "not gzip"))).rejects.toThrow(/not gzip/);
    await expect(bulkLoadFile(env.ctx, "bad_header", path.join(dir, "missing.csv"))).rejects.toThrow(/no such file/);
    await expect(bulkLoadFile(env.ctx, "no_such_fact", file("x.csv", CSV_SMALL))).rejects.toThrow(/No fact named/);
    // A header alone is a valid, empty load.
    expect((await bulkLoadFile(env.ctx, "bad_header", file("h5.csv", "user_id,occurred_at\n"))).rows).toBe(0);
  });

  it("counts a user_id's length in characters, as HTTP ingestion does: 256 emoji load, 257 are refused", async () => {
    await createFact(env, "emoji_ids", "UTC");
    const longest = "😀".repeat(256);
    const err = await rejection(bulkLoadFile(env.ctx, "emoji_ids", file("emoji.csv", `user_id,occurred_at\n${longest},2026-03-02T10:00:00Z\n${longest}😀,2026-03-02T10:00:00Z\n`)));
    expect(err.errors.map((e) => [e.line, e.message])).toEqual([[3, "user_id is longer than 256 characters"]]);
    const loaded = await bulkLoadFile(env.ctx, "emoji_ids", file("emoji.ndjson", `${JSON.stringify({ user_id: longest, occurred_at: "2026-03-02T10:00:00Z" })}\n`));
    expect(loaded.rows).toBe(1);
    expect(await activity("emoji_ids")).toEqual([`${longest},2026-03-02,2026-03-02T10:00:00.000,2026-03-02T10:00:00.000`]);
  });

  it("reports an NDJSON line that is not JSON, an unknown field and a non-string time by line", async () => {
    await createFact(env, "nd_bad", "UTC");
    const nd = ['{"user_id":"a","occurred_at":"2026-03-02T10:00:00Z"}', "{oops", '{"user_id":"b","occurred_at":"2026-03-02T10:00:00Z","country":"KR"}', '{"user_id":"c","occurred_at":1772445600000}', '{"user_id":1.5,"occurred_at":"2026-03-02T10:00:00Z"}'].join("\n");
    const err = await rejection(bulkLoadFile(env.ctx, "nd_bad", file("bad.ndjson", nd)));
    expect(err.errors.map((e) => [e.line, e.message])).toEqual([
      [2, "line is not valid JSON"],
      [3, "unknown field 'country'"],
      [4, "occurred_at must be an RFC 3339 string"],
      [5, "user_id must be a string or an integer"],
    ]);
  });
});

/** A small RFC 4180 reader for the reject file (quoted fields, doubled quotes, line breaks in quotes). */
function parseRejects(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

describe("bulk loader: the CLI", () => {
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        "npx",
        ["tsx", "src/cli.ts", "load", ...args],
        {
          cwd: ROOT,
          env: { ...process.env, DATABASE_URL: env.ctx.config.DATABASE_URL, REDIS_URL, REDIS_PREFIX: env.ctx.config.REDIS_PREFIX, LOG_LEVEL: "silent" },
          timeout: 60_000,
        },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it("loads a file and prints the final line; rejects a bad file with line numbers and exit code 1", async () => {
    await createFact(env, "cli_fact", "Asia/Seoul");
    const ok = await run(["cli_fact", file("cli.csv.gz", gzipSync(CSV_SMALL))]);
    expect(ok.code, ok.stderr).toBe(0);
    const last = ok.stdout.trim().split("\n").pop()!;
    expect(last).toMatch(/^loaded 4 rows \(0 rejected\) into cli_fact in \d+\.\d s: [\d,]+ rows\/s$/);
    expect(await activity("cli_fact")).toEqual(EXPECTED_SMALL);

    const badFile = file("cli-bad.csv", "user_id,occurred_at\nv1,2026-03-02T10:00:00Z\nv2,2026-03-02 10:00\n");
    const bad = await run(["cli_fact", badFile]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("1 invalid row in");
    expect(bad.stderr).toContain("line 3: occurred_at has no UTC offset");
    expect(await activity("cli_fact")).toEqual(EXPECTED_SMALL);

    const rejectFile = path.join(dir, "cli-rejects.csv");
    const partial = await run(["cli_fact", badFile, "--reject-file", rejectFile]);
    expect(partial.code, partial.stderr).toBe(0);
    expect(partial.stdout.trim().split("\n").pop()).toMatch(/^loaded 1 rows \(1 rejected\) into cli_fact in /);
    expect(readFileSync(rejectFile, "utf8")).toBe("line,user_id,occurred_at,reason\n3,v2,2026-03-02 10:00,occurred_at has no UTC offset (add Z or ±hh:mm)\n");
  }, 120_000);
});

// The original parseInstant (regex and Date only), kept here as the reference its fast path is held to.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-](\d{2}):(\d{2}))$/;
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;
function referenceInstant(raw: string): { ok: true; ms: number } | { ok: false; message: string } {
  const m = RFC3339.exec(raw);
  if (!m) {
    if (LOCAL_TIME.test(raw)) return { ok: false, message: "occurred_at has no UTC offset (add Z or ±hh:mm)" };
    return { ok: false, message: "occurred_at is not an RFC 3339 timestamp" };
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  // Date.UTC reads years 0–99 as 1900–1999; a Date whose full year is set afterwards does not.
  const utc = (yy: number, ...rest: number[]) => {
    const date = new Date(Date.UTC(2000, 0, 1));
    date.setUTCFullYear(yy, rest[0] ?? 0, rest[1] ?? 1);
    date.setUTCHours(rest[2] ?? 0, rest[3] ?? 0, rest[4] ?? 0, rest[5] ?? 0);
    return date.getTime();
  };
  if (mo < 1 || mo > 12 || d < 1 || d > new Date(utc(y, mo, 0)).getUTCDate() || h > 23 || mi > 59 || s > 60)
    return { ok: false, message: "occurred_at is not a valid date and time" };
  let offsetMin = 0;
  if (m[8] !== "Z" && m[8] !== "z") {
    const oh = Number(m[9]), om = Number(m[10]);
    if (oh > 23 || om > 59) return { ok: false, message: "occurred_at has an invalid UTC offset" };
    offsetMin = (m[8]!.startsWith("-") ? -1 : 1) * (oh * 60 + om);
  }
  const ms = (m[7] ?? "").padEnd(3, "0").slice(0, 3);
  const t = utc(y, mo - 1, d, h, mi, s, Number(ms)) - offsetMin * 60_000;
  if (!Number.isFinite(t)) return { ok: false, message: "occurred_at is out of range" };
  return { ok: true, ms: t };
}

describe("parseInstant", () => {
  it("reads years 0–99 as written (Date.UTC would make 0099 into 1999)", () => {
    expect(parseInstant("0099-12-31T00:00:00Z")).toEqual({ ok: true, ms: Date.parse("0099-12-31T00:00:00Z") });
    expect(new Date((parseInstant("0050-06-15T12:00:00+02:00") as { ms: number }).ms).toISOString()).toBe("0050-06-15T10:00:00.000Z");
    expect(parseInstant("0000-02-29T00:00:00Z")).toEqual({ ok: true, ms: Date.parse("0000-02-29T00:00:00Z") });
  });

  it("gives exactly what the regex parser gives, on well-formed and malformed timestamps", () => {
    const num = (max: number, width: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(width, "0"));
    const instant = fc
      .tuple(
        fc.oneof(num(9999, 4), fc.constantFrom("0000", "0099", "0100", "1600", "1900", "2000", "2024", "2100", "1969"), fc.constantFrom("99", "20266")),
        fc.oneof(num(13, 2), fc.constantFrom("1", "02")),
        fc.oneof(num(32, 2), fc.constantFrom("29", "30", "31", "3")),
        fc.constantFrom("T", "t", " ", "_"),
        num(25, 2),
        num(61, 2),
        fc.oneof(num(61, 2), fc.constantFrom("60", "5")),
        fc.oneof(fc.constant(""), fc.stringMatching(/^\.[0-9]{0,11}$/), fc.constant(".")),
        fc.oneof(fc.constantFrom("Z", "z", "", "+09:00", "-07:00", "+05:30", "+24:00", "-00:60", "+0900", "+09:0", "Zz", " Z", "+٠٩:00"), fc.tuple(fc.constantFrom("+", "-"), num(25, 2), num(61, 2)).map(([s, h, m]) => `${s}${h}:${m}`)),
      )
      .map(([y, mo, d, sep, h, mi, s, frac, off]) => `${y}-${mo}-${d}${sep}${h}:${mi}:${s}${frac}${off}`);
    fc.assert(
      fc.property(fc.oneof(instant, fc.string()), (raw) => {
        expect(parseInstant(raw)).toEqual(referenceInstant(raw));
      }),
      { numRuns: 20_000 },
    );
    for (const raw of ["2026-03-01T00:00:00Z", "1970-01-01T00:00:00.000+00:00", "2024-02-29T23:59:60.999999999-12:59", "0100-03-01T00:00:00Z", "0099-12-31T00:00:00Z", "9999-12-31T23:59:59.999+23:59"])
      expect(parseInstant(raw)).toEqual(referenceInstant(raw));
  });
});
