import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOpenApi, OPENAPI_FILE, renderOpenApi } from "../scripts/write-openapi.js";
import { RUN_TRIGGERS } from "../src/activation/runs.js";
import { MATERIALIZATION_TRIGGERS } from "../src/audiences/materializations.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";

let env: TestEnv;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => env?.close());

type Operation = {
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { description?: string; content?: Record<string, { schema: unknown }> }>;
  parameters?: unknown[];
};
type Document = {
  openapi: string;
  security?: unknown;
  components: { securitySchemes: Record<string, { type: string; scheme?: string }>; schemas: Record<string, unknown> };
  paths: Record<string, Record<string, Operation>>;
};

async function served(): Promise<Document> {
  const res = await env.app.inject({ method: "GET", url: "/openapi.json" });
  expect(res.statusCode).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^application\/json/);
  return res.json();
}

function operations(doc: Document) {
  const out: Array<{ method: string; path: string; op: Operation }> = [];
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) out.push({ method: method.toUpperCase(), path, op });
  return out;
}

describe("OpenAPI", () => {
  it("openapi/openapi.json is what the app generates (run `npm run openapi` when this fails)", async () => {
    const committed = readFileSync(OPENAPI_FILE, "utf8");
    const fromApp = renderOpenApi(await served());
    expect(committed === fromApp, "openapi/openapi.json is stale: run `npm run openapi` and commit the file").toBe(true);
    // The script builds the app without PostgreSQL or Redis and must produce the same bytes.
    expect((await generateOpenApi()) === committed, "scripts/write-openapi.ts renders differently from the running app").toBe(true);
  });

  it("the committed file is pretty JSON with sorted keys and a trailing newline", () => {
    const text = readFileSync(OPENAPI_FILE, "utf8");
    expect(text.endsWith("}\n")).toBe(true);
    expect(text.startsWith('{\n  "components"')).toBe(true);
    expect(renderOpenApi(JSON.parse(text))).toBe(text);
  });

  it("serves OpenAPI 3.1 at /openapi.json, without an API key", async () => {
    const doc = await served();
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/facts", "/v1/facts/{name}", "/v1/facts/{name}/events", "/health", "/ready"]));
    expect(Object.keys(doc.paths["/v1/facts/{name}"]!).sort()).toEqual(["delete", "get", "patch"]);
    // The document does not describe itself or the UI.
    expect(Object.keys(doc.paths).some((p) => p.startsWith("/docs") || p === "/openapi.json")).toBe(false);
  });

  it("serves Swagger UI at /docs", async () => {
    let res = await env.app.inject({ method: "GET", url: "/docs" });
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 3; hops++) {
      const next = new URL(res.headers.location as string, "http://localhost/docs");
      res = await env.app.inject({ method: "GET", url: next.pathname + next.search });
    }
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/text\/html/);
    expect(res.body).toMatch(/swagger-ui/i);
    const init = await env.app.inject({ method: "GET", url: "/docs/static/swagger-initializer.js" });
    expect(init.statusCode).toBe(200);
    const spec = await env.app.inject({ method: "GET", url: "/docs/json" });
    expect(spec.statusCode).toBe(200);
    expect(spec.json().openapi).toMatch(/^3\.1\./);
  });

  it("every /v1 operation needs the bearer key and documents its problem+json answers", async () => {
    const doc = await served();
    const scheme = doc.components.securitySchemes.apiKey;
    expect(scheme).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.components.schemas.Problem).toBeTruthy();
    const v1 = operations(doc).filter((o) => o.path.startsWith("/v1/"));
    expect(v1.length).toBeGreaterThanOrEqual(6);
    const problems: string[] = [];
    for (const { method, path, op } of v1) {
      const where = `${method} ${path}`;
      if (!op.security?.some((s) => "apiKey" in s)) problems.push(`${where}: no apiKey security`);
      for (const code of ["400", "401", "403"]) if (!op.responses[code]) problems.push(`${where}: ${code} not documented`);
      for (const [code, res] of Object.entries(op.responses)) {
        if (Number(code) < 400) continue;
        const problem = res.content?.["application/problem+json"]?.schema as { $ref?: string } | undefined;
        if (problem?.$ref !== "#/components/schemas/Problem") problems.push(`${where}: ${code} is not documented as application/problem+json Problem`);
        if (res.content?.["application/json"]) problems.push(`${where}: ${code} documented as application/json`);
        // The description starts with the answer's title (problem.ts TITLES): "Error" is the fallback of a status without one.
        if (!res.description || res.description === "Error") problems.push(`${where}: ${code} has no title`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("/health and /ready need no key, and say so", async () => {
    const doc = await served();
    for (const path of ["/health", "/ready"]) expect(doc.paths[path]!.get!.security, path).toEqual([]);
    for (const url of ["/health", "/openapi.json"]) expect((await env.app.inject({ method: "GET", url })).statusCode, url).toBe(200);
  });

  it("holds only component schemas some operation uses (a generated client gets no unused types)", async () => {
    const doc = await served();
    const reached = new Set<string>();
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) return value.forEach(walk);
      if (value === null || typeof value !== "object") return;
      for (const [key, inner] of Object.entries(value)) {
        const name = key === "$ref" && typeof inner === "string" ? inner.replace("#/components/schemas/", "") : null;
        if (name !== null && !reached.has(name)) {
          reached.add(name);
          walk(doc.components.schemas[name]);
        } else if (name === null) walk(inner);
      }
    };
    walk(doc.paths);
    expect(Object.keys(doc.components.schemas).filter((name) => !reached.has(name))).toEqual([]);
    expect([...reached].filter((name) => !(name in doc.components.schemas))).toEqual([]);
  });

  it("declares what can trigger a run or a materialization, each value the code writes", async () => {
    const schemas = (await served()).components.schemas as Record<string, { properties: Record<string, { type?: string; enum?: string[] }> }>;
    expect(schemas.ProcessingRun!.properties.trigger!.enum).toEqual([...RUN_TRIGGERS]);
    expect(schemas.Materialization!.properties.trigger!.enum).toEqual([...MATERIALIZATION_TRIGGERS]);
    // requestRun, requestMaterialization and recordMaterializations take these types: a new trigger is a compile error until it is added.
    expect(RUN_TRIGGERS).toEqual(expect.arrayContaining(["api", "schedule", "cli", "demo"]));
    expect(MATERIALIZATION_TRIGGERS).toEqual(expect.arrayContaining(["api", "schedule", "on_new_data", "demo"]));
  });

  it("documents the ingestion limits, NDJSON and the Idempotency-Key header", async () => {
    const op = (await served()).paths["/v1/facts/{name}/events"]!.post! as Operation & { description?: string; requestBody?: { content: Record<string, unknown> } };
    expect(op.responses["202"]).toBeTruthy();
    for (const code of ["404", "413", "422"]) expect(op.responses[code], code).toBeTruthy();
    expect(op.description).toMatch(/10000|10,000/);
    expect(op.description).toMatch(/x-ndjson/);
    expect(JSON.stringify(op.parameters)).toMatch(/idempotency-key/i);
  });
});
