import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { isoDate } from "../http/formats.js";
import {
  audienceMemberSchema, changesExport, changesPage, deleteMaterialization, getMaterializationRecord, materializationSchema, materializationView, membersExport,
  membersPage,
} from "../audiences/materializations.js";
import { exportFormatOf, pageOrExport, sendExport } from "../http/export.js";
import { pageQuerySchema } from "../http/pagination.js";
import { spreadsheetSafeQuery } from "../http/spreadsheet-safe-csv.js";
import { problemAnswers } from "../http/problem.js";

const idParams = z.object({ id: z.string().uuid() });
const streamNote = " Send `Accept: text/csv` or `Accept: application/x-ndjson` to stream every row instead of a page.";

const changedMember = z.object({ user_id: z.string() }).meta({ id: "AudienceChange" });

const materializationRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    "/materializations/:id",
    { schema: { tags: ["materializations"], summary: "A materialization: status, progress, member count, as_of, version", params: idParams, response: { 200: materializationSchema, ...problemAnswers(404) } } },
    async (req) => materializationView(await getMaterializationRecord(app.ctx, req.params.id)),
  );

  app.delete(
    "/materializations/:id",
    { schema: { tags: ["materializations"], summary: "Delete a finished materialization and its members", params: idParams, response: { 204: z.null(), ...problemAnswers(404, 409) } } },
    async (req, reply) => {
      await deleteMaterialization(app.ctx, req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/materializations/:id/members",
    {
      schema: {
        tags: ["materializations"],
        summary: "The frozen members with their status columns at as_of",
        description: streamNote.trim(),
        params: idParams,
        querystring: pageQuerySchema.extend(spreadsheetSafeQuery),
        response: {
          ...problemAnswers(404, 409),
          ...pageOrExport(
            z.object({ data: z.array(audienceMemberSchema), next_cursor: z.string().nullable(), as_of: isoDate, member_count: z.number().int().nullable() }),
            audienceMemberSchema,
            "the list's members",
          ),
        },
      },
    },
    async (req, reply) => {
      const format = exportFormatOf(req);
      if (format) return sendExport(reply, format, await membersExport(app.ctx, req.params.id, format), `members-${req.params.id}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return membersPage(app.ctx, req.params.id, req.query);
    },
  );

  app.get(
    "/materializations/:id/changes",
    {
      schema: {
        tags: ["materializations"],
        summary: "Who entered and who exited since another materialization of the same audience",
        description: "Counts of entered, exited and stayed members, and the users of one kind, paged." + streamNote,
        params: idParams,
        querystring: pageQuerySchema.extend({ since: z.string().uuid(), kind: z.enum(["entered", "exited"]).default("entered"), ...spreadsheetSafeQuery }),
        response: {
          ...problemAnswers(404, 409),
          ...pageOrExport(
            z.object({
              since: z.string().uuid(),
              current: z.string().uuid(),
              counts: z.object({ entered: z.number().int(), exited: z.number().int(), stayed: z.number().int() }),
              kind: z.enum(["entered", "exited"]),
              data: z.array(changedMember),
              next_cursor: z.string().nullable(),
            }),
            changedMember,
            "the users who entered (or exited)",
          ),
        },
      },
    },
    async (req, reply) => {
      const format = exportFormatOf(req);
      if (format)
        return sendExport(reply, format, await changesExport(app.ctx, req.params.id, req.query.since, req.query.kind, format), `${req.query.kind}-${req.params.id}`, { spreadsheetSafe: req.query.spreadsheet_safe });
      return changesPage(app.ctx, req.params.id, req.query);
    },
  );
};
export default materializationRoutes;
