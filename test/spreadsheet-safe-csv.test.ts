import { Readable } from "node:stream";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpreadsheetSafeCsv } from "../src/http/spreadsheet-safe-csv.js";
import { api, createFact, ingest, processThrough, waitForRecord } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/** A field as PostgreSQL's COPY CSV writes it: quoted when it holds a comma, a quote or starts/ends oddly. */
const csvField = (v: string) => (/[",\n\r]/.test(v) || v === "" ? `"${v.replace(/"/g, '""')}"` : v);
const csvOf = (rows: string[][]) => rows.map((r) => r.map(csvField).join(",")).join("\n") + "\n";

/** RFC 4180 parse, enough for what csvOf writes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), (field = "");
    else if (c === "\n") row.push(field), rows.push(row), (row = []), (field = "");
    else field += c;
  }
  return rows;
}

async function neutralised(text: string, cuts: number[]): Promise<string> {
  const bytes = Buffer.from(text, "utf8");
  const chunks: Buffer[] = [];
  let at = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
    chunks.push(bytes.subarray(at, cut));
    at = cut;
  }
  chunks.push(bytes.subarray(at));
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(chunks.filter((c) => c.length)).pipe(new SpreadsheetSafeCsv())) out.push(chunk as Buffer);
  return Buffer.concat(out).toString("utf8");
}

describe("SpreadsheetSafeCsv", () => {
  it("prefixes with ' every field that starts with = + - @, plain or quoted, and nothing else", async () => {
    const text = csvOf([
      ["user_id", "state", "inactivity_periods"],
      ['=HYPERLINK("http://x","y")', "new", "0"],
      ["+1", "retained", "3"],
      ["-2+3", "inactive", "12"],
      ["@SUM(1,2)", "new", "0"],
      ["a=b", "new", "0"],
      ['"=quoted start', "new", "0"],
      ["", "new", "0"],
    ]);
    expect(parseCsv(await neutralised(text, []))).toEqual([
      ["user_id", "state", "inactivity_periods"],
      ["'=HYPERLINK(\"http://x\",\"y\")", "new", "0"],
      ["'+1", "retained", "3"],
      ["'-2+3", "inactive", "12"],
      ["'@SUM(1,2)", "new", "0"],
      ["a=b", "new", "0"],
      ['"=quoted start', "new", "0"],
      ["", "new", "0"],
    ]);
  });

  it("gives the same answer wherever the stream's chunks are cut (property)", async () => {
    const fieldChars = fc.constantFrom("=", "+", "-", "@", "a", "1", ",", '"', " ", "é", "😀");
    const field = fc.array(fieldChars, { maxLength: 6 }).map((cs) => cs.join(""));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(field, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(200), { maxLength: 8 }), async (rows, cuts) => {
        const width = Math.max(...rows.map((r) => r.length));
        const table = rows.map((r) => [...r, ...Array<string>(width - r.length).fill("x")]);
        const expected = table.map((r) => r.map((v) => (/^[=+\-@]/.test(v) ? `'${v}` : v)));
        expect(parseCsv(await neutralised(csvOf(table), cuts))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe("spreadsheet_safe=true on CSV exports", () => {
  let env: TestEnv;
  let workers: Awaited<ReturnType<TestEnv["startWorkers"]>>;
  const FACT = "csv_injection";
  const IDS = ['=HYPERLINK("http://evil.example","open")', "+41 79 000", "@cmd", "-1", "plain"];
  beforeAll(async () => {
    env = await createTestEnv();
    workers = env.startWorkers();
    await createFact(env, FACT);
    await ingest(env, FACT, IDS.map((user_id) => ({ user_id, occurred_at: "2026-03-01T10:00:00Z" })));
    await processThrough(env, FACT, "2026-03-02");
  });
  afterAll(async () => {
    await workers?.close();
    await env?.close();
  });

  const csvIds = (body: string) => parseCsv(body).slice(1).map((r) => r[0]).sort();
  const safe = (id: string) => (/^[=+\-@]/.test(id) ? `'${id}` : id);

  it("status: the ids as stored by default, neutralised when asked; JSON and NDJSON unchanged", async () => {
    const url = `/v1/facts/${FACT}/status?grain=day&period=2026-03-02`;
    const exact = await api(env).get(url, { accept: "text/csv" });
    expect(exact.statusCode, exact.body).toBe(200);
    expect(csvIds(exact.body)).toEqual([...IDS].sort());
    const neutral = await api(env).get(`${url}&spreadsheet_safe=true`, { accept: "text/csv" });
    expect(neutral.statusCode, neutral.body).toBe(200);
    expect(csvIds(neutral.body)).toEqual(IDS.map(safe).sort());
    // Everything but the ids is as it was.
    expect(parseCsv(neutral.body).map((r) => r.slice(1))).toEqual(parseCsv(exact.body).map((r) => r.slice(1)));
    const json = await api(env).get(`${url}&spreadsheet_safe=true`);
    expect(json.json().data.map((r: { user_id: string }) => r.user_id).sort()).toEqual([...IDS].sort());
    expect((await api(env).get(`${url}&spreadsheet_safe=yes`, { accept: "text/csv" })).statusCode).toBe(400);
  });

  it("a frozen list's members, served from their rendered chunks", async () => {
    const a = await api(env).post("/v1/audiences", { name: "all", fact: FACT, grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } });
    expect(a.statusCode, a.body).toBe(201);
    {
      const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, { as_of: "2026-03-02" });
      await waitForRecord(env, `/v1/materializations/${m.json().id}`, (r) => r.status === "succeeded", "succeeded");
      const url = `/v1/materializations/${m.json().id}/members`;
      expect(csvIds((await api(env).get(url, { accept: "text/csv" })).body)).toEqual([...IDS].sort());
      expect(csvIds((await api(env).get(`${url}?spreadsheet_safe=true`, { accept: "text/csv" })).body)).toEqual(IDS.map(safe).sort());
    }
  });
});
