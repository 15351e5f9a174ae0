import { expect } from "vitest";
import type { App } from "../../src/app.js";
import { mulberry32 } from "../../src/util/prng.js";

/** What fault tests compare: a fact's whole layer as the API serves it, and lists of members. */

type Inject = App["inject"];

async function getOk(app: { inject: Inject }, auth: string, url: string, accept = "application/json") {
  const res = await app.inject({ method: "GET", url, headers: { authorization: auth, accept } });
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.body;
}

/**
 * Metrics of every period at every grain and every user's status in every day period (NDJSON), plus
 * the week and month status of the last period: enough that any difference in islands shows.
 */
export async function layerSnapshot(app: { inject: Inject }, auth: string, fact: string, first: string, through: string) {
  const out: Record<string, unknown> = {};
  for (const grain of ["day", "week", "month"]) {
    const body = JSON.parse(await getOk(app, auth, `/v1/facts/${fact}/metrics?grain=${grain}`));
    expect(body.processed_through).toBe(through);
    out[`metrics_${grain}`] = body.data;
  }
  const status: string[] = [];
  for (let d = Date.parse(`${first}T00:00:00Z`); d <= Date.parse(`${through}T00:00:00Z`); d += 86_400_000) {
    const day = new Date(d).toISOString().slice(0, 10);
    status.push(...(await getOk(app, auth, `/v1/facts/${fact}/status?grain=day&period=${day}`, "application/x-ndjson")).split("\n").filter(Boolean));
  }
  out.status_day = status.sort();
  out.status_week = (await getOk(app, auth, `/v1/facts/${fact}/status?grain=week&period=${through}`, "application/x-ndjson")).split("\n").filter(Boolean).sort();
  out.status_month = (await getOk(app, auth, `/v1/facts/${fact}/status?grain=month&period=${through}`, "application/x-ndjson")).split("\n").filter(Boolean).sort();
  return out;
}

/** Sorted user ids of a finished materialisation, streamed whole. */
export async function memberIds(app: { inject: Inject }, auth: string, materializationId: string): Promise<string[]> {
  const body = await getOk(app, auth, `/v1/materializations/${materializationId}/members`, "application/x-ndjson");
  return body
    .split("\n")
    .filter(Boolean)
    .map((l) => String(JSON.parse(l).user_id))
    .sort();
}

/** A reproducible log: `users` users with their own activity rate over `days` days from `first` (UTC noon-ish). */
export function syntheticEvents(seed: number, users: number, first: string, days: number) {
  const rnd = mulberry32(seed);
  const rates = Array.from({ length: users }, () => 0.1 + 0.8 * rnd());
  const out: Array<{ user_id: string; occurred_at: string }> = [];
  const t0 = Date.parse(`${first}T00:00:00Z`);
  for (let d = 0; d < days; d++)
    for (let u = 0; u < users; u++)
      if (rnd() < rates[u]!) out.push({ user_id: `u${u}`, occurred_at: new Date(t0 + d * 86_400_000 + Math.floor(rnd() * 86_000_000)).toISOString() });
  return out;
}

export const dateAfter = (first: string, days: number) => new Date(Date.parse(`${first}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
