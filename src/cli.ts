import { parseArgs } from "node:util";
import { createContext, prepareServices } from "./bootstrap.js";
import { ConfigError, loadConfig } from "./config.js";
import { migrateDatabase } from "./db/migrate.js";
import { AmbiguousKeyError, createApiKey, listApiKeys, revokeApiKey, SCOPES, type Scope } from "./keys/api-keys.js";
import { getFactRecord } from "./facts/facts.js";
import { requestRun, executeRun } from "./activation/runs.js";
import { ProgressBar } from "./cli/progress.js";

const USAGE = `Usage: npm run cli -- <command>

  keys create --name NAME --scopes read,write,admin   print a new API key (only the key, on stdout)
  keys list                                           list keys (never the keys themselves)
  keys revoke <id | key | prefix>                     revoke a key at once (a prefix: 8+ characters, one key only)
  load <fact> <file> [--reject-file out.csv] [--format csv|ndjson]
                                                      bulk-load CSV or NDJSON (optionally .gz) through COPY;
                                                      the format is read from the file's name unless given
  process <fact> [--through YYYY-MM-DD]               process a fact now, with a progress bar
  migrate                                             apply database migrations
  demo                                                load demo data and show what the service does`;

type Ctx = ReturnType<typeof createContext>;

async function withContext<T>(fn: (ctx: Ctx) => Promise<T>): Promise<T> {
  const config = loadConfig();
  await prepareServices(config, (m) => console.error(m));
  const ctx = createContext(config);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

async function keysCommand(args: string[]) {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, options: { name: { type: "string" }, scopes: { type: "string" } }, allowPositionals: true });
  await withContext(async (ctx) => {
    if (sub === "create") {
      if (!values.name) throw new UsageError("keys create needs --name");
      const scopes = (values.scopes ?? "read").split(",").map((s) => s.trim()).filter(Boolean) as Scope[];
      for (const s of scopes) if (!SCOPES.includes(s)) throw new UsageError(`unknown scope '${s}' (read, write, admin)`);
      const { key } = await createApiKey(ctx.db.prisma, { name: values.name, scopes });
      process.stdout.write(`${key}\n`);
    } else if (sub === "list") {
      const keys = await listApiKeys(ctx.db.prisma);
      for (const k of keys)
        console.log(`${k.id}  ${k.prefix}…  ${k.name}  [${k.scopes.join(",")}]  created ${k.created_at}${k.revoked_at ? `  REVOKED ${k.revoked_at}` : ""}`);
      if (keys.length === 0) console.log("no keys");
    } else if (sub === "revoke") {
      const target = positionals[0];
      if (positionals.length > 1) throw new UsageError(`keys revoke takes one key; unexpected '${positionals[1]}'`);
      if (!target) throw new UsageError("keys revoke needs a key's id, the key, or a prefix of it");
      const n = await revokeApiKey(ctx.db.prisma, target).catch((err: unknown) => {
        throw err instanceof AmbiguousKeyError ? new UsageError(err.message) : err;
      });
      if (n === 0) throw new UsageError(`no live key matches '${target}'`);
      console.log(`revoked ${n} key(s)`);
    } else throw new UsageError(`unknown keys command '${sub ?? ""}'`);
  });
}

async function processCommand(args: string[]) {
  const { values, positionals } = parseArgs({ args, options: { through: { type: "string" } }, allowPositionals: true });
  const name = positionals[0];
  if (!name) throw new UsageError("process needs a fact name");
  if (positionals.length > 1) throw new UsageError(`process takes one fact; unexpected '${positionals[1]}'`);
  await withContext(async (ctx) => {
    const fact = await getFactRecord(ctx, name);
    // Same path as the API: a run record, executed here instead of by a worker.
    const { run } = await requestRun(ctx, fact, values.through, "cli");
    const bar = new ProgressBar(`processing ${name}`);
    const t0 = performance.now();
    const done = await executeRun(ctx, run.id, { finalAttempt: true, progress: (f, step) => bar.update(f, step) });
    bar.done();
    if (done.status !== "succeeded") throw new Error(done.error ?? "run failed");
    const took = `${((performance.now() - t0) / 1000).toFixed(2)} s`;
    console.log(done.from === null ? `${name}: nothing to recompute through ${done.through} (${took})` : `processed ${name} from ${done.from} through ${done.through} in ${took}`);
    if (done.note) console.log(done.note);
  });
}

class UsageError extends Error {}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  switch (command) {
    case "keys":
      return keysCommand(args);
    case "process":
      return processCommand(args);
    case "load": {
      const { loadCommand } = await import("./cli/load.js");
      return withContext((ctx) => loadCommand(ctx, args));
    }
    case "migrate": {
      const config = loadConfig();
      const ran = await migrateDatabase(config.DATABASE_URL, (m) => console.log(m));
      if (ran.length === 0) console.log("database is up to date");
      return;
    }
    case "demo": {
      const { runDemo } = await import("./cli/demo.js");
      return withContext((ctx) => runDemo(ctx));
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
    default:
      console.error(`error: unknown command '${command}'\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    if (err instanceof UsageError || err instanceof ConfigError) console.error(`error: ${err.message}`);
    else console.error(`error: ${(err as Error).message ?? err}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
