import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { isoDate } from "../http/formats.js";
import {
  audienceSchema, createAudience, deleteAudience, getAudienceRecord, audienceView, listAudiences, listVersions, previewDefinition, updateAudience,
  versionSchema,
} from "../audiences/audiences.js";
import { definitionDoc } from "../audiences/definition.js";
import { refreshSchema } from "../audiences/refresh.js";
import { audienceMemberSchema, listMaterializations, materializationSchema, requestMaterialization } from "../audiences/materializations.js";
import { GROWTH_STATES, STATES } from "../activation/layer-queries.js";
import { pageQuerySchema, pageSchema } from "../http/pagination.js";
import { LOCATION_HEADER } from "../http/openapi.js";
import { ProblemError, problemAnswers } from "../http/problem.js";
import { bodyValidatedInHandler, noBodyMeansNoOptions } from "../http/validation.js";

const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date YYYY-MM-DD");
const idParams = z.object({ id: z.string().uuid() });

// Bodies carrying a filter tree are checked by the definition validator, which names exact paths.
const documentedOnly = bodyValidatedInHandler;

function bodyObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ProblemError(400, "The body must be a JSON object.", { errors: [{ path: "body", message: "expected an object" }] });
  return body as Record<string, unknown>;
}

const previewResult = z
  .object({
    count: z.number().int(),
    by_state: z.partialRecord(z.enum(STATES), z.number().int()).describe("Members per state (states with none are left out)"),
    by_growth_state: z.partialRecord(z.enum(GROWTH_STATES), z.number().int()).describe("Day grain only (empty otherwise); growth states with none are left out"),
    sample: z.array(audienceMemberSchema).describe("Up to 20 members with their status columns"),
    as_of: isoDate,
    grain: z.enum(["day", "week", "month"]),
    took_ms: z.number(),
  })
  .meta({ id: "AudiencePreview" });

const audienceRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    "/audiences/preview",
    {
      schema: {
        tags: ["audiences"],
        summary: "Count an audience now: exact count, breakdown by state and growth state, a sample",
        body: z.object({ definition: definitionDoc, as_of: date.optional() }).strict(),
        response: { 200: previewResult, ...problemAnswers(409) },
      },
      validatorCompiler: documentedOnly,
      // A preview reads only; a read key may build audiences interactively.
      config: { scope: "read" },
    },
    async (req) => {
      const body = bodyObject(req.body);
      const extra = Object.keys(body).filter((k) => k !== "definition" && k !== "as_of");
      if (extra.length) throw new ProblemError(400, `Unknown field '${extra[0]}'.`, { errors: extra.map((k) => ({ path: k, message: "unknown field" })) });
      if (body.as_of !== undefined && (typeof body.as_of !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(body.as_of)))
        throw new ProblemError(400, "as_of must be a date (YYYY-MM-DD).", { errors: [{ path: "as_of", message: "invalid date" }] });
      // The counts and sample rows are JSON built by the engine's SQL; the serializer holds them to previewResult.
      return previewDefinition(app.ctx, body.definition, body.as_of as string | undefined) as Promise<z.output<typeof previewResult>>;
    },
  );

  app.post(
    "/audiences",
    {
      schema: {
        tags: ["audiences"],
        summary: "Save an audience (version 1)",
        body: definitionDoc.extend({ refresh: refreshSchema }),
        response: { 201: audienceSchema },
        "x-response-headers": { 201: { Location: LOCATION_HEADER } },
      },
      validatorCompiler: documentedOnly,
    },
    async (req, reply) => {
      const a = await createAudience(app.ctx, bodyObject(req.body));
      return reply.code(201).header("location", `/v1/audiences/${a.id}`).send(a);
    },
  );

  app.get(
    "/audiences",
    {
      schema: {
        tags: ["audiences"],
        summary: "List audiences, newest first",
        querystring: pageQuerySchema.extend({ fact: z.string().optional().describe("Only audiences reading this fact") }),
        response: { 200: pageSchema(audienceSchema) },
      },
    },
    async (req) => listAudiences(app.ctx, req.query),
  );

  app.get(
    "/audiences/:id",
    { schema: { tags: ["audiences"], summary: "An audience and its current version", params: idParams, response: { 200: audienceSchema, ...problemAnswers(404) } } },
    async (req) => audienceView(await getAudienceRecord(app.ctx, req.params.id)),
  );

  app.patch(
    "/audiences/:id",
    {
      schema: {
        tags: ["audiences"],
        summary: "Change an audience: any change of the definition makes a new version",
        params: idParams,
        body: definitionDoc.partial().extend({ refresh: refreshSchema }),
        response: { 200: audienceSchema, ...problemAnswers(404) },
      },
      validatorCompiler: documentedOnly,
    },
    async (req) => updateAudience(app.ctx, req.params.id, bodyObject(req.body)),
  );

  app.delete(
    "/audiences/:id",
    {
      schema: {
        tags: ["audiences"],
        summary: "Delete an audience (its finished materializations stay readable until deleted)",
        params: idParams,
        response: { 204: z.null(), ...problemAnswers(404) },
      },
    },
    async (req, reply) => {
      await deleteAudience(app.ctx, req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/audiences/:id/versions",
    {
      schema: {
        tags: ["audiences"],
        summary: "Every version of an audience's definition, newest first",
        params: idParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(versionSchema), ...problemAnswers(404) },
      },
    },
    async (req) => listVersions(app.ctx, req.params.id, req.query),
  );

  app.post(
    "/audiences/:id/materializations",
    {
      schema: {
        tags: ["materializations"],
        summary: "Freeze the audience's members as of a date (a queued job)",
        description:
          "`as_of` defaults to the watermark of the audience's fact (its processed_through) at request time, also when the POST has no body. " +
          "While an identical list (the audience's current version, the same `as_of`) is queued or running, the request joins it (200) instead of queueing another (202).",
        params: idParams,
        body: z.object({ as_of: date.optional() }).strict().default({}),
        response: { 200: materializationSchema, 202: materializationSchema, ...problemAnswers(404, 409) },
        "x-response-headers": { 200: { Location: LOCATION_HEADER }, 202: { Location: LOCATION_HEADER } },
      },
      // No body: as of the default date.
      preValidation: noBodyMeansNoOptions,
    },
    async (req, reply) => {
      const { materialization: m, joined } = await requestMaterialization(app.ctx, req.params.id, req.body?.as_of);
      return reply.code(joined ? 200 : 202).header("location", `/v1/materializations/${m.id}`).send(m);
    },
  );

  app.get(
    "/audiences/:id/materializations",
    {
      schema: {
        tags: ["materializations"],
        summary: "An audience's materializations, newest first",
        params: idParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(materializationSchema), ...problemAnswers(404) },
      },
    },
    async (req) => listMaterializations(app.ctx, req.params.id, req.query),
  );
};
export default audienceRoutes;
