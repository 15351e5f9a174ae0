import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { isoDate, isoInstant } from "../http/formats.js";
import {
  ACTIVE_STATES, GROWTH_STATES, STATES, TRANSITION_SEGMENTS, activationOfPeriod, statusColumnsShape, metricsRowSchema, contributionOf, coreActionsOf, exportActivation,
  exportFirstLast, exportStatus, firstLastOfDate, metricsOf, statusOfPeriod, userStatusTimeline,
} from "../activation/layer-queries.js";
import { GRAINS } from "../activation/periods.js";
import { userIdString } from "../facts/event-validation.js";
import { getFactRecord } from "../facts/facts.js";
import { exportFormatOf, pageOrExport, sendExport } from "../http/export.js";
import { pageQuerySchema } from "../http/pagination.js";
import { spreadsheetSafeQuery } from "../http/spreadsheet-safe-csv.js";
import { problemAnswers } from "../http/problem.js";
import { factParams } from "./facts.js";

const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date YYYY-MM-DD");
const grain = z.enum(GRAINS).default("day").describe("day, week (ISO, named by its Monday) or month");
// 404: no such fact; 409: a fact not processed yet, or a date beyond its watermark (processedPeriod).
const factLayerAnswers = problemAnswers(404, 409);
const streamNote = " Send `Accept: text/csv` or `Accept: application/x-ndjson` to stream every row instead of a page.";

const period = isoDate.describe("First day of the period");
const { user_id, ...statusColumns } = statusColumnsShape(period);
const statusRow = z
  .object({ user_id, period, ...statusColumns, growth_state: z.enum(GROWTH_STATES).optional().describe("Day grain only") })
  .meta({ id: "StatusRow" });
const activationRow = z
  .object({ user_id: z.string(), period, state: z.enum(ACTIVE_STATES), return_interval_periods: z.number().int().nullable() })
  .meta({ id: "ActivationRow" });
const firstLastRow = z
  .object({
    user_id: z.string(),
    snapshot_date: isoDate,
    first_active_date: isoDate,
    last_active_date: isoDate,
    first_event_at: isoInstant,
    last_event_at: isoInstant,
  })
  .meta({ id: "FirstLastRow" });
const contributionItem = z.object({ name: z.string(), base: z.number(), compare: z.number(), delta: z.number(), share: z.number().nullable() });
const contribution = z
  .object({
    fact: z.string(),
    grain: z.enum(GRAINS),
    base: z.object({ period, active: z.number(), period_complete: z.boolean() }),
    compare: z.object({ period, active: z.number(), period_complete: z.boolean() }),
    delta_active: z.number(),
    by_state: z.array(contributionItem),
    by_segment: z.array(contributionItem).describe("The five segments that end active: their deltas sum to delta_active"),
    outflow: z.object({ churned: contributionItem, segments: z.array(contributionItem) }),
  })
  .meta({ id: "Contribution" });

const pageOf = <T extends z.ZodType>(row: T, extra: z.ZodRawShape) => z.object({ data: z.array(row), next_cursor: z.string().nullable(), ...extra });

const layerRoutes: FastifyPluginAsyncZod = async (app) => {
  const fact = (name: string) => getFactRecord(app.ctx, name);

  app.get(
    "/facts/:name/first-last",
    {
      schema: {
        tags: ["activation layer"],
        summary: "The FirstLast snapshot of a date",
        description: "Each user's first and last active date and instants as of `date`." + streamNote,
        params: factParams,
        querystring: pageQuerySchema.extend({ date, user_id: userIdString.optional(), ...spreadsheetSafeQuery }),
        response: { ...factLayerAnswers, ...pageOrExport(pageOf(firstLastRow, { date: isoDate }), firstLastRow, "the users' FirstLast rows") },
      },
    },
    async (req, reply) => {
      const f = await fact(req.params.name);
      const format = exportFormatOf(req);
      if (format) return sendExport(reply, format, await exportFirstLast(app.ctx, f, req.query, format), `${f.name}-first-last-${req.query.date}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return firstLastOfDate(app.ctx, f, req.query);
    },
  );

  app.get(
    "/facts/:name/activation",
    {
      schema: {
        tags: ["activation layer"],
        summary: "Active users of a period: new, retained or reactivated, with the return interval",
        description: streamNote.trim(),
        params: factParams,
        querystring: pageQuerySchema.extend({ grain, period: date, state: z.enum(ACTIVE_STATES).optional(), ...spreadsheetSafeQuery }),
        response: { ...factLayerAnswers, ...pageOrExport(pageOf(activationRow, { period, period_complete: z.boolean() }), activationRow, "the period's active users") },
      },
    },
    async (req, reply) => {
      const f = await fact(req.params.name);
      const format = exportFormatOf(req);
      if (format) return sendExport(reply, format, await exportActivation(app.ctx, f, req.query, format), `${f.name}-activation-${req.query.grain}-${req.query.period}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return activationOfPeriod(app.ctx, f, req.query);
    },
  );

  app.get(
    "/facts/:name/status",
    {
      schema: {
        tags: ["activation layer"],
        summary: "Activation Status of every user in a period, inactive users included",
        description: "Every user whose first active period is on or before `period`." + streamNote,
        params: factParams,
        querystring: pageQuerySchema.extend({
          grain,
          period: date,
          state: z.enum(STATES).optional(),
          transition_segment: z.enum(TRANSITION_SEGMENTS).optional(),
          ...spreadsheetSafeQuery,
        }),
        response: { ...factLayerAnswers, ...pageOrExport(pageOf(statusRow, { period, period_complete: z.boolean() }), statusRow, "the users' status rows") },
      },
    },
    async (req, reply) => {
      const f = await fact(req.params.name);
      const format = exportFormatOf(req);
      if (format) return sendExport(reply, format, await exportStatus(app.ctx, f, req.query, format), `${f.name}-status-${req.query.grain}-${req.query.period}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return statusOfPeriod(app.ctx, f, req.query);
    },
  );

  app.get(
    "/facts/:name/users/:user_id/status",
    {
      schema: {
        tags: ["activation layer"],
        summary: "One user's status timeline",
        description: "user_id is URL-encoded (ids may contain `:`, `@`, `/` or spaces).",
        params: factParams.extend({ user_id: userIdString }),
        querystring: z.strictObject({ grain, from: date.optional(), to: date.optional() }),
        response: { 200: z.object({ user_id: z.string(), fact: z.string(), grain: z.enum(GRAINS), data: z.array(statusRow) }), ...factLayerAnswers },
      },
    },
    async (req) => userStatusTimeline(app.ctx, await fact(req.params.name), req.params.user_id, req.query),
  );

  app.get(
    "/facts/:name/metrics",
    {
      schema: {
        tags: ["metrics"],
        summary: "Every count of the spec, one row per period",
        params: factParams,
        querystring: z.strictObject({ grain, from: date.optional(), to: date.optional() }),
        response: { 200: z.object({ fact: z.string(), grain: z.enum(GRAINS), processed_through: isoDate, data: z.array(metricsRowSchema) }), ...factLayerAnswers },
      },
    },
    async (req) => metricsOf(app.ctx, await fact(req.params.name), req.query),
  );

  app.get(
    "/facts/:name/metrics/contribution",
    {
      schema: {
        tags: ["metrics"],
        summary: "Why active users moved between two periods",
        description: "The change in active users decomposed by state and by transition segment, with each part's share of the change.",
        params: factParams,
        querystring: z.strictObject({ grain, base: date, compare: date }),
        response: { 200: contribution, ...factLayerAnswers },
      },
    },
    async (req) => contributionOf(app.ctx, await fact(req.params.name), req.query),
  );

  app.get(
    "/services/:service/core-actions",
    {
      schema: {
        tags: ["metrics"],
        summary: "The metrics of every fact of one service side by side",
        description:
          "`from` and `to` are checked as for a fact's metrics (400 for an invalid date or `from` after `to`). The facts of a service are " +
          "processed apart, so each fact's rows end at its own watermark, its `processed_through`: a `to` beyond it is not refused as the " +
          "metrics of one fact refuse it (409), and a fact not processed yet comes with no rows.",
        params: z.object({ service: z.string().min(1).max(100) }),
        querystring: z.strictObject({ grain, from: date.optional(), to: date.optional() }),
        response: {
          200: z.object({
            service: z.string(),
            grain: z.enum(GRAINS),
            facts: z.array(z.object({ fact: z.string(), processed_through: isoDate.nullable(), data: z.array(metricsRowSchema) })),
          }),
          // 404: no fact belongs to the service; a fact's watermark is no 409 here (see the description).
          ...problemAnswers(404),
        },
      },
    },
    async (req) => coreActionsOf(app.ctx, req.params.service, req.query),
  );
};
export default layerRoutes;
