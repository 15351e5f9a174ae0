import { Redis, type RedisOptions } from "ioredis";

/** BullMQ needs maxRetriesPerRequest null on worker connections; the API side fails fast instead. */
export function createRedis(url: string, role: "queue" | "worker"): Redis {
  const options: RedisOptions =
    role === "worker"
      ? { maxRetriesPerRequest: null, enableReadyCheck: false }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 3000 };
  const redis = new Redis(url, { lazyConnect: false, ...options });
  // Connection errors are reported through /ready and job endpoints; ioredis reconnects on its own.
  redis.on("error", () => {});
  return redis;
}
