import type { SwaggerTransform, SwaggerTransformObject } from "@fastify/swagger";
import type { FastifyInstance, FastifySchema } from "fastify";
import { jsonSchemaTransform, jsonSchemaTransformObject } from "fastify-type-provider-zod";
import { z } from "zod";
import { documentProblemResponses, problemSchema } from "./problem.js";
import { MAX_PATH_PARAMETER_LENGTH } from "./untrusted-input.js";

/**
 * What the OpenAPI document says beyond the routes' zod schemas, which @fastify/swagger cannot say
 * from them alone: response headers, NDJSON bodies with the schema of each line, request bodies in
 * more than one media type, and bodies a POST may leave out. Routes state these in their schema;
 * `openapiTransform` and `openapiTransformObject` write them into the document.
 */

/** An OpenAPI 3.1 Header Object. */
export interface HeaderDoc {
  description: string;
  required?: boolean;
  schema: { type: "string" | "integer" };
}
type ResponseHeaders = Record<string, Record<string, HeaderDoc>>;

declare module "fastify" {
  interface FastifySchema {
    /** Response headers by status code, for the OpenAPI document only. */
    "x-response-headers"?: ResponseHeaders;
  }
}

export const LOCATION_HEADER: HeaderDoc = { description: "The URL of the resource in the answer", required: true, schema: { type: "string" } };
export const RETRY_AFTER_HEADER: HeaderDoc = { description: "Seconds to wait before retrying", required: true, schema: { type: "integer" } };

/** Documents `headers` on the answers of `codes` of a route (merged with what it documents already). */
export function documentResponseHeaders(schema: object, codes: number[], headers: Record<string, HeaderDoc>): void {
  const all: ResponseHeaders = ((schema as FastifySchema)["x-response-headers"] ??= {});
  for (const code of codes) all[code] = { ...all[code], ...headers };
}

/** Each NDJSON body schema made by ndjsonOf, with the schema of one line. */
const ndjsonItems = new WeakMap<z.ZodType, z.ZodType>();

/**
 * The schema of an NDJSON body: a string to a generated client (OpenAPI 3.1 has no notion of a
 * sequence of documents), with each line's schema in the document as the `x-item-schema` keyword.
 */
export function ndjsonOf(item: z.ZodType, description: string): z.ZodString {
  const body = z.string().describe(`${description} One JSON document per line, each as \`x-item-schema\` says.`);
  ndjsonItems.set(body, item);
  return body;
}

type MediaTypes = Record<string, { schema: z.ZodType }>;
const contentOf = (entry: unknown): MediaTypes | null =>
  entry !== null && typeof entry === "object" && "content" in entry && !(entry instanceof z.ZodType) ? (entry as { content: MediaTypes }).content : null;

/**
 * fastify-type-provider-zod's transform, plus: a request body given per media type (`body: { content }`,
 * which Fastify validates per media type), the `x-item-schema` of NDJSON bodies, and the marks that
 * openapiTransformObject turns into response headers and optional request bodies.
 */
export const openapiTransform: SwaggerTransform = (input) => {
  const schema = input.schema as FastifySchema & { hide?: boolean };
  if (!schema || schema.hide) return jsonSchemaTransform(input as Parameters<typeof jsonSchemaTransform>[0]);
  const bodyContent = contentOf(schema.body);
  const convert = (part: FastifySchema) => jsonSchemaTransform({ ...input, schema: part } as Parameters<typeof jsonSchemaTransform>[0]).schema as Record<string, unknown>;
  // A zod schema as JSON Schema, with references to the input (body) or output (response) components.
  const jsonOf = (zod: z.ZodType, where: "body" | "response") =>
    (where === "body" ? convert({ body: zod }).body : (convert({ response: { 200: zod } }).response as Record<string, unknown>)[200]) as Record<string, unknown>;
  // A media type's schema, with the schema of one line when it is NDJSON.
  const media = (zod: z.ZodType, where: "body" | "response") => {
    const json = jsonOf(zod, where);
    const item = ndjsonItems.get(zod);
    if (item) json["x-item-schema"] = jsonOf(item, where);
    return { schema: json };
  };

  const transformed = convert(bodyContent ? { ...schema, body: undefined } : schema);
  if (bodyContent) transformed.body = { content: Object.fromEntries(Object.entries(bodyContent).map(([type, m]) => [type, media(m.schema, "body")])) };
  for (const [code, entry] of Object.entries((schema.response ?? {}) as Record<string, unknown>)) {
    const content = contentOf(entry);
    if (!content || !Object.keys(content).some((type) => ndjsonItems.has(content[type]!.schema))) continue;
    const out = (transformed.response as Record<string, { content: Record<string, unknown> }>)[code]!;
    for (const [type, m] of Object.entries(content)) out.content[type] = media(m.schema, "response");
  }
  // A body whose schema takes `undefined` (an options object with a default) may be left out.
  if (schema.body instanceof z.ZodType && schema.body.safeParse(undefined).success) transformed["x-request-body-optional"] = true;
  return { schema: transformed as FastifySchema, url: input.url };
};

interface OperationDoc {
  requestBody?: { required?: boolean };
  responses?: Record<string, { description?: string; headers?: Record<string, HeaderDoc> }>;
  "x-response-headers"?: ResponseHeaders;
  "x-request-body-optional"?: boolean;
}

const SCHEMA_REF = "#/components/schemas/";

/**
 * What a success answer means, for the answers whose schema has no description of its own (@fastify/swagger
 * writes "Default Response", which a generated client's documentation would repeat on every call).
 */
const SUCCESS_DESCRIPTIONS: Record<string, string> = {
  "200": "OK",
  "201": "Created: the new resource, its URL in Location",
  "202": "Accepted: the work is queued; the record to follow is in the body, its URL in Location",
  "204": "No Content: done",
};

/**
 * Drops the component schemas no operation reaches: every schema with an id becomes a component twice
 * (its input and its output form, `FactInput` and `Fact`), used or not, and a generated client would
 * carry each unused one as a type of its own.
 */
function pruneUnreferencedSchemas(document: { paths?: unknown; components?: { schemas?: Record<string, unknown> } }): void {
  const schemas = document.components?.schemas;
  if (!schemas) return;
  const reached = new Set<string>();
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    if (value === null || typeof value !== "object") return;
    for (const [key, inner] of Object.entries(value)) {
      if (key === "$ref" && typeof inner === "string" && inner.startsWith(SCHEMA_REF)) {
        const name = inner.slice(SCHEMA_REF.length);
        if (!reached.has(name)) {
          reached.add(name);
          walk(schemas[name]);
        }
      } else walk(inner);
    }
  };
  walk(document.paths);
  for (const name of Object.keys(schemas)) if (!reached.has(name)) delete schemas[name];
}

/** fastify-type-provider-zod's components (those the operations use), plus the response headers and optional bodies routes stated. */
export const openapiTransformObject: SwaggerTransformObject = (input) => {
  const document = jsonSchemaTransformObject(input) as { paths?: Record<string, Record<string, OperationDoc>>; components?: { schemas?: Record<string, unknown> } };
  for (const pathItem of Object.values(document.paths ?? {}))
    for (const operation of Object.values(pathItem)) {
      for (const [code, headers] of Object.entries(operation["x-response-headers"] ?? {})) {
        const response = operation.responses?.[code];
        if (!response) throw new Error(`headers documented for status ${code}, which the operation does not declare`);
        response.headers = { ...response.headers, ...headers };
      }
      delete operation["x-response-headers"];
      for (const [code, response] of Object.entries(operation.responses ?? {}))
        if (response.description === "Default Response" && SUCCESS_DESCRIPTIONS[code]) response.description = SUCCESS_DESCRIPTIONS[code];
      if (operation["x-request-body-optional"] && operation.requestBody) operation.requestBody.required = false;
      delete operation["x-request-body-optional"];
    }
  pruneUnreferencedSchemas(document);
  return document as ReturnType<SwaggerTransformObject>;
};

/**
 * The methods Fastify parses a body of, whether the route declares one or not: a DELETE with a body is
 * parsed too, so it can be over the body limit (413) or of a type no parser takes (415).
 */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Documents on every /v1 route the answers that do not come from its handler: 400 (any route: a query
 * parameter it does not declare, text that cannot be stored in the path or query, a URL that is not
 * well-formed), 500 and 503 (any route; 503 with Retry-After when PostgreSQL or Redis is away), 414 on
 * routes with a path parameter (one over MAX_PATH_PARAMETER_LENGTH), and for methods with a body 413 (over
 * the body limit) and 415 (a Content-Type the route does not parse). A route declares the answers of its
 * own code path (problemAnswers). Register before the routes.
 */
export function documentCommonAnswers(app: FastifyInstance): void {
  app.addHook("onRoute", (route) => {
    const schema = route.schema as (FastifySchema & { hide?: boolean; response?: Record<string, unknown> }) | undefined;
    if (!schema || schema.hide || !(route.url === "/v1" || route.url.startsWith("/v1/"))) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const withBody = methods.some((m) => BODY_METHODS.has(m));
    const withPathParameter = route.url.includes("/:");
    schema.response = {
      400: problemSchema,
      ...(withBody ? { 413: problemSchema, 415: problemSchema } : {}),
      ...(withPathParameter ? { 414: problemSchema } : {}),
      ...schema.response,
      500: problemSchema,
      503: problemSchema,
    };
    documentProblemResponses(schema.response);
    if (withPathParameter)
      (schema.response[414] as { description: string }).description = `URI Too Long: a path parameter is longer than any legal one (over ${MAX_PATH_PARAMETER_LENGTH} UTF-16 code units once decoded)`;
    documentResponseHeaders(schema, [503], { "Retry-After": RETRY_AFTER_HEADER });
  });
}
