import { PostgresLayerEngine } from "./activation/postgres/engine.js";
import type { Config } from "./config.js";
import type { AppContext } from "./context.js";
import { createDatabase } from "./db/client.js";
import { JobQueues } from "./jobs/queues.js";
import { createRedis } from "./jobs/redis.js";

/** Builds the shared context (pool, Prisma, engine, queues) from validated config. */
export function createContext(config: Config): AppContext & { close(): Promise<void> } {
  const db = createDatabase(config.DATABASE_URL, config.PG_POOL_MAX);
  const redis = createRedis(config.REDIS_URL, "queue");
  const queues = new JobQueues(redis, config.REDIS_PREFIX);
  return {
    config,
    db,
    engine: new PostgresLayerEngine(db.pool),
    queues,
    async close() {
      await queues.close();
      redis.disconnect();
      await db.close();
    },
  };
}

/** A URL as it may be printed: without the user and password it may carry. */
function withoutCredentials(raw: string): string {
  const url = new URL(raw);
  url.username = "";
  url.password = "";
  return url.toString();
}

/** A clear message when PostgreSQL or Redis does not answer, with the commands that start them. */
export async function checkServices(config: Config): Promise<string | null> {
  const problems: string[] = [];
  const pg = (await import("pg")).default;
  const url = new URL(config.DATABASE_URL);
  url.pathname = "/postgres";
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
  } catch (err) {
    problems.push(
      `PostgreSQL does not answer at ${url.host} (${(err as Error).message}). Start it with:\n` +
        "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    );
  } finally {
    await client.end().catch(() => {});
  }
  const redis = createRedis(config.REDIS_URL, "queue");
  try {
    await Promise.race([redis.ping(), new Promise((_, rej) => setTimeout(() => rej(new Error("timeout")), 3000))]);
  } catch (err) {
    problems.push(
      `Redis does not answer at ${withoutCredentials(config.REDIS_URL)} (${(err as Error).message}). Start it with:\n` +
        '  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
    );
  } finally {
    redis.disconnect();
  }
  return problems.length ? problems.join("\n") : null;
}

/**
 * What every long-running process does first: stop with a clear message when PostgreSQL or Redis does
 * not answer, then apply migrations.
 */
export async function prepareServices(config: Config, log: (msg: string) => void = () => {}): Promise<void> {
  const down = await checkServices(config);
  if (down) {
    console.error(down);
    process.exit(1);
  }
  await (await import("./db/migrate.js")).migrateDatabase(config.DATABASE_URL, log);
}

/** Recurring work, kept in Redis: the daily processing and the audiences' refresh schedules. */
export async function upsertSchedules(ctx: AppContext): Promise<void> {
  await ctx.queues.upsertDailyProcessing(ctx.config.PROCESS_CRON);
  await (await import("./audiences/refresh.js")).syncRefreshSchedules(ctx);
}
