import type pg from "pg";
import { setLatestIslands, type LatestIsland } from "./day-packs.js";

/**
 * The islands a run other than a next day's (late data, several days, a first build) merges, as rows in
 * a temporary table with the columns of the layer_island view: the islands of the users with new periods
 * unpacked into work_island, merged there by the SQL of islands.ts, and what changed packed back (a first
 * build builds every island there and packs them all). The layout of the packs: migration
 * 20261128100000_packed_islands.
 */
const COLUMNS = "fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p";

/** An empty work_island, for a first build (buildIslands fills it). */
export async function createWorkIslands(client: pg.ClientBase): Promise<void> {
  await client.query(
    `CREATE TEMP TABLE work_island (fact_id int NOT NULL, grain smallint NOT NULL, user_key int NOT NULL, start_p int NOT NULL,
       end_p int NOT NULL, prev_end int, next_start int, active_before int NOT NULL, first_p int NOT NULL) ON COMMIT DROP`,
  );
}

/** Keys the work table's rows the way the merge looks them up (after it is filled: cheaper than row by row). */
export async function indexWorkIslands(client: pg.ClientBase): Promise<void> {
  await client.query(`CREATE UNIQUE INDEX ON work_island (user_key, start_p)`);
  await client.query(`ANALYZE work_island`);
}

/**
 * work_island for a merge of np (late data, several days): the islands of np's users that the merge can
 * read or change. Those from the earliest new period `lo` on (closed islands whose next starts at lo - 1
 * or later, and the latest), and the island before the earliest of those, which the merge may take as
 * the anchor carrying values into the islands after it (islands.ts, mergeGeneral). A copy is kept in
 * work_island_before, so that only what the merge changed is written back (writeBackChangedIslands).
 */
export async function loadWorkIslands(client: pg.ClientBase, factId: number, g: number, lo: number, afterEvery = false): Promise<void> {
  const gc = g | 0;
  await createWorkIslands(client);
  await client.query(`CREATE TEMP TABLE work_user ON COMMIT DROP AS SELECT DISTINCT user_key FROM np`);
  await client.query(`ANALYZE work_user`);
  const chunks = (await client.query<{ c: number[] }>(`SELECT COALESCE(array_agg(DISTINCT user_key >> 10), '{}') AS c FROM work_user`)).rows[0]!.c;
  // Chunks and periods as parameters: the conditions then reach the packs' keys before any unpacking.
  await client.query(
    `INSERT INTO work_island SELECT ${COLUMNS} FROM layer_latest_island i
     WHERE i.fact_id = $1 AND i.grain = ${gc} AND i.chunk = ANY($2::int[]) AND i.user_key IN (SELECT user_key FROM work_user)`,
    [factId, chunks],
  );
  await client.query(
    `INSERT INTO work_island SELECT ${COLUMNS} FROM layer_closed_island i
     WHERE i.fact_id = $1 AND i.grain = ${gc} AND i.chunk = ANY($2::int[]) AND i.next_start >= $3::int
       AND i.user_key IN (SELECT user_key FROM work_user)`,
    [factId, chunks, lo - 1],
  );
  // Each user's island before the earliest loaded one: the closed island whose next starts there, found
  // through its chunk's rows of that next start. Not when every new period lies after every island (a run
  // of new days): the merge then only appends, and never reads an anchor.
  if (!afterEvery) {
    await client.query(
      `CREATE TEMP TABLE work_before_first ON COMMIT DROP AS
       SELECT DISTINCT ON (user_key) user_key, start_p, prev_end FROM work_island ORDER BY user_key, start_p`,
    );
    await client.query(
      `INSERT INTO work_island SELECT ${COLUMNS.replace(/(\w+)/g, "i.$1")}
       FROM work_before_first f CROSS JOIN LATERAL (
         SELECT * FROM layer_closed_island c
         WHERE c.fact_id = $1 AND c.grain = ${gc} AND c.chunk = f.user_key >> 10 AND c.next_start = f.start_p AND c.user_key = f.user_key) i
       WHERE f.prev_end IS NOT NULL`,
      [factId],
    );
    await client.query(`DROP TABLE work_before_first`);
  }
  await client.query(`DROP TABLE work_user`);
  await indexWorkIslands(client);
  await client.query(`CREATE TEMP TABLE work_island_before ON COMMIT DROP AS SELECT * FROM work_island`);
}

/**
 * Writes back what a merge on work_island changed (against work_island_before): the users' new latest
 * islands into their slots; the closed islands it removed or changed taken out of their packs (those
 * rows rewritten without them) and the closed islands it made appended, a row per next start and chunk.
 */
export async function writeBackChangedIslands(client: pg.ClientBase, factId: number, g: number): Promise<void> {
  const gc = g | 0;
  await client.query(
    `CREATE TEMP TABLE work_removed ON COMMIT DROP AS
     SELECT * FROM work_island_before WHERE next_start IS NOT NULL EXCEPT ALL SELECT * FROM work_island WHERE next_start IS NOT NULL;
     CREATE TEMP TABLE work_added ON COMMIT DROP AS
     SELECT * FROM work_island EXCEPT ALL SELECT * FROM work_island_before`,
  );
  const latest = await client.query<LatestIsland>(
    `SELECT user_key, start_p, end_p, prev_end, active_before, first_p FROM work_added WHERE next_start IS NULL ORDER BY user_key`,
  );
  await setLatestIslands(client, factId, gc, latest.rows);
  // The closed packs holding a removed island (each found through its chunk and next start): rewritten
  // with the rest of their islands and the new ones.
  await client.query(
    `CREATE TEMP TABLE work_closed_rows ON COMMIT DROP AS
     SELECT DISTINCT c.next_start, c.first_key
     FROM work_removed r JOIN layer_closed_pack c
       ON c.fact_id = $1 AND c.grain = ${gc} AND c.chunk = r.user_key >> 10 AND c.next_start = r.next_start AND r.user_key = ANY(c.uk)`,
    [factId],
  );
  await client.query(
    `CREATE TEMP TABLE work_closed_new ON COMMIT DROP AS
     SELECT c.next_start, u.k AS user_key, u.x, u.f
     FROM layer_closed_pack c JOIN work_closed_rows r ON r.next_start = c.next_start AND r.first_key = c.first_key, unnest(c.uk, c.s, c.fp) AS u(k, x, f)
     WHERE c.fact_id = $1 AND c.grain = ${gc}
       AND NOT EXISTS (SELECT 1 FROM work_removed d WHERE d.user_key = u.k AND d.next_start = c.next_start)
     UNION ALL
     SELECT next_start, user_key, aa_island_pack(start_p, end_p, prev_end, active_before), first_p FROM work_added WHERE next_start IS NOT NULL`,
    [factId],
  );
  await client.query(
    `DELETE FROM layer_closed_pack c USING work_closed_rows r WHERE c.fact_id = $1 AND c.grain = ${gc} AND c.next_start = r.next_start AND c.first_key = r.first_key`,
    [factId],
  );
  await client.query(
    `INSERT INTO layer_closed_pack (fact_id, grain, next_start, first_key, chunk, uk, s, fp)
     SELECT $1, ${gc}, next_start, min(user_key), user_key >> 10, array_agg(user_key ORDER BY user_key), array_agg(x ORDER BY user_key), array_agg(f ORDER BY user_key)
     FROM work_closed_new GROUP BY next_start, user_key >> 10`,
    [factId],
  );
  await client.query(`DROP TABLE work_removed; DROP TABLE work_added; DROP TABLE work_closed_rows; DROP TABLE work_closed_new; DROP TABLE work_island_before`);
}

/** The chunks work_island's rows lie in (every chunk a first build wrote). */
export async function workChunks(client: pg.ClientBase): Promise<number[]> {
  const r = await client.query<{ c: number[] | null }>(`SELECT array_agg(DISTINCT user_key >> 10) AS c FROM work_island`);
  return r.rows[0]!.c ?? [];
}

/**
 * Packs work_island's islands (a first build) as the grain's packs of `chunks`, replacing any: each
 * chunk's latest islands as one row of 1,024 slots, its closed islands as one row per next island's start.
 */
export async function packWorkIslands(client: pg.ClientBase, factId: number, g: number, chunks: number[]): Promise<void> {
  if (chunks.length === 0) return;
  const gc = g | 0;
  for (const table of ["layer_latest_pack", "layer_latest_first", "layer_closed_pack"])
    await client.query(`DELETE FROM ${table} WHERE fact_id = $1 AND grain = ${gc} AND chunk = ANY($2::int[])`, [factId, chunks]);
  // Both arrays of a chunk built in one pass, kept uncompressed as the packs keep them (a compressed
  // value would be stored as it is).
  await client.query(
    `CREATE TEMP TABLE work_latest_pack (chunk int, s bigint[], fp int[]) ON COMMIT DROP;
     ALTER TABLE work_latest_pack ALTER s SET STORAGE EXTERNAL, ALTER fp SET STORAGE EXTERNAL`,
  );
  await client.query(
    `INSERT INTO work_latest_pack
     SELECT c.chunk,
            array_agg(COALESCE(aa_island_pack(w.start_p, w.end_p, w.prev_end, w.active_before), -1) ORDER BY sl),
            array_agg(COALESCE(w.first_p, -1) ORDER BY sl)
     FROM unnest($1::int[]) c(chunk) CROSS JOIN generate_series(0, 1023) sl
     LEFT JOIN work_island w ON w.next_start IS NULL AND w.user_key = (c.chunk << 10) + sl
     GROUP BY c.chunk
     HAVING bool_or(w.user_key IS NOT NULL)`,
    [chunks],
  );
  await client.query(`INSERT INTO layer_latest_pack (fact_id, grain, chunk, s) SELECT $1, ${gc}, chunk, s FROM work_latest_pack`, [factId]);
  await client.query(`INSERT INTO layer_latest_first (fact_id, grain, chunk, fp) SELECT $1, ${gc}, chunk, fp FROM work_latest_pack`, [factId]);
  await client.query(`DROP TABLE work_latest_pack`);
  await client.query(
    `INSERT INTO layer_closed_pack (fact_id, grain, next_start, first_key, chunk, uk, s, fp)
     SELECT $1, ${gc}, next_start, min(user_key), user_key >> 10, array_agg(user_key ORDER BY user_key),
            array_agg(aa_island_pack(start_p, end_p, prev_end, active_before) ORDER BY user_key),
            array_agg(first_p ORDER BY user_key)
     FROM work_island WHERE next_start IS NOT NULL
     GROUP BY next_start, user_key >> 10`,
    [factId],
  );
}
