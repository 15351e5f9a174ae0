import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { api, createFact, ingest, processThrough, waitForRecord } from "./helpers/api.js";
import { memberExport } from "../src/activation/postgres/audiences.js";
import { CopyBinaryFieldBytes } from "../src/activation/postgres/member-exports.js";

/**
 * A materialisation's exports are rendered once, when it is materialised, and served from those
 * chunks. They must be byte for byte what formatting the frozen rows on the fly gives (PostgreSQL's own
 * CSV, the NDJSON built from the column types), for user ids that need quoting or escaping, across
 * chunk boundaries (9,011 members: more than one range of 8,192 user keys).
 */
const TRICKY = ["a,b", 'say "hi"', "back\\slash", "ünïcødé", "😀 emoji", " spaced ", '{"json":1}', "tab-free'quote", "\\.", '"', ","];
const PLAIN = Array.from({ length: 9_000 }, (_, i) => `user-${String(i).padStart(5, "0")}`);

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  await createFact(env, "opened", "UTC");
  const events = [...TRICKY, ...PLAIN].flatMap((u, i) => [
    { user_id: u, occurred_at: `2026-03-0${1 + (i % 3)}T10:00:00Z` },
    ...(i % 2 ? [{ user_id: u, occurred_at: "2026-03-05T10:00:00Z" }] : []),
  ]);
  await ingest(env, "opened", events);
  await processThrough(env, "opened", "2026-03-06");
}, 120_000);
afterAll(async () => env?.close());

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function materializeAll(): Promise<{ id: string; member_count: number }> {
  const a = await api(env).post("/v1/audiences", { name: "everyone", fact: "opened", grain: "day", filter: { field: "active_periods_total", op: "gte", value: 1 } });
  expect(a.statusCode, a.body).toBe(201);
  const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, {});
  expect(m.statusCode, m.body).toBe(202);
  return (await waitForRecord(env, `/v1/materializations/${m.json().id}`, (r) => r.status === "succeeded", "succeeded")) as { id: string; member_count: number };
}

describe("rendered member exports", () => {
  it("serve exactly what formatting the frozen rows on the fly gives, in both formats and over HTTP", async () => {
    const m = await materializeAll();
    expect(m.member_count).toBe(TRICKY.length + PLAIN.length);
    const chunks = await env.ctx.db.pool.query(`SELECT format, count(*)::int AS n, sum(row_count)::int AS rows FROM member_export_chunk WHERE materialization_id = $1 GROUP BY 1 ORDER BY 1`, [m.id]);
    expect(chunks.rows.map((r) => [r.format, r.rows])).toEqual([["csv", m.member_count], ["ndjson", m.member_count]]);
    for (const r of chunks.rows) expect(r.n).toBeGreaterThanOrEqual(2);
    for (const [format, accept] of [["csv", "text/csv"], ["ndjson", "application/x-ndjson"]] as const) {
      const rendered = await text(await memberExport(env.ctx.db.pool, m.id, format, true));
      const onTheFly = await text(await memberExport(env.ctx.db.pool, m.id, format, false));
      expect(rendered.length).toBeGreaterThan(100_000);
      expect(rendered).toBe(onTheFly);
      const http = await api(env).get(`/v1/materializations/${m.id}/members`, { accept });
      expect(http.statusCode).toBe(200);
      expect(http.body).toBe(rendered);
    }
    // The NDJSON parses, and every tricky id comes back as it went in.
    const nd = (await api(env).get(`/v1/materializations/${m.id}/members`, { accept: "application/x-ndjson" })).body;
    const ids = new Set(nd.trim().split("\n").map((l) => JSON.parse(l).user_id as string));
    for (const u of TRICKY) expect(ids.has(u), u).toBe(true);
  });

  it("follow the Accept header's negotiation: quality values, q=0, wildcards; 406 when none of the three is acceptable", async () => {
    const m = await materializeAll();
    const kind = async (accept: string) => {
      const res = await api(env).get(`/v1/materializations/${m.id}/members?limit=1`, { accept });
      return res.statusCode === 200 ? String(res.headers["content-type"]).split(";")[0] : res.statusCode;
    };
    expect(await kind("*/*")).toBe("application/json");
    expect(await kind("text/csv")).toBe("text/csv");
    expect(await kind("text/csv;q=0, application/json")).toBe("application/json");
    expect(await kind("application/json;q=0.5, application/x-ndjson")).toBe("application/x-ndjson");
    expect(await kind("text/csv, */*")).toBe("text/csv");
    expect(await kind("application/x-ndjson, text/csv")).toBe("application/x-ndjson");
    expect(await kind("text/*")).toBe("text/csv");
    expect(await kind("application/json, text/csv")).toBe("application/json");
    expect(await kind("application/xml")).toBe(406);
    expect(await kind("*/*;q=0")).toBe(406);
    const refused = await api(env).get(`/v1/materializations/${m.id}/members`, { accept: "application/xml" });
    expect(refused.headers["content-type"]).toContain("application/problem+json");
    expect(refused.json()).toMatchObject({ status: 406, detail: expect.stringMatching(/text\/csv/) });
  });

  it("are deleted with the materialization", async () => {
    const m = await materializeAll();
    expect((await api(env).delete(`/v1/materializations/${m.id}`)).statusCode).toBe(204);
    const left = await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM member_export_chunk WHERE materialization_id = $1`, [m.id]);
    expect(left.rows[0].n).toBe(0);
  });
});

describe("the binary COPY framing", () => {
  // Signature, flags, an extension of 3 bytes, rows of one field, a null field, the trailer.
  const frame = (fields: Array<string | null>) =>
    Buffer.concat([
      Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"),
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 3, 9, 9, 9]),
      ...fields.map((f) => {
        const body = f === null ? Buffer.alloc(0) : Buffer.from(f, "utf8");
        const head = Buffer.alloc(6);
        head.writeInt16BE(1, 0);
        head.writeInt32BE(f === null ? -1 : body.length, 2);
        return Buffer.concat([head, body]);
      }),
      Buffer.from([0xff, 0xff]),
    ]);

  it("passes every field's bytes through whatever the split of the input", async () => {
    const input = frame(["first\n", null, "sëcond\nthird\n", ""]);
    for (let size = 1; size <= input.length; size += 3) {
      const parts: Buffer[] = [];
      for (let i = 0; i < input.length; i += size) parts.push(input.subarray(i, i + size));
      expect(await text(Readable.from(parts).pipe(new CopyBinaryFieldBytes("h\n")))).toBe("h\nfirst\nsëcond\nthird\n");
    }
  });

  it("fails on a stream cut before its trailer, and on one that is not binary COPY", async () => {
    const input = frame(["x\n"]);
    await expect(text(Readable.from([input.subarray(0, input.length - 2)]).pipe(new CopyBinaryFieldBytes("")))).rejects.toThrow(/ended early/);
    await expect(text(Readable.from([Buffer.from("a,b\nc,d\n".repeat(4))]).pipe(new CopyBinaryFieldBytes("")))).rejects.toThrow(/not a binary COPY/);
  });
});
