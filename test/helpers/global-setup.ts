import { Redis } from "ioredis";
import { migrateDatabase } from "../../src/db/migrate.js";
import { ADMIN_URL, REDIS_URL, adminQuery, databaseUrl, dropDatabase, templateName } from "./databases.js";
import pg from "pg";

/**
 * Once per `vitest run`: check PostgreSQL and Redis answer, build the migrated template database
 * every test database is cloned from, and pick a run id that namespaces Redis keys.
 */
export default async function setup({ provide }: { provide: (key: string, value: unknown) => void }) {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `PostgreSQL does not answer at ${ADMIN_URL}: ${(err as Error).message}\n` +
        "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    );
  } finally {
    await client.end().catch(() => {});
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(
      `Redis does not answer at ${REDIS_URL}: ${(err as Error).message}\n` +
        'Start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
    );
  } finally {
    redis.disconnect();
  }
  // Each run has its own template, so concurrent runs (several checkouts, CI) never collide.
  const runId = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const template = templateName(runId);
  await adminQuery(`CREATE DATABASE ${template}`);
  await migrateDatabase(databaseUrl(template));
  provide("runId", runId);

  return async () => {
    await dropDatabase(template).catch(() => {});
    // Drop this run's Redis keys; databases are dropped by each worker as it finishes.
    const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", `aa-test-${runId}-*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== "0");
    } finally {
      r.disconnect();
    }
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    runId: string;
  }
}
