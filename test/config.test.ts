import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { checkServices } from "../src/bootstrap.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("has working defaults for every variable", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ PORT: 3000, HOST: "127.0.0.1", LOG_LEVEL: "info", WORKERS: 1, REDIS_PREFIX: "aa", RATE_LIMIT_MAX: 6000, RATE_LIMIT_WINDOW_MS: 60_000 });
    expect(c.DATABASE_URL).toMatch(/^postgresql:\/\//);
    expect(c.REDIS_URL).toMatch(/^redis:\/\//);
  });

  it("reads and coerces the environment; empty values mean unset; unrelated variables are ignored", () => {
    const c = loadConfig({ PORT: "8080", LOG_LEVEL: "debug", WORKERS: "0", DATABASE_URL: "postgres://u@db:5432/x", HOST: "", HOME: "/root" });
    expect(c).toMatchObject({ PORT: 8080, LOG_LEVEL: "debug", WORKERS: 0, DATABASE_URL: "postgres://u@db:5432/x", HOST: "127.0.0.1" });
  });

  it.each([
    [{ PORT: "abc" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ PORT: "-1" }, "PORT"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ REDIS_URL: "http://localhost:6379" }, "REDIS_URL"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ WORKERS: "many" }, "WORKERS"],
    [{ PG_POOL_MAX: "0" }, "PG_POOL_MAX"],
    [{ RATE_LIMIT_MAX: "-1" }, "RATE_LIMIT_MAX"],
    [{ RATE_LIMIT_MAX: "lots" }, "RATE_LIMIT_MAX"],
    [{ RATE_LIMIT_WINDOW_MS: "0" }, "RATE_LIMIT_WINDOW_MS"],
    [{ AUTH_FAILURE_LIMIT: "-1" }, "AUTH_FAILURE_LIMIT"],
    [{ AUTH_FAILURE_WINDOW_MS: "soon" }, "AUTH_FAILURE_WINDOW_MS"],
    [{ TRUST_PROXY: "yes" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "1" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.0/33" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.1, proxy.internal" }, "TRUST_PROXY"],
    [{ WEBHOOK_ALLOW_NETWORKS: "10.0.0.0/8,crm.internal" }, "WEBHOOK_ALLOW_NETWORKS"],
    [{ WEBHOOK_ALLOW_NETWORKS: "true" }, "WEBHOOK_ALLOW_NETWORKS"],
  ])("names the bad variable: %o", (env, variable) => {
    const message = configError(env);
    expect(message).toMatch(/^Invalid configuration/);
    expect(message).toMatch(new RegExp(`^\\s+${variable}: `, "m"));
    // Only the bad variable is named.
    const named = [...message.matchAll(/^\s+([A-Z_]+): /gm)].map((m) => m[1]);
    expect(named).toEqual([variable]);
  });

  it("TRUST_PROXY: false by default; true; or a list of proxy addresses and ranges, IPv4 and IPv6", () => {
    expect(loadConfig({}).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: "true" }).TRUST_PROXY).toBe(true);
    expect(loadConfig({ TRUST_PROXY: "false" }).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: " 10.0.0.0/8, 192.168.1.7 ,::1,fd00::/8" }).TRUST_PROXY).toBe("10.0.0.0/8,192.168.1.7,::1,fd00::/8");
    expect(configError({ TRUST_PROXY: "proxy.internal" })).toMatch(/TRUST_PROXY: 'proxy.internal' is not an address or CIDR range/);
  });

  it("WEBHOOK_ALLOW_NETWORKS: none by default; a list of addresses and ranges, IPv4 and IPv6", () => {
    expect(loadConfig({}).WEBHOOK_ALLOW_NETWORKS).toEqual([]);
    expect(loadConfig({ WEBHOOK_ALLOW_NETWORKS: " 10.20.0.0/16, 192.168.1.7 ,fd00::/8" }).WEBHOOK_ALLOW_NETWORKS).toEqual(["10.20.0.0/16", "192.168.1.7", "fd00::/8"]);
    expect(configError({ WEBHOOK_ALLOW_NETWORKS: "10.0.0.0/33" })).toMatch(/WEBHOOK_ALLOW_NETWORKS: '10.0.0.0\/33' is not an address or CIDR range/);
  });

  it("PROCESS_CRON: parsed as the scheduler will parse it, at most once a minute", () => {
    expect(loadConfig({ PROCESS_CRON: "30 1 * * *" }).PROCESS_CRON).toBe("30 1 * * *");
    expect(configError({ PROCESS_CRON: "99 99 * * *" })).toMatch(/PROCESS_CRON: .*got value 99/);
    expect(configError({ PROCESS_CRON: "daily" })).toMatch(/PROCESS_CRON: a cron expression has 5 fields/);
    expect(configError({ PROCESS_CRON: "*/10 * * * * *" })).toMatch(/PROCESS_CRON: runs less than 60 s apart/);
  });

  it("says why, not only which", () => {
    expect(configError({ DATABASE_URL: "mysql://x" })).toMatch(/DATABASE_URL: must be a postgresql:\/\/ URL/);
    expect(configError({ LOG_LEVEL: "loud" })).toMatch(/LOG_LEVEL: .*(info|debug|fatal)/);
  });

  it("a connection URL that does not parse is named without its value (a password with a raw / or #)", () => {
    const message = configError({
      DATABASE_URL: "postgresql://postgres:pa/ss#word-1234@db.internal:5432/x",
      REDIS_URL: "redis://default:re#dis/word-1234@cache.internal:6379",
    });
    expect(message).toMatch(/^\s+DATABASE_URL: is not a valid URL/m);
    expect(message).toMatch(/^\s+REDIS_URL: is not a valid URL/m);
    expect(message).not.toMatch(/word-1234|internal/);
  });

  it("reports every bad variable at once", () => {
    const message = configError({ PORT: "abc", DATABASE_URL: "mysql://x", LOG_LEVEL: "loud" });
    for (const v of ["PORT", "DATABASE_URL", "LOG_LEVEL"]) expect(message).toMatch(new RegExp(`^\\s+${v}: `, "m"));
  });
});

describe("the message when PostgreSQL or Redis does not answer", () => {
  it("names where, without the passwords in their URLs", async () => {
    const message = await checkServices(
      loadConfig({ DATABASE_URL: "postgresql://postgres:pg-password-1234@127.0.0.1:1/never", REDIS_URL: "redis://default:redis-password-1234@127.0.0.1:1/0" }),
    );
    expect(message).toMatch(/PostgreSQL does not answer at 127\.0\.0\.1:1 /);
    expect(message).toMatch(/Redis does not answer at redis:\/\/127\.0\.0\.1:1\/0 /);
    expect(message).not.toMatch(/password-1234/);
  }, 20_000);
});

describe("the server at boot", () => {
  it("exits non-zero with a message naming PORT when PORT=abc, before touching anything", () => {
    const res = spawnSync("npx", ["tsx", "src/server.ts"], {
      cwd: ROOT,
      // A database nobody could reach: the process must stop at the config, not get that far.
      env: { ...process.env, PORT: "abc", DATABASE_URL: "postgresql://postgres@127.0.0.1:1/never" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(res.signal, "the server did not exit by itself").toBeNull();
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/Invalid configuration/);
    expect(res.stderr).toMatch(/^\s+PORT: /m);
    expect(res.stderr).not.toMatch(/PostgreSQL does not answer/);
    // A clear message, not a stack trace.
    expect(res.stderr).not.toMatch(/\n\s+at /);
    expect(res.stdout).toBe("");
  }, 90_000);
});
