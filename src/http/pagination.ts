import { z } from "zod";
import { badRequest } from "./problem.js";
import { unstorableText } from "./untrusted-input.js";

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

// What a cursor's elements may hold. A cursor comes back from the client, so its values are checked
// like any other input, each for what its keyset query binds it to: a tampered cursor is then the 400
// of decodeCursor, never a database error (a 500) on an instant, a uuid or an integer PostgreSQL refuses.

/** A row's created_at, as Date.toISOString() wrote it (a real calendar instant). */
export const cursorInstant = z.iso.datetime().transform((s) => new Date(s));
/** A row id. */
export const cursorUuid = z.uuid();
/** An integer column (user keys, version numbers): PostgreSQL's int4. */
export const cursorInt4 = z.number().int().min(-2_147_483_648).max(2_147_483_647);
/** A text column (a fact name): no NUL or unpaired surrogate, which PostgreSQL text cannot hold. */
export const cursorText = z.string().refine((s) => unstorableText(s) === null);

/** The position in a list ordered by (created_at, id): the last row's creation instant and id. */
export const createdAtIdCursor = z.tuple([cursorInstant, cursorUuid]);
/** The position in a list of users ordered by user key. */
export const userKeyCursor = z.tuple([cursorInt4]);

/** The rows after `after` in a list ordered by (created_at, id), newest first or oldest first. */
export function afterCreatedAtId(after: readonly [Date, string] | undefined, order: "desc" | "asc") {
  if (!after) return {};
  const [createdAt, id] = after;
  return order === "desc"
    ? { OR: [{ createdAt: { lt: createdAt } }, { createdAt, id: { lt: id } }] }
    : { OR: [{ createdAt: { gt: createdAt } }, { createdAt, id: { gt: id } }] };
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
