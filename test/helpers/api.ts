import { expect } from "vitest";
import { executeCampaignAssignment } from "../../src/campaigns/assigning.js";
import type { TestEnv } from "./context.js";

/** Small HTTP helpers over app.inject, so tests read as API calls. */
export function api(env: TestEnv, key?: string) {
  const headers = env.auth(key);
  return {
    async get(url: string, extra: Record<string, string> = {}) {
      return env.app.inject({ method: "GET", url, headers: { ...headers, ...extra } });
    },
    async post(url: string, body?: unknown, extra: Record<string, string> = {}) {
      return env.app.inject({ method: "POST", url, headers: { ...headers, ...extra }, payload: body as object });
    },
    async patch(url: string, body: unknown) {
      return env.app.inject({ method: "PATCH", url, headers, payload: body as object });
    },
    async put(url: string, body?: unknown, extra: Record<string, string> = {}) {
      return env.app.inject({ method: "PUT", url, headers: { ...headers, ...extra }, payload: body as object });
    },
    async delete(url: string, extra: Record<string, string> = {}) {
      return env.app.inject({ method: "DELETE", url, headers: { ...headers, ...extra } });
    },
  };
}

export async function createFact(env: TestEnv, name: string, timezone = "UTC", service?: string) {
  const res = await api(env).post("/v1/facts", { name, timezone, ...(service ? { service } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export async function ingest(env: TestEnv, fact: string, events: Array<{ user_id: string | number; occurred_at: string }>, batch = 5000) {
  for (let i = 0; i < events.length; i += batch) {
    const res = await api(env).post(`/v1/facts/${fact}/events`, { events: events.slice(i, i + batch) });
    expect(res.statusCode, res.body).toBe(202);
  }
}

/** Starts a run over HTTP and waits until a worker finishes it. */
export async function processThrough(env: TestEnv, fact: string, through?: string) {
  const res = await api(env).post(`/v1/facts/${fact}/runs`, through ? { through } : {});
  expect([200, 202], res.body).toContain(res.statusCode);
  const id = res.json().id as string;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const run = (await api(env).get(`/v1/runs/${id}`)).json();
    if (run.status === "succeeded") return run;
    if (run.status === "failed") throw new Error(`run failed: ${run.error}`);
    if (Date.now() > deadline) throw new Error(`run ${id} did not finish: ${JSON.stringify(run)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every row of a paged list, following next_cursor. */
export async function allPages(env: TestEnv, url: string, limit = 1000): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = [];
  let cursor: string | null = null;
  do {
    const sep = url.includes("?") ? "&" : "?";
    const res = await api(env).get(`${url}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    rows.push(...body.data);
    cursor = body.next_cursor;
  } while (cursor);
  return rows;
}

/** Polls a job record (run, materialisation) until `done` holds; throws with the last record after the timeout. */
export async function waitForRecord(
  env: TestEnv, url: string, done: (r: Record<string, unknown>) => boolean, what: string, timeoutMs = 45_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = (await api(env).get(url)).json() as Record<string, unknown>;
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`${url} never became ${what}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Polls a campaign until its assignment job is done (status no longer `assigning`). */
export function waitForCampaign(env: TestEnv, id: string): Promise<Record<string, unknown>> {
  return waitForRecord(env, `/v1/campaigns/${id}`, (c) => c.status !== "assigning", "assigned");
}

/**
 * Makes campaign `id`'s assignment fail for good: its job's last attempt (version 1), run here while a
 * trigger refuses every write of assignments ("disk full"). The caller keeps workers from taking the job first.
 */
export async function failCampaignAssignment(env: TestEnv, id: string): Promise<void> {
  await env.ctx.db.pool.query(`
    CREATE FUNCTION refuse_assignments() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
    CREATE TRIGGER refuse_assignments BEFORE INSERT ON campaign_assignment FOR EACH STATEMENT EXECUTE FUNCTION refuse_assignments()`);
  try {
    await expect(executeCampaignAssignment(env.ctx, id, 1, { finalAttempt: true })).rejects.toThrow(/disk full/);
  } finally {
    await env.ctx.db.pool.query(`DROP TRIGGER refuse_assignments ON campaign_assignment; DROP FUNCTION refuse_assignments()`);
  }
}
