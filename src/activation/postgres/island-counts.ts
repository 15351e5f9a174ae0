import type pg from "pg";

/**
 * layer_start_count and layer_end_count: every island of a fact and grain counted by its start period
 * and by its end period, under each condition the metrics' events need (metrics.ts). A metric row is
 * the previous row plus the events at its period, so with these counts a run's metrics read a few
 * rows of two small tables instead of the islands that start or end near its periods. Every run keeps
 * them in step: each island it changes is counted out as it was and back in as it is.
 */

/** The columns an island is read from: start, end, previous island's end, next island's start. */
export interface IslandColumns {
  s: string;
  e: string;
  prev: string;
  next: string;
}

/** The columns of layer_island, or of a temp table that names them alike, read through `alias` ("i."). */
export const islandColumns = (alias = ""): IslandColumns => ({
  s: `${alias}start_p`, e: `${alias}end_p`, prev: `${alias}prev_end`, next: `${alias}next_start`,
});

type Condition = (c: IslandColumns) => string;

/** Counted at the island's start period; g = start - prev is the return interval. */
export const START_COUNTS = {
  c_first: (c) => `${c.prev} IS NULL`,
  c_react: (c) => `${c.prev} IS NOT NULL`,
  c_all: () => "TRUE",
  c_len2: (c) => `${c.e} >= ${c.s} + 1`,
  c_len3: (c) => `${c.e} >= ${c.s} + 2`,
  c_first_len2: (c) => `${c.prev} IS NULL AND ${c.e} >= ${c.s} + 1`,
  c_react_len2: (c) => `${c.prev} IS NOT NULL AND ${c.e} >= ${c.s} + 1`,
  c_gap_gt2: (c) => `${c.s} - ${c.prev} > 2`,
  c_gap_le6: (c) => `${c.s} - ${c.prev} <= 6`,
  c_gap_7_29: (c) => `${c.s} - ${c.prev} BETWEEN 7 AND 29`,
  c_gap_ge30: (c) => `${c.s} - ${c.prev} >= 30`,
  c_gap_le7: (c) => `${c.s} - ${c.prev} <= 7`,
  c_gap_8_30: (c) => `${c.s} - ${c.prev} BETWEEN 8 AND 30`,
  c_gap_ge31: (c) => `${c.s} - ${c.prev} >= 31`,
} satisfies Record<string, Condition>;

/** Counted at the island's end period; a latest island (next null) meets every gap condition. */
export const END_COUNTS = {
  c_all: () => "TRUE",
  c_len2: (c) => `${c.e} >= ${c.s} + 1`,
  c_len3: (c) => `${c.e} >= ${c.s} + 2`,
  c_first_single: (c) => `${c.prev} IS NULL AND ${c.e} = ${c.s}`,
  c_react_single: (c) => `${c.prev} IS NOT NULL AND ${c.e} = ${c.s}`,
  c_gap_gt2: (c) => `${c.next} IS NULL OR ${c.next} > ${c.e} + 2`,
  c_gap_gt7: (c) => `${c.next} IS NULL OR ${c.next} > ${c.e} + 7`,
  c_gap_gt30: (c) => `${c.next} IS NULL OR ${c.next} > ${c.e} + 30`,
  // Not a metric: closed islands are those counted in c_all but not here (latestClosedEnd).
  c_latest: (c) => `${c.next} IS NULL`,
} satisfies Record<string, Condition>;

const KINDS = [
  { kind: "start", table: "layer_start_count", delta: "start_count_delta", key: "start_p", counts: START_COUNTS, keyOf: (c: IslandColumns) => c.s },
  { kind: "end", table: "layer_end_count", delta: "end_count_delta", key: "end_p", counts: END_COUNTS, keyOf: (c: IslandColumns) => c.e },
] as const;

/** The counts of the islands `rows` (a FROM clause) by one kind's key, each multiplied by `sign`. */
function countsSql(kind: (typeof KINDS)[number], rows: string, c: IslandColumns, sign: 1 | -1): string {
  const m = sign === 1 ? "" : "-";
  const cols = Object.entries(kind.counts).map(([name, cond]) => `${m}count(*) FILTER (WHERE ${cond(c)})::int AS ${name}`);
  return `SELECT ${kind.keyOf(c)} AS ${kind.key}, ${cols.join(", ")} FROM ${rows} GROUP BY 1`;
}

/** Starts collecting a run's changes to the counts (temp tables, dropped at commit). */
export async function beginCountDeltas(client: pg.ClientBase): Promise<void> {
  for (const k of KINDS)
    await client.query(
      `CREATE TEMP TABLE ${k.delta} (${k.key} int, ${Object.keys(k.counts).map((n) => `${n} int`).join(", ")}) ON COMMIT DROP`,
    );
}

/**
 * Counts the islands `rows` in (sign 1) or out (-1); `c` names their columns. `only` limits it to the
 * start or the end counts, for a change the caller knows leaves the other kind as it was.
 */
export async function addCountDelta(
  client: pg.ClientBase, rows: string, c: IslandColumns, sign: 1 | -1, params: unknown[] = [], only?: "start" | "end",
): Promise<void> {
  for (const k of KINDS) {
    if (only && k.kind !== only) continue;
    await client.query(`INSERT INTO ${k.delta} ${countsSql(k, rows, c, sign)}`, params);
  }
}

/** Applies the collected changes and drops the temp tables; periods no island starts (ends) at any more go. */
export async function applyCountDeltas(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  for (const k of KINDS) {
    const names = Object.keys(k.counts);
    await client.query(
      `INSERT INTO ${k.table} AS t (fact_id, grain, ${k.key}, ${names.join(", ")})
       SELECT $1, ${g | 0}, ${k.key}, ${names.map((n) => `sum(${n})`).join(", ")}
       FROM ${k.delta} GROUP BY ${k.key}
       ON CONFLICT (fact_id, grain, ${k.key}) DO UPDATE SET ${names.map((n) => `${n} = t.${n} + excluded.${n}`).join(", ")}`,
      [factId],
    );
    await client.query(`DELETE FROM ${k.table} WHERE fact_id = $1 AND grain = ${g | 0} AND c_all = 0`, [factId]);
    await client.query(`DROP TABLE ${k.delta}`);
  }
}

/** Counts a grain's islands afresh (its first build), from the table `islands` (columns of layer_island). */
export async function rebuildCounts(client: pg.ClientBase, factId: number, g: number, islands: string): Promise<void> {
  for (const k of KINDS) {
    await client.query(`DELETE FROM ${k.table} WHERE fact_id = $1 AND grain = ${g | 0}`, [factId]);
    await client.query(
      `INSERT INTO ${k.table} (fact_id, grain, ${k.key}, ${Object.keys(k.counts).join(", ")})
       SELECT $1, ${g | 0}, * FROM (${countsSql(k, `${islands} WHERE fact_id = $1 AND grain = ${g | 0}`, islandColumns(), 1)}) c`,
      [factId],
    );
  }
}

/** Removes every count of a fact (its data is being deleted). */
export async function deleteCounts(client: pg.ClientBase, factId: number): Promise<void> {
  for (const k of KINDS) await client.query(`DELETE FROM ${k.table} WHERE fact_id = $1`, [factId]);
}

/** The latest end period of any island of the grain (the latest island of some user), null when none. */
export async function latestEnd(client: pg.ClientBase, factId: number, g: number): Promise<number | null> {
  const r = await client.query<{ m: number | null }>(`SELECT max(end_p) AS m FROM layer_end_count WHERE fact_id = $1 AND grain = ${g | 0}`, [factId]);
  return r.rows[0]!.m;
}

/** The earliest start period of any island of the grain, null when none. */
export async function earliestStart(client: pg.ClientBase, factId: number, g: number): Promise<number | null> {
  const r = await client.query<{ m: number | null }>(`SELECT min(start_p) AS m FROM layer_start_count WHERE fact_id = $1 AND grain = ${g | 0}`, [factId]);
  return r.rows[0]!.m;
}

/** The latest end period of the grain's closed islands (those with a next island), null when none. */
export async function latestClosedEnd(client: pg.ClientBase, factId: number, g: number): Promise<number | null> {
  const r = await client.query<{ m: number | null }>(
    `SELECT max(end_p) AS m FROM layer_end_count WHERE fact_id = $1 AND grain = ${g | 0} AND c_all > c_latest`,
    [factId],
  );
  return r.rows[0]!.m;
}

const startColumn = Object.fromEntries(Object.keys(START_COUNTS).map((n, i) => [n, i])) as Record<keyof typeof START_COUNTS, number>;
const endColumn = Object.fromEntries(Object.keys(END_COUNTS).map((n, i) => [n, i])) as Record<keyof typeof END_COUNTS, number>;

/**
 * A run's changes to the counts, collected in Node: per start (end) period, one delta per condition, in
 * the delta tables' column order. The conditions are START_COUNTS' and END_COUNTS' written out in
 * TypeScript (a daily run counts some 750,000 islands in and out); test/island-count-tests.test.ts holds
 * them to the SQL on random islands. A comparison with a null is null in SQL, which FILTER does not count.
 */
export class CountDeltas {
  readonly byStart = new Map<number, Int32Array>();
  readonly byEnd = new Map<number, Int32Array>();

  private row(map: Map<number, Int32Array>, p: number, width: number): Int32Array {
    let r = map.get(p);
    if (!r) map.set(p, (r = new Int32Array(width)));
    return r;
  }

  /** Counts the island [s, e] in (sign 1) or out (-1); prev (next): the previous island's end (next's start), null when none. */
  add(s: number, e: number, prev: number | null, next: number | null, sign: 1 | -1): void {
    const len2 = e >= s + 1, len3 = e >= s + 2;
    const a = this.row(this.byStart, s, 14);
    a[startColumn.c_all]! += sign;
    if (len2) a[startColumn.c_len2]! += sign;
    if (len3) a[startColumn.c_len3]! += sign;
    if (prev === null) {
      a[startColumn.c_first]! += sign;
      if (len2) a[startColumn.c_first_len2]! += sign;
    } else {
      const gap = s - prev;
      a[startColumn.c_react]! += sign;
      if (len2) a[startColumn.c_react_len2]! += sign;
      if (gap > 2) a[startColumn.c_gap_gt2]! += sign;
      if (gap <= 6) a[startColumn.c_gap_le6]! += sign;
      else if (gap <= 29) a[startColumn.c_gap_7_29]! += sign;
      else a[startColumn.c_gap_ge30]! += sign;
      if (gap <= 7) a[startColumn.c_gap_le7]! += sign;
      else if (gap <= 30) a[startColumn.c_gap_8_30]! += sign;
      else a[startColumn.c_gap_ge31]! += sign;
    }
    const b = this.row(this.byEnd, e, 9);
    b[endColumn.c_all]! += sign;
    if (len2) b[endColumn.c_len2]! += sign;
    if (len3) b[endColumn.c_len3]! += sign;
    if (e === s) b[prev === null ? endColumn.c_first_single : endColumn.c_react_single]! += sign;
    if (next === null) {
      b[endColumn.c_gap_gt2]! += sign;
      b[endColumn.c_gap_gt7]! += sign;
      b[endColumn.c_gap_gt30]! += sign;
      b[endColumn.c_latest]! += sign;
    } else {
      if (next > e + 2) b[endColumn.c_gap_gt2]! += sign;
      if (next > e + 7) b[endColumn.c_gap_gt7]! += sign;
      if (next > e + 30) b[endColumn.c_gap_gt30]! += sign;
    }
  }

  /** Applies them to layer_start_count and layer_end_count (through the temp tables applyCountDeltas reads). */
  async apply(client: pg.ClientBase, factId: number, g: number): Promise<void> {
    await beginCountDeltas(client);
    for (const [k, byPeriod] of [[KINDS[0], this.byStart], [KINDS[1], this.byEnd]] as const) {
      if (byPeriod.size === 0) continue;
      const periods = [...byPeriod.keys()];
      const width = Object.keys(k.counts).length;
      const columns = Array.from({ length: width }, (_, j) => periods.map((p) => byPeriod.get(p)![j]!));
      await client.query(
        `INSERT INTO ${k.delta} SELECT * FROM unnest(${[periods, ...columns].map((_, j) => `$${j + 1}::int[]`).join(", ")})`,
        [periods, ...columns],
      );
    }
    await applyCountDeltas(client, factId, g);
  }
}
