import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIELD_NAMES, OPS } from "../src/audiences/definition.js";
import { GROWTH_STATES, STATES, TRANSITION_SEGMENTS } from "../src/activation/layer-queries.js";
import { MAX_JSON_DEPTH } from "../src/http/untrusted-input.js";
import { compileAudienceQuery } from "../src/activation/postgres/audience-sql.js";
import { allPages, api, createFact, ingest, processThrough, waitForCampaign, waitForRecord } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/*
 * Hostile input: fuzzed event batches and audience definitions, SQL-looking and exotic text, bodies
 * too big or too deep, unknown fields. The service either does what was asked or answers a 4xx
 * problem+json naming the field; never a 500, never a database's words.
 */

const FACT = "fuzz_opened";
const OTHER = "fuzz_chat";
const THROUGH = "2026-03-10";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  for (const f of [FACT, OTHER]) {
    await createFact(env, f);
    const events = [];
    for (let u = 0; u < 40; u++)
      for (let d = 1; d <= 10; d++) if ((u * 7 + d * 3) % 5 < 3) events.push({ user_id: `seed-${u}`, occurred_at: `2026-03-${String(d).padStart(2, "0")}T12:00:00Z` });
    await ingest(env, f, events);
    await processThrough(env, f, THROUGH);
  }
}, 120_000);
afterAll(async () => env?.close());

type Res = { statusCode: number; headers: Record<string, unknown>; body: string; json(): any };

// What a database error looks like when it escapes: PostgreSQL's messages and SQLSTATE codes, driver names.
const DB_ERROR_TEXT = [
  /\brelation\b/i, /syntax error/i, /violates/i, /duplicate key/i, /invalid input syntax/i, /invalid byte sequence/i, /unterminated/i,
  /SQLSTATE/i, /\b(22|23|42|53|57|08|XX)[0-9A-Z]{3}\b/, /prisma/i, /\bpg\b/, /postgres/i, /\bcolumn\b/i, /ECONN/, /\bat .+:\d+:\d+/,
];

/** The answer is a success or a 4xx problem+json that names the field; nothing internal leaks. */
function expectHandled(res: Res, context: string) {
  const where = `${context} → ${res.statusCode} ${res.body.slice(0, 500)}`;
  expect(res.statusCode, where).toBeLessThan(500);
  // Field names the request itself sent come back in paths and quoted in messages (a fuzzed key "pg"
  // is "unknown field 'pg'"): those echoes are not leaks.
  const answered = res.body.replace(/"path":"(?:[^"\\]|\\.)*"/g, '"path":""').replace(/'[^']*'/g, "''");
  for (const leak of DB_ERROR_TEXT) expect(answered, `${leak} in ${where}`).not.toMatch(leak);
  if (res.statusCode < 400) return;
  expect(res.headers["content-type"], where).toMatch(/^application\/problem\+json/);
  const body = res.json();
  expect(body, where).toMatchObject({ type: expect.any(String), title: expect.any(String), status: res.statusCode, detail: expect.any(String) });
  if (res.statusCode === 400) {
    expect(Array.isArray(body.errors) && body.errors.length > 0, `400 without errors: ${where}`).toBe(true);
    for (const e of body.errors) {
      expect(typeof e.path === "string" && e.path.length > 0, `unnamed field in ${where}`).toBe(true);
      expect(typeof e.message === "string" && e.message.length > 0, where).toBe(true);
    }
  }
}

const SQL_LIKE = [
  "'; DROP TABLE activity_day; --",
  "1' OR '1'='1",
  "x\"); DELETE FROM fact; --",
  "' UNION SELECT hash FROM api_key --",
  "$1",
  "%' OR external_id LIKE '%",
  "\\'; TRUNCATE app_user CASCADE; --",
  "); COMMIT; DROP SCHEMA public CASCADE; --",
];
const UNICODE = [
  "🧪👩‍👩‍👧‍👦🏳️‍🌈",
  "مرحبا بالعالم",
  "שלום \u202Eevil\u202C",
  "e\u0301\u0301\u0301 Z\u0351\u0361\u0335",
  "사용자 ユーザー 用户",
  "\uFEFFbom",
  "zero\u200Bwidth\u200D",
  "tab\tand\nnewline",
];
const UNSTORABLE = ["a\u0000b", "\u0000", "lone \ud800 high", "\udc00 lone low", "x\ud83d"];

const hostileText = fc.constantFrom(...SQL_LIKE, ...UNICODE, ...UNSTORABLE, "", " ", "x".repeat(257), "😀".repeat(257), "null", "[]", "{}");
const anyText = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 2, arbitrary: hostileText },
);

// ---- event batches

const pastInstant = fc.date({ min: new Date("2020-01-01T00:00:00Z"), max: new Date("2026-03-10T23:59:59Z"), noInvalidDate: true });
const rfc3339 = fc.oneof(
  pastInstant.map((d) => d.toISOString()),
  fc.tuple(pastInstant, fc.integer({ min: -23, max: 23 })).map(([d, h]) => {
    const local = new Date(d.getTime() + h * 3_600_000).toISOString().slice(0, 19);
    return `${local}${h < 0 ? "-" : "+"}${String(Math.abs(h)).padStart(2, "0")}:00`;
  }),
);
const okUserId = fc.oneof(
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }).filter((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s)),
  fc.constantFrom(...SQL_LIKE, ...UNICODE.filter((s) => !/[\t\n]/.test(s))),
  fc.nat(),
);
const validEvent = fc.record({ user_id: okUserId, occurred_at: rfc3339 });
const anyOccurredAt = fc.oneof(
  rfc3339,
  anyText,
  fc.constantFrom("2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00", "0000-01-01T00:00:00Z", "2026-01-01T00:00:00+24:00", "9999-12-31T23:59:59Z"),
  fc.integer(),
  fc.constant(null),
);
const anyUserId = fc.oneof(okUserId, anyText, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }));
const anyEvent = fc.oneof(
  { weight: 4, arbitrary: validEvent },
  { weight: 3, arbitrary: fc.record({ user_id: anyUserId, occurred_at: anyOccurredAt }, { requiredKeys: [] }) },
  {
    weight: 1,
    arbitrary: fc.tuple(validEvent, fc.dictionary(anyText, fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 2 })).map(([e, extra]) => ({ ...extra, ...e })),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);
const anyBatchBody = fc.oneof(
  { weight: 3, arbitrary: fc.record({ events: fc.array(validEvent, { minLength: 1, maxLength: 12 }) }) },
  { weight: 5, arbitrary: fc.record({ events: fc.array(anyEvent, { maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ events: fc.array(anyEvent, { maxLength: 3 }), extra: fc.jsonValue({ maxDepth: 2 }) }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
);

/** The stored id of an accepted user_id: integers become their decimal string. */
const idOf = (u: unknown) => (typeof u === "number" ? String(u) : (u as string));

async function storedUserIds(fact: string): Promise<Set<string>> {
  const r = await env.ctx.db.pool.query<{ external_id: string }>(
    `SELECT DISTINCT u.external_id FROM app_user u JOIN activity_day a ON a.user_key = u.user_key JOIN fact f ON f.id = a.fact_id WHERE f.name = $1`,
    [fact],
  );
  return new Set(r.rows.map((x) => x.external_id));
}

describe("fuzzed event batches", () => {
  it("JSON: every batch is stored whole (202) or rejected with a 4xx naming the field; only accepted users are stored, literally", async () => {
    const fact = "fuzz_json_events";
    await createFact(env, fact);
    const accepted = new Set<string>();
    await fc.assert(
      fc.asyncProperty(anyBatchBody, async (body) => {
        const res = await env.app.inject({ method: "POST", url: `/v1/facts/${fact}/events`, headers: { ...env.auth(), "content-type": "application/json" }, payload: JSON.stringify(body) });
        expectHandled(res, `events ${JSON.stringify(body).slice(0, 300)}`);
        if (res.statusCode === 202) {
          const events = (body as { events: Array<{ user_id: unknown }> }).events;
          expect(res.json().accepted).toBe(events.length);
          for (const e of events) accepted.add(idOf(e.user_id));
        }
      }),
      { numRuns: 200 },
    );
    expect(accepted.size).toBeGreaterThan(10);
    expect(await storedUserIds(fact)).toEqual(accepted);
  });

  it("NDJSON: the same, line by line, with junk lines, blank lines and CRLF", async () => {
    const fact = "fuzz_ndjson_events";
    await createFact(env, fact);
    const accepted = new Set<string>();
    const line = fc.oneof(
      { weight: 6, arbitrary: anyEvent.map((e) => ({ text: JSON.stringify(e), event: e as unknown })) },
      { weight: 1, arbitrary: anyText.map((t) => ({ text: t.replace(/\n/g, " "), event: undefined as unknown })) },
      { weight: 1, arbitrary: fc.constantFrom("", "   ", "\r").map((t) => ({ text: t, event: null as unknown })) },
    );
    // Mixed lines are rarely a batch of valid events only; batches of valid events keep the check
    // below (that accepted batches are stored) from resting on a handful of lucky draws.
    const validLine = validEvent.map((e) => ({ text: JSON.stringify(e), event: e as unknown }));
    const batch = fc.oneof(fc.array(line, { maxLength: 12 }), fc.array(validLine, { minLength: 1, maxLength: 12 }));
    await fc.assert(
      fc.asyncProperty(batch, fc.boolean(), async (lines, crlf) => {
        const payload = lines.map((l) => l.text).join(crlf ? "\r\n" : "\n");
        const res = await env.app.inject({ method: "POST", url: `/v1/facts/${fact}/events`, headers: { ...env.auth(), "content-type": "application/x-ndjson" }, payload });
        expectHandled(res, `ndjson ${JSON.stringify(payload).slice(0, 300)}`);
        if (res.statusCode === 202) {
          const events = lines.filter((l) => l.text.trim() !== "").map((l) => JSON.parse(l.text) as { user_id: unknown });
          expect(res.json().accepted).toBe(events.length);
          for (const e of events) accepted.add(idOf(e.user_id));
        }
      }),
      { numRuns: 150 },
    );
    expect(accepted.size).toBeGreaterThan(5);
    expect(await storedUserIds(fact)).toEqual(accepted);
  });

  it("one bad event anywhere rejects the batch with 400 naming that event's index, and stores none of it", async () => {
    const fact = "fuzz_one_bad";
    await createFact(env, fact);
    const badEvent = fc.oneof(
      fc.record({ user_id: fc.constantFrom(...UNSTORABLE, "", "x".repeat(257), "ctl\u0007"), occurred_at: rfc3339 }),
      fc.record({ user_id: okUserId, occurred_at: fc.constantFrom("2026-02-30T00:00:00Z", "yesterday", "2026-01-01T00:00:00", "2026-01-01T00:00:00\u0000Z") }),
      // Before 1970: one such event would make processing walk every day since then (year 99 once became 1999).
      fc.record({ user_id: okUserId, occurred_at: fc.constantFrom("1969-12-31T23:59:59Z", "0099-06-01T00:00:00Z", "1000-01-01T00:00:00Z", "0000-01-01T00:00:00+01:00") }),
      fc.record({ user_id: okUserId }),
      validEvent.map((e) => ({ ...e, "'; DROP TABLE fact; --": 1 })),
      fc.constantFrom(null, 42, "event", [] as unknown),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(validEvent, { minLength: 1, maxLength: 20 }), badEvent, fc.nat(), async (good, bad, at) => {
        const index = at % (good.length + 1);
        const events: unknown[] = [...good.slice(0, index), bad, ...good.slice(index)];
        const res = await api(env).post(`/v1/facts/${fact}/events`, { events });
        expectHandled(res, JSON.stringify(events).slice(0, 300));
        expect(res.statusCode).toBe(400);
        const paths = (res.json().errors as Array<{ path: string }>).map((e) => e.path);
        expect(paths.some((p) => p === `events[${index}]` || p.startsWith(`events[${index}].`) || p.startsWith(`events[${index}][`)), `${paths} should name events[${index}]`).toBe(true);
      }),
      { numRuns: 100 },
    );
    expect((await storedUserIds(fact)).size).toBe(0);
  });
});

// ---- audience definitions

const dateText = fc.date({ min: new Date("2025-01-01T00:00:00Z"), max: new Date("2026-04-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));
const scalar = fc.oneof(
  fc.integer({ min: -3, max: 40 }),
  fc.constantFrom(...STATES, ...TRANSITION_SEGMENTS, ...GROWTH_STATES),
  fc.boolean(),
  dateText,
  fc.record({ periods_ago: fc.oneof(fc.integer({ min: -2, max: 30 }), fc.double(), anyText) }),
  anyText,
  fc.double(),
  fc.constant(null),
  fc.integer(),
);
const junkCondition = fc.record(
  {
    field: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...FIELD_NAMES) }, { weight: 1, arbitrary: anyText }),
    op: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...OPS) }, { weight: 1, arbitrary: anyText }),
    value: fc.oneof(scalar, fc.array(scalar, { maxLength: 4 })),
    within_periods: fc.oneof(fc.integer({ min: -1, max: 400 }), anyText),
    fact: fc.oneof(fc.constantFrom(FACT, OTHER, "no_such_fact"), anyText),
  },
  { requiredKeys: ["field", "op"] },
);
// Conditions that make sense (most of them valid), so fuzzing reaches the compiler and the SQL too.
const periods = fc.integer({ min: 0, max: 30 });
const onFact = fc.option(fc.constantFrom(FACT, OTHER), { nil: undefined });
const sensibleCondition = fc
  .oneof(
    fc.record({ field: fc.constantFrom("inactivity_periods", "last_streak_periods", "consecutive_active_periods", "tenure_periods", "active_periods_total", "return_interval_periods"), op: fc.constantFrom("eq", "neq", "gt", "gte", "lt", "lte"), value: periods }),
    fc.record({ field: fc.constantFrom("inactivity_periods", "tenure_periods"), op: fc.constant("between"), value: fc.tuple(periods, periods).map(([a, b]) => [Math.min(a, b), Math.max(a, b)]) }),
    fc.record({ field: fc.constant("state"), op: fc.constantFrom("eq", "neq"), value: fc.constantFrom(...STATES), within_periods: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }) }),
    fc.record({ field: fc.constant("transition_segment"), op: fc.constantFrom("in", "not_in"), value: fc.subarray([...TRANSITION_SEGMENTS], { minLength: 1 }) }),
    fc.record({ field: fc.constant("growth_state"), op: fc.constantFrom("in", "not_in"), value: fc.subarray([...GROWTH_STATES], { minLength: 1 }) }),
    fc.record({ field: fc.constant("is_active"), op: fc.constant("eq"), value: fc.boolean() }),
    fc.record({ field: fc.constantFrom("return_interval_periods", "previous_state"), op: fc.constantFrom("is_null", "is_not_null") }),
    fc.record({ field: fc.constantFrom("first_active_period", "last_active_period"), op: fc.constantFrom("gte", "lt"), value: fc.oneof(dateText, fc.record({ periods_ago: periods })) }),
  )
  .chain((c) => onFact.map((fact) => (fact === undefined ? c : { ...c, fact })))
  .map((c) => JSON.parse(JSON.stringify(c)) as unknown);
const condition = fc.oneof({ weight: 4, arbitrary: sensibleCondition }, { weight: 1, arbitrary: junkCondition });
const { node: filterTree } = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    condition,
    fc.record({ all: fc.array(tie("node"), { maxLength: 3 }) }),
    fc.record({ any: fc.array(tie("node"), { maxLength: 3 }) }),
    fc.record({ not: tie("node") }),
    fc.jsonValue({ maxDepth: 2 }),
  ),
}));
const definition = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record(
      {
        name: fc.oneof({ weight: 3, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }) }, { weight: 2, arbitrary: anyText }),
        fact: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(FACT, OTHER) }, { weight: 1, arbitrary: anyText }),
        grain: fc.oneof({ weight: 6, arbitrary: fc.constantFrom("day", "week", "month") }, { weight: 1, arbitrary: anyText }),
        filter: filterTree,
        description: fc.oneof(anyText, fc.constant(null), fc.constant("d".repeat(2001))),
      },
      { requiredKeys: ["name", "fact", "filter"] },
    ),
  },
  {
    // Plausible definitions: the texts and the tree are where the hostility is.
    weight: 1,
    arbitrary: fc.record(
      {
        name: fc.oneof(fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }).filter((n) => n.trim() !== ""), fc.constantFrom(...SQL_LIKE, ...UNICODE)),
        fact: fc.constantFrom(FACT, OTHER),
        grain: fc.constant("day"),
        filter: fc.oneof(sensibleCondition, fc.record({ all: fc.array(sensibleCondition, { minLength: 1, maxLength: 4 }) }), fc.record({ not: sensibleCondition })),
        description: fc.oneof(fc.string({ unit: "grapheme", maxLength: 200 }), fc.constant(null), fc.constantFrom(...SQL_LIKE, ...UNICODE)),
      },
      { requiredKeys: ["name", "fact", "filter"] },
    ),
  },
);
const anyDefinition = fc.oneof(
  { weight: 8, arbitrary: definition },
  { weight: 1, arbitrary: fc.tuple(definition, anyText, fc.jsonValue({ maxDepth: 1 })).map(([d, k, v]) => ({ ...d, [`x_${k}`]: v })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

describe("fuzzed audience definitions", () => {
  it("preview: a count (200) or a 4xx naming the field", async () => {
    let counted = 0;
    await fc.assert(
      fc.asyncProperty(anyDefinition, fc.option(fc.oneof(dateText, anyText), { nil: undefined }), async (def, asOf) => {
        const body = asOf === undefined ? { definition: def } : { definition: def, as_of: asOf };
        const res = await api(env, env.keys.read).post("/v1/audiences/preview", body);
        expectHandled(res, `preview ${JSON.stringify(body).slice(0, 400)}`);
        if (res.statusCode === 200) {
          counted++;
          expect(res.json().count).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: 250 },
    );
    expect(counted, "some fuzzed definitions should be valid").toBeGreaterThan(5);
  });

  it("create: saved (201) and read back literally, or a 4xx naming the field", async () => {
    let saved = 0;
    const refresh = fc.option(fc.oneof(fc.constant("on_new_data"), fc.record({ cron: fc.oneof(fc.constant("0 6 * * *"), anyText), timezone: fc.oneof(fc.constant("Asia/Seoul"), anyText) }), anyText), {
      nil: undefined,
      freq: 2,
    });
    await fc.assert(
      fc.asyncProperty(anyDefinition, refresh, async (def, r) => {
        const body = r === undefined ? def : { ...(def as object), refresh: r };
        const res = await api(env).post("/v1/audiences", body);
        expectHandled(res, `create ${JSON.stringify(body).slice(0, 400)}`);
        if (res.statusCode !== 201) return;
        saved++;
        const d = def as { name: string; fact: string; grain?: string; description?: string | null };
        const got = (await api(env).get(`/v1/audiences/${res.json().id}`)).json();
        // Names are trimmed on purpose (a name of spaces is no name); everything else comes back as sent.
        expect(got).toMatchObject({ name: d.name.trim(), fact: d.fact, grain: d.grain ?? "day", description: d.description ?? null });
        expect((await api(env).delete(`/v1/audiences/${got.id}`)).statusCode).toBe(204);
      }),
      { numRuns: 150 },
    );
    expect(saved, "some fuzzed definitions should be valid").toBeGreaterThan(5);
  });
});

// ---- query strings

describe("fuzzed query strings on the read routes", () => {
  it("every combination answers 200 or a 4xx problem+json naming the parameter", async () => {
    const encodable = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 30 }),
      fc.constantFrom(...SQL_LIKE, ...UNICODE, "a\u0000b", "", "0", "-1", "1e400", "10001", "NaN", "2026-03-01", "2026-W09", "2026-03", "day", "week", "month", "true"),
      dateText,
      fc.integer().map(String),
      fc.base64String({ maxLength: 40 }),
    );
    const rawValue = fc.oneof(
      { weight: 6, arbitrary: encodable.map((v) => encodeURIComponent(v)) },
      { weight: 1, arbitrary: fc.constantFrom("%", "%ZZ", "%C0%80", "%ED%A0%80", "%FF", "a%00b", "+", "%2B%2B", "a&b=c") },
    );
    const params = ["limit", "cursor", "grain", "period", "date", "from", "to", "state", "transition_segment", "user_id", "base", "compare", "fact", "service", "group", "refresh", "since"];
    const routes = [
      "/v1/facts", "/v1/audiences", "/v1/campaigns", `/v1/facts/${FACT}/status`, `/v1/facts/${FACT}/activation`, `/v1/facts/${FACT}/first-last`,
      `/v1/facts/${FACT}/metrics`, `/v1/facts/${FACT}/metrics/contribution`, `/v1/facts/${FACT}/users/seed-1/status`, `/v1/facts/${FACT}/runs`, "/v1/services/svc/core-actions",
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.array(fc.tuple(fc.constantFrom(...params), rawValue), { maxLength: 5 }), async (route, pairs) => {
        const url = pairs.length ? `${route}?${pairs.map(([k, v]) => `${k}=${v}`).join("&")}` : route;
        const res = await api(env, env.keys.read).get(url);
        expectHandled(res, `GET ${url}`);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- tampered cursors

describe("a tampered cursor on any paged list", () => {
  /** `url` with a cursor at `position`, encoded as this service encodes its own. */
  const withCursor = (url: string, position: unknown[]) =>
    `${url}${url.includes("?") ? "&" : "?"}cursor=${encodeURIComponent(Buffer.from(JSON.stringify(position)).toString("base64url"))}`;

  /** A succeeded materialization of `audienceId` (as of the watermark). */
  async function materialized(audienceId: string) {
    const res = await api(env).post(`/v1/audiences/${audienceId}/materializations`, {});
    expect(res.statusCode, res.body).toBe(202);
    const m = await waitForRecord(env, `/v1/materializations/${res.json().id}`, (r) => r.status !== "queued" && r.status !== "running", "finished");
    expect(m.status, JSON.stringify(m)).toBe("succeeded");
    return m.id as string;
  }

  it("is a 400 naming the cursor, never a database error: instants, uuids, int4 keys and text are checked for what the query binds", async () => {
    const audience = (await api(env).post("/v1/audiences", { name: "cursor target", fact: FACT, filter: { field: "is_active", op: "eq", value: true } })).json();
    const [earlier, later] = [await materialized(audience.id), await materialized(audience.id)];
    const created = await api(env).post("/v1/campaigns", { name: "cursor target", materialization_id: later, goal: { fact: FACT, window_periods: 7, metric: "returned" } });
    expect(created.statusCode, created.body).toBe(202);
    const campaign = await waitForCampaign(env, created.json().id);
    expect(campaign.status).toBe("ready");
    const webhook = (await api(env).post("/v1/webhooks", { url: "http://127.0.0.1:9/cursor", events: ["run.failed"], secret: "0123456789abcdef" })).json();

    const newestFirst = [
      "/v1/audiences", "/v1/campaigns", `/v1/facts/${FACT}/runs`, `/v1/audiences/${audience.id}/materializations`, `/v1/webhooks/${webhook.id}/deliveries`, "/v1/webhooks",
    ];
    const byUserKey = [
      `/v1/facts/${FACT}/status?grain=day&period=${THROUGH}`, `/v1/facts/${FACT}/activation?grain=day&period=${THROUGH}`, `/v1/facts/${FACT}/first-last?date=${THROUGH}`,
      `/v1/materializations/${later}/members`, `/v1/materializations/${later}/changes?since=${earlier}`, `/v1/campaigns/${campaign.id}/assignments`,
      `/v1/audiences/${audience.id}/versions`,
    ];
    const uuid = "7d1c2e4a-1b2c-4d3e-8f40-5a6b7c8d9e0f";
    const tampered: Array<[string, unknown[]]> = [
      ["/v1/facts", ["\u0000"]],
      ["/v1/facts", ["\ud800"]],
      ...newestFirst.flatMap((url): Array<[string, unknown[]]> => [
        [url, ["2026-11-27T00:00:00Z", "x"]],
        [url, ["notadate", uuid]],
        [url, ["2026-02-30T00:00:00Z", uuid]],
        [url, [0, uuid]],
      ]),
      ...byUserKey.flatMap((url): Array<[string, unknown[]]> => [[url, [99999999999]], [url, [-2147483649]], [url, [1.5]], [url, ["1"]]]),
    ];
    for (const [url, position] of tampered) {
      const res = await api(env).get(withCursor(url, position));
      const context = `${url} cursor ${JSON.stringify(position)}`;
      expectHandled(res, context);
      expect(res.statusCode, context).toBe(400);
      expect(res.json().errors, context).toEqual([{ path: "cursor", message: "invalid cursor" }]);
    }
    // The refused pulls of the assignments launched nothing.
    expect((await api(env).get(`/v1/campaigns/${campaign.id}`)).json().locked_at).toBeNull();
    // Positions such as this service issues are still followed on every one of these lists.
    const valid: Array<[string, unknown[]]> = [
      ["/v1/facts", ["a"]], ...newestFirst.map((url): [string, unknown[]] => [url, [new Date().toISOString(), uuid]]), ...byUserKey.map((url): [string, unknown[]] => [url, [1]]),
    ];
    for (const [url, position] of valid) {
      const res = await api(env).get(withCursor(url, position));
      expect(res.statusCode, `${url} ${res.body}`).toBe(200);
    }
  });
});

// ---- literal round trips

const LITERALS = [...SQL_LIKE, ...UNICODE];

describe("SQL-looking and exotic text is stored and returned literally, and never changes a query", () => {
  const simpleFilter = { field: "is_active", op: "eq", value: true };

  it("audience names and descriptions, through create, read, list, patch and versions", async () => {
    // Lengths count characters (code points), as the published maxLength does: 200 emoji are 200 characters.
    const texts = [...LITERALS, "n".repeat(200), "😀".repeat(200)];
    for (const name of texts) {
      const description = `${name} — ${name}`.slice(0, 2000);
      const res = await api(env).post("/v1/audiences", { name, description, fact: FACT, filter: simpleFilter });
      expectHandled(res, JSON.stringify(name));
      expect(res.statusCode, res.body).toBe(201);
      const id = res.json().id;
      expect(res.json()).toMatchObject({ name: name.trim(), description });
      expect((await api(env).get(`/v1/audiences/${id}`)).json()).toMatchObject({ name: name.trim(), description });
      const patched = await api(env).patch(`/v1/audiences/${id}`, { description: `${description}!` });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.json().description).toBe(`${description}!`);
      const versions = (await api(env).get(`/v1/audiences/${id}/versions`)).json().data;
      expect(versions.map((v: { definition: { description: string } }) => v.definition.description)).toEqual([`${description}!`, description]);
    }
    const listed = await allPages(env, `/v1/audiences?fact=${FACT}`);
    for (const name of texts) expect(listed.some((a) => a.name === name.trim()), JSON.stringify(name)).toBe(true);
  });

  it("over-long and unstorable names and descriptions are a 400 naming the field; nothing is saved", async () => {
    const before = await env.ctx.db.prisma.audience.count();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ name: "n".repeat(201) }, "name"],
      [{ name: "😀".repeat(201) }, "name"],
      [{ description: "😀".repeat(2001) }, "description"],
      [{ description: "d".repeat(2001) }, "description"],
      ...UNSTORABLE.map((s) => [{ name: s }, "name"] as [Record<string, unknown>, string]),
      ...UNSTORABLE.map((s) => [{ description: s }, "description"] as [Record<string, unknown>, string]),
    ];
    for (const [patch, field] of cases) {
      const res = await api(env).post("/v1/audiences", { name: "ok", fact: FACT, filter: simpleFilter, ...patch });
      expectHandled(res, JSON.stringify(patch));
      expect(res.statusCode).toBe(400);
      expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(field);
    }
    expect(await env.ctx.db.prisma.audience.count()).toBe(before);
  });

  it("fact descriptions and services", async () => {
    for (const [i, text] of LITERALS.entries()) {
      const name = `lit_fact_${i}`;
      const res = await api(env).post("/v1/facts", { name, service: text.slice(0, 100), description: text });
      expect(res.statusCode, res.body).toBe(201);
      expect((await api(env).get(`/v1/facts/${name}`)).json()).toMatchObject({ service: text.slice(0, 100), description: text });
      const listed = await allPages(env, `/v1/facts?service=${encodeURIComponent(text.slice(0, 100))}`);
      expect(listed.map((f) => f.name)).toEqual([name]);
    }
    for (const bad of ["'; DROP TABLE fact; --", "Fact", "a", "x".repeat(64), "名前", "a b"]) {
      const res = await api(env).post("/v1/facts", { name: bad });
      expectHandled(res, bad);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe("name");
    }
  });

  it("user ids: ingested, processed and looked up by the very same string; a SQL-looking filter matches only itself", async () => {
    const fact = "lit_users";
    await createFact(env, fact);
    const ids = [...SQL_LIKE, ...UNICODE.filter((s) => !/[\t\n]/.test(s)), "u".repeat(256), "😀".repeat(256), "a/b?c#d e%20f", "%00", ".", ".."];
    await ingest(env, fact, ids.map((user_id) => ({ user_id, occurred_at: "2026-03-01T10:00:00Z" })));
    await processThrough(env, fact, "2026-03-02");
    expect(await storedUserIds(fact)).toEqual(new Set(ids));
    for (const id of ids) {
      // "." and ".." are dot segments in a URL path (clients remove them), so those two ids are looked up by ?user_id= only.
      if (id !== "." && id !== "..") {
        const res = await api(env).get(`/v1/facts/${fact}/users/${encodeURIComponent(id)}/status?grain=day&from=2026-03-01&to=2026-03-02`);
        expect(res.statusCode, `${JSON.stringify(id)}: ${res.body}`).toBe(200);
        expect(res.json().user_id).toBe(id);
        expect(res.json().data.map((r: { state: string }) => r.state)).toEqual(["new", "inactive"]);
      }
      const one = await api(env).get(`/v1/facts/${fact}/first-last?date=2026-03-02&user_id=${encodeURIComponent(id)}`);
      expect(one.statusCode, one.body).toBe(200);
      expect(one.json().data.map((r: { user_id: string }) => r.user_id)).toEqual([id]);
    }
    // Lookalikes of stored ids find nothing: the value is compared, never spliced into the query.
    for (const probe of ["' OR '1'='1", "%", "_", "seed-1' --"]) {
      const res = await api(env).get(`/v1/facts/${fact}/first-last?date=2026-03-02&user_id=${encodeURIComponent(probe)}`);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().data).toEqual([]);
    }
    // Over-long (in characters: 256 emoji fit, 257 do not), control and unstorable ids are refused by
    // index; nothing of those batches is stored.
    for (const bad of ["u".repeat(257), "😀".repeat(257), "a\u0000b", "bell\u0007", "lone \ud800"]) {
      const res = await api(env).post(`/v1/facts/${fact}/events`, { events: [{ user_id: "fine", occurred_at: "2026-03-01T10:00:00Z" }, { user_id: bad, occurred_at: "2026-03-01T10:00:00Z" }] });
      expectHandled(res, JSON.stringify(bad));
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe("events[1].user_id");
    }
    expect((await storedUserIds(fact)).has("fine")).toBe(false);
    // A lookup by an id no event may have is a 400 too, counted the same way. (In the path, 257 emoji
    // are longer than any legal parameter, which the router answers itself: 414, below.)
    for (const url of [`/v1/facts/${fact}/users/${"u".repeat(257)}/status?grain=day`, `/v1/facts/${fact}/first-last?date=2026-03-02&user_id=${encodeURIComponent("😀".repeat(257))}`]) {
      const res = await api(env).get(url);
      expectHandled(res, "an over-long id");
      expect(res.json().errors).toEqual([{ path: "user_id", message: "user_id is longer than 256 characters" }]);
    }
    // The same through NUL in the path and the query string.
    for (const url of [`/v1/facts/${fact}/users/a%00b/status?grain=day`, `/v1/facts/${fact}/first-last?date=2026-03-02&user_id=a%00`, `/v1/audiences?fact=%00`]) {
      const res = await api(env).get(url);
      expectHandled(res, url);
      expect(res.statusCode).toBe(400);
    }
    const badUrl = await api(env).get(`/v1/facts/${fact}/users/%ED%A0%80/status?grain=day`);
    expectHandled(badUrl, "bad percent-encoding");
    expect(badUrl.statusCode).toBe(400);
  });

  it("the longest legal user id, 256 four-byte characters (3,072 bytes percent-encoded), is found by its URL; a longer path parameter is a 414 problem", async () => {
    const fact = "lit_long_users";
    await createFact(env, fact);
    // Emoji and other characters outside the BMP: four bytes of UTF-8 (twelve encoded), two UTF-16 units each.
    const longest = ["😀".repeat(256), "𝒜🎉𠀀🙂".repeat(64)];
    for (const id of longest) expect(encodeURIComponent(id)).toHaveLength(3072);
    await ingest(env, fact, longest.flatMap((user_id) => [{ user_id, occurred_at: "2026-03-01T10:00:00Z" }, { user_id, occurred_at: "2026-03-03T10:00:00Z" }]));
    await processThrough(env, fact, "2026-03-03");
    for (const id of longest) {
      const res = await api(env).get(`/v1/facts/${fact}/users/${encodeURIComponent(id)}/status?grain=day&from=2026-03-01&to=2026-03-03`);
      expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
      expect(res.json().user_id).toBe(id);
      expect(res.json().data.map((r: { state: string }) => r.state)).toEqual(["new", "inactive", "reactivated"]);
    }
    // One character more, in any path parameter, is longer than any legal one: the router's 414, as problem+json.
    for (const url of [
      `/v1/facts/${fact}/users/${encodeURIComponent("😀".repeat(257))}/status?grain=day`,
      `/v1/facts/${fact}/users/${"u".repeat(513)}/status?grain=day`,
      `/v1/campaigns/00000000-0000-4000-8000-000000000000/outcomes/${encodeURIComponent("😀".repeat(257))}`,
      `/v1/facts/${"f".repeat(513)}`,
    ]) {
      const res = await api(env).get(url);
      expectHandled(res, url.slice(0, 80));
      expect(res.statusCode, res.body.slice(0, 300)).toBe(414);
      expect(res.json()).toMatchObject({ status: 414, title: "URI Too Long", detail: expect.stringMatching(/path parameter is longer/) });
    }
  });

  it("campaign names", async () => {
    const a = (await api(env).post("/v1/audiences", { name: "for campaigns", fact: FACT, filter: simpleFilter })).json();
    const m = await api(env).post(`/v1/audiences/${a.id}/materializations`, {});
    expect(m.statusCode, m.body).toBe(202);
    const deadline = Date.now() + 45_000;
    let status = "";
    while (status !== "succeeded" && Date.now() < deadline) {
      status = (await api(env).get(`/v1/materializations/${m.json().id}`)).json().status;
      if (status === "failed") throw new Error("materialization failed");
      if (status !== "succeeded") await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe("succeeded");
    for (const name of [...LITERALS, "c".repeat(200)]) {
      const res = await api(env).post("/v1/campaigns", { name, materialization_id: m.json().id, goal: { fact: FACT, window_periods: 7, metric: "returned" }, salt: name });
      expect(res.statusCode, res.body).toBe(202);
      const got = (await api(env).get(`/v1/campaigns/${res.json().id}`)).json();
      expect(got.name).toBe(name);
      expect(got.salt).toBe(name);
    }
    for (const [name, field] of [["c".repeat(201), "name"], ["a\u0000b", "name"], ["\udfff", "name"]] as const) {
      const res = await api(env).post("/v1/campaigns", { name, materialization_id: m.json().id, goal: { fact: FACT, window_periods: 7, metric: "returned" } });
      expectHandled(res, JSON.stringify(name));
      expect(res.statusCode).toBe(400);
      expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(field);
    }
  });

  it("enum-like values carrying SQL are refused by name, and the data is intact afterwards", async () => {
    for (const v of SQL_LIKE) {
      const res = await api(env).post("/v1/audiences/preview", { definition: { name: "x", fact: FACT, filter: { field: "state", op: "eq", value: v } } });
      expectHandled(res, v);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe("definition.filter.value");
      const q = await api(env).get(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}&state=${encodeURIComponent(v)}`);
      expectHandled(q, v);
      expect(q.statusCode).toBe(400);
    }
    const count = await env.ctx.db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM app_user`);
    expect(Number(count.rows[0]!.n)).toBeGreaterThan(40);
    expect((await api(env).get(`/v1/facts/${FACT}`)).statusCode).toBe(200);
  });

  it("a field named after what every JavaScript object has (toString, constructor, __proto__) is an unknown field: a 400 naming it, nothing saved, the audience list intact", async () => {
    const before = (await api(env).get("/v1/audiences")).json().data.length;
    for (const field of ["toString", "constructor", "__proto__", "hasOwnProperty", "valueOf", "__defineGetter__"]) {
      for (const filter of [{ field, op: "is_null" }, { field, op: "eq", value: 1 }, { not: { field, op: "in", value: ["x"] } }]) {
        const preview = await api(env).post("/v1/audiences/preview", { definition: { name: "x", fact: FACT, filter } });
        expectHandled(preview, field);
        expect(preview.statusCode, preview.body).toBe(400);
        expect(preview.json().errors[0].path).toMatch(/^definition\.filter(\.not)?\.field$/);
        const created = await api(env).post("/v1/audiences", { name: `field ${field}`, fact: FACT, filter });
        expect(created.statusCode, created.body).toBe(400);
        expect(created.json().errors[0].path).toMatch(/^filter(\.not)?\.field$/);
      }
    }
    const list = await api(env).get("/v1/audiences");
    expect(list.statusCode, list.body).toBe(200);
    expect(list.json().data).toHaveLength(before);
    // And the compiler writes no such name into SQL, whatever reaches it (a definition stored before).
    expect(() => compileAudienceQuery({ factId: 1, grain: 0, period: 1, latest: true, filter: { field: "toString" as never, op: "is_null", values: [], factId: null } })).toThrow(
      "the audience compiler has no status field 'toString'",
    );
  });
});

// ---- size, depth and unknown fields

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

describe("limits", () => {
  it(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is a 400 naming where, on every kind of route; up to the limit it is an ordinary validation error`, async () => {
    const bodies: Array<[string, string, (deep: unknown) => unknown]> = [
      ["POST", "/v1/facts", (d) => ({ name: "deep_fact", description: d })],
      ["POST", `/v1/facts/${FACT}/events`, (d) => ({ events: [{ user_id: d, occurred_at: "2026-03-01T00:00:00Z" }] })],
      ["POST", "/v1/audiences/preview", (d) => ({ definition: { name: "n", fact: FACT, filter: d } })],
      ["POST", "/v1/audiences", (d) => ({ name: "n", fact: FACT, filter: { field: "state", op: "in", value: d } })],
      ["POST", "/v1/webhooks", (d) => ({ url: "http://127.0.0.1:9/x", events: d, secret: "0123456789abcdef" })],
      ["PUT", "/v1/control-group", (d) => ({ percent: d, salt: "s" })],
    ];
    for (const [method, url, make] of bodies) {
      const tooDeep = await env.app.inject({ method: method as "POST", url, headers: env.auth(), payload: make(nested(MAX_JSON_DEPTH + 5)) as object });
      expectHandled(tooDeep, `${url} too deep`);
      expect(tooDeep.statusCode).toBe(400);
      expect(tooDeep.json().errors[0].message, url).toMatch(new RegExp(`nested deeper than ${MAX_JSON_DEPTH} levels`));
      // 100,000 levels (200 kB) is as harmless: no stack overflow, the same 400.
      const payload = JSON.stringify(make("__DEEP__")).replace('"__DEEP__"', "[".repeat(100_000) + "]".repeat(100_000));
      const abyss = await env.app.inject({ method: method as "POST", url, headers: { ...env.auth(), "content-type": "application/json" }, payload });
      expectHandled(abyss, `${url} abyss`);
      expect(abyss.statusCode).toBe(400);
      const shallow = await env.app.inject({ method: method as "POST", url, headers: env.auth(), payload: make(nested(3)) as object });
      expectHandled(shallow, `${url} shallow`);
      expect(shallow.json().errors?.[0]?.message ?? "", url).not.toMatch(/nested deeper/);
    }
  });

  it("__proto__ and constructor.prototype keys are a 400 naming where, on every kind of route, and touch no prototype", async () => {
    const bodies: Array<[string, string, (k: string) => string]> = [
      ["POST", "/v1/facts", (k) => `{"name":"proto_fact","description":"d",${k}}`],
      ["POST", `/v1/facts/${FACT}/events`, (k) => `{"events":[{"user_id":"u","occurred_at":"2026-03-01T00:00:00Z",${k}}]}`],
      ["POST", "/v1/audiences/preview", (k) => `{"definition":{"name":"n","fact":"${FACT}","filter":{"field":"state","op":"eq","value":"new",${k}}}}`],
      ["POST", "/v1/webhooks", (k) => `{"url":"http://127.0.0.1:9/x","events":["run.succeeded"],"secret":"0123456789abcdef","x":{${k}}}`],
      ["PUT", "/v1/control-group", (k) => `{"percent":0,"salt":"s",${k}}`],
    ];
    const where: Record<string, string> = {
      "/v1/facts": "", [`/v1/facts/${FACT}/events`]: "events[0].", "/v1/audiences/preview": "definition.filter.", "/v1/webhooks": "x.", "/v1/control-group": "",
    };
    for (const [method, url, make] of bodies) {
      for (const [key, field, message] of [
        [`"__proto__":{"polluted":true}`, "__proto__", /__proto__ is not accepted/],
        [`"constructor":{"prototype":{"polluted":true}}`, "constructor", /constructor holding a prototype/],
      ] as const) {
        const res = await env.app.inject({ method: method as "POST", url, headers: { ...env.auth(), "content-type": "application/json" }, payload: make(key) });
        expectHandled(res, `${url} ${field}`);
        expect(res.statusCode, `${url} ${field}`).toBe(400);
        expect(res.json().errors[0], `${url} ${field}`).toMatchObject({ path: `${where[url]}${field}`, message: expect.stringMatching(message) });
      }
    }
    // NDJSON lines are parsed by their route: the same key is an unknown field of that line.
    const ndjson = await env.app.inject({
      method: "POST", url: `/v1/facts/${FACT}/events`, headers: { ...env.auth(), "content-type": "application/x-ndjson" },
      payload: `{"user_id":"proto-u","occurred_at":"2026-03-01T00:00:00Z"}\n{"user_id":"proto-u","occurred_at":"2026-03-01T00:00:00Z","__proto__":{"polluted":true}}\n`,
    });
    expectHandled(ndjson, "ndjson __proto__");
    expect(ndjson.statusCode, ndjson.body).toBe(400);
    expect(JSON.stringify(ndjson.json().errors)).toContain("__proto__");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await api(env).get("/v1/facts/proto_fact")).statusCode).toBe(404);
    // A "constructor" field without a prototype inside is an ordinary unknown field.
    const plain = await env.app.inject({ method: "PUT", url: "/v1/control-group", headers: { ...env.auth(), "content-type": "application/json" }, payload: `{"percent":0,"salt":"s","constructor":1}` });
    expect(plain.statusCode).toBe(400);
    expect(plain.json().errors[0].path).toBe("constructor");
  });

  it("bodies over the limits are 413 problem+json on each body-taking route", async () => {
    const big = "x".repeat(1_100_000);
    for (const [method, url, body] of [
      ["POST", "/v1/audiences/preview", { definition: { name: big } }],
      ["POST", "/v1/audiences", { name: big }],
      ["PATCH", `/v1/facts/${FACT}`, { description: big }],
      ["POST", "/v1/webhooks", { url: big }],
      ["PUT", "/v1/control-group", { salt: big }],
      ["POST", `/v1/facts/${FACT}/events`, { events: [{ user_id: "x".repeat(5_300_000), occurred_at: "2026-03-01T00:00:00Z" }] }],
    ] as const) {
      const res = await env.app.inject({ method, url, headers: env.auth(), payload: body as object });
      expectHandled(res, url);
      expect(res.statusCode, url).toBe(413);
    }
  });

  it("unknown fields are a 400 naming them, on every route that takes a body", async () => {
    const uuid = "00000000-0000-4000-8000-000000000000";
    const audience = (await api(env).post("/v1/audiences", { name: "unknown fields", fact: FACT, filter: { field: "is_active", op: "eq", value: true } })).json();
    const cases: Array<[string, string, Record<string, unknown>]> = [
      ["POST", "/v1/facts", { name: "unknown_f" }],
      ["PATCH", `/v1/facts/${FACT}`, { description: "d" }],
      ["POST", `/v1/facts/${FACT}/events`, { events: [{ user_id: "u", occurred_at: "2026-03-01T00:00:00Z" }] }],
      ["POST", `/v1/facts/${FACT}/runs`, {}],
      ["POST", "/v1/audiences/preview", { definition: { name: "n", fact: FACT, filter: { field: "is_active", op: "eq", value: true } } }],
      ["POST", "/v1/audiences", { name: "n", fact: FACT, filter: { field: "is_active", op: "eq", value: true } }],
      ["PATCH", `/v1/audiences/${audience.id}`, { name: "n" }],
      ["POST", `/v1/audiences/${audience.id}/materializations`, {}],
      ["POST", "/v1/webhooks", { url: "http://127.0.0.1:9/x", events: ["run.succeeded"], secret: "0123456789abcdef" }],
      ["POST", "/v1/campaigns", { name: "c", materialization_id: uuid, goal: { fact: FACT, window_periods: 7, metric: "returned" } }],
      ["PATCH", `/v1/campaigns/${uuid}`, { name: "c" }],
      ["POST", `/v1/campaigns/${uuid}/sends`, { sends: [] }],
      ["POST", `/v1/campaigns/${uuid}/outcomes`, { outcomes: [] }],
      ["PUT", "/v1/control-group", { percent: 0, salt: "s" }],
    ];
    for (const [method, url, body] of cases) {
      const res = await env.app.inject({ method: method as "POST", url, headers: env.auth(), payload: { ...body, "'; DROP TABLE fact; --": 1 } });
      expectHandled(res, `${method} ${url}`);
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(400);
      expect(res.json().errors.map((e: { path: string }) => e.path), `${method} ${url}`).toContain("'; DROP TABLE fact; --");
    }
    // Inside nested objects too: an event, a condition, a goal.
    for (const [url, body, path] of [
      [`/v1/facts/${FACT}/events`, { events: [{ user_id: "u", occurred_at: "2026-03-01T00:00:00Z", extra: 1 }] }, "events[0].extra"],
      ["/v1/audiences/preview", { definition: { name: "n", fact: FACT, filter: { field: "is_active", op: "eq", value: true, extra: 1 } } }, "definition.filter.extra"],
      ["/v1/campaigns", { name: "c", materialization_id: uuid, goal: { fact: FACT, window_periods: 7, metric: "returned", extra: 1 } }, "goal.extra"],
    ] as const) {
      const res = await api(env).post(url, body);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(path);
    }
  });
});
