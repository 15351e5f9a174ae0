import fp from "fastify-plugin";
import type { Redis } from "ioredis";
import { documentResponseHeaders, RETRY_AFTER_HEADER } from "./openapi.js";
import { documentProblemResponses, problemSchema, ProblemError } from "./problem.js";

// INCR and the expiry in one step, so a counter never outlives its window (even if the process dies in between).
const COUNT_SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

export interface RateLimitCount {
  count: number;
  /** Epoch ms when the current window ends and the count starts again from zero. */
  resetAtMs: number;
}

/**
 * Counts one request of `subject` in the fixed window that contains `nowMs`. The counter lives in
 * Redis, so every API process sharing the Redis (and the prefix) shares the limit.
 */
export async function countRequest(redis: Redis, prefix: string, subject: string, windowMs: number, nowMs = Date.now()): Promise<RateLimitCount> {
  const w = fixedWindow(prefix, subject, windowMs, nowMs);
  return { count: Number(await redis.eval(COUNT_SCRIPT, 1, w.key, String(windowMs))), resetAtMs: w.resetAtMs };
}

/** The count of `subject` in the window that contains `nowMs`, without counting anything. */
export async function peekCount(redis: Redis, prefix: string, subject: string, windowMs: number, nowMs = Date.now()): Promise<RateLimitCount> {
  const w = fixedWindow(prefix, subject, windowMs, nowMs);
  return { count: Number((await redis.get(w.key)) ?? 0), resetAtMs: w.resetAtMs };
}

/** The Redis key of `subject`'s counter in the window that contains `nowMs`, and when that window ends. */
function fixedWindow(prefix: string, subject: string, windowMs: number, nowMs: number): { key: string; resetAtMs: number } {
  const window = Math.floor(nowMs / windowMs);
  return { key: `${prefix}:rate-limit:${subject}:${window}`, resetAtMs: (window + 1) * windowMs };
}

/** Seconds until `resetAtMs`, at least 1: what Retry-After says. */
export const secondsUntil = (resetAtMs: number) => Math.max(1, Math.ceil((resetAtMs - Date.now()) / 1000));

/**
 * Per-API-key rate limit on /v1 (RATE_LIMIT_MAX requests per RATE_LIMIT_WINDOW_MS): over it, 429
 * problem+json with Retry-After. Runs after authentication, so it counts keys, not addresses;
 * /health and /ready carry no key and are never limited. When Redis cannot be reached the request is
 * let through: an unavailable counter must not take the whole API down with it.
 */
export default fp(
  async (app) => {
    const { RATE_LIMIT_MAX: max, RATE_LIMIT_WINDOW_MS: windowMs, REDIS_PREFIX: prefix } = app.config;
    // Documented whatever the configuration, so the OpenAPI document does not depend on the environment.
    app.addHook("onRoute", (route) => {
      const schema = route.schema as { hide?: boolean; response?: Record<string, unknown> } | undefined;
      if (!schema || schema.hide || !(route.url === "/v1" || route.url.startsWith("/v1/"))) return;
      schema.response = { ...schema.response, 429: problemSchema };
      documentProblemResponses(schema.response);
      (schema.response[429] as { description: string }).description =
        "Too Many Requests: this API key used up its RATE_LIMIT_MAX requests of the window, or the client's address made " +
        "AUTH_FAILURE_LIMIT failed authentications in its window; the Retry-After header says in how many seconds to retry";
      documentResponseHeaders(schema, [429], { "Retry-After": RETRY_AFTER_HEADER });
    });
    if (max === 0) return;
    app.addHook("onRequest", async (request, reply) => {
      const key = request.apiKey;
      if (!key) return;
      const redis = app.queues.connection;
      if (redis.status !== "ready") return;
      let counted: RateLimitCount;
      try {
        counted = await countRequest(redis, prefix, key.id, windowMs);
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, "rate limit not counted: Redis did not answer");
        return;
      }
      const resetSeconds = secondsUntil(counted.resetAtMs);
      reply.header("x-ratelimit-limit", String(max));
      reply.header("x-ratelimit-remaining", String(Math.max(0, max - counted.count)));
      reply.header("x-ratelimit-reset", String(resetSeconds));
      if (counted.count > max)
        throw new ProblemError(429, `This API key made more than ${max} requests in ${windowMs / 1000} s; retry in ${resetSeconds} s.`, {
          headers: { "retry-after": String(resetSeconds) },
        });
    });
  },
  { name: "rate-limit", dependencies: ["context", "auth"] },
);
