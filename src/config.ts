import { isIP } from "node:net";
import { z } from "zod";
import { cronProblem } from "./jobs/cron.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** One address or CIDR range of a trusted proxy: `10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8`. */
function isAddressOrRange(entry: string): boolean {
  const [address, bits, ...rest] = entry.split("/");
  const family = isIP(address ?? "");
  if (family === 0 || rest.length > 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

/**
 * Which proxies' X-Forwarded-For the API believes when it decides a client's address (Fastify's
 * trustProxy): `false`, `true` (any peer: only when nothing but the proxy can reach the API), or a
 * comma-separated list of the proxies' addresses/ranges. No hop count: Fastify 5 ignores one, since
 * it cannot tell a proxy from a client that sends the header itself.
 */
const trustProxySchema = z
  .string()
  .default("false")
  .transform((v, ctx): boolean | string => {
    const t = v.trim();
    if (t === "false") return false;
    if (t === "true") return true;
    const entries = t.split(",").map((e) => e.trim());
    const bad = entries.find((e) => !isAddressOrRange(e));
    if (bad !== undefined) {
      ctx.addIssue({ code: "custom", message: `'${bad}' is not an address or CIDR range (expected false, true, or a comma-separated list of proxy addresses and CIDR ranges)` });
      return z.NEVER;
    }
    return entries.join(",");
  });

/**
 * Networks webhooks may reach although they are private or reserved (loopback, RFC 1918, link-local,
 * cloud metadata, …): none unless listed, as a comma-separated list of addresses and CIDR ranges.
 */
const webhookAllowNetworksSchema = z
  .string()
  .default("")
  .transform((v, ctx): string[] => {
    const entries = v.split(",").map((e) => e.trim()).filter(Boolean);
    const bad = entries.find((e) => !isAddressOrRange(e));
    if (bad !== undefined) {
      ctx.addIssue({ code: "custom", message: `'${bad}' is not an address or CIDR range (expected a comma-separated list such as 10.20.0.0/16,fd00::/8)` });
      return z.NEVER;
    }
    return entries;
  });

/**
 * Whether a connection URL parses. The clients' own parsers throw TypeError: Invalid URL with the whole
 * URL, password included, which Node then prints: checked here first, and the message never repeats the
 * value (a password with an unencoded `/`, `#` or `@` is the usual cause).
 */
const parsesAsUrl = (v: string) => URL.canParse(v);
const UNPARSEABLE_URL = "is not a valid URL (percent-encode any /, #, ?, @ or : in the user name or password)";

const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .default("postgresql://postgres@127.0.0.1:5432/activation_audiences")
    .refine((v) => /^postgres(ql)?:\/\//.test(v), "must be a postgresql:// URL")
    .refine(parsesAsUrl, UNPARSEABLE_URL),
  REDIS_URL: z
    .string()
    .default("redis://127.0.0.1:6379")
    .refine((v) => /^rediss?:\/\//.test(v), "must be a redis:// URL")
    .refine(parsesAsUrl, UNPARSEABLE_URL),
  /** Prefix of every BullMQ key, so several deployments (or test runs) can share one Redis. */
  REDIS_PREFIX: z.string().min(1).default("aa"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default("127.0.0.1"),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  /** 0 runs the API alone; workers then run elsewhere (`npm run worker`). */
  WORKERS: z.coerce.number().int().min(0).max(64).default(1),
  /** Cron of the daily processing of every fact through yesterday (in each fact's timezone). */
  PROCESS_CRON: z
    .string()
    .default("15 0 * * *")
    .superRefine((v, ctx) => {
      const problem = cronProblem(v);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  PG_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  /** How long a worker's lock on a job lasts without renewal; a killed worker's job is retried after it. */
  JOB_LOCK_MS: z.coerce.number().int().min(500).max(600_000).default(60_000),
  /** How often workers look for jobs whose worker died (stalled jobs). */
  JOB_STALLED_CHECK_MS: z.coerce.number().int().min(200).max(600_000).default(30_000),
  /**
   * How often workers look for unfinished records whose job is gone or has ended (Redis lost it, or the
   * outcome of a last attempt could not be recorded) and revive those jobs; also done on every (re)connection.
   */
  JOB_RECOVERY_INTERVAL_MS: z.coerce.number().int().min(200).max(86_400_000).default(60_000),
  /**
   * How long a request's Idempotency-Key is remembered: a retry within it replays the first answer, one after
   * it is a new request. Workers delete older records as they sweep (JOB_RECOVERY_INTERVAL_MS).
   */
  IDEMPOTENCY_KEY_RETENTION_HOURS: z.coerce.number().int().min(1).max(8760).default(168),
  /** Requests one API key may make per window, counted in Redis across every API process; 0 turns the limit off. */
  RATE_LIMIT_MAX: z.coerce.number().int().min(0).max(1_000_000_000).default(6000),
  RATE_LIMIT_WINDOW_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
  /**
   * Failed authentications (a key presented but unknown or revoked) one client address may make per
   * AUTH_FAILURE_WINDOW_MS; beyond it the address gets 429 without its keys being looked up. 0 turns it off.
   */
  AUTH_FAILURE_LIMIT: z.coerce.number().int().min(0).max(1_000_000_000).default(30),
  AUTH_FAILURE_WINDOW_MS: z.coerce.number().int().min(100).max(86_400_000).default(300_000),
  TRUST_PROXY: trustProxySchema,
  /** How long a webhook receiver has to answer one delivery attempt before it counts as failed (and is retried). */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  /** Private or reserved networks webhooks may reach all the same (an in-cluster receiver); by default none. */
  WEBHOOK_ALLOW_NETWORKS: webhookAllowNetworksSchema,
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

/** Reads the environment once at boot; a bad variable stops the process with its name and the reason. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}
