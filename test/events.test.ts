import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEventChunks } from "../src/facts/bulk-load.js";
import { deleteExpiredIdempotencyRecords } from "../src/http/idempotency.js";
import { api, createFact } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  await createFact(env, "clicks");
  await createFact(env, "seoul_clicks", "Asia/Seoul");
});
afterAll(async () => env?.close());

type Res = { statusCode: number; headers: Record<string, unknown>; body: string; json(): any };
type Problem = { detail: string; errors: Array<{ index?: number; path: string; message: string }>; invalid_count?: number; accepted_media_types?: string[] };

function expectProblem(res: Res, status: number): Problem {
  expect(res.statusCode, res.body.slice(0, 2000)).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json();
  expect(body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
  return body;
}

const ok = (user_id: string | number, occurred_at = "2026-01-10T12:00:00Z") => ({ user_id, occurred_at });
const post = (fact: string, body: unknown, headers: Record<string, string> = {}) => api(env).post(`/v1/facts/${fact}/events`, body, headers);
const ndjson = (fact: string, text: string, headers: Record<string, string> = {}) =>
  env.app.inject({
    method: "POST",
    url: `/v1/facts/${fact}/events`,
    headers: { ...env.auth(), "content-type": "application/x-ndjson", ...headers },
    payload: text,
  });

/** Everything an ingestion can change: activity rows, known users, the fact's bookkeeping. */
async function snapshot() {
  const r = await env.ctx.db.pool.query<{ activity: number; users: number; facts: string }>(
    `SELECT (SELECT count(*) FROM activity_day) AS activity, (SELECT count(*) FROM app_user) AS users,
            (SELECT string_agg(concat_ws('|', name, earliest_date, latest_date, dirty_from), ',' ORDER BY name) FROM fact) AS facts`,
  );
  return r.rows[0]!;
}

describe("POST /v1/facts/{name}/events: a good batch", () => {
  it("stores it and answers 202 {accepted, earliest_date, latest_date}", async () => {
    const before = await snapshot();
    const res = await post("clicks", {
      events: [ok("u1", "2026-01-05T08:00:00Z"), ok("u2", "2026-01-07T23:59:59.999Z"), ok("u1", "2026-01-05T09:00:00+09:00"), ok("u1", "2026-01-06T00:00:00Z")],
    });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ accepted: 4, earliest_date: "2026-01-05", latest_date: "2026-01-07" });
    const after = await snapshot();
    // (u1, 01-05) twice folds into one row; (u1, 01-06), (u2, 01-07).
    expect(after.activity - before.activity).toBe(3);
    expect(after.users - before.users).toBe(2);
    const fact = (await api(env).get("/v1/facts/clicks")).json();
    expect(fact).toMatchObject({ earliest_activity_date: "2026-01-05", latest_activity_date: "2026-01-07" });
  });

  it("accepts an integer user_id as its decimal string, the same user as the string form", async () => {
    const res = await post("clicks", { events: [ok(4242, "2026-01-08T10:00:00Z"), ok("4242", "2026-01-08T11:00:00Z")] });
    expect(res.statusCode, res.body).toBe(202);
    const rows = await env.ctx.db.pool.query(
      `SELECT a.first_at, a.last_at FROM activity_day a JOIN app_user u USING (user_key) JOIN fact f ON f.id = a.fact_id
        WHERE f.name = 'clicks' AND u.external_id = '4242'`,
    );
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0].first_at.toISOString()).toBe("2026-01-08T10:00:00.000Z");
    expect(rows.rows[0].last_at.toISOString()).toBe("2026-01-08T11:00:00.000Z");
  });

  it("assigns activity dates in the fact's timezone: 2026-03-01T15:30:00Z is 2026-03-02 in Asia/Seoul", async () => {
    const res = await post("seoul_clicks", { events: [ok("s1", "2026-03-01T15:30:00Z"), ok("s2", "2026-03-01T14:59:59Z")] });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ accepted: 2, earliest_date: "2026-03-01", latest_date: "2026-03-02" });
    const dates = await env.ctx.db.pool.query<{ external_id: string; activity_date: string }>(
      `SELECT u.external_id, a.activity_date FROM activity_day a JOIN app_user u USING (user_key) JOIN fact f ON f.id = a.fact_id
        WHERE f.name = 'seoul_clicks' ORDER BY 1`,
    );
    expect(dates.rows).toEqual([
      { external_id: "s1", activity_date: "2026-03-02" },
      { external_id: "s2", activity_date: "2026-03-01" },
    ]);
    // The same instant is 2026-03-01 in a UTC fact.
    await createFact(env, "utc_twin");
    const twin = await post("utc_twin", { events: [ok("s1", "2026-03-01T15:30:00Z")] });
    expect(twin.json()).toEqual({ accepted: 1, earliest_date: "2026-03-01", latest_date: "2026-03-01" });
    expect((await api(env).get("/v1/facts/utc_twin")).json().earliest_activity_date).toBe("2026-03-01");
  });

  it("accepts an event up to a day ahead of now", async () => {
    const soon = new Date(Date.now() + 23 * 3600_000).toISOString();
    expect((await post("clicks", { events: [ok("early_bird", soon)] })).statusCode).toBe(202);
  });

  it("counts a user_id's length in characters, not UTF-16 units: 256 emoji are a valid id, 257 are not", async () => {
    const longest = "😀".repeat(256);
    const res = await post("clicks", { events: [ok(longest, "2026-01-21T00:00:00Z")] });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(202);
    const stored = await env.ctx.db.pool.query(`SELECT external_id FROM app_user WHERE external_id = $1`, [longest]);
    expect(stored.rows).toEqual([{ external_id: longest }]);
    const body = expectProblem(await post("clicks", { events: [ok(`${longest}😀`)] }), 400);
    expect(body.errors).toEqual([{ index: 0, path: "events[0].user_id", message: "user_id is longer than 256 characters" }]);
  });

  it("accepts 10,000 events of maximal user ids (about 3 MB) in one request", async () => {
    const events = Array.from({ length: 10_000 }, (_, i) => ok(`${String(i).padStart(5, "0")}${"x".repeat(251)}`, "2026-01-20T00:00:00Z"));
    expect(events[0]!.user_id).toHaveLength(256);
    const before = await snapshot();
    const res = await post("clicks", { events });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(202);
    expect(res.json().accepted).toBe(10_000);
    expect((await snapshot()).activity - before.activity).toBe(10_000);
  });
});

describe("NDJSON", () => {
  it("ingests one event per line (blank lines and CRLF tolerated)", async () => {
    await createFact(env, "nd_fact", "America/Los_Angeles");
    const text = [JSON.stringify(ok("n1", "2026-02-01T07:59:59Z")), "", JSON.stringify(ok(7, "2026-02-02T12:00:00Z")) + "\r", JSON.stringify(ok("n1", "2026-02-03T12:00:00Z"))].join("\n") + "\n";
    const res = await ndjson("nd_fact", text);
    expect(res.statusCode, res.body).toBe(202);
    // 07:59:59Z on 02-01 is still 01-31 in Los Angeles.
    expect(res.json()).toEqual({ accepted: 3, earliest_date: "2026-01-31", latest_date: "2026-02-03" });
  });

  it("reports a line that is not JSON, and a bad field, by index; stores nothing", async () => {
    const before = await snapshot();
    const text = [JSON.stringify(ok("n2")), JSON.stringify(ok("n3")), '{"user_id": "n4", "occurred_at": ', JSON.stringify(ok("", "2026-01-10T00:00:00Z"))].join("\n");
    const body = expectProblem(await ndjson("nd_fact", text), 400);
    expect(body.errors).toEqual([
      { index: 2, path: "line[2]", message: "line is not valid JSON" },
      { index: 3, path: "line[3].user_id", message: expect.stringMatching(/empty/) },
    ]);
    expect(body.invalid_count).toBe(2);
    expect(await snapshot()).toEqual(before);
  });

  it("names a bad line by its place in the body: line[i] counts every line from 0, blank ones included, like the bulk loader (which counts from 1)", async () => {
    const before = await snapshot();
    const text = `${JSON.stringify(ok("nd5"))}\n\n\r\n{"user_id":"nd6"}\n\n{oops\n`;
    const body = expectProblem(await ndjson("nd_fact", text), 400);
    expect(body.errors).toEqual([
      { index: 3, path: "line[3].occurred_at", message: "occurred_at is required" },
      { index: 5, path: "line[5]", message: "line is not valid JSON" },
    ]);
    expect(body.detail).toMatch(/^2 of 3 events are invalid; nothing was stored\. line\[i\] is line i \+ 1 of the body/);
    // The bulk loader reads the same text as a file and names the same lines.
    expect(parseEventChunks([text], "ndjson", Date.now()).bad.map((e) => [e.line, e.message])).toEqual([
      [4, "occurred_at is required"],
      [6, "line is not valid JSON"],
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it("413 above 10,000 lines", async () => {
    const line = JSON.stringify(ok("nd"));
    const body = expectProblem(await ndjson("nd_fact", `${line}\n`.repeat(10_001)), 413);
    expect(body.detail).toMatch(/10000/);
  });

  it("413 above 5 MB", async () => {
    const line = JSON.stringify(ok("y".repeat(200)));
    const lines = Math.ceil((5 * 1024 * 1024) / (line.length + 1)) + 10;
    expect(lines).toBeLessThan(10_000 * 3);
    expectProblem(await ndjson("nd_fact", `${line}\n`.repeat(lines)), 413);
  });
});

describe("a bad batch is refused whole: 400 naming each bad event, nothing stored", () => {
  const future = () => new Date(Date.now() + 25 * 3600_000).toISOString();
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ["a time without UTC offset", { user_id: "u", occurred_at: "2026-01-10T12:00:00" }, "occurred_at", /offset/],
    ["an unparseable time", { user_id: "u", occurred_at: "yesterday" }, "occurred_at", /RFC 3339/],
    ["an impossible date", { user_id: "u", occurred_at: "2026-02-30T12:00:00Z" }, "occurred_at", /valid date/],
    ["a time as a number", { user_id: "u", occurred_at: 1767225600000 }, "occurred_at", /RFC 3339/],
    ["no time", { user_id: "u" }, "occurred_at", /required/],
    ["a time more than a day ahead", { user_id: "u", occurred_at: "FUTURE" }, "occurred_at", /future/],
    ["an empty user_id", { user_id: "", occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /empty/],
    ["a user_id of 257 characters", { user_id: "u".repeat(257), occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /256/],
    ["a user_id with a control character", { user_id: "ab\u0007c", occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /control/],
    ["a user_id with a newline", { user_id: "ab\nc", occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /control/],
    ["no user_id", { occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /required/],
    ["a fractional user_id", { user_id: 1.5, occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /integer/],
    ["a boolean user_id", { user_id: true, occurred_at: "2026-01-10T12:00:00Z" }, "user_id", /string or an integer/],
    ["an unknown field", { user_id: "u", occurred_at: "2026-01-10T12:00:00Z", country: "KR" }, "country", /unknown field 'country'/],
  ];

  it.each(cases)("%s", async (_what, bad, field, message) => {
    const event = bad.occurred_at === "FUTURE" ? { ...bad, occurred_at: future() } : bad;
    const before = await snapshot();
    // The bad event sits among good ones, for a user nobody has seen.
    const res = await post("clicks", { events: [ok("fresh_user_1"), ok("fresh_user_2"), event, ok("fresh_user_3")] });
    const body = expectProblem(res, 400);
    expect(body.errors).toEqual([{ index: 2, path: `events[2].${field}`, message: expect.stringMatching(message) }]);
    expect(body.invalid_count).toBe(1);
    expect(body.detail).toMatch(/nothing was stored/);
    expect(await snapshot()).toEqual(before);
  });

  it("reports every bad event in index order with its own reason", async () => {
    const before = await snapshot();
    const res = await post("clicks", {
      events: [ok("good"), { user_id: "", occurred_at: "2026-01-10T12:00:00Z" }, ok("good2"), { user_id: "u", occurred_at: "nope" }, "not an object", null],
    });
    const body = expectProblem(res, 400);
    expect(body.errors.map((e) => [e.index, e.path])).toEqual([
      [1, "events[1].user_id"],
      [3, "events[3].occurred_at"],
      [4, "events[4]"],
      [5, "events[5]"],
    ]);
    expect(body.invalid_count).toBe(4);
    expect(body.detail).toMatch(/^4 of 6 events/);
    expect(await snapshot()).toEqual(before);
  });

  it("reports the first 100 bad events and the total", async () => {
    const before = await snapshot();
    const events = Array.from({ length: 300 }, (_, i) => (i % 2 ? { user_id: `bad${i}`, occurred_at: "garbage" } : ok(`ok${i}`)));
    const body = expectProblem(await post("clicks", { events }), 400);
    expect(body.errors).toHaveLength(100);
    expect(body.errors[0]).toMatchObject({ index: 1, path: "events[1].occurred_at" });
    expect(body.errors[99]).toMatchObject({ index: 199, path: "events[199].occurred_at" });
    expect(body.invalid_count).toBe(150);
    expect(body.detail).toMatch(/^150 of 300/);
    expect(await snapshot()).toEqual(before);
  });

  it("refuses an empty batch, a missing events field, an unknown top-level field, a non-array", async () => {
    const before = await snapshot();
    expect(expectProblem(await post("clicks", { events: [] }), 400).errors[0]!.path).toBe("events");
    expect(expectProblem(await post("clicks", {}), 400).errors[0]!.path).toBe("events");
    expect(expectProblem(await post("clicks", { events: "x" }), 400).errors[0]!.path).toBe("events");
    expect(expectProblem(await post("clicks", { events: [ok("u9")], source: "app" }), 400).errors[0]!.path).toBe("source");
    expect(expectProblem(await post("clicks", [ok("u9")]), 400).errors).toHaveLength(1);
    expectProblem(await ndjson("clicks", "\n\n"), 400);
    expect(await snapshot()).toEqual(before);
  });

  it("413 above 10,000 events, before looking at them", async () => {
    const before = await snapshot();
    const events = Array.from({ length: 10_001 }, (_, i) => ok(`big${i}`));
    const body = expectProblem(await post("clicks", { events }), 413);
    expect(body.detail).toMatch(/10000/);
    expect(await snapshot()).toEqual(before);
  });

  it("413 for a body over 5 MB", async () => {
    const before = await snapshot();
    const events = Array.from({ length: 90 }, (_, i) => ok(`${i}${"z".repeat(60_000)}`));
    const payload = JSON.stringify({ events });
    expect(payload.length).toBeGreaterThan(5 * 1024 * 1024);
    const res = await env.app.inject({
      method: "POST",
      url: "/v1/facts/clicks/events",
      headers: { ...env.auth(), "content-type": "application/json" },
      payload,
    });
    expect(expectProblem(res, 413).detail).toMatch(/larger than the limit/);
    expect(await snapshot()).toEqual(before);
  });

  it("404 for an unknown fact, 415 for an unknown content type, 400 for invalid JSON", async () => {
    expectProblem(await post("no_such_fact", { events: [ok("u")] }), 404);
    const csv = await env.app.inject({
      method: "POST",
      url: "/v1/facts/clicks/events",
      headers: { ...env.auth(), "content-type": "text/csv" },
      payload: "user_id,occurred_at\nu,2026-01-10T12:00:00Z\n",
    });
    expectProblem(csv, 415);
    const broken = await env.app.inject({
      method: "POST",
      url: "/v1/facts/clicks/events",
      headers: { ...env.auth(), "content-type": "application/json" },
      payload: '{"events": [',
    });
    expectProblem(broken, 400);
  });
});

describe("content types", () => {
  const send = (payload: string, contentType?: string) =>
    env.app.inject({ method: "POST", url: "/v1/facts/clicks/events", headers: { ...env.auth(), ...(contentType ? { "content-type": contentType } : {}) }, payload });

  it("415 naming the accepted types for text/plain (never read as NDJSON), another type or none; nothing stored", async () => {
    const before = await snapshot();
    const line = JSON.stringify(ok("plain_text_user"));
    for (const type of ["text/plain", "text/plain; charset=utf-8", "text/csv", "application/xml", undefined]) {
      const body = expectProblem(await send(line, type), 415);
      expect(body.detail, String(type)).toBe(`Unsupported Content-Type: ${type ?? "(none)"}. This route accepts application/json or application/x-ndjson.`);
      expect(body.accepted_media_types).toEqual(["application/json", "application/x-ndjson"]);
    }
    expect(await snapshot()).toEqual(before);
  });

  it("a JSON body that is a string is not read as NDJSON", async () => {
    const before = await snapshot();
    const body = expectProblem(await send(JSON.stringify(JSON.stringify(ok("json_string_user"))), "application/json"), 400);
    expect(body.errors).toEqual([{ path: "body", message: "expected an object" }]);
    expect(await snapshot()).toEqual(before);
  });

  it("accepts JSON and NDJSON with a charset parameter", async () => {
    const json = await send(JSON.stringify({ events: [ok("charset_json")] }), "application/json; charset=utf-8");
    expect(json.statusCode, json.body).toBe(202);
    const nd = await send(JSON.stringify(ok("charset_ndjson")), "application/x-ndjson; charset=utf-8");
    expect(nd.statusCode, nd.body).toBe(202);
  });
});

describe("Idempotency-Key", () => {
  const batch = { events: [ok("idem_1", "2026-01-15T10:00:00Z"), ok("idem_2", "2026-01-16T10:00:00Z")] };
  const records = async () => Number((await env.ctx.db.pool.query(`SELECT count(*) AS n FROM idempotency_record`)).rows[0].n);

  it("the same key and body replay the first answer without a second effect", async () => {
    await createFact(env, "idem_fact");
    const first = await post("idem_fact", batch, { "idempotency-key": "batch-0001" });
    expect(first.statusCode, first.body).toBe(202);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    expect(first.json()).toEqual({ accepted: 2, earliest_date: "2026-01-15", latest_date: "2026-01-16" });
    const stored = await records();

    // Remove what the first request stored: a replay must not bring it back (it runs nothing).
    await env.ctx.db.pool.query(`DELETE FROM activity_day WHERE fact_id = (SELECT id FROM fact WHERE name = 'idem_fact')`);
    const before = await snapshot();
    const again = await post("idem_fact", batch, { "idempotency-key": "batch-0001" });
    expect(again.statusCode).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toBe(first.body);
    expect(await snapshot()).toEqual(before);
    expect(await records()).toBe(stored);

    // Without the key the same body is simply ingested again.
    const fresh = await post("idem_fact", batch);
    expect(fresh.statusCode).toBe(202);
    expect(fresh.headers["idempotent-replayed"]).toBeUndefined();
    expect((await snapshot()).activity - before.activity).toBe(2);
  });

  it("the same key with a different body is a 422 and stores nothing", async () => {
    const before = await snapshot();
    const res = await post("idem_fact", { events: [ok("idem_3", "2026-01-17T10:00:00Z")] }, { "idempotency-key": "batch-0001" });
    const body = expectProblem(res, 422);
    expect(body.errors[0]!.path).toBe("Idempotency-Key");
    expect(await snapshot()).toEqual(before);
    // The same body on another fact is another request too.
    await createFact(env, "idem_other");
    expectProblem(await post("idem_other", batch, { "idempotency-key": "batch-0001" }), 422);
  });

  it("keys belong to the API key that used them", async () => {
    const res = await api(env, env.keys.rw).post("/v1/facts/idem_fact/events", batch, { "idempotency-key": "batch-0001" });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.headers["idempotent-replayed"]).toBeUndefined();
  });

  it("a refused batch does not use up its key", async () => {
    const bad = { events: [{ user_id: "", occurred_at: "2026-01-10T12:00:00Z" }] };
    expectProblem(await post("idem_fact", bad, { "idempotency-key": "fix-and-retry" }), 400);
    const fixed = await post("idem_fact", { events: [ok("fixed")] }, { "idempotency-key": "fix-and-retry" });
    expect(fixed.statusCode, fixed.body).toBe(202);
    expect(fixed.headers["idempotent-replayed"]).toBeUndefined();
  });

  it("two concurrent requests with one key: one effect, both get the same answer", async () => {
    await createFact(env, "idem_race");
    const events = { events: Array.from({ length: 500 }, (_, i) => ok(`race${i}`, "2026-01-18T10:00:00Z")) };
    const [a, b] = await Promise.all([post("idem_race", events, { "idempotency-key": "race" }), post("idem_race", events, { "idempotency-key": "race" })]);
    expect([a.statusCode, b.statusCode]).toEqual([202, 202]);
    expect(a.body).toBe(b.body);
    expect([a.headers["idempotent-replayed"], b.headers["idempotent-replayed"]].filter(Boolean)).toEqual(["true"]);
    const n = await env.ctx.db.pool.query(`SELECT count(*) AS n FROM idempotency_record WHERE key = 'race'`);
    expect(Number(n.rows[0].n)).toBe(1);
  });

  it("refuses a malformed key", async () => {
    const body = expectProblem(await post("idem_fact", batch, { "idempotency-key": "x".repeat(256) }), 400);
    expect(body.errors[0]!.path).toBe("Idempotency-Key");
  });

  it("a key is remembered for IDEMPOTENCY_KEY_RETENTION_HOURS: after it, the same request is new and the key free; workers delete what has expired", async () => {
    await createFact(env, "idem_expiry");
    const pool = env.ctx.db.pool;
    const hours = env.ctx.config.IDEMPOTENCY_KEY_RETENTION_HOURS;
    const age = (key: string, by: string) => pool.query(`UPDATE idempotency_record SET created_at = created_at - $2::interval WHERE key = $1`, [key, by]);
    const activity = async () => Number((await pool.query(`SELECT count(*) AS n FROM activity_day WHERE fact_id = (SELECT id FROM fact WHERE name = 'idem_expiry')`)).rows[0].n);
    const one = { events: [ok("exp_1", "2026-01-20T10:00:00Z")] };
    expect((await post("idem_expiry", one, { "idempotency-key": "expiring" })).statusCode).toBe(202);
    // Just inside the retention: a replay.
    await age("expiring", `${hours} hours -1 minute`);
    const replay = await post("idem_expiry", one, { "idempotency-key": "expiring" });
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    // Past it: the same request runs again (its effect, a new record), and another request may take the key.
    await age("expiring", "2 minutes");
    await pool.query(`DELETE FROM activity_day WHERE fact_id = (SELECT id FROM fact WHERE name = 'idem_expiry')`);
    const again = await post("idem_expiry", one, { "idempotency-key": "expiring" });
    expect(again.statusCode, again.body).toBe(202);
    expect(again.headers["idempotent-replayed"]).toBeUndefined();
    expect(await activity()).toBe(1);
    await age("expiring", `${hours} hours 1 minute`);
    const other = await post("idem_expiry", { events: [ok("exp_2", "2026-01-21T10:00:00Z")] }, { "idempotency-key": "expiring" });
    expect(other.statusCode, other.body).toBe(202);
    expect(other.headers["idempotent-replayed"]).toBeUndefined();
    expect(await activity()).toBe(2);
    // And that new record is a live one: its replay.
    expect((await post("idem_expiry", { events: [ok("exp_2", "2026-01-21T10:00:00Z")] }, { "idempotency-key": "expiring" })).headers["idempotent-replayed"]).toBe("true");
    // The sweep deletes expired records only.
    await post("idem_expiry", one, { "idempotency-key": "stale-1" });
    await post("idem_expiry", one, { "idempotency-key": "stale-2" });
    await age("stale-1", `${hours} hours 1 second`);
    await age("stale-2", `${hours + 100} hours`);
    const before = await records();
    expect(await deleteExpiredIdempotencyRecords(pool, hours)).toBe(2);
    expect(await records()).toBe(before - 2);
    expect((await pool.query(`SELECT key FROM idempotency_record WHERE key IN ('expiring', 'stale-1', 'stale-2')`)).rows.map((r) => r.key)).toEqual(["expiring"]);
  });
});
