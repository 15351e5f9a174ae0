// The error answers each operation of openapi/openapi.json declares are exactly those its code path can
// give: a client generated from the document must not expect a 404 from a list or a 409 from a read of
// a record that has no state to conflict with. The table below is read off the routes and the domain
// functions they call; a route whose answers change comes with its row changed here.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { OPENAPI_FILE } from "../scripts/write-openapi.js";
import type { OpenApiDocument } from "./helpers/openapi-contract.js";

const doc = JSON.parse(readFileSync(OPENAPI_FILE, "utf8")) as OpenApiDocument;

/**
 * What any /v1 operation can answer whatever its handler does: 400 (a query parameter it does not
 * declare, unstorable text in the path or query, a URL that is not well-formed), 401 and 403 (the key
 * and its scope: GETs too, a write-only key has no `read`), 429 (the rate limits), 500 and 503.
 */
const EVERY_OPERATION = [400, 401, 403, 429, 500, 503];
/** Fastify parses a body for these methods, declared or not: too large (413), or a type no parser takes (415). */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** A path parameter longer than the router takes (src/http/untrusted-input.ts MAX_PATH_PARAMETER_LENGTH). */
const PATH_PARAMETER = 414;

/**
 * The answers of each operation's own code path, beyond the above, and where they come from.
 * 404: a resource of the path that does not exist; 406: an Accept the export negotiation cannot meet;
 * 409: a state the request conflicts with; 412: an If-Match naming another revision; 422: an
 * Idempotency-Key reused with another request.
 */
const OWN_ANSWERS: Record<string, number[]> = {
  "GET /v1/facts": [],
  "POST /v1/facts": [409], // createFact: the name is taken
  "GET /v1/facts/{name}": [404],
  "PATCH /v1/facts/{name}": [404, 409], // updateFact: a timezone change once events exist
  "DELETE /v1/facts/{name}": [404, 409], // deleteFact: still referenced, or writers held it 5 s
  "POST /v1/facts/{name}/events": [404, 422], // (413 also of more than 10,000 events)
  "POST /v1/facts/{name}/runs": [404, 409, 422], // requestRun: no events yet, or behind the watermark
  "GET /v1/facts/{name}/runs": [404],
  "GET /v1/runs/{id}": [404],
  // layer-queries: processedPeriod / periodParam refuse a fact never processed or a date beyond its watermark.
  "GET /v1/facts/{name}/first-last": [404, 406, 409],
  "GET /v1/facts/{name}/activation": [404, 406, 409],
  "GET /v1/facts/{name}/status": [404, 406, 409],
  "GET /v1/facts/{name}/users/{user_id}/status": [404, 409], // 404 also of a user without activity
  "GET /v1/facts/{name}/metrics": [404, 409],
  "GET /v1/facts/{name}/metrics/contribution": [404, 409],
  "GET /v1/services/{service}/core-actions": [404], // coreActionsOf: no fact of the service; each fact ends at its own watermark
  "POST /v1/audiences/preview": [409], // resolveAudience: a fact not processed through as_of (an unknown fact is a 400)
  "POST /v1/audiences": [], // an unknown fact is a 400 naming the field
  "GET /v1/audiences": [],
  "GET /v1/audiences/{id}": [404],
  "PATCH /v1/audiences/{id}": [404],
  "DELETE /v1/audiences/{id}": [404],
  "GET /v1/audiences/{id}/versions": [404],
  "POST /v1/audiences/{id}/materializations": [404, 409], // resolveAudience, as for a preview
  "GET /v1/audiences/{id}/materializations": [404],
  "GET /v1/materializations/{id}": [404],
  "DELETE /v1/materializations/{id}": [404, 409], // queued or running
  "GET /v1/materializations/{id}/members": [404, 406, 409], // assertFinished
  "GET /v1/materializations/{id}/changes": [404, 406, 409], // assertFinished (an unknown `since` is a 400)
  "POST /v1/campaigns": [404, 409, 422], // 404: a replayed key whose campaign was deleted (idempotentCreate); 409: a list not succeeded
  "GET /v1/campaigns": [],
  "GET /v1/campaigns/{id}": [404],
  "PATCH /v1/campaigns/{id}": [404, 409], // assigning, launched, or a list not succeeded
  "DELETE /v1/campaigns/{id}": [404],
  "POST /v1/campaigns/{id}/retry-assignment": [404, 409, 422], // assigning or ready
  // requireAssigned: a campaign assigning or failed.
  "GET /v1/campaigns/{id}/assignments": [404, 406, 409],
  "POST /v1/campaigns/{id}/sends": [404, 409, 422],
  "POST /v1/campaigns/{id}/outcomes": [404, 409, 422],
  "GET /v1/campaigns/{id}/outcomes": [404, 409],
  "GET /v1/campaigns/{id}/outcomes/{outcome_id}": [404, 409],
  "PUT /v1/campaigns/{id}/outcomes/{outcome_id}": [404, 409, 412, 422], // 409 also of a retracted outcome
  "DELETE /v1/campaigns/{id}/outcomes/{outcome_id}": [404, 409, 412, 422],
  "GET /v1/campaigns/{id}/results": [404, 409],
  "GET /v1/control-group": [],
  "PUT /v1/control-group": [],
  "POST /v1/webhooks": [],
  "GET /v1/webhooks": [],
  "GET /v1/webhooks/{id}": [404],
  "DELETE /v1/webhooks/{id}": [404],
  "GET /v1/webhooks/{id}/deliveries": [404],
};

/** Every error status an operation can answer: its own, and those of its method and path. */
function expectedErrors(operation: string): number[] {
  const [method, path] = operation.split(" ") as [string, string];
  const codes = new Set([...EVERY_OPERATION, ...OWN_ANSWERS[operation]!]);
  if (BODY_METHODS.has(method)) for (const code of [413, 415]) codes.add(code);
  if (path.includes("{")) codes.add(PATH_PARAMETER);
  return [...codes].sort((a, b) => a - b);
}

const v1Operations = () =>
  Object.entries(doc.paths)
    .filter(([path]) => path.startsWith("/v1/"))
    .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, op })));

describe("each operation declares the error answers it can give, and no other", () => {
  it("the table covers every /v1 operation of the document, and nothing else", () => {
    expect(Object.keys(OWN_ANSWERS).sort()).toEqual(v1Operations().map((o) => o.name).sort());
  });

  it("declares exactly the table's error statuses", () => {
    const wrong: string[] = [];
    for (const { name, op } of v1Operations()) {
      const declared = Object.keys(op.responses).map(Number).filter((code) => code >= 400).sort((a, b) => a - b);
      const expected = expectedErrors(name);
      const extra = declared.filter((c) => !expected.includes(c));
      const missing = expected.filter((c) => !declared.includes(c));
      if (extra.length || missing.length) wrong.push(`${name}: ${extra.length ? `declares ${extra.join(", ")} it cannot give` : ""}${extra.length && missing.length ? "; " : ""}${missing.length ? `lacks ${missing.join(", ")}` : ""}`);
    }
    expect(wrong).toEqual([]);
  });
});
