import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync } from "fastify";

/** Where `npm run build:console` (scripts/build-console.mjs) writes the marketer console. */
export const CONSOLE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/console");

/** The console's own pages (client-side routes): each answers index.html and the app shows the page. */
const PAGES = ["/", "/sign-in", "/dashboard", "/audiences", "/audiences/*", "/materializations/*", "/campaigns", "/campaigns/*"];

/**
 * The console keeps an API key in the tab: its pages may run only the console's own script (an injected
 * one could read the key), talk only to this origin, and not be framed by another site (clickjacking
 * a signed-in marketer into a deletion).
 */
export const CONSOLE_SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The marketer console: static assets built from web/, served at `/`. It talks to the public /v1 API
 * with the user's key like any client; nothing here needs or checks a key. Unknown /v1 routes keep
 * their problem+json 404 because only the console's pages fall back to index.html.
 */
const consoleRoutes: FastifyPluginAsync<{ dir?: string }> = async (app, opts) => {
  const dir = opts.dir ?? CONSOLE_DIR;
  // This plugin's own routes only (it is not wrapped in fastify-plugin): the API and /docs keep theirs.
  app.addHook("onSend", async (_req, reply) => {
    reply.headers(CONSOLE_SECURITY_HEADERS);
  });
  if (!existsSync(path.join(dir, "index.html"))) {
    // The API works without the console; say how to get it rather than failing to start.
    for (const url of PAGES)
      app.get(url, { schema: { hide: true } }, async (_req, reply) =>
        reply.code(503).type("text/plain; charset=utf-8").send("The console is not built: run `npm run build:console` (npm start and npm test build it).\n"),
      );
    return;
  }
  await app.register(fastifyStatic, {
    root: dir,
    prefix: "/",
    // Files are listed once at startup (the build happens before): no catch-all route that would
    // shadow the API's 404s.
    wildcard: false,
    index: false,
    setHeaders(reply, filePath) {
      // Built assets carry a content hash in their names; index.html must be revalidated.
      reply.header("cache-control", filePath.includes(`${path.sep}assets${path.sep}`) ? "public, max-age=31536000, immutable" : "no-cache");
    },
  });
  for (const url of PAGES) app.get(url, { schema: { hide: true } }, async (_req, reply) => reply.header("cache-control", "no-cache").sendFile("index.html"));
};
export default consoleRoutes;
