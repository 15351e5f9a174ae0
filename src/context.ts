import fp from "fastify-plugin";
import type { Config } from "./config.js";
import type { Database } from "./db/client.js";
import type { PostgresLayerEngine } from "./activation/postgres/engine.js";
import type { JobQueues } from "./jobs/queues.js";

/** Everything a request handler may use; built once by server.ts/worker.ts/cli.ts, or per test. */
export interface AppContext {
  config: Config;
  db: Database;
  engine: PostgresLayerEngine;
  queues: JobQueues;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The whole context, to hand to domain functions. */
    ctx: AppContext;
    config: Config;
    db: Database;
    engine: PostgresLayerEngine;
    queues: JobQueues;
  }
}

export const contextPlugin = fp<{ context: AppContext }>(
  async (app, { context }) => {
    app.decorate("ctx", context);
    app.decorate("config", context.config);
    app.decorate("db", context.db);
    app.decorate("engine", context.engine);
    app.decorate("queues", context.queues);
  },
  { name: "context" },
);
