import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";
import { z } from "zod";
import { isoDate } from "./formats.js";

export interface ProblemFieldError {
  path: string;
  message: string;
  /** Position of the bad item in a batch (event, line). */
  index?: number;
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  409: "Conflict",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Every media type a route of this API parses a request body of; a 415 names those its route does. */
const BODY_MEDIA_TYPES = ["application/json", "application/x-ndjson"];

/** An error that becomes an RFC 9457 problem+json answer as it is. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly extra: { errors?: ProblemFieldError[]; headers?: Record<string, string>; type?: string; [k: string]: unknown } = {},
  ) {
    super(detail);
  }
}

export const badRequest = (detail: string, errors?: ProblemFieldError[]) => new ProblemError(400, detail, { errors });
export const notFound = (detail: string) => new ProblemError(404, detail);
export const conflict = (detail: string, extra: Record<string, unknown> = {}) => new ProblemError(409, detail, extra);

/** Formats a zod/JSON path the way clients write it: `events[3].occurred_at`. */
export function formatPath(path: ReadonlyArray<PropertyKey>, root?: string): string {
  let out = root ?? "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().describe("The request's path"),
    errors: z
      .array(z.object({ path: z.string(), message: z.string(), index: z.number().int().optional() }))
      .optional()
      .describe("400: each bad field (or item of a batch, by index) and why"),
    // Extension members (RFC 9457 §3.2) some answers carry.
    invalid_count: z.number().int().optional().describe("400 of a batch: how many of its items are invalid (errors lists the first 100)"),
    accepted_media_types: z.array(z.string()).optional().describe("415: the Content-Types the route takes"),
    references: z.array(z.string()).optional().describe("409 of a fact's deletion: what still uses the fact"),
    processed_through: isoDate.nullable().optional().describe("409 of a date beyond a fact's watermark: the watermark (null: never processed)"),
    fact: z.string().optional().describe("409 of an as_of beyond a fact's watermark: which fact"),
    materialization_status: z.string().optional().describe("409 of a list that has not succeeded: its status"),
    campaign_status: z.string().optional().describe("409 of a campaign that is assigning, failed or ready: its status"),
    launched: z.boolean().optional().describe("409 of a change to a launched campaign's assignment fields"),
    locked_reason: z.string().optional().describe("409 of a change to a launched campaign: why it launched"),
    fields: z.array(z.string()).optional().describe("409 of a change to a launched campaign: the fields that can no longer change"),
    outcome_status: z.string().optional().describe("409 of a change to a retracted outcome: its status"),
    revision: z.number().int().optional().describe("412 of an outcome's change whose If-Match names another revision: the current one"),
  })
  .catchall(z.unknown())
  .meta({ id: "Problem", description: "RFC 9457 problem details" });

/**
 * The problem answers of `codes` for a route's response map (`...problemAnswers(404, 409)`): the statuses
 * its own code path can answer. Those every /v1 route can give (400, 401, 403, 429, 500, 503, and 413,
 * 414 and 415 where they apply) are added to every route by documentCommonAnswers (./openapi.ts) and the
 * auth and rate-limit plugins.
 */
export function problemAnswers<const C extends number>(...codes: C[]): Record<C, typeof problemSchema> {
  return Object.fromEntries(codes.map((code) => [code, problemSchema])) as Record<C, typeof problemSchema>;
}

/**
 * Documents problem answers as what they are on the wire, `application/problem+json`, instead of the
 * `application/json` a bare response schema would be published as. Mutates a route's response map.
 */
export function documentProblemResponses(response: Record<string, unknown>): void {
  for (const [code, schema] of Object.entries(response)) {
    if (schema !== problemSchema) continue;
    response[code] = { description: TITLES[Number(code)] ?? "Error", content: { "application/problem+json": { schema: problemSchema } } };
  }
}

function problemBody(status: number, detail: string, instance: string, extra: Record<string, unknown> = {}) {
  const { headers: _h, type, ...rest } = extra;
  const body: Record<string, unknown> = { type: (type as string | undefined) ?? "about:blank", title: TITLES[status] ?? "Error", status, detail, instance };
  // An extension member never stands in for RFC 9457's own (`status` is the HTTP code).
  for (const [k, v] of Object.entries(rest)) if (v !== undefined && !(k in body)) body[k] = v;
  return body;
}

export function sendProblem(reply: FastifyReply, status: number, detail: string, extra: Record<string, unknown> = {}) {
  const headers = (extra.headers as Record<string, string> | undefined) ?? {};
  for (const [k, v] of Object.entries(headers)) reply.header(k, v);
  return reply
    .code(status)
    .type("application/problem+json")
    .serializer((p: unknown) => JSON.stringify(p))
    .send(problemBody(status, detail, reply.request.url.split("?")[0]!, extra));
}

/** The one error handler: everything leaves as problem+json, and a 500 never shows internals. */
export function problemErrorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  try {
    return handleError(error, request, reply);
  } catch (failure) {
    // Never let Fastify's default handler answer instead: it would show the failure's message.
    request.log.error({ err: failure, original: error }, "error handler failed");
    return sendProblem(reply, 500, "An unexpected error occurred; it has been logged.");
  }
}

/**
 * The path of a zod issue as fastify-type-provider-zod reports it (`instancePath` "/events/3/user_id";
 * the issue's own path is not kept), in the client's notation: `events[3].user_id`.
 */
function validationErrors(v: { keyword?: string; instancePath?: string; message?: string; params?: Record<string, unknown> }, context: string): ProblemFieldError[] {
  const segments: PropertyKey[] = (v.instancePath ?? "")
    .split("/")
    .filter((s) => s !== "")
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, "/").replace(/~0/g, "~")));
  const unknownKeys = v.keyword === "unrecognized_keys" && Array.isArray(v.params?.keys) ? (v.params.keys as string[]) : [];
  if (unknownKeys.length) return unknownKeys.map((k) => ({ path: formatPath([...segments, k]), message: `unknown field '${k}'` }));
  return [{ path: formatPath(segments) || context, message: v.message ?? "invalid" }];
}

function handleError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ProblemError) {
    if (error.status >= 500) request.log.error({ err: error }, "request failed");
    return sendProblem(reply, error.status, error.detail, error.extra);
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    const context = (error as FastifyError).validationContext ?? "body";
    const errors = error.validation.flatMap((v) => validationErrors(v, context));
    const where = context === "querystring" ? "query string" : context;
    return sendProblem(reply, 400, `Invalid ${where}: ${errors.map((e) => `${e.path}: ${e.message}`).slice(0, 5).join("; ")}`, {
      errors,
    });
  }
  if (isResponseSerializationError(error)) {
    request.log.error({ err: error, issues: error.cause.issues }, "response did not match its schema");
    return sendProblem(reply, 500, "An unexpected error occurred; it has been logged.");
  }
  const fe = error as FastifyError;
  const status = fe.statusCode;
  if (status && status >= 400 && status < 500) {
    let detail = fe.message;
    if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") detail = "The request body is larger than the limit for this route.";
    else if (fe.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      // request.server is the route's own plugin scope: the parsers registered there are what it takes.
      const accepted = BODY_MEDIA_TYPES.filter((type) => request.server.hasContentTypeParser(type));
      return sendProblem(reply, 415, `Unsupported Content-Type: ${request.headers["content-type"] ?? "(none)"}. This route accepts ${accepted.join(" or ")}.`, {
        accepted_media_types: accepted,
      });
    } else if (fe.code === "FST_ERR_CTP_INVALID_JSON_BODY" || fe.code === "FST_ERR_CTP_EMPTY_JSON_BODY" || error instanceof SyntaxError)
      detail = `The body is not valid JSON: ${fe.message}`;
    return sendProblem(reply, status, detail);
  }
  if (isUnavailable(error)) {
    request.log.warn({ err: error }, "dependency unavailable");
    return sendProblem(reply, 503, "A backing service (PostgreSQL or Redis) is unavailable; retry shortly.", {
      headers: { "retry-after": "5" },
    });
  }
  request.log.error({ err: error }, "unhandled error");
  return sendProblem(reply, 500, "An unexpected error occurred; it has been logged.");
}

const UNAVAILABLE_CODES = new Set([
  ...["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "57P01", "57P02", "57P03", "53300", "08006", "08001", "08003"],
  // Prisma's codes for the same: server unreachable, timed out, connection closed, no pooled connection.
  ...["P1001", "P1002", "P1008", "P1017", "P2024"],
]);
// Kinds of @prisma/adapter-pg's DriverAdapterError (Prisma error meta.driverAdapterError.cause.kind).
const UNAVAILABLE_ADAPTER_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "TooManyConnections"]);

export function isUnavailable(error: unknown): boolean {
  const e = error as { code?: string; message?: string; cause?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: string } } } };
  if (!e) return false;
  if (e.code && UNAVAILABLE_CODES.has(e.code)) return true;
  const kind = e.meta?.driverAdapterError?.cause?.kind;
  if (kind && UNAVAILABLE_ADAPTER_KINDS.has(kind)) return true;
  if (typeof e.message === "string" && /Connection terminated|connection timeout|Connection is closed|timeout exceeded when trying to connect/i.test(e.message))
    return true;
  // ioredis gave up on a command while Redis is away (the queue connection retries once, then fails).
  if ((e as Error).name === "MaxRetriesPerRequestError" || /^Command timed out$|^Stream isn't writeable/.test(String(e.message))) return true;
  return e.cause ? isUnavailable(e.cause) : false;
}
