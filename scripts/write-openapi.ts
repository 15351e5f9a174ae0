// `npm run openapi`: writes openapi/openapi.json, the OpenAPI document the app generates from its
// routes' zod schemas. The file is committed; test/openapi.test.ts fails when it is stale.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import type { AppContext } from "../src/context.js";

export const OPENAPI_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../openapi/openapi.json");

/** Objects with their keys sorted (arrays keep their order), so the file diffs only where the API changed. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/** The committed file's exact text for a document: pretty, sorted keys, trailing newline. */
export function renderOpenApi(document: unknown): string {
  return `${JSON.stringify(sortKeys(document), null, 2)}\n`;
}

/**
 * A context whose database, engine and queues are never reached: generating the document runs no
 * request, so no PostgreSQL or Redis is needed (anything touching them fails loudly instead).
 */
function offlineContext(): AppContext {
  const unavailable = (what: string) =>
    new Proxy(
      {},
      {
        get(_t, prop) {
          // Fastify's decorate() probes for getter/setter; promises probe for then.
          if (typeof prop === "symbol" || prop === "then" || prop === "getter" || prop === "setter") return undefined;
          throw new Error(`${what}.${String(prop)} is not available while generating the OpenAPI document`);
        },
      },
    );
  return {
    config: loadConfig({ LOG_LEVEL: "silent" }),
    db: unavailable("db") as AppContext["db"],
    engine: unavailable("engine") as AppContext["engine"],
    queues: unavailable("queues") as AppContext["queues"],
  };
}

/** Builds the app offline and returns the document it serves at /openapi.json, rendered. */
export async function generateOpenApi(): Promise<string> {
  const app = await buildApp(offlineContext());
  try {
    return renderOpenApi(app.swagger());
  } finally {
    await app.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  generateOpenApi().then(
    (text) => {
      writeFileSync(OPENAPI_FILE, text);
      console.error(`wrote ${path.relative(process.cwd(), OPENAPI_FILE)}`);
      process.exit(0);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
