import { Redis, type RedisOptions } from "ioredis";

/** BullMQ needs maxRetriesPerRequest null on worker connections; the producer side fails fast instead. */
export function createRedis(url: string, role: "queue" | "worker"): Redis {
  const options: RedisOptions =
    role === "worker"
      ? { maxRetriesPerRequest: null, enableReadyCheck: false }
      : // Commands wait for a (re)connection briefly, then fail: the API answers 503 instead of hanging.
        { maxRetriesPerRequest: 1, commandTimeout: 3000, connectTimeout: 3000 };
  const redis = new Redis(url, { lazyConnect: false, ...options });
  // Connection errors are reported through /ready and job endpoints; ioredis reconnects on its own.
  redis.on("error", () => {});
  return redis;
}
