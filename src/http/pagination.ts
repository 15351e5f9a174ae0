import { z } from "zod";
import { badRequest } from "./problem.js";

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;

// Strict, like every query string schema: a misspelt parameter (`grian=week`) is a 400 naming it, not silently ignored.
export const pageQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_LIMIT).default(DEFAULT_LIMIT).describe(`Page size, 1–${MAX_LIMIT}.`),
  cursor: z.string().max(2000).optional().describe("Opaque cursor from the previous page's next_cursor."),
});
export type PageQuery = z.infer<typeof pageQuerySchema>;

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), next_cursor: z.string().nullable() });
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** Cursors are the keyset position of the last row served, base64url-encoded: opaque to clients. */
export function encodeCursor(position: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodeCursor<T extends readonly unknown[]>(cursor: string | undefined, shape: z.ZodType<T>): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    return shape.parse(JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")));
  } catch {
    throw badRequest("The cursor is not one this endpoint issued.", [{ path: "cursor", message: "invalid cursor" }]);
  }
}

/**
 * Turns `limit + 1` keyset-ordered rows into a page: the extra row only tells that another page
 * exists, and the last served row's key becomes the cursor.
 */
export function toPage<R, T>(rows: R[], limit: number, position: (row: R) => readonly unknown[], shape: (row: R) => T): Page<T> {
  const more = rows.length > limit;
  const served = more ? rows.slice(0, limit) : rows;
  return {
    data: served.map(shape),
    next_cursor: more ? encodeCursor(position(served[served.length - 1]!)) : null,
  };
}
