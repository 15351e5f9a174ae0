import Fastify, { type FastifyServerOptions } from "fastify";
import type { DestinationStream } from "pino";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { contextPlugin, type AppContext } from "./context.js";
import authPlugin from "./http/auth.js";
import rateLimitPlugin from "./http/rate-limit.js";
import { problemErrorHandler } from "./http/problem.js";
import untrustedInputPlugin, { frameworkErrorHandler, MAX_PATH_PARAMETER_LENGTH } from "./http/untrusted-input.js";
import healthRoutes from "./routes/health.js";
import factRoutes from "./routes/facts.js";
import eventRoutes from "./routes/events.js";
import runRoutes from "./routes/runs.js";
import layerRoutes from "./routes/layer.js";
import audienceRoutes from "./routes/audiences.js";
import materializationRoutes from "./routes/materializations.js";
import { answerUnmatchedRequests } from "./http/route-methods.js";
import { documentCommonAnswers, openapiTransform, openapiTransformObject } from "./http/openapi.js";
import { emptyBodyIsNoBody, refuseUndeclaredQueryParameters } from "./http/validation.js";
import webhookRoutes from "./routes/webhooks.js";
import campaignRoutes from "./routes/campaigns.js";
import campaignOutcomeRoutes from "./routes/campaign-outcomes.js";
import consoleRoutes from "./routes/console.js";

export const API_VERSION = "0.1.0";

export function openapiDocument() {
  return {
    openapi: "3.1.0",
    info: {
      title: "activation-audiences",
      version: API_VERSION,
      description:
        "The activation layer (FirstLast, Activation, Activation Status and metrics per fact and grain) and the CRM audience API on top. " +
        "Every /v1 route needs `Authorization: Bearer <api key>`; errors are RFC 9457 problem+json.",
    },
    components: {
      securitySchemes: { apiKey: { type: "http" as const, scheme: "bearer", description: "An API key from `npm run cli -- keys create`" } },
    },
    security: [{ apiKey: [] }],
  };
}

/** Builds the application (no listen): plugins, routes, error handling. server.ts and the tests call it. */
export async function buildApp(context: AppContext, options: FastifyServerOptions & { logStream?: DestinationStream } = {}) {
  const { logStream, ...fastifyOptions } = options;
  const app = Fastify({
    logger: {
      level: context.config.LOG_LEVEL,
      redact: { paths: ["req.headers.authorization", "headers.authorization"], censor: "[redacted]" },
      // Where log lines go instead of stdout (tests read them back).
      ...(logStream ? { stream: logStream } : {}),
    },
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: MAX_PATH_PARAMETER_LENGTH },
    frameworkErrors: frameworkErrorHandler,
    // request.ip (the address failed authentications are counted by) from X-Forwarded-For only behind
    // the proxies TRUST_PROXY names; otherwise a client could pick its own address.
    trustProxy: context.config.TRUST_PROXY,
    // Bodies with __proto__ or constructor.prototype keys are parsed as plain JSON (own properties, no
    // prototype touched) so that the untrusted-input hook refuses them with the field named, before
    // any route sees them; Fastify's default would answer a bare "not valid JSON".
    onProtoPoisoning: "ignore",
    onConstructorPoisoning: "ignore",
    ...fastifyOptions,
  }).withTypeProvider<ZodTypeProvider>();

  // No route takes plain text: Fastify's default text/plain parser would hand routes a string body
  // (the event route would store it as NDJSON). Without it such a body is a 415 naming what is accepted.
  app.removeContentTypeParser("text/plain");
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(problemErrorHandler);
  answerUnmatchedRequests(app);
  refuseUndeclaredQueryParameters(app);
  emptyBodyIsNoBody(app);
  documentCommonAnswers(app);

  await app.register(contextPlugin, { context });
  await app.register(fastifySwagger, {
    openapi: openapiDocument(),
    transform: openapiTransform,
    transformObject: openapiTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });
  await app.register(authPlugin);
  await app.register(rateLimitPlugin);
  await app.register(untrustedInputPlugin);

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  await app.register(healthRoutes);
  await app.register(
    async (v1) => {
      await v1.register(factRoutes);
      await v1.register(eventRoutes);
      await v1.register(runRoutes);
      await v1.register(layerRoutes);
      await v1.register(audienceRoutes);
      await v1.register(materializationRoutes);
      await v1.register(webhookRoutes);
      await v1.register(campaignRoutes);
      await v1.register(campaignOutcomeRoutes);
    },
    { prefix: "/v1" },
  );
  await app.register(consoleRoutes);
  await app.ready();
  // A schema that cannot become OpenAPI fails here, at startup, not when someone opens /docs.
  app.swagger();
  return app;
}
export type App = Awaited<ReturnType<typeof buildApp>>;
