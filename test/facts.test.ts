import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allPages, api, createFact, ingest, processThrough } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
  env.startWorkers();
});
afterAll(async () => env?.close());

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json(): any }, status: number) {
  expect(res.statusCode, JSON.stringify(res.json())).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json();
  expect(body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
  return body as { detail: string; errors?: Array<{ path: string; message: string }> };
}

describe("POST /v1/facts", () => {
  it("creates a fact and answers 201 with a Location and the whole view", async () => {
    const res = await api(env).post("/v1/facts", { name: "signup", timezone: "Asia/Seoul", service: "accounts", description: "A user signed up" });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers.location).toBe("/v1/facts/signup");
    const body = res.json();
    expect(body).toMatchObject({
      name: "signup",
      timezone: "Asia/Seoul",
      service: "accounts",
      description: "A user signed up",
      processed_through: null,
      dirty_from: null,
      earliest_activity_date: null,
      latest_activity_date: null,
      user_count: 0,
    });
    expect(Date.parse(body.created_at)).not.toBeNaN();
    expect((await api(env).get("/v1/facts/signup")).json()).toEqual(body);
  });

  it("defaults the timezone to UTC", async () => {
    const res = await api(env).post("/v1/facts", { name: "utc_default" });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ timezone: "UTC", service: null, description: null });
  });

  it("refuses a duplicate name with 409", async () => {
    await createFact(env, "dup_fact");
    const body = expectProblem(await api(env).post("/v1/facts", { name: "dup_fact", timezone: "Europe/Paris" }), 409);
    expect(body.detail).toContain("dup_fact");
    expect((await api(env).get("/v1/facts/dup_fact")).json().timezone).toBe("UTC");
  });

  it.each([
    ["uppercase", "Signup"],
    ["a leading digit", "1signup"],
    ["a leading underscore", "_signup"],
    ["a single character", "a"],
    ["64 characters", "a" + "b".repeat(63)],
    ["a hyphen", "sign-up"],
    ["a space", "sign up"],
    ["a dot", "sign.up"],
    ["non-ASCII", "sïgnup"],
    ["an empty name", ""],
  ])("refuses a name with %s: 400 naming the path `name`", async (_why, name) => {
    const body = expectProblem(await api(env).post("/v1/facts", { name }), 400);
    expect(body.errors?.map((e) => e.path)).toEqual(["name"]);
  });

  it("accepts the extremes of the name rule: 2 and 63 characters, digits and underscores", async () => {
    const longest = "a" + "_9".repeat(31);
    expect(longest).toHaveLength(63);
    for (const name of ["ab", longest]) expect((await api(env).post("/v1/facts", { name })).statusCode, name).toBe(201);
  });

  it("refuses a missing name", async () => {
    const body = expectProblem(await api(env).post("/v1/facts", { timezone: "UTC" }), 400);
    expect(body.errors?.map((e) => e.path)).toEqual(["name"]);
  });

  it.each(["Mars/Olympus_Mons", "Asia/Seoulx", "utc+9", "+09:00", "Asia/../etc", "KST", "America/New York"])(
    "refuses the timezone %s: 400 naming the path `timezone`",
    async (timezone) => {
      const body = expectProblem(await api(env).post("/v1/facts", { name: "tz_bad", timezone }), 400);
      expect(body.errors?.map((e) => e.path)).toEqual(["timezone"]);
    },
  );

  it("nothing was created by the refused requests", async () => {
    expect(await env.ctx.db.prisma.fact.count({ where: { name: { in: ["tz_bad", "Signup", "sign_up"] } } })).toBe(0);
  });

  it.each(["America/Los_Angeles", "Europe/Paris", "Asia/Kolkata", "Etc/GMT+5", "UTC"])("accepts the IANA zone %s", async (timezone) => {
    const name = `tz_${timezone.toLowerCase().replace(/[^a-z0-9]/g, "_")}`;
    const res = await api(env).post("/v1/facts", { name, timezone });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().timezone).toBe(timezone);
  });

  it("refuses an unknown field with 400 naming it", async () => {
    const body = expectProblem(await api(env).post("/v1/facts", { name: "with_extra", owner: "me" }), 400);
    expect(JSON.stringify(body.errors)).toContain("owner");
    expect((await api(env).get("/v1/facts/with_extra")).statusCode).toBe(404);
  });

  it("refuses fields of the wrong type", async () => {
    const body = expectProblem(await api(env).post("/v1/facts", { name: "typed", service: 42 }), 400);
    expect(body.errors?.map((e) => e.path)).toEqual(["service"]);
  });
});

describe("GET /v1/facts", () => {
  const names = Array.from({ length: 7 }, (_, i) => `page_${String.fromCharCode(97 + i)}`);
  beforeAll(async () => {
    // Created out of order: the list is ordered by name, not by creation.
    for (const [i, n] of [...names].reverse().entries()) await createFact(env, n, "UTC", i % 2 ? "checkout" : "search");
  });

  it("pages with limit and an opaque cursor until next_cursor is null, every fact once, by name", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api(env).get(`/v1/facts?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(body.data.length).toBeLessThanOrEqual(3);
      seen.push(...body.data.map((f: { name: string }) => f.name));
      cursor = body.next_cursor;
      pages++;
    } while (cursor && pages < 100);
    expect(seen).toEqual([...seen].sort());
    expect(new Set(seen).size).toBe(seen.length);
    for (const n of names) expect(seen).toContain(n);
    const total = await env.ctx.db.prisma.fact.count();
    expect(seen).toHaveLength(total);
    // The extra row fetched per page tells whether another exists: no empty last page.
    expect(pages).toBe(Math.ceil(total / 3));
  });

  it("a page that ends exactly at the last fact still says null", async () => {
    const total = await env.ctx.db.prisma.fact.count();
    const res = await api(env).get(`/v1/facts?limit=${total}`);
    expect(res.json().data).toHaveLength(total);
    expect(res.json().next_cursor).toBeNull();
  });

  it("filters by service, and the filter holds across pages", async () => {
    const checkout = await allPages(env, "/v1/facts?service=checkout", 2);
    expect(checkout.map((f) => f.name)).toEqual(names.filter((_, i) => (names.length - 1 - i) % 2 === 1));
    expect(checkout.every((f) => f.service === "checkout")).toBe(true);
    const none = await api(env).get("/v1/facts?service=nobody");
    expect(none.json()).toEqual({ data: [], next_cursor: null });
  });

  it("refuses a bad limit and a forged cursor with 400", async () => {
    for (const q of ["limit=0", "limit=10001", "limit=abc", "limit=1.5"]) {
      const body = expectProblem(await api(env).get(`/v1/facts?${q}`), 400);
      expect(body.errors?.[0]?.path, q).toBe("limit");
    }
    const body = expectProblem(await api(env).get("/v1/facts?cursor=not-a-cursor"), 400);
    expect(body.errors?.[0]?.path).toBe("cursor");
  });

  it("defaults the page size to 100", async () => {
    for (let i = 0; i < 100; i++) await env.ctx.db.prisma.fact.create({ data: { name: `bulk_${String(i).padStart(3, "0")}` } });
    const res = await api(env).get("/v1/facts");
    expect(res.json().data).toHaveLength(100);
    expect(res.json().next_cursor).not.toBeNull();
  });
});

describe("GET /v1/facts/{name}", () => {
  it("404 problem for an unknown fact; 400 for a name that breaks the rule", async () => {
    expect(expectProblem(await api(env).get("/v1/facts/nope_nope"), 404).detail).toContain("nope_nope");
    const body = expectProblem(await api(env).get("/v1/facts/Bad-Name"), 400);
    expect(body.errors?.[0]?.path).toBe("name");
  });
});

describe("PATCH /v1/facts/{name}", () => {
  it("changes description and service, and clears them with null", async () => {
    await createFact(env, "patchable", "UTC", "search");
    let res = await api(env).patch("/v1/facts/patchable", { description: "Searched", service: "discovery" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ name: "patchable", description: "Searched", service: "discovery", timezone: "UTC" });
    res = await api(env).patch("/v1/facts/patchable", { description: null });
    expect(res.json()).toMatchObject({ description: null, service: "discovery" });
    expect((await api(env).get("/v1/facts/patchable")).json()).toMatchObject({ description: null, service: "discovery" });
    expect((await allPages(env, "/v1/facts?service=discovery")).map((f) => f.name)).toEqual(["patchable"]);
  });

  it("refuses unknown fields, renaming, bad timezones; 404 for an unknown fact", async () => {
    expect(JSON.stringify(expectProblem(await api(env).patch("/v1/facts/patchable", { name: "renamed" }), 400).errors)).toContain("name");
    expect(expectProblem(await api(env).patch("/v1/facts/patchable", { timezone: "Nowhere/Land" }), 400).errors?.map((e) => e.path)).toEqual(["timezone"]);
    expectProblem(await api(env).patch("/v1/facts/no_such_fact", { description: "x" }), 404);
    expect((await api(env).get("/v1/facts/patchable")).json().timezone).toBe("UTC");
  });

  it("changes the timezone before any event, and refuses with 409 once events exist", async () => {
    await createFact(env, "tz_change");
    let res = await api(env).patch("/v1/facts/tz_change", { timezone: "Asia/Seoul" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().timezone).toBe("Asia/Seoul");
    await ingest(env, "tz_change", [{ user_id: "u1", occurred_at: "2026-03-01T15:30:00Z" }]);
    const body = expectProblem(await api(env).patch("/v1/facts/tz_change", { timezone: "UTC" }), 409);
    expect(body.detail).toMatch(/timezone/);
    // The same zone is no change; other fields still change; a refused patch changes nothing.
    expect((await api(env).patch("/v1/facts/tz_change", { timezone: "Asia/Seoul", description: "d" })).statusCode).toBe(200);
    expectProblem(await api(env).patch("/v1/facts/tz_change", { timezone: "UTC", description: "should not stick" }), 409);
    expect((await api(env).get("/v1/facts/tz_change")).json()).toMatchObject({ timezone: "Asia/Seoul", description: "d" });
  });
});

describe("DELETE /v1/facts/{name}", () => {
  it("waits for a writer that holds the fact's activity rows, then deletes (no deadlock: writers take the fact's row last)", async () => {
    await createFact(env, "doomed_busy");
    await ingest(env, "doomed_busy", [{ user_id: "b1", occurred_at: "2026-01-01T10:00:00Z" }]);
    const factId = (await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: "doomed_busy" } })).id;
    // A writer of activity rows that takes no lifecycle lock (ingestion takes one; this checks the row
    // locks alone do not deadlock): its activity rows first, the fact's row last, held open.
    const ingestion = await env.ctx.db.pool.connect();
    try {
      await ingestion.query("BEGIN");
      await ingestion.query(`UPDATE activity_day SET last_at = last_at WHERE fact_id = $1`, [factId]);
      const deleting = api(env).delete("/v1/facts/doomed_busy");
      // Until the deletion waits for those rows.
      const deletionWaits = async () =>
        (await env.ctx.db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM activity_day%'`,
        )).rowCount;
      await expect.poll(deletionWaits, { timeout: 10_000, interval: 10 }).toBe(1);
      await ingestion.query(`UPDATE fact SET latest_date = latest_date WHERE id = $1`, [factId]);
      await ingestion.query("COMMIT");
      const res = await deleting;
      expect(res.statusCode, res.body).toBe(204);
    } finally {
      await ingestion.query("ROLLBACK").catch(() => {});
      ingestion.release();
    }
    expect((await api(env).get("/v1/facts/doomed_busy")).statusCode).toBe(404);
  });

  it("deletes a fact with its data: 204, then 404, and its activity is gone", async () => {
    await createFact(env, "doomed");
    await ingest(env, "doomed", [
      { user_id: "u1", occurred_at: "2026-01-01T10:00:00Z" },
      { user_id: "u2", occurred_at: "2026-01-02T10:00:00Z" },
    ]);
    const fact = await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: "doomed" } });
    expect(await env.ctx.db.prisma.activityDay.count({ where: { factId: fact.id } })).toBe(2);
    const res = await api(env).delete("/v1/facts/doomed");
    expect(res.statusCode, res.body).toBe(204);
    expect(res.body).toBe("");
    expectProblem(await api(env).get("/v1/facts/doomed"), 404);
    expectProblem(await api(env).delete("/v1/facts/doomed"), 404);
    expect(await env.ctx.db.prisma.activityDay.count({ where: { factId: fact.id } })).toBe(0);
    // The name is free again.
    await createFact(env, "doomed");
  });

  it.each(["queued", "running"])("refuses with 409 while a processing run is %s, and deletes once it is over", async (status) => {
    const name = `referenced_${status}`;
    await createFact(env, name);
    const fact = await env.ctx.db.prisma.fact.findUniqueOrThrow({ where: { name } });
    const run = await env.ctx.db.prisma.processingRun.create({
      data: { id: randomUUID(), factId: fact.id, status, throughDate: new Date("2026-01-01T00:00:00Z") },
    });
    const body = expectProblem(await api(env).delete(`/v1/facts/${name}`), 409);
    expect(body.detail).toMatch(/processing run/);
    expect((body as { references?: string[] }).references).toHaveLength(1);
    expect((await api(env).get(`/v1/facts/${name}`)).statusCode).toBe(200);
    await env.ctx.db.prisma.processingRun.update({ where: { id: run.id }, data: { status: "failed", finishedAt: new Date() } });
    expect((await api(env).delete(`/v1/facts/${name}`)).statusCode).toBe(204);
    expectProblem(await api(env).get(`/v1/facts/${name}`), 404);
    expect(await env.ctx.db.prisma.processingRun.count({ where: { factId: fact.id } })).toBe(0);
  });
});

describe("the fact view follows its data", () => {
  it("shows the activity range after ingestion and processed_through and user_count after a run", async () => {
    await createFact(env, "viewed", "America/Los_Angeles");
    await ingest(env, "viewed", [
      // 2026-02-01 03:00 UTC is still 2026-01-31 in Los Angeles.
      { user_id: "a", occurred_at: "2026-02-01T03:00:00Z" },
      { user_id: "b", occurred_at: "2026-02-03T20:00:00Z" },
      { user_id: "c", occurred_at: "2026-02-05T12:00:00-08:00" },
      { user_id: "a", occurred_at: "2026-02-05T13:00:00-08:00" },
    ]);
    let view = (await api(env).get("/v1/facts/viewed")).json();
    expect(view).toMatchObject({ earliest_activity_date: "2026-01-31", latest_activity_date: "2026-02-05", processed_through: null, user_count: 0 });

    const run = await processThrough(env, "viewed", "2026-02-05");
    expect(run.through).toBe("2026-02-05");
    view = (await api(env).get("/v1/facts/viewed")).json();
    expect(view).toMatchObject({ earliest_activity_date: "2026-01-31", latest_activity_date: "2026-02-05", processed_through: "2026-02-05", user_count: 3 });

    // The list shows the same view.
    const listed = (await allPages(env, "/v1/facts")).find((f) => f.name === "viewed");
    expect(listed).toEqual(view);
  });
});
