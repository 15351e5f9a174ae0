import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  assignmentRowSchema, assignmentsExport, assignmentsPage, campaignSchema, createCampaign, createCampaignSchema, deleteCampaign, getCampaign,
  getCampaignRecord, listCampaigns, updateCampaign, updateCampaignSchema,
} from "../campaigns/campaigns.js";
import { MAX_BATCH, outcomeSchema, recordOutcomes, recordSends, sendSchema } from "../campaigns/recording.js";
import { campaignResultSchema, getCampaignResults } from "../campaigns/results.js";
import { retryCampaignAssignment } from "../campaigns/assigning.js";
import { controlGroupBodySchema, controlGroupSchema, getControlGroup, putControlGroup } from "../campaigns/control-group.js";
import { exportFormatOf, pageOrExport, sendExport } from "../http/export.js";
import { idempotencyKeyHeaders, idempotent, idempotentCreate } from "../http/idempotency.js";
import { pageQuerySchema, pageSchema } from "../http/pagination.js";
import { LOCATION_HEADER } from "../http/openapi.js";
import { spreadsheetSafeQuery } from "../http/spreadsheet-safe-csv.js";
import { problemAnswers } from "../http/problem.js";
import { bodyValidatedInHandler } from "../http/validation.js";

const idParams = z.object({ id: z.string().uuid() });
const BATCH_BODY_BYTES = 5 * 1024 * 1024;
const batchResult = z
  .object({ received: z.number().int(), inserted: z.number().int(), duplicates: z.number().int().describe("Already recorded: nothing changed for them") })
  .meta({ id: "CampaignBatchResult" });
const outcomeBatchResult = batchResult
  .extend({
    conflicting: z
      .number()
      .int()
      .describe("Recorded before with other values (user, name, occurred_at or value), or retracted: not stored, the stored record stands"),
    conflicts: z
      .array(z.object({ index: z.number().int(), path: z.string(), message: z.string() }))
      .describe("The conflicting items (first 100), by index and path"),
  })
  .meta({ id: "CampaignOutcomeBatchResult" });
// The 409 of a campaign whose assignment job is running says when to ask again.
const retryWhileAssigning = {
  "Retry-After": { description: "When the campaign is being assigned: seconds to wait before asking again", schema: { type: "integer" as const } },
};

const campaignRoutes: FastifyPluginAsyncZod = async (app) => {
  // What a create or a retry answers (202): the campaign as it is now, and where to follow it.
  const renderCampaign = async (id: string) => ({ body: await getCampaign(app.ctx, id), location: `/v1/campaigns/${id}` });

  app.post(
    "/campaigns",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Create a campaign on a list: a job computes and freezes its holdout split (202)",
        description:
          "Every member of the materialization is assigned by `bucket = first 4 bytes of sha256(salt + \":\" + user_id) (big-endian) mod 10000`; " +
          "control when `bucket < holdout_percent × 100`. Members of the global control group (`PUT /v1/control-group`) are held out as `global_control`. " +
          "The campaign is launched once its launch_date has come or once its assignments were pulled, or sends or outcomes recorded: " +
          "materialization_id, holdout_percent, salt and launch_date are then immutable. " +
          "Assigning a large list takes seconds, so it is a job: the answer is 202 with the campaign, status `assigning`, and a `Location` to follow it " +
          "until status is `ready` (or `failed`, with assignment_error). Until then its assignments, sends, outcomes and results answer 409. " +
          "With an `Idempotency-Key`, a retried request creates nothing more and answers with the campaign the first one created (`idempotent-replayed: true`).",
        body: createCampaignSchema,
        headers: idempotencyKeyHeaders,
        response: { 202: campaignSchema, ...problemAnswers(404, 409, 422) },
        "x-response-headers": { 202: { Location: LOCATION_HEADER } },
      },
    },
    async (req, reply) =>
      idempotentCreate(
        app.db.pool,
        req,
        reply,
        async (record) => (await createCampaign(app.ctx, req.body, record)).id,
        renderCampaign,
        202,
      ),
  );

  app.get(
    "/campaigns",
    { schema: { tags: ["campaigns"], summary: "List campaigns, newest first", querystring: pageQuerySchema, response: { 200: pageSchema(campaignSchema) } } },
    async (req) => listCampaigns(app.ctx, req.query),
  );

  app.get(
    "/campaigns/:id",
    { schema: { tags: ["campaigns"], summary: "A campaign: goal, split, counts, window and whether it has launched", params: idParams, response: { 200: campaignSchema, ...problemAnswers(404) } } },
    async (req) => getCampaign(app.ctx, req.params.id),
  );

  app.patch(
    "/campaigns/:id",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Change a campaign (assignment fields only before launch: 409 after)",
        description:
          "Name and goal change at once (200). Changing materialization_id, holdout_percent, salt or launch_date before launch has a job recompute " +
          "the frozen assignments: the answer is 202 with the campaign `assigning` and the change in pending_changes; the job applies the fields " +
          "with the new assignments, or, if it fails (the list was deleted, or the campaign launched meanwhile), leaves the campaign as it was " +
          "with the reason in assignment_error. While a campaign is assigning, changes answer 409.",
        params: idParams,
        body: updateCampaignSchema,
        response: { 200: campaignSchema, 202: campaignSchema, ...problemAnswers(404, 409) },
        "x-response-headers": { 202: { Location: LOCATION_HEADER }, 409: retryWhileAssigning },
      },
    },
    async (req, reply) => {
      const { campaign, queued } = await updateCampaign(app.ctx, req.params.id, req.body);
      if (queued === null) return reply.code(200).send(campaign);
      return reply.code(202).header("location", `/v1/campaigns/${campaign.id}`).send(campaign);
    },
  );

  app.post(
    "/campaigns/:id/retry-assignment",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Try a failed campaign's assignment again",
        description:
          "For a campaign whose status is `failed` (its first assignment could not be made): queues the assignment job again with the campaign's " +
          "fields as they are, and answers 202 with the campaign `assigning`. 409 when the campaign is assigning or ready (a ready campaign is " +
          "reassigned by a PATCH of an assignment field). Honors `Idempotency-Key`: a replay answers 202 with the campaign as it is now.",
        params: idParams,
        headers: idempotencyKeyHeaders,
        response: { 202: campaignSchema, ...problemAnswers(404, 409, 422) },
        "x-response-headers": { 202: { Location: LOCATION_HEADER }, 409: retryWhileAssigning },
      },
    },
    async (req, reply) =>
      idempotentCreate(
        app.db.pool, req, reply,
        async (record) => {
          await retryCampaignAssignment(app.ctx, req.params.id, record && ((tx) => record(tx, req.params.id)));
          return req.params.id;
        },
        renderCampaign,
        202,
      ),
  );

  app.delete(
    "/campaigns/:id",
    { schema: { tags: ["campaigns"], summary: "Delete a campaign with its assignments, sends, outcomes and results", params: idParams, response: { 204: z.null(), ...problemAnswers(404) } } },
    async (req, reply) => {
      await deleteCampaign(app.ctx, req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/campaigns/:id/assignments",
    {
      schema: {
        tags: ["campaigns"],
        summary: "The frozen assignments (what a CRM pulls); pulling launches the campaign",
        description:
          "Paged by user; send `Accept: text/csv` or `Accept: application/x-ndjson` to stream every row. Control members come with action `hold_out`: " +
          "they are on record as held out (they would have been sent), and results count every assigned user in its arm.",
        params: idParams,
        querystring: pageQuerySchema.extend({ group: z.enum(["treatment", "control", "global_control"]).optional().describe("Only one arm"), ...spreadsheetSafeQuery }),
        response: {
          ...problemAnswers(404, 409),
          ...pageOrExport(
            z.object({
              campaign_id: z.string().uuid(),
              counts: z.object({ treatment: z.number().int(), control: z.number().int(), global_control: z.number().int(), total: z.number().int() }),
              data: z.array(assignmentRowSchema),
              next_cursor: z.string().nullable(),
            }),
            assignmentRowSchema,
            "the campaign's assignments",
          ),
        },
        "x-response-headers": { 409: retryWhileAssigning },
      },
    },
    async (req, reply) => {
      const format = exportFormatOf(req);
      if (format)
        return sendExport(reply, format, await assignmentsExport(app.ctx, req.params.id, req.query.group, format), `assignments-${req.params.id}${req.query.group ? `-${req.query.group}` : ""}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return assignmentsPage(app.ctx, req.params.id, req.query);
    },
  );

  app.post(
    "/campaigns/:id/sends",
    {
      bodyLimit: BATCH_BODY_BYTES,
      schema: {
        tags: ["campaigns"],
        summary: `Record sends (≤ ${MAX_BATCH.toLocaleString("en-US")} per request), idempotent per (user, channel, status)`,
        description:
          "The batch is stored whole or not at all: a bad item, or a user in control, in the global control group or not in the list, rejects it with 400 " +
          "naming each (index, path, reason; first 100). Honors `Idempotency-Key`.",
        params: idParams,
        headers: idempotencyKeyHeaders,
        body: z.object({ sends: z.array(sendSchema).max(MAX_BATCH) }).strict(),
        response: { 200: batchResult, ...problemAnswers(404, 409, 422) },
        "x-response-headers": { 409: retryWhileAssigning },
      },
      validatorCompiler: bodyValidatedInHandler,
    },
    async (req, reply) =>
      idempotent(app.db.pool, req, reply, async (record) => ({ status: 200, body: await recordSends(app.ctx, req.params.id, req.body, record) }), () => getCampaignRecord(app.ctx, req.params.id)),
  );

  app.post(
    "/campaigns/:id/outcomes",
    {
      bodyLimit: BATCH_BODY_BYTES,
      schema: {
        tags: ["campaigns"],
        summary: `Record outcomes (conversions the CRM knows; ≤ ${MAX_BATCH.toLocaleString("en-US")} per request), idempotent by outcome_id`,
        description:
          "Outcomes of users of any arm are welcome; a user not assigned in the campaign rejects the batch with 400 naming each. Honors `Idempotency-Key`. " +
          "An outcome is corrected with PUT and retracted with DELETE at `/v1/campaigns/{id}/outcomes/{outcome_id}`, never by recording it again.",
        params: idParams,
        headers: idempotencyKeyHeaders,
        body: z.object({ outcomes: z.array(outcomeSchema).max(MAX_BATCH) }).strict(),
        response: { 200: outcomeBatchResult, ...problemAnswers(404, 409, 422) },
        "x-response-headers": { 409: retryWhileAssigning },
      },
      validatorCompiler: bodyValidatedInHandler,
    },
    async (req, reply) =>
      idempotent(app.db.pool, req, reply, async (record) => ({ status: 200, body: await recordOutcomes(app.ctx, req.params.id, req.body, record) }), () => getCampaignRecord(app.ctx, req.params.id)),
  );

  app.get(
    "/campaigns/:id/results",
    {
      schema: {
        tags: ["campaigns"],
        summary: "Lift of the goal metric and of each outcome, with CUPED, SRM check, window completeness, funnel and breakdowns",
        description:
          "Recomputed by a job after each processing run of the goal fact and after sends and outcomes; this returns the stored results " +
          "(computed now the first time, or with `refresh=true`).",
        params: idParams,
        querystring: z.strictObject({ refresh: z.enum(["true", "false"]).optional().describe("Recompute now instead of returning the stored results") }),
        response: { 200: campaignResultSchema, ...problemAnswers(404, 409) },
        "x-response-headers": { 409: retryWhileAssigning },
      },
    },
    async (req) => getCampaignResults(app.ctx, req.params.id, { refresh: req.query.refresh === "true" }),
  );

  app.get(
    "/control-group",
    { schema: { tags: ["campaigns"], summary: "The global control group held out of every new campaign", response: { 200: controlGroupSchema } } },
    async () => getControlGroup(app.ctx),
  );

  app.put(
    "/control-group",
    {
      config: { scope: "admin" },
      schema: {
        tags: ["campaigns"],
        summary: "Set the global control group (percent 0 turns it off); existing campaigns keep their assignments",
        description: "Members are users whose bucket under the group's own salt is below percent × 100 (the campaign hash with another salt).",
        body: controlGroupBodySchema,
        response: { 200: controlGroupSchema },
      },
    },
    async (req) => putControlGroup(app.ctx, req.body),
  );
};
export default campaignRoutes;
