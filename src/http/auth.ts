import fp from "fastify-plugin";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { authenticateApiKey, hasScope, type AuthenticatedKey, type Scope } from "../keys/api-keys.js";
import { documentResponseHeaders } from "./openapi.js";
import { documentProblemResponses, problemSchema, ProblemError } from "./problem.js";
import { countRequest, peekCount, secondsUntil } from "./rate-limit.js";

declare module "fastify" {
  interface FastifyRequest {
    apiKey: AuthenticatedKey | null;
  }
  interface FastifyContextConfig {
    /** The scope a route needs; by default GET/HEAD need `read` and every other method `write`. */
    scope?: Scope;
  }
}

function neededScope(request: FastifyRequest): Scope {
  const configured = request.routeOptions.config?.scope;
  if (configured) return configured;
  return request.method === "GET" || request.method === "HEAD" ? "read" : "write";
}

const isV1Url = (url: string) => url === "/v1" || url.startsWith("/v1/");

/**
 * Failed authentications counted by client address (request.ip, see TRUST_PROXY) in Redis, shared by
 * every API process: an address that presented AUTH_FAILURE_LIMIT unknown or revoked keys in the window
 * gets 429 for the rest of it, before any key of its is looked up. That stops guessing and keeps a
 * flood of bad keys off PostgreSQL. Without Redis nothing is counted (as for the per-key limit).
 */
function authFailureLimiter(app: FastifyInstance) {
  const { AUTH_FAILURE_LIMIT: limit, AUTH_FAILURE_WINDOW_MS: windowMs, REDIS_PREFIX: prefix } = app.config;
  const subject = (request: FastifyRequest) => `auth-failures:${request.ip}`;
  const redis = () => (limit > 0 && app.queues.connection.status === "ready" ? app.queues.connection : null);
  return {
    async refuseIfExhausted(request: FastifyRequest): Promise<void> {
      const r = redis();
      if (!r) return;
      const counted = await peekCount(r, prefix, subject(request), windowMs).catch((err: Error) => {
        request.log.warn({ err: err.message }, "failed authentications not checked: Redis did not answer");
        return null;
      });
      if (!counted || counted.count < limit) return;
      const retry = secondsUntil(counted.resetAtMs);
      throw new ProblemError(429, `Too many failed authentications from this address (${limit} in ${windowMs / 1000} s); retry in ${retry} s.`, {
        headers: { "retry-after": String(retry) },
      });
    },
    async recordFailure(request: FastifyRequest): Promise<void> {
      const r = redis();
      if (!r) return;
      await countRequest(r, prefix, subject(request), windowMs).catch((err: Error) => {
        request.log.warn({ err: err.message }, "failed authentication not counted: Redis did not answer");
      });
    },
  };
}

/** Every /v1 route needs `Authorization: Bearer <key>` with the route's scope. */
export default fp(
  async (app) => {
    app.decorateRequest("apiKey", null);
    const failures = authFailureLimiter(app);
    // The OpenAPI document tells the same story as the hook below: /v1 operations need the key (and
    // may answer 401/403), everything else (/health, /ready) needs none.
    app.addHook("onRoute", (route) => {
      const schema = route.schema as { hide?: boolean; security?: unknown; response?: Record<string, unknown> } | undefined;
      if (!schema || schema.hide) return;
      if (!isV1Url(route.url)) {
        schema.security ??= [];
        return;
      }
      schema.security ??= [{ apiKey: [] }];
      schema.response = { 401: problemSchema, 403: problemSchema, ...schema.response };
      documentProblemResponses(schema.response);
      documentResponseHeaders(schema, [401], { "WWW-Authenticate": { description: "The Bearer challenge", required: true, schema: { type: "string" } } });
    });
    app.addHook("onRequest", async (request) => {
      // Decided by the route that matched, not the raw URL: `/%761/facts` reaches `/v1/facts` too.
      // Unknown routes (no pattern) answer 404, not 401: nothing to protect there.
      const route = request.routeOptions.url;
      if (!route || !isV1Url(route)) return;
      const header = request.headers.authorization;
      const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      const challenge = { headers: { "www-authenticate": 'Bearer realm="activation-audiences"' } };
      if (!match) throw new ProblemError(401, "An API key is required: send `Authorization: Bearer <key>`.", challenge);
      await failures.refuseIfExhausted(request);
      const key = await authenticateApiKey(app.db.prisma, match[1]!);
      if (!key) {
        await failures.recordFailure(request);
        throw new ProblemError(401, "The API key is not valid or has been revoked.", challenge);
      }
      const scope = neededScope(request);
      if (!hasScope(key, scope)) throw new ProblemError(403, `This API key lacks the '${scope}' scope this route needs.`);
      request.apiKey = key;
    });
  },
  { name: "auth", dependencies: ["context"] },
);
