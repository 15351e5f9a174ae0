import { createHash } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type pg from "pg";
import { z } from "zod";
import { ProblemError } from "./problem.js";

/** The request headers of a route that honours Idempotency-Key (other headers pass). */
export const idempotencyKeyHeaders = z.object({ "idempotency-key": z.string().optional() }).passthrough();

export interface StoredResponse {
  status: number;
  body: unknown;
}

const KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** The Idempotency-Key of a request, checked; undefined when the client sent none. */
export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const raw = request.headers["idempotency-key"];
  if (raw === undefined) return undefined;
  const key = Array.isArray(raw) ? raw[0]! : raw;
  if (!KEY_RE.test(key)) throw new ProblemError(400, "Idempotency-Key must be 1–255 visible ASCII characters.", { errors: [{ path: "Idempotency-Key", message: "invalid" }] });
  return key;
}

/** JSON with every object's keys sorted: the same content sent with its keys in another order is the same request. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]))
      : v,
  );
}

export function requestFingerprint(request: FastifyRequest): string {
  const body = typeof request.body === "string" ? request.body : canonicalJson(request.body ?? null);
  return createHash("sha256").update(`${request.method} ${request.routeOptions.url} ${JSON.stringify(request.params)}\n${body}`).digest("hex");
}

/** Hours a key is remembered (IDEMPOTENCY_KEY_RETENTION_HOURS); a record older than that is as if gone. */
const retentionHours = (request: FastifyRequest) => request.server.config.IDEMPOTENCY_KEY_RETENTION_HOURS;

/** A response stored earlier under this key, or null. A different request under the same key is a 422. */
export async function findStoredResponse(pool: pg.Pool, request: FastifyRequest, key: string): Promise<StoredResponse | null> {
  const r = await pool.query<{ request_hash: string; status_code: number; response_body: unknown }>(
    `SELECT request_hash, status_code, response_body FROM idempotency_record
     WHERE api_key_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)`,
    [request.apiKey!.id, key, retentionHours(request)],
  );
  const row = r.rows[0];
  if (!row) return null;
  if (row.request_hash !== requestFingerprint(request))
    throw new ProblemError(422, "This Idempotency-Key was already used with a different request.", { errors: [{ path: "Idempotency-Key", message: "reused with a different request" }] });
  return { status: row.status_code, body: row.response_body };
}

/** A request with the same key committed first: the caller answers with its stored response. */
class IdempotencyKeyTaken extends Error {
  constructor() {
    super("Idempotency-Key taken by a request that committed first");
  }
}

/**
 * Stores the response in the caller's transaction, so the effect and the record commit together. A record
 * of the key past its retention (not swept yet) is replaced; a live one, a request with the same key that
 * committed first, fails this one (IdempotencyKeyTaken), so its effect rolls back.
 */
export async function storeResponse(client: pg.ClientBase | pg.Pool, request: FastifyRequest, key: string, response: StoredResponse): Promise<void> {
  const stored = await client.query(
    `INSERT INTO idempotency_record (api_key_id, key, route, request_hash, status_code, response_body) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (api_key_id, key) DO UPDATE
       SET route = EXCLUDED.route, request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
           response_body = EXCLUDED.response_body, created_at = now()
       WHERE idempotency_record.created_at <= now() - make_interval(hours => $7)`,
    [request.apiKey!.id, key, `${request.method} ${request.routeOptions.url}`, requestFingerprint(request), response.status, JSON.stringify(response.body), retentionHours(request)],
  );
  if (stored.rowCount === 0) throw new IdempotencyKeyTaken();
}

/** Deletes the records past their retention, a batch at a time (the created_at index finds them); answers how many. */
export async function deleteExpiredIdempotencyRecords(pool: pg.Pool, retentionHours: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const r = await pool.query(
      `DELETE FROM idempotency_record WHERE ctid IN (
         SELECT ctid FROM idempotency_record WHERE created_at <= now() - make_interval(hours => $1) LIMIT 10000)`,
      [retentionHours],
    );
    deleted += r.rowCount ?? 0;
    if ((r.rowCount ?? 0) < 10_000) return deleted;
  }
}

/** The insert of an idempotency record failed because a request with the same key got there first. */
const isKeyTaken = (err: unknown) => err instanceof IdempotencyKeyTaken;

export function replay(reply: FastifyReply, stored: StoredResponse) {
  return reply.code(stored.status).header("idempotent-replayed", "true").send(stored.body);
}

/**
 * Runs a write at most once per key. `work` gets a `record` callback to call inside its own
 * transaction; when two requests race with one key, the loser's transaction fails on the primary key
 * and it answers with the winner's stored response.
 *
 * `stillThere`, for a write to something that can be deleted later (a campaign's sends and outcomes),
 * runs before a stored response is replayed and throws that thing's 404 once it is gone: a retry then
 * answers as the same request without a key would, and as idempotentCreate's replays do, rather than
 * a success about something that no longer exists. The stored response itself is never rewritten.
 */
export async function idempotent(
  pool: pg.Pool,
  request: FastifyRequest,
  reply: FastifyReply,
  work: (record: ((client: pg.ClientBase, response: StoredResponse) => Promise<void>) | undefined) => Promise<StoredResponse>,
  stillThere?: () => Promise<unknown>,
) {
  const key = idempotencyKeyOf(request);
  const replayStored = async (stored: StoredResponse) => {
    await stillThere?.();
    return replay(reply, stored);
  };
  if (key) {
    const stored = await findStoredResponse(pool, request, key);
    if (stored) return replayStored(stored);
  }
  try {
    const response = await work(key ? (client, res) => storeResponse(client, request, key, res) : undefined);
    return reply.code(response.status).send(response.body);
  } catch (err) {
    if (key && isKeyTaken(err)) {
      const stored = await findStoredResponse(pool, request, key);
      if (stored) return replayStored(stored);
    }
    throw err;
  }
}

/**
 * Creates a resource at most once per key, for resources whose state moves on after the create (a
 * campaign, assigned by a job). The record keeps only the created resource's id, written by `create` in
 * its own transaction; a replay answers `status` (201, or 202 for a resource a job completes) with the
 * resource as it is now (404 once deleted). When two requests race with one key, the loser's
 * transaction fails on the record's key, so nothing of it stays, and it answers with the winner's resource.
 */
export async function idempotentCreate(
  pool: pg.Pool,
  request: FastifyRequest,
  reply: FastifyReply,
  create: (record: ((client: pg.ClientBase, id: string) => Promise<void>) | undefined) => Promise<string>,
  render: (id: string) => Promise<{ body: unknown; location: string }>,
  status: 201 | 202 = 201,
) {
  const key = idempotencyKeyOf(request);
  const answer = async (id: string, replayed: boolean) => {
    const r = await render(id);
    if (replayed) reply.header("idempotent-replayed", "true");
    return reply.code(status).header("location", r.location).send(r.body);
  };
  const storedId = async () => {
    const stored = key ? await findStoredResponse(pool, request, key) : null;
    return stored ? (stored.body as { id: string }).id : null;
  };
  const earlier = await storedId();
  if (earlier) return answer(earlier, true);
  try {
    const id = await create(key ? (client, created) => storeResponse(client, request, key, { status, body: { id: created } }) : undefined);
    return await answer(id, false);
  } catch (err) {
    const winner = key && isKeyTaken(err) ? await storedId() : null;
    if (winner) return answer(winner, true);
    throw err;
  }
}
