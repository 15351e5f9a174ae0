import type { FastifyInstance, FastifyRequest } from "fastify";
import { validatorCompiler } from "fastify-type-provider-zod";
import { z } from "zod";

/**
 * Every /v1 route that declares no query parameters takes none: a parameter it would ignore is a 400
 * naming it (`/v1/runs/{id}?verbose=1` is not silently read as a plain GET). Register before the routes.
 */
export function refuseUndeclaredQueryParameters(app: FastifyInstance): void {
  app.addHook("onRoute", (route) => {
    if (route.url !== "/v1" && !route.url.startsWith("/v1/")) return;
    const schema = route.schema as { querystring?: unknown } | undefined;
    if (schema && schema.querystring === undefined) schema.querystring = z.object({}).strict();
  });
}

/**
 * A preValidation hook for a POST whose body only holds options (`z.object({...}).default({})`): a
 * POST without a body (`curl -X POST …`) arrives as null, which that default does not cover. No body
 * means "no options", so it is validated as `{}`.
 */
export async function noBodyMeansNoOptions(req: FastifyRequest) {
  if (req.body === null || req.body === undefined) req.body = {};
}

/**
 * A route's validator compiler for bodies that a domain validator checks in the handler (to report
 * every bad item with its exact path); the zod body schema then only documents the API. Params,
 * query and headers are still validated by zod.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const bodyValidatedInHandler = (route: any) =>
  route.httpPart === "body" ? (data: unknown) => ({ value: data }) : validatorCompiler(route);

/**
 * An empty body is no body, whatever its Content-Type says: many HTTP clients send
 * `Content-Type: application/json` on every request, a DELETE or a POST without a body included, and
 * Fastify's JSON parser would refuse the empty string ("Body cannot be empty"). The header is dropped
 * before parsing, so the route sees no body: optional bodies take their defaults, required ones get
 * the route's own 400.
 */
export function emptyBodyIsNoBody(app: FastifyInstance): void {
  app.addHook("onRequest", async (req) => {
    const { "content-length": length, "transfer-encoding": chunked } = req.headers;
    if (req.headers["content-type"] !== undefined && (length === "0" || (length === undefined && chunked === undefined))) delete req.headers["content-type"];
  });
}
