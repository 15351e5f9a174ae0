import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { copyJsonLinesOut, copyQueryOut, describeColumns, ndjsonLineSql } from "../src/activation/postgres/copy-out.js";
import { CopyTextToNdjson } from "../src/activation/postgres/ndjson-from-copy.js";

/**
 * NDJSON exports are written in this process from COPY's text output. They must be the very bytes
 * the SQL line builder gives (and so what every earlier export gave): for text needing JSON escapes
 * (quotes, backslashes, control characters, tabs, newlines, non-ASCII), nulls of every type,
 * booleans, numbers, dates, our own words, and types sent through to_json (timestamps, json).
 */
const ROWS = `
  SELECT * FROM (VALUES
    (1, 'plain', 'retained', true, DATE '2026-03-01', 3::int, 1.5::float8, 10::numeric, TIMESTAMPTZ '2026-03-01 10:00:00.123+00', '{"a":[1,"x"]}'::jsonb),
    (2, E'tab\\there', 'new', false, DATE '1970-01-01', NULL, -0.25::float8, NULL, NULL, NULL),
    (3, E'quote " back \\\\ slash', NULL, NULL, NULL, -7, NULL, 123.4500, TIMESTAMPTZ '1999-12-31 23:59:59+09', '"s"'::jsonb),
    (4, E'new\\nline and \\r and ' || chr(1) || chr(31) || ' ctl', 'inactive', true, DATE '2026-12-31', 0, 0::float8, 0::numeric, TIMESTAMPTZ '2026-06-01 00:00:00+00', 'null'::jsonb),
    (5, 'ünïcødé 😀 {"json":1} \\N', 'retained', false, DATE '2026-01-02', 2147483647, 1e300::float8, -1::numeric, NULL, '[]'::jsonb),
    (6, NULL, 'retained', true, DATE '2026-01-03', 1, 2::float8, 3::numeric, NULL, '{}'::jsonb),
    (7, '', 'new', true, DATE '2026-01-04', 1, 2::float8, 3::numeric, NULL, NULL)
  ) AS v(n, user_id, state, is_active, period, streak, ratio, amount, seen_at, extra)
  ORDER BY n`;
const COLUMNS = ["user_id", "state", "is_active", "period", "streak", "ratio", "amount", "seen_at", "extra"];

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

describe("NDJSON written from COPY's text output", () => {
  it("is byte for byte the document the SQL builder gives", async () => {
    const pool = env.ctx.db.pool;
    const types = await describeColumns(pool, ROWS, COLUMNS);
    const fromSql = await text(await copyJsonLinesOut(pool, `SELECT ${ndjsonLineSql(types)} AS line FROM (${ROWS}) q`, []));
    const fromCopy = await text(await copyQueryOut(pool, ROWS, [], COLUMNS, "ndjson"));
    expect(fromCopy).toBe(fromSql);
    const docs = fromCopy.trim().split("\n").map((l) => JSON.parse(l));
    expect(docs).toHaveLength(7);
    expect(docs[1].user_id).toBe("tab\there");
    expect(docs[2].user_id).toBe('quote " back \\ slash');
    expect(docs[3].user_id).toBe("new\nline and \r and \u0001\u001f ctl");
    expect(docs[4].user_id).toBe('ünïcødé 😀 {"json":1} \\N');
    expect(docs[5].user_id).toBeNull();
    expect(docs[6].user_id).toBe("");
    expect(docs[0]).toMatchObject({ state: "retained", is_active: true, period: "2026-03-01", streak: 3, ratio: 1.5, amount: 10, extra: { a: [1, "x"] } });
    expect(docs[1]).toMatchObject({ streak: null, amount: null, seen_at: null, is_active: false });
  });

  it("writes the same whatever the split of COPY's stream", async () => {
    const conv = () => new CopyTextToNdjson([
      { name: "id", kind: "text" }, { name: "n", kind: "raw" }, { name: "ok", kind: "bool" }, { name: "d", kind: "quoted" }, { name: "j", kind: "json" },
    ]);
    const input = Buffer.from('a\\tb\t1\tt\t2026-01-01\t{"k":"v\\\\\\\\"}\nü"\\\\\t\\N\tf\t\\N\t\\N\n', "utf8");
    const whole = await text(Readable.from([input]).pipe(conv()));
    expect(whole.trim().split("\n").map((l) => JSON.parse(l))).toEqual([
      { id: "a\tb", n: 1, ok: true, d: "2026-01-01", j: { k: "v\\" } },
      { id: 'ü"\\', n: null, ok: false, d: null, j: null },
    ]);
    for (let size = 1; size < input.length; size++) {
      const parts: Buffer[] = [];
      for (let i = 0; i < input.length; i += size) parts.push(input.subarray(i, i + size));
      expect(await text(Readable.from(parts).pipe(conv()))).toBe(whole);
    }
  });

  it("writes day numbers as the dates PostgreSQL prints for them, nulls, negatives and one digit included", async () => {
    const pool = env.ctx.db.pool;
    const days = [0, 7, -3, -1, 9, 20634, 65534, null];
    const asDates = await pool.query<{ d: string | null }>(
      `SELECT to_char(DATE '1970-01-01' + d, 'YYYY-MM-DD') AS d FROM unnest($1::int[]) WITH ORDINALITY AS t(d, o) ORDER BY o`, [days]);
    const input = Buffer.from(days.map((d, i) => `${i}\t${d ?? "\\N"}\n`).join(""), "latin1");
    const conv = new CopyTextToNdjson([{ name: "n", kind: "raw" }, { name: "day", kind: "day" }]);
    const docs = (await text(Readable.from([input]).pipe(conv))).trim().split("\n").map((l) => JSON.parse(l));
    expect(docs.map((d) => d.day)).toEqual(asDates.rows.map((r) => r.d));
  });

  it("fails on a row with a column missing, and on a stream cut inside a row", async () => {
    const conv = () => new CopyTextToNdjson([{ name: "a", kind: "raw" }, { name: "b", kind: "raw" }]);
    await expect(text(Readable.from([Buffer.from("1\n")]).pipe(conv()))).rejects.toThrow(/1 of 2 columns/);
    await expect(text(Readable.from([Buffer.from("1\t2\n3\t")]).pipe(conv()))).rejects.toThrow(/inside a row/);
  });
});
