import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CountDeltas, END_COUNTS, START_COUNTS, islandColumns } from "../src/activation/postgres/island-counts.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/**
 * The daily path counts the islands it changes in Node (CountDeltas), every other run in SQL
 * (START_COUNTS, END_COUNTS): on random islands, counted in and out, CountDeltas counts each under
 * exactly the conditions the SQL holds, nulls and the gap bands' edges included.
 */
let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

interface Island {
  s: number;
  e: number;
  prev: number | null;
  next: number | null;
}

const islandArb: fc.Arbitrary<Island> = fc
  .record({
    s: fc.integer({ min: 40, max: 120 }),
    len: fc.integer({ min: 0, max: 4 }),
    gapBefore: fc.option(fc.integer({ min: 2, max: 40 }), { nil: null }),
    gapAfter: fc.option(fc.integer({ min: 2, max: 40 }), { nil: null }),
  })
  .map(({ s, len, gapBefore, gapAfter }) => ({
    s,
    e: s + len,
    prev: gapBefore === null ? null : s - gapBefore,
    next: gapAfter === null ? null : s + len + gapAfter,
  }));

describe("the island counts in Node and in SQL", () => {
  it("CountDeltas counts random islands in and out under exactly the SQL conditions", async () => {
    const c = islandColumns("i.");
    const conditions = [...Object.values(START_COUNTS), ...Object.values(END_COUNTS)].map((cond) => `COALESCE((${cond(c)}), FALSE)`);
    const names = [...Object.keys(START_COUNTS).map((n) => `start ${n}`), ...Object.keys(END_COUNTS).map((n) => `end ${n}`)];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(islandArb, fc.constantFrom(1 as const, -1 as const)), { minLength: 1, maxLength: 60 }), async (cases) => {
        const res = await env.ctx.db.pool.query<{ n: number; hits: boolean[] }>(
          `SELECT i.n, ARRAY[${conditions.join(", ")}] AS hits
           FROM unnest($1::int[], $2::int[], $3::int[], $4::int[]) WITH ORDINALITY AS i(start_p, end_p, prev_end, next_start, n)
           ORDER BY i.n`,
          [cases.map(([i]) => i.s), cases.map(([i]) => i.e), cases.map(([i]) => i.prev), cases.map(([i]) => i.next)],
        );
        for (const row of res.rows) {
          const [island, sign] = cases[Number(row.n) - 1]!;
          const d = new CountDeltas();
          d.add(island.s, island.e, island.prev, island.next, sign);
          const inNode = [...d.byStart.get(island.s)!, ...d.byEnd.get(island.e)!];
          expect(Object.fromEntries(names.map((n, j) => [n, inNode[j]])), JSON.stringify({ island, sign })).toEqual(
            Object.fromEntries(names.map((n, j) => [n, row.hits[j] ? sign : 0])),
          );
        }
      }),
      { numRuns: 100 },
    );
  });
});
