import type { AddressInfo } from "node:net";
import { pullWithCurl } from "../common.js";

const mb = (bytes: number) => bytes / 1024 / 1024;

export interface StreamFigures {
  ms: number;
  ttfb_ms: number;
  rows: number;
  bytes: number;
  rss_before_mb: number;
  rss_peak_mb: number;
}

/**
 * The Activation Status of one day for every user, through the HTTP API as NDJSON: the app is
 * built in-process (createContext + buildApp) and listens on 127.0.0.1:0, a read key is created,
 * and curl in a process of its own pulls the stream (bench/common.ts). The second of two identical
 * requests is reported (the first warms plans and pages). RSS is this process's: the server's.
 */
export async function streamStatus(databaseUrl: string, redisUrl: string, factName: string, period: string): Promise<StreamFigures> {
  const { loadConfig } = await import("../../src/config.js");
  const { createContext } = await import("../../src/bootstrap.js");
  const { buildApp } = await import("../../src/app.js");
  const { createApiKey } = await import("../../src/keys/api-keys.js");
  const ctx = createContext(loadConfig({ DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, REDIS_PREFIX: "aa-bench-activation", LOG_LEVEL: "silent", WORKERS: "0" }));
  const app = await buildApp(ctx);
  await app.listen({ host: "127.0.0.1", port: 0 });
  try {
    const port = (app.server.address() as AddressInfo).port;
    const { key } = await createApiKey(ctx.db.prisma, { name: "bench", scopes: ["read"] });
    const url = `http://127.0.0.1:${port}/v1/facts/${factName}/status?grain=day&period=${period}`;
    const headers = { authorization: `Bearer ${key}`, accept: "application/x-ndjson" };
    const runOnce = async (): Promise<StreamFigures> => {
      const rssBefore = process.memoryUsage().rss;
      let peak = rssBefore;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
      try {
        const pulled = await pullWithCurl(url, headers);
        peak = Math.max(peak, process.memoryUsage().rss);
        return { ms: pulled.ms, ttfb_ms: pulled.ttfb_ms, rows: pulled.lines, bytes: pulled.bytes, rss_before_mb: mb(rssBefore), rss_peak_mb: mb(peak) };
      } finally {
        clearInterval(sampler);
      }
    };
    await runOnce();
    return await runOnce();
  } finally {
    await app.close();
    await ctx.close();
  }
}

// Standalone, on a kept bench database: npx tsx bench/activation/stream.ts <fact> <period>
if (import.meta.url === `file://${process.argv[1]}`) {
  const [fact = "bench_main", period = "2026-06-30"] = process.argv.slice(2);
  const r = await streamStatus(
    process.env.BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/aa_bench_activation",
    process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    fact,
    period,
  );
  console.log({ ...r, rows_per_s: Math.round(r.rows / (r.ms / 1000)) });
}
