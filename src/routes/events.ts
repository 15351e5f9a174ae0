import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { bodyValidatedInHandler } from "../http/validation.js";
import { z } from "zod";
import { isoDate } from "../http/formats.js";
import { getFactRecord } from "../facts/facts.js";
import { userIdString, validateBatch } from "../facts/event-validation.js";
import { idempotencyKeyHeaders, idempotent } from "../http/idempotency.js";
import { ndjsonOf } from "../http/openapi.js";
import { ProblemError, problemAnswers } from "../http/problem.js";
import { factParams } from "./facts.js";

export const MAX_EVENTS_PER_REQUEST = 10_000;
export const MAX_EVENTS_BODY_BYTES = 5 * 1024 * 1024;
const NDJSON_MEDIA_TYPE = "application/x-ndjson";

const eventSchema = z
  .object({
    user_id: z.union([userIdString, z.number().int()]).describe("Opaque user id of 1–256 characters (code points: an emoji is one); an integer becomes its decimal string"),
    occurred_at: z.string().describe("RFC 3339 timestamp with an offset or Z, e.g. 2026-03-01T09:30:00+09:00"),
  })
  .strict()
  .meta({ id: "Event" });

const ingestResultSchema = z
  .object({ accepted: z.number().int(), earliest_date: isoDate.nullable(), latest_date: isoDate.nullable() })
  .meta({ id: "IngestResult" });

/**
 * Splits an NDJSON body into parsed lines, each with its line's 0-based index in the body: blank
 * lines are no event but are counted, so an error names the line where it is in the client's file.
 */
function parseNdjson(body: string): { items: unknown[]; lineOf: number[]; notJson: Set<number> } {
  const items: unknown[] = [];
  const lineOf: number[] = [];
  const notJson = new Set<number>();
  const lines = body.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.endsWith("\r") ? lines[n]!.slice(0, -1) : lines[n]!;
    if (line.trim() === "") continue;
    lineOf.push(n);
    try {
      items.push(JSON.parse(line));
    } catch {
      notJson.add(n);
      items.push(undefined);
    }
  }
  return { items, lineOf, notJson };
}

/** The events array of a JSON body `{"events": [...]}`. */
function eventsOfJsonBody(body: unknown): unknown[] {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw new ProblemError(400, 'The body must be an object {"events": [...]}.', { errors: [{ path: "body", message: "expected an object" }] });
  const extra = Object.keys(body).filter((k) => k !== "events");
  if (extra.length) throw new ProblemError(400, `Unknown field '${extra[0]}'.`, { errors: extra.map((k) => ({ path: k, message: `unknown field '${k}'` })) });
  const events = (body as { events?: unknown }).events;
  if (!Array.isArray(events)) throw new ProblemError(400, "events must be an array.", { errors: [{ path: "events", message: "expected an array" }] });
  return events;
}

const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  app.addContentTypeParser(NDJSON_MEDIA_TYPE, { parseAs: "string", bodyLimit: MAX_EVENTS_BODY_BYTES }, (_req, body, done) => done(null, body));

  app.post(
    "/facts/:name/events",
    {
      bodyLimit: MAX_EVENTS_BODY_BYTES,
      schema: {
        tags: ["events"],
        summary: "Ingest a batch of events (JSON or NDJSON), atomically",
        description:
          `Up to ${MAX_EVENTS_PER_REQUEST} events or 5 MB per request. The batch is stored whole or not at all: any bad event ` +
          "rejects it with 400, naming each bad event's index and reason (first 100). Also accepts `application/x-ndjson`, " +
          "one event object per line; a bad line is named `line[i]`, i counting every line of the body from 0, blank lines " +
          "included (`line[i]` is line i + 1 of the file). Any other Content-Type, `text/plain` included, is a 415. " +
          "Honors `Idempotency-Key`.",
        params: factParams,
        headers: idempotencyKeyHeaders,
        body: {
          content: {
            "application/json": { schema: z.object({ events: z.array(eventSchema).max(MAX_EVENTS_PER_REQUEST) }).strict() },
            [NDJSON_MEDIA_TYPE]: { schema: ndjsonOf(eventSchema, `Up to ${MAX_EVENTS_PER_REQUEST} events; blank lines are skipped (and counted).`) },
          },
        },
        response: { 202: ingestResultSchema, ...problemAnswers(404, 422) },
      },
      // The body schemas document the API; events are validated below so every bad one is reported by index.
      validatorCompiler: bodyValidatedInHandler,
    },
    async (req, reply) => {
      const fact = await getFactRecord(app.ctx, req.params.name);
      // Told by the media type, not by the body's type: a JSON body that is a string is no NDJSON.
      const ndjson = req.mediaType === NDJSON_MEDIA_TYPE ? parseNdjson(req.body as unknown as string) : null;
      const items = ndjson ? ndjson.items : eventsOfJsonBody(req.body);
      if (items.length > MAX_EVENTS_PER_REQUEST)
        throw new ProblemError(413, `A request holds at most ${MAX_EVENTS_PER_REQUEST} events; this one has ${items.length}. Split it, or use the bulk loader.`);
      if (items.length === 0) throw new ProblemError(400, "The batch holds no events.", { errors: [{ path: "events", message: "at least one event is required" }] });

      const { events, errors, errorCount } = ndjson ? validateBatch(items, Date.now(), "line", (i) => ndjson.lineOf[i]!) : validateBatch(items, Date.now());
      if (errorCount > 0) {
        // validateBatch saw `undefined` for a line that is not JSON; say what is really wrong with it.
        if (ndjson) for (const e of errors) if (ndjson.notJson.has(e.index!)) e.message = "line is not valid JSON";
        const lineNote = ndjson ? " line[i] is line i + 1 of the body, blank lines included." : "";
        throw new ProblemError(400, `${errorCount} of ${items.length} events are invalid; nothing was stored.${lineNote}`, { errors, invalid_count: errorCount });
      }
      return idempotent(app.db.pool, req, reply, async (record) => {
        const result = await app.engine.ingestEvents({ id: fact.id, name: fact.name, timezone: fact.timezone }, events, async (client, res) => {
          await record?.(client, { status: 202, body: res });
        });
        return { status: 202, body: result };
      });
    },
  );
};
export default eventRoutes;
