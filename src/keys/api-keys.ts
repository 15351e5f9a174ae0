import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import type { PrismaClientOrTransaction } from "../db/client.js";

export const SCOPES = ["read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKeySummary {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const KEY_PREFIX = "aak_";
/** How much of a key is stored in clear (and listed), to tell keys apart. */
const STORED_PREFIX_LENGTH = 12;

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

function summarize(row: {
  id: string; name: string; prefix: string; scopes: string[]; createdAt: Date; lastUsedAt: Date | null; revokedAt: Date | null;
}): ApiKeySummary {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes as Scope[],
    created_at: row.createdAt.toISOString(),
    last_used_at: row.lastUsedAt?.toISOString() ?? null,
    revoked_at: row.revokedAt?.toISOString() ?? null,
  };
}

/** Creates a key; the plain key is returned once and only its sha256 is stored. */
export async function createApiKey(db: PrismaClientOrTransaction, input: { name: string; scopes: Scope[] }) {
  const name = input.name.trim();
  if (!name || name.length > 200) throw new Error("name must be 1–200 characters");
  const scopes = [...new Set(input.scopes)];
  if (scopes.length === 0) throw new Error("at least one scope is required");
  for (const s of scopes) if (!SCOPES.includes(s)) throw new Error(`unknown scope '${s}' (read, write, admin)`);
  const key = KEY_PREFIX + randomBytes(24).toString("base64url");
  const row = await db.apiKey.create({
    data: { id: randomUUID(), name, prefix: key.slice(0, STORED_PREFIX_LENGTH), hash: hashApiKey(key), scopes },
  });
  return { key, summary: summarize(row) };
}

export async function listApiKeys(db: PrismaClientOrTransaction): Promise<ApiKeySummary[]> {
  const rows = await db.apiKey.findMany({ orderBy: { createdAt: "asc" } });
  return rows.map(summarize);
}

/** The shortest prefix a revocation takes: the key's fixed start and 4 characters of it. */
export const MIN_REVOKE_PREFIX = KEY_PREFIX.length + 4;

/** A revocation whose prefix names more than one live key: nothing was revoked. */
export class AmbiguousKeyError extends Error {}

/**
 * Revokes one key, named by its id, the key itself, or a prefix of it (at least MIN_REVOKE_PREFIX
 * characters; `keys list` shows the stored prefix followed by "…", which is taken as it is). A prefix that
 * matches several live keys revokes none (AmbiguousKeyError). Returns how many keys it revoked (0 or 1).
 */
export async function revokeApiKey(db: PrismaClientOrTransaction, idKeyOrPrefix: string): Promise<number> {
  const given = idKeyOrPrefix.trim().replace(/…$/, "");
  const now = new Date();
  if (/^[0-9a-f-]{36}$/i.test(given)) return (await db.apiKey.updateMany({ where: { revokedAt: null, id: given }, data: { revokedAt: now } })).count;
  // Longer than any stored prefix: the key itself, found by its hash.
  if (given.length > STORED_PREFIX_LENGTH) return (await db.apiKey.updateMany({ where: { revokedAt: null, hash: hashApiKey(given) }, data: { revokedAt: now } })).count;
  if (given.length < MIN_REVOKE_PREFIX) throw new AmbiguousKeyError(`a prefix needs at least ${MIN_REVOKE_PREFIX} characters ('${KEY_PREFIX}' and 4 more)`);
  // Compared here, not with LIKE: '_' is a wildcard there, and base64url keys contain it.
  const live = await db.apiKey.findMany({ where: { revokedAt: null }, select: { id: true, prefix: true } });
  const matches = live.filter((k) => k.prefix.startsWith(given));
  if (matches.length > 1)
    throw new AmbiguousKeyError(`'${given}' matches ${matches.length} live keys (${matches.map((m) => `${m.prefix}…`).join(", ")}); give more of the key or its id`);
  if (matches.length === 0) return 0;
  return (await db.apiKey.updateMany({ where: { revokedAt: null, id: matches[0]!.id }, data: { revokedAt: now } })).count;
}

/** How precise `last_used_at` is: it is written at most once per this interval per key. */
export const LAST_USED_RESOLUTION_MS = 60_000;

export interface AuthenticatedKey {
  id: string;
  name: string;
  scopes: Scope[];
}

/** Finds the live key for a presented secret. The lookup is by hash; the final compare is constant-time. */
export async function authenticateApiKey(db: PrismaClientOrTransaction, presented: string): Promise<AuthenticatedKey | null> {
  if (!presented.startsWith(KEY_PREFIX) || presented.length > 200) return null;
  const hash = hashApiKey(presented);
  const row = await db.apiKey.findUnique({ where: { hash } });
  if (!row || row.revokedAt) return null;
  if (!timingSafeEqual(Buffer.from(row.hash, "hex"), Buffer.from(hash, "hex"))) return null;
  // At most one write per key and minute, however many requests it makes; the condition keeps
  // concurrent requests (and API processes) from all writing it.
  const staleBefore = new Date(Date.now() - LAST_USED_RESOLUTION_MS);
  if (!row.lastUsedAt || row.lastUsedAt < staleBefore)
    await db.apiKey.updateMany({ where: { id: row.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: staleBefore } }] }, data: { lastUsedAt: new Date() } });
  return { id: row.id, name: row.name, scopes: row.scopes as Scope[] };
}

export function hasScope(key: AuthenticatedKey, needed: Scope): boolean {
  return key.scopes.includes("admin") || key.scopes.includes(needed);
}
