import fp from "fastify-plugin";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { formatPath, ProblemError, sendProblem, type ProblemFieldError } from "./problem.js";
import { MAX_USER_ID_LENGTH } from "../facts/event-validation.js";
import { MAX_OUTCOME_ID_LENGTH } from "../campaigns/recording.js";

/**
 * The longest path parameter the router passes on; a longer one is answered 414 (frameworkErrorHandler)
 * before any route runs. find-my-way measures the parameter decoded, as a JavaScript string: in UTF-16
 * code units, not in characters nor in the bytes of its percent-encoding. The longest legal parameters
 * are ids counted in characters (code points), each at most two units: a user id of 256 emoji is 512
 * units (3,072 bytes percent-encoded) and must be found. Nothing longer is a legal parameter of any route
 * (uuids, fact and service names are shorter still).
 */
export const MAX_PATH_PARAMETER_LENGTH = 2 * Math.max(MAX_USER_ID_LENGTH, MAX_OUTCOME_ID_LENGTH);

/** No request of this API is deeper than ~15 levels (an audience filter at its depth limit); 32 leaves room. */
export const MAX_JSON_DEPTH = 32;
const MAX_REPORTED = 100;

/**
 * Why a string cannot be stored as it was sent, or null. PostgreSQL text and jsonb cannot hold NUL,
 * and an unpaired UTF-16 surrogate is not Unicode: the driver would store U+FFFD instead (and jsonb
 * rejects it), so the value would not come back as it was sent.
 */
export function unstorableText(s: string): string | null {
  if (s.includes("\u0000")) return "contains a NUL character (\\u0000), which cannot be stored";
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) return "contains an unpaired UTF-16 surrogate: not valid Unicode";
  return null;
}

/**
 * Why a key is refused whatever its route: no field of this API has these names, and code that copied
 * such a key onto another object would change that object's prototype. (The JSON parser keeps them
 * as plain own properties, so they can be named here rather than failing the whole body as "not JSON".)
 */
function prototypeKey(k: string, value: unknown): string | null {
  if (k === "__proto__") return "field name __proto__ is not accepted";
  if (k === "constructor" && value !== null && typeof value === "object" && Object.hasOwn(value, "prototype"))
    return "field name constructor holding a prototype field is not accepted";
  return null;
}

/**
 * Every string (keys included) that cannot be stored, every empty key (no field of this API has an
 * empty name), every key that could reach a prototype, and nesting deeper than `maxDepth`, with the
 * path of each. Iterative, so a hostile depth cannot overflow the stack here.
 */
export function findUnsafeInput(value: unknown, fallbackPath: string, maxDepth = MAX_JSON_DEPTH): ProblemFieldError[] {
  interface Node { v: unknown; key: PropertyKey | null; parent: Node | null; depth: number }
  const errors: ProblemFieldError[] = [];
  // The path is rebuilt from parent links only for a bad value: the common, clean body allocates no paths.
  const pathOf = (n: Node | null, extra?: PropertyKey) => {
    const parts: PropertyKey[] = extra === undefined ? [] : [extra];
    for (let at = n; at && at.key !== null; at = at.parent) parts.unshift(at.key);
    return formatPath(parts) || fallbackPath;
  };
  const stack: Node[] = [{ v: value, key: null, parent: null, depth: 0 }];
  while (stack.length && errors.length < MAX_REPORTED) {
    const node = stack.pop()!;
    const v = node.v;
    if (typeof v === "string") {
      const why = unstorableText(v);
      if (why) errors.push({ path: pathOf(node), message: why });
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (node.depth >= maxDepth) {
      errors.push({ path: pathOf(node), message: `nested deeper than ${maxDepth} levels` });
      continue;
    }
    const depth = node.depth + 1;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) {
        const item: unknown = v[i];
        // Numbers, booleans and null need no visit (most of an event batch's leaves are strings, though).
        if (item !== null && (typeof item === "object" || typeof item === "string")) stack.push({ v: item, key: i, parent: node, depth });
      }
      continue;
    }
    for (const k of Object.keys(v)) {
      const why = k === "" ? "is empty" : unstorableText(k);
      const item = (v as Record<string, unknown>)[k];
      const proto = why ? null : prototypeKey(k, item);
      // An empty key has no dotted name of its own: `[""]` after its parent's path.
      if (why) errors.push({ path: k === "" ? `${node.key === null ? "" : pathOf(node)}[""]` : pathOf(node, k), message: `field name ${why}` });
      else if (proto) errors.push({ path: pathOf(node, k), message: proto });
      else if (item !== null && (typeof item === "object" || typeof item === "string")) stack.push({ v: item, key: k, parent: node, depth });
    }
  }
  return errors;
}

function reject(where: string, errors: ProblemFieldError[]): never {
  const summary = errors.slice(0, 3).map((e) => `${e.path}: ${e.message}`).join("; ");
  throw new ProblemError(400, `Invalid ${where}: ${summary}`, { errors });
}

/**
 * Answers for URLs the router cannot even read (bad percent-encoding, an over-long parameter), which
 * Fastify would otherwise send as its own JSON rather than problem+json.
 */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  if (error.code === "FST_ERR_MAX_PARAM_LENGTH") return sendProblem(reply, 414, "A path parameter is longer than this API accepts.");
  return sendProblem(reply, 400, "The URL is not valid: a path segment is not well-formed percent-encoded UTF-8.", {
    errors: [{ path: "url", message: "invalid percent-encoding" }],
  });
}

/**
 * Rejects, before any route sees them, values no route can store or use: NUL characters and unpaired
 * surrogates in the path, the query string and JSON bodies, and JSON nested beyond reason. Routes then
 * only meet text that PostgreSQL stores and returns exactly as sent.
 */
export default fp(
  async (app) => {
    app.addHook("preValidation", async (request) => {
      const params = findUnsafeInput(request.params, "path", 2);
      if (params.length) reject("path parameter", params);
      const query = findUnsafeInput(request.query, "query", 3);
      if (query.length) reject("query string", query);
      // NDJSON and other text bodies are parsed (and checked field by field) by their route.
      if (request.body !== null && typeof request.body === "object") {
        const body = findUnsafeInput(request.body, "body");
        if (body.length) reject("body", body);
      }
    });
  },
  { name: "untrusted-input" },
);
