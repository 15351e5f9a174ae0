// The committed OpenAPI document as a contract: one realistic scenario drives every operation of
// openapi/openapi.json through the app, with the main error answers, and every answer is held to the
// document (status declared, content type declared, body valid against the declared schema, NDJSON
// lines against the declared item schema, required headers present). An operation the scenario does
// not exercise fails the test, so a new route comes with its coverage here; so does a 404 or 409 an
// operation declares and the scenario never got (a declaration no code path answers, or a gap here).
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { buildApp } from "../src/app.js";
import { createContext } from "../src/bootstrap.js";
import { loadConfig } from "../src/config.js";
import { OPENAPI_FILE } from "../scripts/write-openapi.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { REDIS_URL } from "./helpers/databases.js";
import { OpenApiContract, type OpenApiDocument } from "./helpers/openapi-contract.js";

const contract = new OpenApiContract(JSON.parse(readFileSync(OPENAPI_FILE, "utf8")) as OpenApiDocument);
const FACT = "conformance_opens";
const OTHER_FACT = "conformance_spare";
const SERVICE = "svc_conformance";
const THROUGH = "2026-10-28";
const EARLIER = "2026-10-20";
const MISSING = "00000000-0000-4000-8000-000000000000";
const inDays = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);

/**
 * Forty users over four weeks of October 2026, each active every few days from a day of its own: every
 * state occurs at day, week and month grain, and a list as of the 20th differs from one as of the 28th.
 */
function scenarioEvents() {
  const out: Array<{ user_id: string; occurred_at: string }> = [];
  for (let u = 0; u < 40; u++)
    for (let d = 1 + (u % 17); d <= 28; d += 1 + (u % 5)) out.push({ user_id: `user-${u}`, occurred_at: `2026-10-${String(d).padStart(2, "0")}T${String(u % 24).padStart(2, "0")}:15:00Z` });
  return out;
}
const EVENTS = scenarioEvents();

let env: TestEnv;
let receiver: Server;
let receiverUrl = "";
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  receiver = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});
afterAll(async () => {
  await new Promise((resolve) => receiver?.close(resolve));
  await env?.close();
});

interface CallOptions {
  json?: unknown;
  raw?: string;
  contentType?: string;
  /** The API key; null sends none. Default: the admin key. */
  key?: string | null;
  headers?: Record<string, string>;
}

/** One request through the app, checked against the document; its status must be `expected`. */
async function call(method: string, url: string, expected: number | number[], options: CallOptions = {}) {
  const headers: Record<string, string> = { ...(options.key === null ? {} : env.auth(options.key)), ...options.headers };
  let payload: string | undefined;
  let requestContentType: string | undefined;
  if (options.json !== undefined) {
    payload = JSON.stringify(options.json);
    requestContentType = "application/json";
  } else if (options.raw !== undefined) {
    payload = options.raw;
    requestContentType = options.contentType;
  }
  if (requestContentType) headers["content-type"] = requestContentType;
  const response = await env.app.inject({ method: method as "GET", url, headers, payload });
  contract.check({ method, url, requestContentType, requestBody: options.json ?? options.raw, requestHeaders: options.headers, response });
  expect(Array.isArray(expected) ? expected : [expected], `${method} ${url}: ${response.body.slice(0, 500)}`).toContain(response.statusCode);
  return response;
}

/** Polls a job's record until `done`, every poll checked like any other answer. */
async function waitFor(url: string, done: (r: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 45_000;
  for (;;) {
    const record = (await call("GET", url, 200)).json() as Record<string, unknown>;
    if (done(record)) return record;
    if (Date.now() > deadline) throw new Error(`${url} did not finish: ${JSON.stringify(record)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const finished = (r: Record<string, unknown>) => r.status === "succeeded" || r.status === "failed";
const ndjsonLines = (body: string) => body.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);

/** The answer is a problem+json naming at least one field in `errors`. */
function expectFieldErrors(res: { json(): unknown; headers: Record<string, unknown> }) {
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect((res.json() as { errors?: unknown[] }).errors?.length).toBeGreaterThan(0);
}

describe("the scenario holds to openapi/openapi.json", () => {
  let runId = "";
  let audienceId = "";
  let listId = "";
  let earlierListId = "";
  let campaignId = "";
  let webhookId = "";

  it("health, facts, authentication and the framework's answers", async () => {
    await call("GET", "/health", 200, { key: null });
    await call("GET", "/ready", 200, { key: null });

    await call("GET", "/v1/facts", 401, { key: null });
    await call("POST", "/v1/facts", 403, { key: env.keys.read, json: { name: FACT } });
    const created = await call("POST", "/v1/facts", 201, { json: { name: FACT, timezone: "UTC", service: SERVICE, description: "App opens" } });
    expect(created.headers.location).toBe(`/v1/facts/${FACT}`);
    await call("POST", "/v1/facts", 201, { json: { name: OTHER_FACT } });
    expectFieldErrors(await call("POST", "/v1/facts", 400, { json: { name: "Not A Name" } }));
    await call("POST", "/v1/facts", 409, { json: { name: FACT } });
    await call("POST", "/v1/facts", 415, { raw: `name=${FACT}`, contentType: "text/plain" });
    await call("POST", "/v1/facts", 413, { json: { name: "too_long", description: "x".repeat(1024 * 1024) } });

    await call("GET", `/v1/facts?service=${SERVICE}&limit=1`, 200);
    expectFieldErrors(await call("GET", "/v1/facts?grian=week", 400));
    await call("GET", `/v1/facts/${FACT}`, 200);
    await call("GET", "/v1/facts/no_such_fact", 404);
    await call("PATCH", `/v1/facts/${FACT}`, 200, { json: { description: "Opens of the app" } });
    expectFieldErrors(await call("PATCH", `/v1/facts/${FACT}`, 400, { json: { timezone: 7 } }));
    await call("PATCH", "/v1/facts/no_such_fact", 404, { json: { description: "Nothing" } });
    await call("GET", `/v1/facts/${"f".repeat(601)}`, 414);
    // A DELETE's body is parsed like any other: over the limit, or of a type no parser takes.
    await call("DELETE", `/v1/facts/${OTHER_FACT}`, 415, { raw: "please", contentType: "text/plain" });
    await call("DELETE", `/v1/facts/${OTHER_FACT}`, 413, { json: { reason: "x".repeat(1024 * 1024) } });

    // Outside the document's operations: a known path with another method, an unknown path.
    for (const [method, url, status] of [["PUT", "/v1/facts", 405], ["GET", "/v1/nothing-here", 404]] as const) {
      const res = await env.app.inject({ method, url, headers: env.auth() });
      expect(res.statusCode).toBe(status);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(contract.validateProblem(res.json()), res.body).toBeNull();
      if (status === 405) expect(res.headers.allow).toBe("GET, HEAD, POST");
    }
  });

  it("webhooks", async () => {
    await call("POST", "/v1/webhooks", 403, { key: env.keys.rw, json: { url: receiverUrl, events: ["run.succeeded"], secret: "0123456789abcdef" } });
    expectFieldErrors(await call("POST", "/v1/webhooks", 400, { json: { url: "ftp://example.com", events: [], secret: "short" } }));
    const hook = await call("POST", "/v1/webhooks", 201, {
      json: { url: receiverUrl, events: ["run.succeeded", "materialization.succeeded", "campaign.assigned"], secret: "0123456789abcdef" },
    });
    webhookId = hook.json().id;
    await call("GET", "/v1/webhooks?limit=10", 200);
    await call("GET", `/v1/webhooks/${webhookId}`, 200);
    await call("GET", `/v1/webhooks/${MISSING}`, 404);
    await call("GET", "/v1/webhooks/not-a-uuid", 400);
  });

  it("events: JSON, NDJSON, idempotency and refusals", async () => {
    const half = Math.floor(EVENTS.length / 2);
    const json = { events: EVENTS.slice(0, half) };
    const first = await call("POST", `/v1/facts/${FACT}/events`, 202, { json, headers: { "idempotency-key": "conformance-batch-1" } });
    const replay = await call("POST", `/v1/facts/${FACT}/events`, 202, { json, headers: { "idempotency-key": "conformance-batch-1" } });
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.json()).toEqual(first.json());
    await call("POST", `/v1/facts/${FACT}/events`, 422, { json: { events: EVENTS.slice(0, 1) }, headers: { "idempotency-key": "conformance-batch-1" } });
    const ndjson = `${EVENTS.slice(half).map((e) => JSON.stringify(e)).join("\n")}\n`;
    expect((await call("POST", `/v1/facts/${FACT}/events`, 202, { raw: ndjson, contentType: "application/x-ndjson" })).json().accepted).toBe(EVENTS.length - half);

    expectFieldErrors(await call("POST", `/v1/facts/${FACT}/events`, 400, { json: { events: [{ user_id: "", occurred_at: "yesterday" }] } }));
    expectFieldErrors(await call("POST", `/v1/facts/${FACT}/events`, 400, { raw: '{"user_id":"a","occurred_at":"2026-10-01T00:00:00Z"}\nnot json\n', contentType: "application/x-ndjson" }));
    await call("POST", `/v1/facts/${FACT}/events`, 415, { raw: "user,at", contentType: "text/csv" });
    await call("POST", "/v1/facts/no_such_fact/events", 404, { json: json });
    await call("PATCH", `/v1/facts/${FACT}`, 409, { json: { timezone: "Asia/Seoul" } });
    const tooMany = { events: Array.from({ length: 10_001 }, (_, i) => ({ user_id: i, occurred_at: "2026-10-01T00:00:00Z" })) };
    await call("POST", `/v1/facts/${FACT}/events`, 413, { json: tooMany });
  });

  it("runs", async () => {
    expectFieldErrors(await call("POST", `/v1/facts/${FACT}/runs`, 400, { json: { through: "10/28/2026" } }));
    await call("POST", `/v1/facts/${FACT}/runs`, 400, { json: { through: inDays(30) } });
    await call("POST", "/v1/facts/no_such_fact/runs", 404, { json: {} });
    await call("POST", `/v1/facts/${OTHER_FACT}/runs`, 409, { json: {} });
    // Without a body: through the latest activity date, the scenario's last day.
    const run = await call("POST", `/v1/facts/${FACT}/runs`, [200, 202]);
    runId = run.json().id;
    expect(run.json().through).toBe(THROUGH);
    expect(run.headers.location).toBe(`/v1/runs/${runId}`);
    const done = await waitFor(`/v1/runs/${runId}`, finished);
    expect(done.status).toBe("succeeded");
    // Again through the same date: nothing new, the run succeeds at once.
    const again = await call("POST", `/v1/facts/${FACT}/runs`, [200, 202], { json: { through: THROUGH }, headers: { "idempotency-key": "conformance-run" } });
    const replayed = await call("POST", `/v1/facts/${FACT}/runs`, [200, 202], { json: { through: THROUGH }, headers: { "idempotency-key": "conformance-run" } });
    expect(replayed.json().id).toBe(again.json().id);
    await call("POST", `/v1/facts/${FACT}/runs`, 422, { json: { through: "2026-10-27" }, headers: { "idempotency-key": "conformance-run" } });
    await waitFor(`/v1/runs/${again.json().id}`, finished);
    await call("GET", `/v1/facts/${FACT}/runs?limit=5`, 200);
    await call("GET", "/v1/facts/no_such_fact/runs", 404);
    await call("GET", `/v1/runs/${MISSING}`, 404);
  });

  it("the activation layer and its metrics, as pages and streams", async () => {
    const streams = async (url: string) => {
      const csv = await call("GET", url, 200, { headers: { accept: "text/csv" } });
      expect(csv.body.split("\n").join("\n")).toMatch(/user_id/);
      const nd = await call("GET", url, 200, { headers: { accept: "application/x-ndjson" } });
      expect(ndjsonLines(nd.body).length).toBeGreaterThan(0);
      await call("GET", url, 406, { headers: { accept: "image/png" } });
    };
    const firstLast = `/v1/facts/${FACT}/first-last?date=${THROUGH}`;
    expect((await call("GET", `${firstLast}&limit=3`, 200)).json().data).toHaveLength(3);
    await call("GET", `${firstLast}&user_id=user-1`, 200);
    await streams(firstLast);
    expectFieldErrors(await call("GET", `/v1/facts/${FACT}/first-last?date=someday`, 400));

    for (const grain of ["day", "week", "month"] as const) {
      const period = grain === "day" ? THROUGH : grain === "week" ? "2026-10-26" : "2026-10-01";
      await call("GET", `/v1/facts/${FACT}/activation?grain=${grain}&period=${period}`, 200);
      await call("GET", `/v1/facts/${FACT}/status?grain=${grain}&period=${period}&limit=4`, 200);
      await call("GET", `/v1/facts/${FACT}/users/user-2/status?grain=${grain}&from=2026-10-01&to=${THROUGH}`, 200);
      await call("GET", `/v1/facts/${FACT}/metrics?grain=${grain}&from=2026-10-01&to=${THROUGH}`, 200);
      await call("GET", `/v1/services/${SERVICE}/core-actions?grain=${grain}`, 200);
    }
    await call("GET", `/v1/facts/${FACT}/activation?grain=day&period=${THROUGH}&state=retained`, 200);
    await call("GET", `/v1/facts/${FACT}/status?grain=day&period=${THROUGH}&state=inactive&transition_segment=retained_to_inactive`, 200);
    await streams(`/v1/facts/${FACT}/activation?grain=week&period=2026-10-19`);
    await streams(`/v1/facts/${FACT}/status?grain=day&period=${THROUGH}`);
    await streams(`/v1/facts/${FACT}/status?grain=month&period=2026-10-01`);
    await call("GET", `/v1/facts/${FACT}/users/nobody/status?grain=day`, [200, 404]);
    // A path parameter longer than any legal id: the router's 414.
    await call("GET", `/v1/facts/${FACT}/users/${encodeURIComponent("😀".repeat(257))}/status?grain=day`, 414);
    await call("GET", `/v1/facts/${FACT}/metrics?grain=day&to=${inDays(1)}`, 409);
    await call("GET", `/v1/facts/${FACT}/metrics?grain=day&from=${THROUGH}&to=2026-10-01`, 400);
    await call("GET", `/v1/facts/${FACT}/metrics/contribution?grain=week&base=2026-10-19&compare=2026-10-26`, 200);
    await call("GET", `/v1/facts/${FACT}/metrics/contribution?grain=day&base=2026-10-27&compare=${THROUGH}`, 200);
    expectFieldErrors(await call("GET", `/v1/facts/${FACT}/metrics/contribution?grain=day&base=2026-10-27`, 400));
    await call("GET", `/v1/services/${SERVICE}/core-actions?grain=day&from=2026-10-20&to=${inDays(400)}`, 200);
    await call("GET", "/v1/services/no_such_service/core-actions", 404);
    // An unknown fact is a 404; one never processed (OTHER_FACT) has nothing to read yet, a 409.
    for (const fact of ["no_such_fact", OTHER_FACT]) {
      const status = fact === OTHER_FACT ? 409 : 404;
      await call("GET", `/v1/facts/${fact}/first-last?date=${THROUGH}`, status);
      await call("GET", `/v1/facts/${fact}/activation?period=${THROUGH}`, status);
      await call("GET", `/v1/facts/${fact}/status?period=${THROUGH}`, status);
      await call("GET", `/v1/facts/${fact}/users/user-1/status`, status);
      await call("GET", `/v1/facts/${fact}/metrics`, status);
      await call("GET", `/v1/facts/${fact}/metrics/contribution?base=2026-10-27&compare=${THROUGH}`, status);
    }
  });

  it("audiences, versions, preview and materializations with their members and changes", async () => {
    const filter = { all: [{ field: "inactivity_periods", op: "gte", value: 0 }, { field: "state", op: "neq", value: "new", within_periods: 3 }] };
    const definition = { name: "Everyone not new", fact: FACT, grain: "day", filter };
    await call("POST", "/v1/audiences/preview", 200, { key: env.keys.read, json: { definition, as_of: THROUGH } });
    await call("POST", "/v1/audiences/preview", 200, { json: { definition: { ...definition, grain: "week" } } });
    expectFieldErrors(await call("POST", "/v1/audiences/preview", 400, { json: { definition: { ...definition, filter: { field: "mood", op: "eq", value: 1 } } } }));

    const created = await call("POST", "/v1/audiences", 201, { json: { ...definition, description: "For the contract", refresh: { cron: "0 6 * * 1", timezone: "Asia/Seoul" } } });
    audienceId = created.json().id;
    expect(created.headers.location).toBe(`/v1/audiences/${audienceId}`);
    expectFieldErrors(await call("POST", "/v1/audiences", 400, { json: { ...definition, grain: "year" } }));
    await call("GET", "/v1/audiences?limit=5", 200);
    await call("GET", `/v1/audiences?fact=${FACT}`, 200);
    await call("GET", `/v1/audiences/${audienceId}`, 200);
    await call("GET", `/v1/audiences/${MISSING}`, 404);
    // Dates in a filter come back as they were sent, so a filter read can be sent back as it is.
    const dated = { all: [{ field: "first_active_period", op: "gte", value: "2026-10-01" }, { field: "last_active_period", op: "between", value: [{ periods_ago: 7 }, THROUGH] }] };
    await call("PATCH", `/v1/audiences/${audienceId}`, 200, { json: { filter: dated } });
    const read = (await call("GET", `/v1/audiences/${audienceId}`, 200)).json();
    expect(read.filter).toEqual(dated);
    await call("PATCH", `/v1/audiences/${audienceId}`, 200, { json: { filter: read.filter, description: "Round trip" } });
    await call("PATCH", `/v1/audiences/${audienceId}`, 200, { json: { filter: { field: "inactivity_periods", op: "between", value: [0, 1] }, refresh: "on_new_data" } });
    await call("PATCH", `/v1/audiences/${audienceId}`, 200, { json: { refresh: null } });
    await call("GET", `/v1/audiences/${audienceId}/versions`, 200);
    await call("PATCH", `/v1/audiences/${MISSING}`, 404, { json: { description: "Nobody's" } });
    await call("GET", `/v1/audiences/${MISSING}/versions`, 404);
    await call("GET", `/v1/audiences/${MISSING}/materializations`, 404);
    await call("POST", "/v1/audiences/preview", 409, { json: { definition: { ...definition, fact: OTHER_FACT, filter: { field: "inactivity_periods", op: "gte", value: 0 } } } });
    await call("POST", `/v1/audiences/${audienceId}/materializations`, 409, { json: { as_of: inDays(1) } });

    const list = await call("POST", `/v1/audiences/${audienceId}/materializations`, 202);
    listId = list.json().id;
    expect(list.headers.location).toBe(`/v1/materializations/${listId}`);
    const earlier = await call("POST", `/v1/audiences/${audienceId}/materializations`, 202, { json: { as_of: EARLIER } });
    earlierListId = earlier.json().id;
    expectFieldErrors(await call("POST", `/v1/audiences/${audienceId}/materializations`, 400, { json: { as_of: "tomorrow" } }));
    await call("POST", `/v1/audiences/${MISSING}/materializations`, 404, { json: {} });
    expect((await waitFor(`/v1/materializations/${listId}`, finished)).status).toBe("succeeded");
    expect((await waitFor(`/v1/materializations/${earlierListId}`, finished)).status).toBe("succeeded");
    await call("GET", `/v1/audiences/${audienceId}/materializations`, 200);
    await call("GET", `/v1/materializations/${MISSING}`, 404);

    const members = `/v1/materializations/${listId}/members`;
    await call("GET", `${members}?limit=2`, 200);
    await call("GET", members, 200, { headers: { accept: "text/csv" } });
    await call("GET", members, 200, { headers: { accept: "application/x-ndjson" } });
    await call("GET", members, 406, { headers: { accept: "application/xml" } });
    for (const kind of ["entered", "exited"]) {
      const changes = `/v1/materializations/${listId}/changes?since=${earlierListId}&kind=${kind}`;
      expect((await call("GET", changes, 200)).json().counts[kind]).toBeGreaterThan(0);
      await call("GET", changes, 200, { headers: { accept: "text/csv" } });
      await call("GET", changes, 200, { headers: { accept: "application/x-ndjson" } });
    }
    expectFieldErrors(await call("GET", `/v1/materializations/${listId}/changes`, 400));
    await call("GET", `/v1/materializations/${MISSING}/members`, 404);
    await call("GET", `/v1/materializations/${MISSING}/changes?since=${listId}`, 404);
  });

  it("the global control group", async () => {
    await call("GET", "/v1/control-group", 200, { key: env.keys.read });
    await call("PUT", "/v1/control-group", 403, { key: env.keys.rw, json: { percent: 5, salt: "global" } });
    expectFieldErrors(await call("PUT", "/v1/control-group", 400, { json: { percent: 5, salt: "global", enabled: false } }));
    const set = await call("PUT", "/v1/control-group", 200, { json: { percent: 12.5, salt: "global" } });
    await call("PUT", "/v1/control-group", 200, { json: set.json() });
  });

  it("campaigns: create, change, pull, sends, outcomes, results, retry", async () => {
    const launch = inDays(30);
    const body = { name: "Win back", materialization_id: listId, holdout_percent: 25, launch_date: launch, goal: { fact: FACT, window_periods: 7, metric: "returned" } };
    const created = await call("POST", "/v1/campaigns", 202, { json: body, headers: { "idempotency-key": "conformance-campaign" } });
    campaignId = created.json().id;
    expect(created.headers.location).toBe(`/v1/campaigns/${campaignId}`);
    const replay = await call("POST", "/v1/campaigns", 202, { json: body, headers: { "idempotency-key": "conformance-campaign" } });
    expect(replay.json().id).toBe(campaignId);
    await call("POST", "/v1/campaigns", 422, { json: { ...body, name: "Other" }, headers: { "idempotency-key": "conformance-campaign" } });
    expectFieldErrors(await call("POST", "/v1/campaigns", 400, { json: { ...body, holdout_percent: 75 } }));
    expectFieldErrors(await call("POST", "/v1/campaigns", 400, { json: { ...body, materialization_id: MISSING } }));
    await waitFor(`/v1/campaigns/${campaignId}`, (c) => c.status !== "assigning");

    await call("GET", "/v1/campaigns?limit=5", 200);
    await call("GET", `/v1/campaigns/${MISSING}`, 404);
    await call("PATCH", `/v1/campaigns/${campaignId}`, 200, { json: { name: "Win back, October" } });
    const reassigning = await call("PATCH", `/v1/campaigns/${campaignId}`, 202, { json: { holdout_percent: 20 } });
    expect(reassigning.json().pending_changes).toMatchObject({ holdout_percent: 20 });
    await call("PATCH", `/v1/campaigns/${campaignId}`, [202, 409], { json: { holdout_percent: 30 } });
    expect((await waitFor(`/v1/campaigns/${campaignId}`, (c) => c.status !== "assigning")).status).toBe("ready");

    // Pulling the assignments launches the campaign: assignment fields are then fixed.
    const assignments = `/v1/campaigns/${campaignId}/assignments`;
    const page = (await call("GET", `${assignments}?limit=100`, 200)).json() as { data: Array<{ user_id: string; group: string }> };
    await call("GET", assignments, 200, { headers: { accept: "text/csv" } });
    const rows = ndjsonLines((await call("GET", `${assignments}?group=treatment`, 200, { headers: { accept: "application/x-ndjson" } })).body);
    await call("GET", `${assignments}?group=control`, 200);
    await call("GET", assignments, 406, { headers: { accept: "text/html" } });
    await call("PATCH", `/v1/campaigns/${campaignId}`, 409, { json: { holdout_percent: 15 } });

    const treated = rows.map((r) => String(r.user_id));
    const now = new Date().toISOString();
    const held = page.data.find((r) => r.group !== "treatment")?.user_id;
    const sends = { sends: treated.map((user_id) => ({ user_id, sent_at: now, channel: "push", status: "sent" })) };
    await call("POST", `/v1/campaigns/${campaignId}/sends`, 200, { json: sends, headers: { "idempotency-key": "conformance-sends" } });
    await call("POST", `/v1/campaigns/${campaignId}/sends`, 200, { json: sends, headers: { "idempotency-key": "conformance-sends" } });
    await call("POST", `/v1/campaigns/${campaignId}/sends`, 422, { json: { sends: sends.sends.slice(1) }, headers: { "idempotency-key": "conformance-sends" } });
    if (held) expectFieldErrors(await call("POST", `/v1/campaigns/${campaignId}/sends`, 400, { json: { sends: [{ user_id: held, sent_at: now, channel: "push", status: "sent" }] } }));
    await call("POST", `/v1/campaigns/${campaignId}/sends`, 415, { raw: "user,channel", contentType: "text/csv" });
    const outcome = (value: number) => ({ outcome_id: "order-1", user_id: page.data[0]!.user_id, occurred_at: now, name: "purchase", value });
    await call("POST", `/v1/campaigns/${campaignId}/outcomes`, 200, { json: { outcomes: [outcome(12.5), { ...outcome(3), outcome_id: "order-2", value: null }] } });
    const conflicting = await call("POST", `/v1/campaigns/${campaignId}/outcomes`, 200, { json: { outcomes: [outcome(99)] } });
    expect(conflicting.json().conflicting).toBe(1);
    expectFieldErrors(await call("POST", `/v1/campaigns/${campaignId}/outcomes`, 400, { json: { outcomes: [{ ...outcome(1), user_id: "not-in-the-list" }] } }));
    // One by one: listed, read with its history, corrected, retracted.
    const outcomes = `/v1/campaigns/${campaignId}/outcomes`;
    await call("GET", `${outcomes}?limit=1`, 200);
    await call("GET", `${outcomes}?status=bogus`, 400);
    const { outcome_id: _id, ...corrected } = outcome(10);
    await call("PUT", `${outcomes}/order-1`, 200, { json: corrected, headers: { "idempotency-key": "conformance-correct" } });
    await call("PUT", `${outcomes}/order-1`, 412, { json: { ...corrected, value: 11 }, headers: { "if-match": '"1"' } });
    expectFieldErrors(await call("PUT", `${outcomes}/order-1`, 400, { json: { ...corrected, value: 1e300 } }));
    await call("PUT", `${outcomes}/never-recorded`, 404, { json: corrected });
    await call("GET", `${outcomes}/order-1`, 200);
    await call("GET", `${outcomes}/never-recorded`, 404);
    await call("DELETE", `${outcomes}/order-2`, 200);
    await call("PUT", `${outcomes}/order-2`, 409, { json: corrected });
    await call("GET", `/v1/campaigns/${campaignId}/results`, 200);
    await call("GET", `/v1/campaigns/${campaignId}/results?refresh=true`, 200);
    await call("GET", `/v1/campaigns/${MISSING}/results`, 404);
    const missing = `/v1/campaigns/${MISSING}`;
    await call("PATCH", missing, 404, { json: { name: "Nobody's" } });
    await call("GET", `${missing}/assignments`, 404);
    await call("POST", `${missing}/sends`, 404, { json: { sends: sends.sends.slice(0, 1) } });
    await call("POST", `${missing}/outcomes`, 404, { json: { outcomes: [outcome(1)] } });
    await call("GET", `${missing}/outcomes`, 404);
    await call("DELETE", `${missing}/outcomes/order-1`, 404);
    await call("POST", `${missing}/retry-assignment`, 404);
    await call("POST", `/v1/campaigns/${campaignId}/retry-assignment`, 409);

    // A campaign whose list is deleted before its job runs fails; trying it again answers 202.
    const doomed = await call("POST", `/v1/audiences/${audienceId}/materializations`, 202, { json: { as_of: EARLIER } });
    await waitFor(`/v1/materializations/${doomed.json().id}`, finished);
    let failedId = "";
    const orphaned = { json: { ...body, name: "Orphaned", materialization_id: doomed.json().id }, headers: { "idempotency-key": "conformance-orphaned" } };
    let queuedListId = "";
    await env.withWorkersStopped(async () => {
      failedId = (await call("POST", "/v1/campaigns", 202, orphaned)).json().id;
      await call("DELETE", `/v1/materializations/${doomed.json().id}`, 204);
      // A list no worker has computed yet: no members, no changes, no campaign, not deleted.
      queuedListId = (await call("POST", `/v1/audiences/${audienceId}/materializations`, 202)).json().id;
      await call("GET", `/v1/materializations/${queuedListId}/members`, 409);
      await call("GET", `/v1/materializations/${queuedListId}/changes?since=${listId}`, 409);
      await call("DELETE", `/v1/materializations/${queuedListId}`, 409);
      await call("POST", "/v1/campaigns", 409, { json: { ...body, name: "Too early", materialization_id: queuedListId } });
    });
    await waitFor(`/v1/materializations/${queuedListId}`, finished);
    expect((await waitFor(`/v1/campaigns/${failedId}`, (c) => c.status !== "assigning")).status).toBe("failed");
    // Without assignments, nothing can be recorded or read against them.
    const failed = `/v1/campaigns/${failedId}`;
    await call("GET", `${failed}/assignments`, 409);
    await call("POST", `${failed}/sends`, 409, { json: sends });
    await call("POST", `${failed}/outcomes`, 409, { json: { outcomes: [outcome(1)] } });
    await call("GET", `${failed}/outcomes`, 409);
    await call("GET", `${failed}/outcomes/order-1`, 409);
    await call("DELETE", `${failed}/outcomes/order-1`, 409);
    await call("GET", `${failed}/results`, 409);
    const retried = await call("POST", `/v1/campaigns/${failedId}/retry-assignment`, 202, { headers: { "idempotency-key": "conformance-retry" } });
    expect(retried.headers.location).toBe(`/v1/campaigns/${failedId}`);
    await waitFor(`/v1/campaigns/${failedId}`, (c) => c.status !== "assigning");
    await call("DELETE", `/v1/campaigns/${failedId}`, 204);
    // The key's campaign is gone: a replay answers what it is now.
    await call("POST", "/v1/campaigns", 404, orphaned);
  });

  it("webhook deliveries, and deletions with their conflicts", async () => {
    const deliveries = await waitFor(`/v1/webhooks/${webhookId}/deliveries?limit=50`, (p) => (p.data as unknown[]).length > 0);
    expect(deliveries.next_cursor === null || typeof deliveries.next_cursor === "string").toBe(true);
    await call("GET", `/v1/webhooks/${MISSING}/deliveries`, 404);

    await call("DELETE", `/v1/facts/${FACT}`, 409);
    await call("DELETE", `/v1/campaigns/${campaignId}`, 204);
    await call("DELETE", `/v1/campaigns/${campaignId}`, 404);
    await call("DELETE", `/v1/materializations/${earlierListId}`, 204);
    await call("DELETE", `/v1/materializations/${earlierListId}`, 404);
    await call("DELETE", `/v1/audiences/${audienceId}`, 204);
    await call("DELETE", `/v1/audiences/${audienceId}`, 404);
    await call("DELETE", `/v1/webhooks/${webhookId}`, 204);
    await call("DELETE", `/v1/webhooks/${webhookId}`, 404);
    await call("DELETE", `/v1/facts/${OTHER_FACT}`, 204);
    await call("DELETE", `/v1/facts/${OTHER_FACT}`, 404);
  });

  it("a backing service away: 503 with Retry-After, and /ready says which", async () => {
    const ctx = createContext(
      loadConfig({ DATABASE_URL: "postgresql://postgres@127.0.0.1:1/unreachable", REDIS_URL, REDIS_PREFIX: `aa-test-${inject("runId")}-conformance-${process.pid}`, LOG_LEVEL: "silent" }),
    );
    const app = await buildApp(ctx);
    try {
      for (const [url, headers, status] of [["/ready", {}, 503], ["/v1/facts", env.auth(), 503]] as const) {
        const response = await app.inject({ method: "GET", url, headers });
        contract.check({ method: "GET", url, response });
        expect(response.statusCode, response.body).toBe(status);
      }
    } finally {
      await app.close();
      await ctx.close();
    }
  });

  it("every answer matched the document", () => {
    expect(contract.problems).toEqual([]);
  });

  it("every operation of the document was exercised", () => {
    expect(contract.unexercised()).toEqual([]);
  });

  it("every 404 and 409 the document declares was answered", () => {
    expect(contract.unanswered([404, 409])).toEqual([]);
  });
});

describe("the contract check itself", () => {
  // A check that let everything through would make the scenario above prove nothing.
  const fresh = () => new OpenApiContract(JSON.parse(readFileSync(OPENAPI_FILE, "utf8")) as OpenApiDocument);
  const answer = (statusCode: number, headers: Record<string, string>, body: string) => ({ statusCode, headers, body }) as unknown as Parameters<OpenApiContract["check"]>[0]["response"];
  const fact = { name: "f", timezone: "UTC", service: null, description: null, created_at: "2026-10-01T00:00:00.000Z", updated_at: "2026-10-01T00:00:00.000Z",
    processed_through: null, dirty_from: null, earliest_activity_date: null, latest_activity_date: null, user_count: 0 };
  const json = { "content-type": "application/json; charset=utf-8" };

  it("passes a conforming answer and names each way an answer can break the document", () => {
    const check = (method: string, url: string, response: ReturnType<typeof answer>) => fresh().check({ method, url, response });
    expect(check("GET", "/v1/facts/f", answer(200, json, JSON.stringify(fact)))).toEqual([]);
    expect(check("GET", "/v1/facts/f", answer(418, json, "{}")).join("\n")).toMatch(/status 418 is not declared/);
    expect(check("GET", "/v1/facts/f", answer(200, { "content-type": "text/plain" }, "f")).join("\n")).toMatch(/Content-Type text\/plain is not declared/);
    expect(check("GET", "/v1/facts/f", answer(200, json, JSON.stringify({ ...fact, created_at: "yesterday" }))).join("\n")).toMatch(/created_at/);
    expect(check("GET", "/v1/facts/f", answer(200, json, JSON.stringify({ ...fact, user_count: undefined }))).join("\n")).toMatch(/user_count/);
    expect(check("GET", "/v1/facts/f", answer(200, json, JSON.stringify({ ...fact, extra: 1 }))).join("\n")).toMatch(/additional/);
    expect(check("POST", "/v1/facts", answer(201, json, JSON.stringify(fact))).join("\n")).toMatch(/required header Location is missing/);
    const ndjson = { "content-type": "application/x-ndjson" };
    const line = { user_id: "u", group: "treatment", bucket: 1, action: "send" };
    expect(check("GET", `/v1/campaigns/${MISSING}/assignments`, answer(200, ndjson, `${JSON.stringify(line)}\n`))).toEqual([]);
    expect(check("GET", `/v1/campaigns/${MISSING}/assignments`, answer(200, ndjson, `${JSON.stringify({ ...line, group: "both" })}\n`)).join("\n")).toMatch(/line 1/);
    expect(check("PUT", "/v1/facts", answer(405, {}, "")).join("\n")).toMatch(/no operation PUT \/v1\/facts/);
    const problem = { type: "about:blank", title: "Conflict", status: 409, detail: "beyond", instance: "/v1/facts/f/metrics" };
    const problemJson = { "content-type": "application/problem+json" };
    expect(check("GET", "/v1/facts/f/metrics", answer(409, problemJson, JSON.stringify({ ...problem, processed_through: "2026-10-28" })))).toEqual([]);
    expect(check("GET", "/v1/facts/f/metrics", answer(409, problemJson, JSON.stringify({ ...problem, processed_through: "later" }))).join("\n")).toMatch(/processed_through/);
    expect(check("GET", "/v1/facts/f/metrics", answer(409, json, JSON.stringify(problem))).join("\n")).toMatch(/Content-Type application\/json; charset=utf-8 is not declared/);
  });

  it("holds accepted requests to the document too", () => {
    const accepted = answer(202, json, JSON.stringify({ accepted: 1, earliest_date: "2026-10-01", latest_date: "2026-10-01" }));
    const check = (exchange: Partial<Parameters<OpenApiContract["check"]>[0]>) => fresh().check({ method: "POST", url: `/v1/facts/f/events`, response: accepted, ...exchange });
    expect(check({ requestContentType: "application/json", requestBody: { events: [{ user_id: "u", occurred_at: "2026-10-01T00:00:00Z" }] } })).toEqual([]);
    expect(check({ requestContentType: "application/json", requestBody: { events: [{ user: "u" }] } }).join("\n")).toMatch(/request body/);
    expect(check({ requestContentType: "text/csv", requestBody: "u,t" }).join("\n")).toMatch(/request Content-Type text\/csv is not declared/);
    expect(check({ requestContentType: "application/json", requestBody: { events: [] }, url: "/v1/facts/f/events?dry=1" }).join("\n")).toMatch(/query parameter 'dry'/);
    expect(check({ requestContentType: "application/json", requestBody: { events: [] }, requestHeaders: { "x-trace": "1" } }).join("\n")).toMatch(/header parameter 'x-trace'/);
  });

  it("lists the operations a scenario left out", () => {
    const contract = fresh();
    contract.check({ method: "GET", url: "/health", response: answer(200, json, '{"status":"ok"}') });
    expect(contract.unexercised()).toContain("GET /v1/facts");
    expect(contract.unexercised()).not.toContain("GET /health");
  });

  it("lists the declared answers a scenario never got", () => {
    const contract = fresh();
    expect(contract.unanswered([404])).toContain("GET /v1/facts/{name} 404");
    const problem = { type: "about:blank", title: "Not Found", status: 404, detail: "No fact named 'f'.", instance: "/v1/facts/f" };
    contract.check({ method: "GET", url: "/v1/facts/f", response: answer(404, { "content-type": "application/problem+json" }, JSON.stringify(problem)) });
    expect(contract.unanswered([404])).not.toContain("GET /v1/facts/{name} 404");
    // Only declared answers are listed: a list has no resource to miss.
    expect(contract.unanswered([404]).some((a) => a.startsWith("GET /v1/facts "))).toBe(false);
  });
});
