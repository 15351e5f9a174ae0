import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  correctOutcome, getOutcome, outcomeEtag, listOutcomes, outcomeCorrectionSchema, outcomeDetailSchema, outcomeListQuerySchema, outcomeParams,
  outcomeRecordSchema, retractOutcome,
} from "../campaigns/outcomes.js";
import { getCampaignRecord } from "../campaigns/campaigns.js";
import { idempotencyKeyHeaders, idempotent } from "../http/idempotency.js";
import { pageSchema } from "../http/pagination.js";
import { problemAnswers } from "../http/problem.js";
import { bodyValidatedInHandler } from "../http/validation.js";

/** A campaign's recorded outcomes, one by one: read, corrected, retracted (src/campaigns/outcomes.ts). */

const changeHeaders = idempotencyKeyHeaders.extend({
  "if-match": z.string().optional().describe('The ETag of the revision the change is based on ("3", as GET answers it): 412 when the outcome has changed since'),
});
const ETAG = { ETag: { description: "The outcome's current revision, for If-Match", required: true, schema: { type: "string" as const } } };
const ASSIGNING = "While the campaign is being assigned, 409 with `Retry-After`.";

const campaignOutcomeRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    "/campaigns/:id/outcomes",
    {
      schema: {
        tags: ["campaigns"],
        summary: "The recorded outcomes, by outcome_id, with their status (recorded, corrected, retracted) and revision",
        description: `Retracted outcomes are listed too (status \`retracted\`; the results no longer count them). ${ASSIGNING}`,
        params: z.object({ id: z.string().uuid() }),
        querystring: outcomeListQuerySchema,
        response: { 200: pageSchema(outcomeRecordSchema), ...problemAnswers(404, 409) },
      },
    },
    async (req) => listOutcomes(app.ctx, req.params.id, req.query),
  );

  app.get(
    "/campaigns/:id/outcomes/:outcome_id",
    {
      schema: {
        tags: ["campaigns"],
        summary: "One recorded outcome, with the revisions corrections replaced",
        description: ASSIGNING,
        params: outcomeParams,
        response: { 200: outcomeDetailSchema, ...problemAnswers(404, 409) },
        "x-response-headers": { 200: ETAG },
      },
    },
    async (req, reply) => {
      const outcome = await getOutcome(app.ctx, req.params.id, req.params.outcome_id);
      return reply.header("etag", outcomeEtag(outcome.revision)).send(outcome);
    },
  );

  app.put(
    "/campaigns/:id/outcomes/:outcome_id",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Correct a recorded outcome: its user, name, occurred_at and value are replaced",
        description:
          "For a refund (another value), a conversion dated or attributed wrongly. Checked as a recorded outcome is (400 naming the field; " +
          "the user must be assigned in the campaign); the outcome_id is the outcome's identity and does not change. A correction that changes " +
          "something keeps the replaced revision (see GET), bumps `revision`, sets `corrected_at`, makes the stored results stale and queues " +
          "their recomputation; the same values again change nothing. 404 for an outcome never recorded (record it with POST …/outcomes), " +
          `409 for a retracted one (a retraction is final). Honors \`Idempotency-Key\`. ${ASSIGNING}`,
        params: outcomeParams,
        headers: changeHeaders,
        body: outcomeCorrectionSchema,
        response: { 200: outcomeRecordSchema, ...problemAnswers(404, 409, 412, 422) },
        // A 412 names the current revision in its ETag too.
        "x-response-headers": { 412: ETAG },
      },
      validatorCompiler: bodyValidatedInHandler,
    },
    async (req, reply) =>
      idempotent(
        app.db.pool, req, reply,
        async (record) => ({
          status: 200,
          body: await correctOutcome(app.ctx, req.params.id, req.params.outcome_id, req.body, req.headers["if-match"], record),
        }),
        () => getCampaignRecord(app.ctx, req.params.id),
      ),
  );

  app.delete(
    "/campaigns/:id/outcomes/:outcome_id",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Retract a recorded outcome (a conversion recorded in error): the results stop counting it",
        description:
          "The outcome stays, with status `retracted` and `retracted_at`, and its outcome_id is never recorded again: a POST naming it lists it " +
          "under `conflicts` and stores nothing, so a late retry of the first report cannot bring it back (a conversion that counts after all " +
          "is recorded under a new id). Answers the retracted outcome; retracting it again changes nothing and answers the same. Makes the stored " +
          `results stale and queues their recomputation. Honors \`Idempotency-Key\`. ${ASSIGNING}`,
        params: outcomeParams,
        headers: changeHeaders,
        response: { 200: outcomeRecordSchema, ...problemAnswers(404, 409, 412, 422) },
        // A 412 names the current revision in its ETag too.
        "x-response-headers": { 412: ETAG },
      },
    },
    async (req, reply) =>
      idempotent(
        app.db.pool, req, reply,
        async (record) => ({
          status: 200,
          body: await retractOutcome(app.ctx, req.params.id, req.params.outcome_id, req.headers["if-match"], record),
        }),
        () => getCampaignRecord(app.ctx, req.params.id),
      ),
  );
};
export default campaignOutcomeRoutes;
