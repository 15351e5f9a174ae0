import fp from "fastify-plugin";
import type { FastifyRequest } from "fastify";
import { authenticateApiKey, hasScope, type AuthenticatedKey, type Scope } from "../keys/api-keys.js";
import { ProblemError } from "./problem.js";

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

/** Every /v1 route needs `Authorization: Bearer <key>` with the route's scope. */
export default fp(
  async (app) => {
    app.decorateRequest("apiKey", null);
    app.addHook("onRequest", async (request) => {
      if (!request.url.startsWith("/v1/") && request.url !== "/v1") return;
      // Unknown /v1 routes answer 404, not 401: nothing to protect there.
      if (!request.routeOptions.url) return;
      const header = request.headers.authorization;
      const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      const challenge = { headers: { "www-authenticate": 'Bearer realm="activation-audiences"' } };
      if (!match) throw new ProblemError(401, "An API key is required: send `Authorization: Bearer <key>`.", challenge);
      const key = await authenticateApiKey(app.db.prisma, match[1]!);
      if (!key) throw new ProblemError(401, "The API key is not valid or has been revoked.", challenge);
      const scope = neededScope(request);
      if (!hasScope(key, scope)) throw new ProblemError(403, `This API key lacks the '${scope}' scope this route needs.`);
      request.apiKey = key;
    });
  },
  { name: "auth", dependencies: ["context"] },
);
