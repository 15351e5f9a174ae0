import { buildApp } from "./app.js";
import { createContext, prepareServices, upsertSchedules } from "./bootstrap.js";
import { ConfigError, loadConfig } from "./config.js";
import { startWorkers } from "./jobs/workers.js";

/** `npm start`: migrations, the API and (unless WORKERS=0) in-process workers; graceful on SIGTERM. */
async function main() {
  const config = loadConfig();
  await prepareServices(config, (m) => console.log(m));
  const ctx = createContext(config);
  const app = await buildApp(ctx);
  const workers = config.WORKERS > 0 ? startWorkers(ctx, app.log) : null;
  if (workers) await upsertSchedules(ctx);
  await app.listen({ port: config.PORT, host: config.HOST });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, "shutting down: finishing in-flight requests and jobs");
    // close() stops accepting connections and waits for in-flight requests; workers finish their jobs.
    await app.close();
    await workers?.close();
    await ctx.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
