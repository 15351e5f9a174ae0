import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { getRun, listRuns, requestRun, runSchema } from "../activation/runs.js";
import { getFactRecord } from "../facts/facts.js";
import { findStoredResponse, idempotencyKeyHeaders, idempotencyKeyOf, replay, storeResponse } from "../http/idempotency.js";
import { pageQuerySchema, pageSchema } from "../http/pagination.js";
import { LOCATION_HEADER } from "../http/openapi.js";
import { problemAnswers } from "../http/problem.js";
import { noBodyMeansNoOptions } from "../http/validation.js";
import { factParams } from "./facts.js";

const runRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    "/facts/:name/runs",
    {
      schema: {
        tags: ["processing"],
        summary: "Process a fact through a date (a queued job)",
        description:
          "Recomputes from the earliest date late data changed, or the day after the watermark, through `through` (default: the latest " +
          "activity date, or the watermark when that is later). A request for the same date while such a run is queued or running joins it (200) " +
          "instead of starting another. `through` may not be later than the last date an event can have (today in the fact's timezone, plus the " +
          "day events may run ahead): 400. Honors `Idempotency-Key`.",
        params: factParams,
        headers: idempotencyKeyHeaders,
        body: z.object({ through: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date YYYY-MM-DD").optional() }).strict().default({}),
        response: { 200: runSchema, 202: runSchema, ...problemAnswers(404, 409, 422) },
        "x-response-headers": { 200: { Location: LOCATION_HEADER }, 202: { Location: LOCATION_HEADER } },
      },
      // No body: the default `through` above.
      preValidation: noBodyMeansNoOptions,
    },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      if (key) {
        const stored = await findStoredResponse(app.db.pool, req, key);
        if (stored) {
          // Once the fact is deleted (its runs with it), a retry answers its 404, as the same request
          // without a key does, not a run that no longer exists.
          await getFactRecord(app.ctx, req.params.name);
          // The run's URL, as the first answer gave it.
          return replay(reply.header("location", `/v1/runs/${(stored.body as { id: string }).id}`), stored);
        }
      }
      const fact = await getFactRecord(app.ctx, req.params.name);
      const { run, joined } = await requestRun(app.ctx, fact, req.body?.through);
      const status = joined ? 200 : 202;
      // Stored after the fact: a retry with the key replays this answer; the run itself is joined anyway.
      if (key) await storeResponse(app.db.pool, req, key, { status, body: run }).catch(() => {});
      return reply.code(status).header("location", `/v1/runs/${run.id}`).send(run);
    },
  );

  app.get(
    "/runs/:id",
    { schema: { tags: ["processing"], summary: "A processing run", params: z.object({ id: z.string().uuid() }), response: { 200: runSchema, ...problemAnswers(404) } } },
    async (req) => getRun(app.ctx, req.params.id),
  );

  app.get(
    "/facts/:name/runs",
    {
      schema: {
        tags: ["processing"],
        summary: "A fact's processing runs, newest first",
        params: factParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(runSchema), ...problemAnswers(404) },
      },
    },
    async (req) => listRuns(app.ctx, await getFactRecord(app.ctx, req.params.name), req.query),
  );
};
export default runRoutes;
