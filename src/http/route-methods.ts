import type { FastifyInstance } from "fastify";
import { sendProblem } from "./problem.js";

/**
 * Tells a wrong method from a wrong path: the methods each registered route path answers, matched
 * against a request Fastify found no route for. A known path with another method is a 405 with
 * `Allow` (RFC 9110), not the 404 of a path that does not exist.
 */
export function answerUnmatchedRequests(app: FastifyInstance): void {
  const routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];
  app.addHook("onRoute", (route) => {
    const source = route.url
      .split("/")
      .map((part) => (part.startsWith(":") ? "[^/]+" : part === "*" ? ".*" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    const pattern = new RegExp(`^${source}/?$`);
    const existing = routes.find((r) => r.pattern.source === pattern.source);
    const methods = existing?.methods ?? new Set<string>();
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) methods.add(m);
    if (!existing) routes.push({ pattern, methods });
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split("?")[0]!;
    const allowed = new Set<string>();
    for (const r of routes) if (r.pattern.test(path)) for (const m of r.methods) allowed.add(m);
    if (allowed.size === 0 || allowed.has(req.method)) return sendProblem(reply, 404, `No route ${req.method} ${path}.`);
    const allow = [...allowed].sort().join(", ");
    return sendProblem(reply, 405, `${path} does not answer ${req.method}; it answers ${allow}.`, { headers: { allow } });
  });
}
