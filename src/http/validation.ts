import { validatorCompiler } from "fastify-type-provider-zod";

/**
 * A route's validator compiler for bodies that a domain validator checks in the handler (to report
 * every bad item with its exact path); the zod body schema then only documents the API. Params,
 * query and headers are still validated by zod.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const bodyValidatedInHandler = (route: any) =>
  route.httpPart === "body" ? (data: unknown) => ({ value: data }) : validatorCompiler(route);
