/**
 * SQL over the packed islands (migration 20261128100000_packed_islands) for the read paths that do not go
 * through the layer_island view (audiences at the watermark's period), and the chunk size the packs have.
 */

/** Users per packed row: chunk = user_key >> CHUNK_BITS, slot = user_key & (CHUNK_SLOTS - 1). */
export const CHUNK_BITS = 10;
export const CHUNK_SLOTS = 1 << CHUNK_BITS;

/** An island's columns (but next_start) from its packed value x and first period f. */
export function decodedIsland(x: string, f: string, userKey: string): string {
  return `${userKey} AS user_key, ((${x} >> 48) & 65535)::int AS start_p, ((${x} >> 32) & 65535)::int AS end_p,
    NULLIF(((${x} >> 16) & 65535)::int, 65535) AS prev_end, (${x} & 65535)::int AS active_before, ${f} AS first_p`;
}
