// A CRM corrects a recorded outcome (a refund, a wrong date or user) with PUT and retracts one recorded
// in error with DELETE at /v1/campaigns/{id}/outcomes/{outcome_id}; the stored results follow as they
// do a newly recorded outcome, the replaced revisions stay readable, and a retraction is final.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { allPages, api, waitForCampaign } from "./helpers/api.js";
import { settledResults, smallCampaign, storedResults, treatmentValueMean, type SmallCampaign } from "./helpers/small-campaign.js";

let env: TestEnv;
let c: SmallCampaign;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
  c = await smallCampaign(env, "oc");
});
afterAll(async () => env?.close());

const url = (outcomeId: string, campaignId = c.id) => `/v1/campaigns/${campaignId}/outcomes/${encodeURIComponent(outcomeId)}`;
const at = (hour: number) => `${c.windowEnd}T${String(hour).padStart(2, "0")}:00:00.000Z`;
const purchase = (outcomeId: string, user: string, value: number | null, hour = 8) => ({ outcome_id: outcomeId, user_id: user, occurred_at: at(hour), name: "purchase", value });
async function record(...outcomes: Array<Record<string, unknown>>) {
  const res = await api(env).post(`/v1/campaigns/${c.id}/outcomes`, { outcomes });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}
const dataVersion = async () => (await storedResults(env, c.id)).current;
const row = async (outcomeId: string) =>
  (await env.ctx.db.pool.query(`SELECT user_key, name, occurred_at, value, revision, corrected_at, retracted_at FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = $2`, [c.id, outcomeId])).rows[0];
const treatedMean = (sum: number) => sum / c.treated.length;

describe("correcting an outcome", () => {
  it("replaces its user, name, occurred_at and value, keeps the replaced revision, and the results follow", async () => {
    const first = purchase("o-refund", c.treated[0]!, 100);
    await record(first, purchase("o-kept", c.treated[1]!, 50));
    const before = await settledResults(env, c.id);
    expect(treatmentValueMean(before.result)).toBeCloseTo(treatedMean(150), 12);
    const recorded = (await api(env).get(url("o-refund"))).json();
    expect(recorded).toMatchObject({ ...first, status: "recorded", revision: 1, corrected_at: null, retracted_at: null, history: [] });

    // A partial refund: 60 of the 100 paid back.
    const refund = await api(env).put(url("o-refund"), { ...first, value: 40 });
    expect(refund.statusCode, refund.body).toBe(200);
    const corrected = refund.json();
    expect(corrected).toMatchObject({ ...first, value: 40, status: "corrected", revision: 2, recorded_at: recorded.recorded_at, retracted_at: null });
    expect(Date.parse(corrected.corrected_at)).toBeGreaterThanOrEqual(Date.parse(recorded.recorded_at));
    expect(await dataVersion()).toBe(before.current + 1);
    const after = await settledResults(env, c.id);
    expect(treatmentValueMean(after.result)).toBeCloseTo(treatedMean(90), 12);

    // What it was, from when to when, for analysts.
    const read = (await api(env).get(url("o-refund"))).json();
    expect(read).toEqual({
      ...corrected,
      history: [{ revision: 1, user_id: first.user_id, name: "purchase", occurred_at: first.occurred_at, value: 100, recorded_at: recorded.recorded_at, replaced_at: corrected.corrected_at }],
    });

    // The same values again (a retry without a key) change nothing.
    const again = await api(env).put(url("o-refund"), { ...first, value: 40 });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(corrected);
    expect(await dataVersion()).toBe(before.current + 1);

    // Attributed to the wrong account and dated wrongly: user and occurred_at change too (the body may repeat the outcome_id).
    const moved = await api(env).put(url("o-refund"), { outcome_id: "o-refund", user_id: c.held[0], occurred_at: at(9), name: "purchase", value: 40 });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json()).toMatchObject({ user_id: c.held[0], occurred_at: at(9), value: 40, revision: 3 });
    expect((await api(env).get(url("o-refund"))).json().history.map((h: { revision: number; user_id: string }) => [h.revision, h.user_id])).toEqual([
      [2, c.treated[0]],
      [1, c.treated[0]],
    ]);
    const moved_ = await settledResults(env, c.id);
    expect(treatmentValueMean(moved_.result)).toBeCloseTo(treatedMean(50), 12);
    const control = moved_.result!.outcomes.find((o: { name: string }) => o.name === "purchase").value.groups.control;
    expect(control.mean * control.n).toBeCloseTo(40, 9);

    // A late retry of the first report does not undo the corrections: reported, not stored.
    const retry = await record(first);
    expect(retry).toMatchObject({ inserted: 0, duplicates: 0, conflicting: 1 });
    expect(retry.conflicts[0]).toEqual({ index: 0, path: "outcomes[0].outcome_id", message: expect.stringMatching(/stored record stands.*PUT/) });
    expect((await row("o-refund")).revision).toBe(3);
    // Its current values are a duplicate.
    expect(await record({ ...first, user_id: c.held[0], occurred_at: at(9), value: 40 })).toMatchObject({ inserted: 0, duplicates: 1, conflicting: 0 });
  });

  it("honours Idempotency-Key: a retried request answers as the first one did, the key with another body is a 422", async () => {
    await record(purchase("o-keyed", c.treated[2]!, 10));
    const key = { "idempotency-key": "correct-o-keyed" };
    const first = await api(env).put(url("o-keyed"), purchase("o-keyed", c.treated[2]!, 11), key);
    expect(first.statusCode, first.body).toBe(200);
    expect((await api(env).put(url("o-keyed"), purchase("o-keyed", c.treated[2]!, 12))).json()).toMatchObject({ value: 12, revision: 3 });
    const replay = await api(env).put(url("o-keyed"), purchase("o-keyed", c.treated[2]!, 11), key);
    expect(replay.statusCode).toBe(200);
    expect(replay.headers["idempotent-replayed"]).toBe("true");
    expect(replay.json()).toEqual(first.json());
    expect((await row("o-keyed")).value).toBe(12);
    const other = await api(env).put(url("o-keyed"), purchase("o-keyed", c.treated[2]!, 13), key);
    expect(other.statusCode).toBe(422);
    expect((await row("o-keyed")).value).toBe(12);
  });

  it("is checked as a recorded outcome is (400 naming the field), and a refused correction changes nothing", async () => {
    await record(purchase("o-checked", c.treated[3]!, 5));
    const stored = await row("o-checked");
    const version = await dataVersion();
    const base = purchase("o-checked", c.treated[3]!, 5);
    const cases: Array<[unknown, string, RegExp]> = [
      [{ ...base, value: 2e15 }, "value", /between -1e\+15 and 1e\+15/],
      [{ ...base, value: "ten" }, "value", /finite number/],
      [{ ...base, occurred_at: new Date(Date.now() + 2 * 86_400_000).toISOString() }, "occurred_at", /more than 1 day in the future/],
      [{ ...base, occurred_at: "1969-12-31T23:59:59Z" }, "occurred_at", /before 1970/],
      [{ ...base, occurred_at: "2026-04-17T10:00:00" }, "occurred_at", /offset/],
      [{ ...base, name: "" }, "name", /1–100 characters/],
      [{ ...base, colour: "red" }, "colour", /unknown field/],
      [{ ...base, outcome_id: "o-other" }, "outcome_id", /outcome_id of the URL/],
      [{ ...base, user_id: "stranger" }, "user_id", /not assigned in this campaign/],
      [[base], "body", /expected an object/],
    ];
    for (const [body, path, message] of cases) {
      const res = await api(env).put(url("o-checked"), body);
      expect(res.statusCode, `${path}: ${res.body}`).toBe(400);
      expect(res.headers["content-type"]).toContain("application/problem+json");
      expect(res.json().errors, path).toEqual([{ path, message: expect.stringMatching(message) }]);
    }
    const { name: _n, ...nameless } = base;
    expect((await api(env).put(url("o-checked"), nameless)).json().errors).toEqual([{ path: "name", message: "name is required" }]);
    expect(await row("o-checked")).toEqual(stored);
    expect(await dataVersion()).toBe(version);
  });

  it("answers 404 for an outcome never recorded or another campaign, 400 for an id that cannot be one, 403 without the write scope", async () => {
    const body = purchase("o-never", c.treated[0]!, 1);
    for (const res of [await api(env).put(url("o-never"), body), await api(env).delete(url("o-never")), await api(env).get(url("o-never"))]) {
      expect(res.statusCode, res.body).toBe(404);
      expect(res.json().detail).toMatch(/no outcome 'o-never'.*POST/);
    }
    expect((await api(env).get(url("o-never", "00000000-0000-4000-8000-000000000000"))).statusCode).toBe(404);
    const control = await api(env).get(`/v1/campaigns/${c.id}/outcomes/bad%01id`);
    expect(control.statusCode).toBe(400);
    expect(control.json().errors[0]).toEqual({ path: "outcome_id", message: "outcome_id contains a control character" });
    await record(purchase("o-scoped", c.treated[0]!, 1));
    expect((await api(env, env.keys.read).put(url("o-scoped"), purchase("o-scoped", c.treated[0]!, 2))).statusCode).toBe(403);
    expect((await api(env, env.keys.read).delete(url("o-scoped"))).statusCode).toBe(403);
    expect((await api(env, env.keys.read).get(url("o-scoped"))).json()).toMatchObject({ value: 1, revision: 1 });
  });
});

describe("retracting an outcome", () => {
  it("stops the results counting it; it is final, and a retry of the first report cannot bring it back", async () => {
    const before = await settledResults(env, c.id);
    const mistaken = purchase("o-mistake", c.treated[4]!, 70);
    await record(mistaken);
    const counted = await settledResults(env, c.id);
    // (Outcomes of the other tests may be in the results: only the difference is this one's.)
    const mean = (r: Record<string, any> | null) => treatmentValueMean(r) ?? 0;
    expect(mean(counted.result) - mean(before.result)).toBeCloseTo(treatedMean(70), 12);

    const retracted = await api(env).delete(url("o-mistake"));
    expect(retracted.statusCode, retracted.body).toBe(200);
    expect(retracted.json()).toMatchObject({ ...mistaken, status: "retracted", revision: 1, corrected_at: null, retracted_at: expect.any(String) });
    expect(await dataVersion()).toBe(counted.current + 1);
    const after = await settledResults(env, c.id);
    expect(mean(after.result)).toBeCloseTo(mean(before.result), 12);

    // Retracting again (a retry) answers the same and changes nothing.
    const again = await api(env).delete(url("o-mistake"));
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(retracted.json());
    expect(await dataVersion()).toBe(after.current);

    // No correction, and no recording of the id again, with the first values or others.
    const put = await api(env).put(url("o-mistake"), mistaken);
    expect(put.statusCode).toBe(409);
    expect(put.json()).toMatchObject({ outcome_status: "retracted", detail: expect.stringMatching(/retraction is final.*new outcome_id/) });
    const retry = await record(mistaken, { ...mistaken, value: 1 });
    expect(retry).toMatchObject({ received: 2, inserted: 0, duplicates: 0, conflicting: 2 });
    expect(retry.conflicts[0]).toEqual({ index: 0, path: "outcomes[0].outcome_id", message: expect.stringMatching(/retracted and stays retracted/) });
    expect(await row("o-mistake")).toMatchObject({ value: 70, revision: 1, retracted_at: expect.any(Date) });
    expect(await dataVersion()).toBe(after.current);
    expect((await api(env).get(url("o-mistake"))).json()).toMatchObject({ status: "retracted", history: [] });
  });
});

describe("listing outcomes", () => {
  it("pages them by outcome_id, with their status, for one user or one status", async () => {
    const all = await allPages(env, `/v1/campaigns/${c.id}/outcomes`, 2);
    const ids = all.map((o) => o.outcome_id as string);
    expect(ids).toEqual([...ids].sort());
    expect(ids).toEqual(expect.arrayContaining(["o-refund", "o-kept", "o-keyed", "o-checked", "o-scoped", "o-mistake"]));
    expect(all.find((o) => o.outcome_id === "o-refund")).toMatchObject({ status: "corrected", revision: 3 });
    expect(all.find((o) => o.outcome_id === "o-refund")).not.toHaveProperty("history");
    const byStatus = async (status: string) => (await allPages(env, `/v1/campaigns/${c.id}/outcomes?status=${status}`)).map((o) => o.outcome_id);
    expect(await byStatus("retracted")).toEqual(["o-mistake"]);
    expect(await byStatus("corrected")).toEqual(["o-keyed", "o-refund"]);
    expect(await byStatus("recorded")).toEqual(["o-checked", "o-kept", "o-scoped"]);
    const ofUser = await allPages(env, `/v1/campaigns/${c.id}/outcomes?user_id=${encodeURIComponent(c.held[0]!)}`);
    expect(ofUser.map((o) => o.outcome_id)).toEqual(["o-refund"]);
    expect((await api(env).get(`/v1/campaigns/${c.id}/outcomes?status=lost`)).statusCode).toBe(400);
    expect((await api(env).get(`/v1/campaigns/${c.id}/outcomes?cursor=nonsense`)).json().errors[0].path).toBe("cursor");
  });
});

describe("changes that wait for one another", () => {
  /** Until a session other than `holder` waits on a lock (the request, behind the held row). */
  async function waitForBlocked(holder: { processID?: number }) {
    await expect.poll(async () =>
      (await env.ctx.db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1`, [holder.processID])).rows[0].n,
    ).toBe(1);
  }

  it("a correction takes the campaign before the outcome, as a batch does: it waits for a batch holding the campaign without holding the outcome meanwhile", async () => {
    const first = purchase("o-batch", c.treated[3]!, 30);
    await record(first);
    const pool = env.ctx.db.pool;
    // The campaign's row held as a batch holds it while it stores its outcomes (this one naming o-batch).
    const holder = await pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(`SELECT 1 FROM campaign WHERE id = $1 FOR UPDATE`, [c.id]);
      const corrected = api(env).put(url("o-batch"), { ...first, value: 25 });
      await waitForBlocked(holder as unknown as { processID: number });
      // The batch's insert of o-batch would wait for a correction holding (and changing) the outcome,
      // which would wait for the batch's campaign row: a deadlock. The outcome must be free.
      const other = await pool.connect();
      try {
        await other.query("BEGIN");
        await expect(other.query(`SELECT 1 FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o-batch' FOR UPDATE NOWAIT`, [c.id])).resolves.toMatchObject({ rowCount: 1 });
      } finally {
        await other.query("ROLLBACK");
        other.release();
      }
      await holder.query("COMMIT");
      const res = await corrected;
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ value: 25, revision: 2 });
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      holder.release();
    }
  });

  it("a read shows the history of the revision it answers, even when a correction commits between its reads", async () => {
    const first = purchase("o-read", c.treated[4]!, 30);
    await record(first);
    const pool = env.ctx.db.pool;
    // The read gets the outcome, then waits for the history table, which a correction (made here) holds.
    const holder = await pool.connect();
    let read;
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE campaign_outcome_revision IN ACCESS EXCLUSIVE MODE");
      read = api(env).get(url("o-read"));
      await waitForBlocked(holder as unknown as { processID: number });
      await holder.query(
        `INSERT INTO campaign_outcome_revision (campaign_id, outcome_id, revision, user_key, name, occurred_at, value, recorded_at, replaced_at)
         SELECT campaign_id, outcome_id, revision, user_key, name, occurred_at, value, created_at, clock_timestamp()
         FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o-read'`,
        [c.id],
      );
      await holder.query(
        `UPDATE campaign_outcome SET value = 20, revision = 2, corrected_at = clock_timestamp() WHERE campaign_id = $1 AND outcome_id = 'o-read'`,
        [c.id],
      );
      await holder.query("COMMIT");
    } finally {
      holder.release();
    }
    const res = await read;
    expect(res.statusCode, res.body).toBe(200);
    // As it was when read: revision 1, nothing replaced yet (not revision 1 both current and replaced).
    expect(res.json()).toMatchObject({ revision: 1, value: 30, status: "recorded", history: [] });
    expect((await api(env).get(url("o-read"))).json()).toMatchObject({ revision: 2, value: 20, history: [{ revision: 1, value: 30 }] });
  });

  it("are dated in the order they were made: a correction that waited behind another is dated after it, and so is a retraction", async () => {
    const first = purchase("o-queued", c.treated[2]!, 30);
    await record(first);
    for (const [change, send] of [
      ["correction", () => api(env).put(url("o-queued"), { ...first, value: 20 })],
      ["retraction", () => api(env).delete(url("o-queued"))],
    ] as const) {
      // The request's transaction begins, then waits for the row, which another change (made here, after
      // the request began) holds and corrects first.
      const holder = await env.ctx.db.pool.connect();
      let answer;
      try {
        await holder.query("BEGIN");
        await holder.query(`SELECT 1 FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o-queued' FOR UPDATE`, [c.id]);
        answer = send();
        await waitForBlocked(holder as unknown as { processID: number });
        await holder.query(
          `INSERT INTO campaign_outcome_revision (campaign_id, outcome_id, revision, user_key, name, occurred_at, value, recorded_at, replaced_at)
           SELECT campaign_id, outcome_id, revision, user_key, name, occurred_at, value, COALESCE(corrected_at, created_at), clock_timestamp()
           FROM campaign_outcome WHERE campaign_id = $1 AND outcome_id = 'o-queued'`,
          [c.id],
        );
        await holder.query(
          `UPDATE campaign_outcome SET value = value + 1, revision = revision + 1, corrected_at = clock_timestamp() WHERE campaign_id = $1 AND outcome_id = 'o-queued'`,
          [c.id],
        );
        await holder.query("COMMIT");
      } finally {
        holder.release();
      }
      const res = await answer;
      expect(res.statusCode, `${change}: ${res.body}`).toBe(200);
      const read = (await api(env).get(url("o-queued"))).json();
      const [latest, before] = read.history;
      expect(Date.parse(latest.replaced_at), change).toBeGreaterThanOrEqual(Date.parse(latest.recorded_at));
      if (change === "correction") {
        expect(read.corrected_at).toBe(latest.replaced_at);
        expect(Date.parse(read.corrected_at)).toBeGreaterThan(Date.parse(before.replaced_at));
      } else {
        expect(Date.parse(read.retracted_at)).toBeGreaterThan(Date.parse(read.corrected_at));
      }
    }
  });
});

describe("while the campaign is being assigned", () => {
  it("its outcomes answer 409 with Retry-After", async () => {
    await env.withWorkersStopped(async () => {
      const res = await api(env).post("/v1/campaigns", { name: "assigning", materialization_id: c.listId, goal: { fact: c.fact, window_periods: 7, metric: "returned" } });
      expect(res.statusCode, res.body).toBe(202);
      const id = res.json().id as string;
      for (const r of [
        await api(env).get(`/v1/campaigns/${id}/outcomes`),
        await api(env).get(url("o-1", id)),
        await api(env).put(url("o-1", id), purchase("o-1", c.treated[0]!, 1)),
        await api(env).delete(url("o-1", id)),
      ]) {
        expect(r.statusCode, r.body).toBe(409);
        expect(r.headers["retry-after"]).toBe("2");
        expect(r.json()).toMatchObject({ campaign_status: "assigning" });
      }
    });
  });
});

describe("changes based on a revision read earlier", () => {
  it("honours If-Match: a change based on a revision read before another change is refused (412) and changes nothing", async () => {
    const first = purchase("o-etag", c.treated[3]!, 50);
    await record(first);
    const read = await api(env).get(url("o-etag"));
    expect(read.headers.etag).toBe('"1"');
    // Two CRM workers read revision 1; the first corrects it, the second's correction and retraction are refused.
    expect((await api(env).put(url("o-etag"), { ...first, value: 45 }, { "if-match": '"1"' })).statusCode).toBe(200);
    const stale = await api(env).put(url("o-etag"), { ...first, value: 40 }, { "if-match": '"1"' });
    expect(stale.statusCode, stale.body).toBe(412);
    expect(stale.json()).toMatchObject({ status: 412, title: "Precondition Failed", revision: 2 });
    expect(stale.headers.etag).toBe('"2"');
    expect((await api(env).delete(url("o-etag"), { "if-match": '"1"' })).statusCode).toBe(412);
    const now = (await api(env).get(url("o-etag"))).json();
    expect(now).toMatchObject({ value: 45, revision: 2, status: "corrected" });
    // The current ETag, a weak one, or * go through; a malformed one is a 400 naming the header.
    expect((await api(env).put(url("o-etag"), { ...first, value: 44 }, { "if-match": 'W/"2"' })).statusCode).toBe(200);
    expect((await api(env).put(url("o-etag"), { ...first, value: 43 }, { "if-match": "*" })).statusCode).toBe(200);
    const bad = await api(env).put(url("o-etag"), { ...first, value: 42 }, { "if-match": "2" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors).toEqual([{ path: "If-Match", message: 'expected "<revision>" or *' }]);
    expect((await api(env).put(url("o-etag"), { ...first, value: 41 }, { "if-match": '"4"' })).statusCode).toBe(200);
  });
});

describe("the longest outcome_id", () => {
  it("200 four-byte characters (2,400 bytes percent-encoded) is read, corrected and retracted at its URL; one more is a 400 naming it", async () => {
    const longest = "🧾".repeat(200);
    await record(purchase(longest, c.treated[0]!, 1));
    const found = await api(env).get(url(longest));
    expect(found.statusCode, found.body.slice(0, 300)).toBe(200);
    expect(found.json()).toMatchObject({ outcome_id: longest, value: 1 });
    expect((await api(env).put(url(longest), purchase(longest, c.treated[0]!, 2))).json()).toMatchObject({ outcome_id: longest, value: 2, revision: 2 });
    expect((await api(env).delete(url(longest))).json()).toMatchObject({ outcome_id: longest, status: "retracted" });
    const tooLong = await api(env).get(url("🧾".repeat(201)));
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.json().errors).toEqual([{ path: "outcome_id", message: "outcome_id must be 1–200 characters" }]);
  });
});

describe("after the campaign is deleted", () => {
  it("a replayed Idempotency-Key of a correction, a retraction or a batch answers the campaign's 404, as the request without a key does", async () => {
    const created = await api(env).post("/v1/campaigns", { name: "oc deleted later", materialization_id: c.listId, holdout_percent: 50, goal: { fact: c.fact, window_periods: 7, metric: "returned" } });
    expect(created.statusCode, created.body).toBe(202);
    const id = created.json().id as string;
    expect(await waitForCampaign(env, id)).toMatchObject({ status: "ready" });
    const treated = (await allPages(env, `/v1/campaigns/${id}/assignments?group=treatment`)).map((r) => r.user_id as string);
    const user = treated[0]!;
    const batchUrl = (kind: string) => `/v1/campaigns/${id}/${kind}`;
    const keyed = (key: string) => ({ "idempotency-key": `deleted-later-${key}` });
    const sends = { sends: [{ user_id: user, sent_at: at(7), channel: "push", status: "sent" }] };
    const outcomes = { outcomes: [purchase("o-gone-1", user, 5), purchase("o-gone-2", user, 6)] };
    const correction = purchase("o-gone-1", user, 4);
    // Each request once, with its key: answered and stored.
    expect((await api(env).post(batchUrl("outcomes"), outcomes)).statusCode).toBe(200);
    const requests = [
      () => api(env).put(url("o-gone-1", id), correction, keyed("correct")),
      () => api(env).delete(url("o-gone-2", id), keyed("retract")),
      () => api(env).post(batchUrl("sends"), sends, keyed("sends")),
      () => api(env).post(batchUrl("outcomes"), outcomes, keyed("outcomes")),
    ];
    for (const send of requests) expect((await send()).statusCode).toBe(200);
    // While the campaign exists, a replay answers the stored response.
    const replayed = await requests[0]!();
    expect(replayed.headers["idempotent-replayed"]).toBe("true");
    expect(replayed.json()).toMatchObject({ outcome_id: "o-gone-1", value: 4 });

    expect((await api(env).delete(`/v1/campaigns/${id}`)).statusCode).toBe(204);
    for (const send of requests) {
      const res = await send();
      expect(res.statusCode, res.body).toBe(404);
      expect(res.headers["content-type"]).toContain("application/problem+json");
      expect(res.headers["idempotent-replayed"]).toBeUndefined();
      expect(res.json().detail).toBe(`No campaign ${id}.`);
    }
    // The same requests without a key answer the same.
    expect((await api(env).put(url("o-gone-1", id), correction)).json().detail).toBe(`No campaign ${id}.`);
    expect((await api(env).post(batchUrl("sends"), sends)).json().detail).toBe(`No campaign ${id}.`);
  });
});
