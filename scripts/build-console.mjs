// Builds the marketer console (web/) into dist/console with Vite when its sources changed since the
// last build, so `npm start`, `npm test` and `npm run demo` work on a fresh clone after `npm ci`.
// All output goes to stderr: `npm run --silent cli` prints only results.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const web = path.join(root, "web");
const outDir = path.join(root, "dist/console");
const stamp = path.join(outDir, ".source-hash");

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .sort();
}

const hash = createHash("sha256");
for (const f of [...filesUnder(web), path.join(root, "package-lock.json"), new URL(import.meta.url).pathname]) {
  hash.update(path.relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
}
const digest = hash.digest("hex");
if (!process.argv.includes("--force") && existsSync(stamp) && readFileSync(stamp, "utf8") === digest && existsSync(path.join(outDir, "index.html"))) process.exit(0);

const started = performance.now();
const { build } = await import("vite");
// Built beside and moved in whole: two builds at once (npm start beside npm test) never write into one folder.
const tmpDir = `${outDir}.tmp-${process.pid}`;
await build({
  root: web,
  configFile: path.join(web, "vite.config.ts"),
  logLevel: "warn",
  build: { outDir: tmpDir, emptyOutDir: true },
});
writeFileSync(path.join(tmpDir, ".source-hash"), digest);
rmSync(outDir, { recursive: true, force: true });
renameSync(tmpDir, outDir);
process.stderr.write(`console built into dist/console in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
