import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { createWebhook, createWebhookSchema, deleteWebhook, deliverySchema, getWebhook, listDeliveries, listWebhooks, webhookSchema } from "../audiences/webhooks.js";
import { pageQuerySchema, pageSchema } from "../http/pagination.js";
import { LOCATION_HEADER } from "../http/openapi.js";
import { problemAnswers } from "../http/problem.js";

const idParams = z.object({ id: z.string().uuid() });
// Webhooks send data out of the service: only admin keys manage them.
const admin = { scope: "admin" as const };

const webhookRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    "/webhooks",
    {
      config: admin,
      schema: {
        tags: ["webhooks"],
        summary: "Subscribe a URL to events",
        description:
          "Each delivery is a POST of JSON signed in the `x-aa-signature` header as `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" with the secret>`; " +
          "failed deliveries are retried with exponential backoff and logged. " +
          "The URL must reach a public address: one that is loopback, private, link-local (cloud metadata) or reserved is a 400 unless WEBHOOK_ALLOW_NETWORKS lists it, " +
          "and a name is checked on the addresses it resolves to at each delivery (a delivery to a refused address fails without being sent). Redirects are not followed.",
        body: createWebhookSchema,
        response: { 201: webhookSchema },
        "x-response-headers": { 201: { Location: LOCATION_HEADER } },
      },
    },
    async (req, reply) => {
      const webhook = await createWebhook(app.ctx, req.body);
      return reply.code(201).header("location", `/v1/webhooks/${webhook.id}`).send(webhook);
    },
  );
  app.get(
    "/webhooks",
    {
      config: admin,
      schema: { tags: ["webhooks"], summary: "List webhooks, oldest first", querystring: pageQuerySchema, response: { 200: pageSchema(webhookSchema) } },
    },
    async (req) => listWebhooks(app.ctx, req.query),
  );
  app.get(
    "/webhooks/:id",
    { config: admin, schema: { tags: ["webhooks"], summary: "A webhook", params: idParams, response: { 200: webhookSchema, ...problemAnswers(404) } } },
    async (req) => getWebhook(app.ctx, req.params.id),
  );
  app.delete(
    "/webhooks/:id",
    { config: admin, schema: { tags: ["webhooks"], summary: "Unsubscribe", params: idParams, response: { 204: z.null(), ...problemAnswers(404) } } },
    async (req, reply) => {
      await deleteWebhook(app.ctx, req.params.id);
      return reply.code(204).send(null);
    },
  );
  app.get(
    "/webhooks/:id/deliveries",
    {
      config: admin,
      schema: {
        tags: ["webhooks"],
        summary: "Delivery log, newest first",
        params: idParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(deliverySchema), ...problemAnswers(404) },
      },
    },
    async (req) => listDeliveries(app.ctx, req.params.id, req.query),
  );
};
export default webhookRoutes;
