import { inject } from "vitest";
import { buildApp, type App } from "../../src/app.js";
import { createContext } from "../../src/bootstrap.js";
import { loadConfig } from "../../src/config.js";
import { createApiKey } from "../../src/keys/api-keys.js";
import { startWorkers, type RunningWorkers } from "../../src/jobs/workers.js";
import { cloneTemplate, dropDatabase, REDIS_URL, templateName } from "./databases.js";

export interface TestEnv {
  app: App;
  ctx: ReturnType<typeof createContext>;
  /** Keys by scope set: admin, write (write only), read (read only), rw (read+write). */
  keys: { admin: string; read: string; write: string; rw: string };
  auth(key?: string): { authorization: string };
  /** Environment for a child process (worker, CLI) on this test's database and Redis namespace. */
  childEnv: Record<string, string>;
  startWorkers(): RunningWorkers;
  /** Stops every worker started here: their jobs wait in Redis until workers are started again. */
  stopWorkers(): Promise<void>;
  /** Runs `work` with the workers stopped, then starts them again. */
  withWorkersStopped<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

let counter = 0;

/**
 * A database of its own (cloned from the migrated template), a Redis namespace of its own, the app
 * built on them and API keys for each scope. Call once per test file (beforeAll) and close afterwards.
 */
export async function createTestEnv(overrides: Record<string, string> = {}): Promise<TestEnv> {
  const runId = inject("runId");
  const worker = process.env.VITEST_POOL_ID ?? "0";
  const name = `aa_test_${runId}_${worker}_${process.pid}_${counter++}`;
  const url = await cloneTemplate(name, templateName(runId));
  // The tests' webhook receivers listen on loopback, which webhooks may not reach unless allowed;
  // test/webhook-ssrf.test.ts allows nothing.
  const settings = { WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8,::1", ...overrides };
  const config = loadConfig({ DATABASE_URL: url, REDIS_URL, REDIS_PREFIX: `aa-test-${runId}-${name}`, LOG_LEVEL: "silent", WORKERS: "1",
    // The suite makes many requests with one key, and many with bad keys from one address;
    // test/rate-limit.test.ts and test/auth-failures.test.ts set low limits of their own.
    RATE_LIMIT_MAX: "1000000", AUTH_FAILURE_LIMIT: "1000000", ...settings });
  const ctx = createContext(config);
  const app = await buildApp(ctx);
  const mk = async (scopes: ("read" | "write" | "admin")[]) => (await createApiKey(ctx.db.prisma, { name: scopes.join("+"), scopes })).key;
  const keys = { admin: await mk(["admin"]), read: await mk(["read"]), write: await mk(["write"]), rw: await mk(["read", "write"]) };
  const running: RunningWorkers[] = [];
  const start = () => {
    const w = startWorkers(ctx, { info() {}, error() {} });
    running.push(w);
    return w;
  };
  const stop = async () => {
    for (const w of running.splice(0)) await w.close();
  };
  return {
    app,
    ctx,
    keys,
    auth: (key = keys.admin) => ({ authorization: `Bearer ${key}` }),
    childEnv: { DATABASE_URL: url, REDIS_URL, REDIS_PREFIX: config.REDIS_PREFIX, LOG_LEVEL: "silent", ...settings },
    startWorkers: start,
    stopWorkers: stop,
    async withWorkersStopped(work) {
      await stop();
      try {
        return await work();
      } finally {
        start();
      }
    },
    async close() {
      await stop();
      await app.close();
      await ctx.queues.processing.obliterate({ force: true }).catch(() => {});
      await ctx.close();
      await dropDatabase(name);
    },
  };
}
