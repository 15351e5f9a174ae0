import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { bodyValidatedInHandler } from "../http/validation.js";
import { z } from "zod";
import { getFactRecord } from "../facts/facts.js";
import { validateBatch, MAX_USER_ID_LENGTH } from "../facts/event-validation.js";
import { idempotent } from "../http/idempotency.js";
import { ProblemError, problemSchema } from "../http/problem.js";
import { factParams } from "./facts.js";

export const MAX_EVENTS_PER_REQUEST = 10_000;
export const MAX_EVENTS_BODY_BYTES = 5 * 1024 * 1024;
const NDJSON_MEDIA_TYPE = "application/x-ndjson";

const eventSchema = z
  .object({
    user_id: z.union([z.string().min(1).max(MAX_USER_ID_LENGTH), z.number().int()]).describe("Opaque user id; an integer becomes its decimal string"),
    occurred_at: z.string().describe("RFC 3339 timestamp with an offset or Z, e.g. 2026-03-01T09:30:00+09:00"),
  })
  .strict()
  .meta({ id: "Event" });

const ingestResultSchema = z
  .object({ accepted: z.number().int(), earliest_date: z.string().nullable(), latest_date: z.string().nullable() })
  .meta({ id: "IngestResult" });

/** Splits an NDJSON body into parsed lines; a line that is not JSON becomes an error at its index. */
function parseNdjson(body: string): { items: unknown[]; bad: Map<number, string> } {
  const items: unknown[] = [];
  const bad = new Map<number, string>();
  const lines = body.split("\n");
  for (const raw of lines) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") continue;
    try {
      items.push(JSON.parse(line));
    } catch {
      bad.set(items.length, "line is not valid JSON");
      items.push(undefined);
    }
  }
  return { items, bad };
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
          "one event object per line. Any other Content-Type, `text/plain` included, is a 415. Honors `Idempotency-Key`.",
        params: factParams,
        headers: z.object({ "idempotency-key": z.string().optional() }).passthrough(),
        body: z.object({ events: z.array(eventSchema).max(MAX_EVENTS_PER_REQUEST) }).strict(),
        response: { 202: ingestResultSchema, 400: problemSchema, 401: problemSchema, 403: problemSchema, 404: problemSchema, 413: problemSchema, 415: problemSchema, 422: problemSchema },
      },
      // The body schema documents the API; events are validated below so every bad one is reported by index.
      validatorCompiler: bodyValidatedInHandler,
    },
    async (req, reply) => {
      const fact = await getFactRecord(app.ctx, req.params.name);
      let items: unknown[];
      let pathOf: (i: number, f: string) => string;
      const parseErrors = new Map<number, string>();
      // Told by the media type, not by the body's type: a JSON body that is a string is no NDJSON.
      if (req.mediaType === NDJSON_MEDIA_TYPE) {
        const parsed = parseNdjson(req.body as unknown as string);
        items = parsed.items;
        for (const [i, m] of parsed.bad) parseErrors.set(i, m);
        pathOf = (i, f) => (f ? `line[${i}].${f}` : `line[${i}]`);
      } else {
        const body = req.body as unknown;
        if (body === null || typeof body !== "object" || Array.isArray(body))
          throw new ProblemError(400, 'The body must be an object {"events": [...]}.', { errors: [{ path: "body", message: "expected an object" }] });
        const extra = Object.keys(body).filter((k) => k !== "events");
        if (extra.length) throw new ProblemError(400, `Unknown field '${extra[0]}'.`, { errors: extra.map((k) => ({ path: k, message: `unknown field '${k}'` })) });
        const events = (body as { events?: unknown }).events;
        if (!Array.isArray(events)) throw new ProblemError(400, "events must be an array.", { errors: [{ path: "events", message: "expected an array" }] });
        items = events;
        pathOf = (i, f) => (f ? `events[${i}].${f}` : `events[${i}]`);
      }
      if (items.length > MAX_EVENTS_PER_REQUEST)
        throw new ProblemError(413, `A request holds at most ${MAX_EVENTS_PER_REQUEST} events; this one has ${items.length}. Split it, or use the bulk loader.`);
      if (items.length === 0) throw new ProblemError(400, "The batch holds no events.", { errors: [{ path: "events", message: "at least one event is required" }] });

      const { events, errors, errorCount } = validateBatch(items, Date.now(), pathOf);
      // validateBatch saw `undefined` for a line that is not JSON; say what is really wrong with it.
      for (const [i, m] of parseErrors) {
        const reported = errors.find((e) => e.index === i);
        if (reported) reported.message = m;
        else errors.push({ index: i, path: pathOf(i, ""), message: m });
      }
      errors.sort((a, b) => a.index! - b.index!);
      if (errorCount > 0 || parseErrors.size > 0) {
        const total = Math.max(errorCount, errors.length);
        throw new ProblemError(400, `${total} of ${items.length} events are invalid; nothing was stored.`, {
          errors: errors.slice(0, 100),
          invalid_count: total,
        });
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
