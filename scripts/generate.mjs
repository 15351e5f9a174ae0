// Generates the Prisma client (src/generated/prisma) when schema.prisma changed since the last run.
// Prisma's CLI insists on a schema engine binary it cannot download here; generate never runs it, so
// an empty placeholder satisfies it. All output goes to stderr: `npm run --silent cli` prints only results.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const schema = readFileSync(path.join(root, "prisma/schema.prisma"));
const pkg = readFileSync(path.join(root, "node_modules/prisma/package.json"));
const hash = createHash("sha256").update(schema).update(pkg).digest("hex");
const stamp = path.join(root, "src/generated/.schema-hash");
if (existsSync(stamp) && readFileSync(stamp, "utf8") === hash && existsSync(path.join(root, "src/generated/prisma/client.ts"))) process.exit(0);

const placeholder = path.join(os.tmpdir(), "activation-audiences-schema-engine-placeholder");
if (!existsSync(placeholder)) writeFileSync(placeholder, "");
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY || placeholder,
  // generate reads no database; prisma.config.ts only needs the variable set.
  DATABASE_URL: process.env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/activation_audiences",
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
};
const res = spawnSync(process.execPath, [path.join(root, "node_modules/prisma/build/index.js"), "generate"], {
  cwd: root,
  env,
  stdio: ["ignore", 2, 2],
});
if (res.status !== 0) process.exit(res.status ?? 1);
mkdirSync(path.dirname(stamp), { recursive: true });
writeFileSync(stamp, hash);
