import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { createFact, createFactSchema, deleteFact, factNameSchema, factSchema, getFact, listFacts, updateFact, updateFactSchema } from "../facts/facts.js";
import { pageQuerySchema, pageSchema } from "../http/pagination.js";
import { LOCATION_HEADER } from "../http/openapi.js";
import { problemAnswers } from "../http/problem.js";
import { DELETION_WAIT_MS } from "../facts/lifecycle-lock.js";

export const factParams = z.object({ name: factNameSchema });

const factRoutes: FastifyPluginAsyncZod = async (app) => {
  const ctx = () => app.ctx;

  app.post(
    "/facts",
    {
      schema: {
        tags: ["facts"],
        summary: "Define a fact (a core action)",
        body: createFactSchema,
        response: { 201: factSchema, ...problemAnswers(409) },
        "x-response-headers": { 201: { Location: LOCATION_HEADER } },
      },
    },
    async (req, reply) => reply.code(201).header("location", `/v1/facts/${req.body.name}`).send(await createFact(ctx(), req.body)),
  );

  app.get(
    "/facts",
    {
      schema: {
        tags: ["facts"],
        summary: "List facts",
        querystring: pageQuerySchema.extend({ service: z.string().max(100).optional() }),
        response: { 200: pageSchema(factSchema) },
      },
    },
    async (req) => listFacts(ctx(), req.query),
  );

  app.get(
    "/facts/:name",
    { schema: { tags: ["facts"], summary: "A fact, with its watermark and activity range", params: factParams, response: { 200: factSchema, ...problemAnswers(404) } } },
    async (req) => getFact(ctx(), req.params.name),
  );

  app.patch(
    "/facts/:name",
    {
      schema: {
        tags: ["facts"],
        summary: "Change a fact's description, service or (before any event) timezone",
        params: factParams,
        body: updateFactSchema,
        response: { 200: factSchema, ...problemAnswers(404, 409) },
      },
    },
    async (req) => updateFact(ctx(), req.params.name, req.body),
  );

  app.delete(
    "/facts/:name",
    {
      schema: {
        tags: ["facts"],
        summary: "Delete a fact and its data (409 while a run, an audience or a campaign's goal uses it)",
        description:
          "Waits for writers of the fact (an event batch, a bulk load, a run request, an audience or campaign change) to finish; " +
          `when they still write after ${DELETION_WAIT_MS / 1000} s (a bulk load), 409 with Retry-After and nothing is deleted.`,
        params: factParams,
        response: { 204: z.null(), ...problemAnswers(404, 409) },
        "x-response-headers": {
          409: { "Retry-After": { description: "When writers held the fact: seconds to wait before asking again", schema: { type: "integer" as const } } },
        },
      },
    },
    async (req, reply) => {
      await deleteFact(ctx(), req.params.name);
      return reply.code(204).send(null);
    },
  );
};
export default factRoutes;
