import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CountDeltas, END_COUNTS, END_COUNT_TESTS, START_COUNTS, START_COUNT_TESTS, islandColumns, type CountedIsland,
} from "../src/activation/postgres/island-counts.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

/**
 * The daily path counts the islands it changes in Node (START_COUNT_TESTS, END_COUNT_TESTS), every other
 * run in SQL (START_COUNTS, END_COUNTS): on random islands, each condition holds in one exactly when it
 * holds in the other, nulls and the gap bands' edges included; and CountDeltas, which writes the tests
 * out for speed, counts each island under exactly the conditions the tests say.
 */
let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

const islandArb: fc.Arbitrary<CountedIsland> = fc
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

describe("the island counts' conditions in Node and in SQL", () => {
  it("agree on every condition for random islands", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(islandArb, { minLength: 1, maxLength: 60 }), async (islands) => {
        const c = islandColumns("i.");
        const tests = [
          ...Object.entries(START_COUNTS).map(([n, cond]) => ({ name: `start ${n}`, sql: cond(c), ts: START_COUNT_TESTS[n as keyof typeof START_COUNTS] })),
          ...Object.entries(END_COUNTS).map(([n, cond]) => ({ name: `end ${n}`, sql: cond(c), ts: END_COUNT_TESTS[n as keyof typeof END_COUNTS] })),
        ];
        const res = await env.ctx.db.pool.query<{ n: number; hits: boolean[] }>(
          `SELECT i.n, ARRAY[${tests.map((t) => `COALESCE((${t.sql}), FALSE)`).join(", ")}] AS hits
           FROM unnest($1::int[], $2::int[], $3::int[], $4::int[]) WITH ORDINALITY AS i(start_p, end_p, prev_end, next_start, n)
           ORDER BY i.n`,
          [islands.map((i) => i.s), islands.map((i) => i.e), islands.map((i) => i.prev), islands.map((i) => i.next)],
        );
        for (const row of res.rows) {
          const island = islands[Number(row.n) - 1]!;
          const inNode = tests.map((t) => t.ts(island));
          expect(Object.fromEntries(tests.map((t, j) => [t.name, inNode[j]])), JSON.stringify(island)).toEqual(
            Object.fromEntries(tests.map((t, j) => [t.name, row.hits[j]])),
          );
        }
      }),
      { numRuns: 60 },
    );
  });

  it("CountDeltas counts an island in and out under exactly the conditions the tests say", () => {
    fc.assert(
      fc.property(islandArb, fc.constantFrom(1 as const, -1 as const), (island, sign) => {
        const d = new CountDeltas();
        d.add(island.s, island.e, island.prev, island.next, sign);
        const expected = (tests: Record<string, (i: CountedIsland) => boolean>, names: string[]) =>
          names.map((n) => (tests[n]!(island) ? sign : 0));
        expect([...d.byStart.get(island.s)!]).toEqual(expected(START_COUNT_TESTS, Object.keys(START_COUNTS)));
        expect([...d.byEnd.get(island.e)!]).toEqual(expected(END_COUNT_TESTS, Object.keys(END_COUNTS)));
      }),
      { numRuns: 2000 },
    );
  });
});
