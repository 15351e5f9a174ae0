import { expect } from "vitest";
import { GRAINS, dateToDay, dayToDate, periodOfDate, periodToDate, type Grain } from "../../src/activation/periods.js";
import { allPages, api } from "./api.js";
import type { TestEnv } from "./context.js";
import { canonical, parseCsv, readFixtureCsv } from "./fixtures.js";

function periodsBetween(grain: Grain, first: string, through: string): string[] {
  const out: string[] = [];
  for (let p = periodOfDate(grain, first); p <= periodOfDate(grain, through); p++) out.push(periodToDate(grain, p));
  return out;
}

function ndjson(text: string): Array<Record<string, unknown>> {
  return text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * Reads every model of a fact through the HTTP API (pages, CSV and NDJSON streams alike) and holds
 * it to an expected/ folder of a fixture: status, activation and metrics at all grains, and FirstLast.
 */
export async function expectLayerEquals(env: TestEnv, fact: string, fixture: string, expectedDir: string, through: string) {
  const a = api(env);
  for (const grain of GRAINS) {
    const expStatus = readFixtureCsv(fixture, `${expectedDir}/status_${grain}.csv`);
    const cols = Object.keys(expStatus[0]!);
    const first = expStatus.map((r) => r.period!).sort()[0]!;
    const got: Array<Record<string, unknown>> = [];
    const gotAct: Array<Record<string, unknown>> = [];
    for (const p of periodsBetween(grain, first, through)) {
      const q = `grain=${grain}&period=${p}`;
      if (grain === "day") {
        const res = await a.get(`/v1/facts/${fact}/status?${q}`, { accept: "application/x-ndjson" });
        expect(res.statusCode, res.body).toBe(200);
        got.push(...ndjson(res.body));
        const act = await a.get(`/v1/facts/${fact}/activation?${q}`, { accept: "text/csv" });
        expect(act.statusCode, act.body).toBe(200);
        gotAct.push(...parseCsv(act.body));
      } else {
        got.push(...(await allPages(env, `/v1/facts/${fact}/status?${q}`, 7)));
        gotAct.push(...(await allPages(env, `/v1/facts/${fact}/activation?${q}`, 5)));
      }
    }
    expect(canonical(got, cols), `status_${grain}`).toEqual(canonical(expStatus, cols));
    const expAct = readFixtureCsv(fixture, `${expectedDir}/activation_${grain}.csv`);
    const actCols = Object.keys(expAct[0]!);
    expect(canonical(gotAct, actCols), `activation_${grain}`).toEqual(canonical(expAct, actCols));

    const expMetrics = readFixtureCsv(fixture, `${expectedDir}/metrics_${grain}.csv`);
    const mres = await a.get(`/v1/facts/${fact}/metrics?grain=${grain}`);
    expect(mres.statusCode, mres.body).toBe(200);
    const mcols = Object.keys(expMetrics[0]!);
    expect(canonical(mres.json().data, mcols), `metrics_${grain}`).toEqual(canonical(expMetrics, mcols));
  }
  const expFl = readFixtureCsv(fixture, `${expectedDir}/first_last.csv`);
  const flCols = Object.keys(expFl[0]!);
  const gotFl: Array<Record<string, unknown>> = [];
  const firstDay = expFl.map((r) => r.snapshot_date!).sort()[0]!;
  for (let d = dateToDay(firstDay); d <= dateToDay(through); d++) {
    gotFl.push(...(await allPages(env, `/v1/facts/${fact}/first-last?date=${dayToDate(d)}`, 50)));
  }
  expect(canonical(gotFl, flCols), "first_last").toEqual(canonical(expFl, flCols));
}
