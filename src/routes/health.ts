import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";

const readySchema = z.object({ status: z.enum(["ready", "unavailable"]), postgres: z.boolean(), redis: z.boolean() });

/** Liveness and readiness; no key needed (load balancers and orchestrators call them). */
const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get("/health", { schema: { tags: ["health"], summary: "The process is up", response: { 200: z.object({ status: z.literal("ok") }) } } }, async () => ({
    status: "ok" as const,
  }));

  app.get(
    "/ready",
    { schema: { tags: ["health"], summary: "PostgreSQL and Redis are reachable", response: { 200: readySchema, 503: readySchema.describe("Unavailable: PostgreSQL or Redis cannot be reached (each named)") } } },
    async (_req, reply) => {
      const [postgres, redis] = await Promise.all([
        app.db.pool
          .query("SELECT 1")
          .then(() => true)
          .catch(() => false),
        app.queues.isReachable(),
      ]);
      const ok = postgres && redis;
      return reply.code(ok ? 200 : 503).send({ status: ok ? "ready" : "unavailable", postgres, redis });
    },
  );
};
export default healthRoutes;
