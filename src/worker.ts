import pino from "pino";
import { createContext, prepareServices, upsertSchedules } from "./bootstrap.js";
import { ConfigError, loadConfig } from "./config.js";
import { startWorkers } from "./jobs/workers.js";

/** `npm run worker`: job workers only, to scale out processing and materialisation. */
async function main() {
  const config = loadConfig();
  await prepareServices(config);
  const log = pino({ level: config.LOG_LEVEL });
  const ctx = createContext(config);
  const workers = startWorkers(ctx, log);
  await upsertSchedules(ctx);
  log.info("workers started");
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down: finishing in-flight jobs");
    await workers.close();
    await ctx.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
