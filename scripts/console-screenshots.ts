// Takes the README's console screenshots (docs/console-*.png) from a running service with the demo
// data: `npm run demo`, `npm start`, then `npx tsx scripts/console-screenshots.ts <api key> [base URL]`.
// Uses Debian's Chromium like the e2e tests (test/console.e2e.test.ts).
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [key, base = "http://127.0.0.1:3000"] = process.argv.slice(2);
if (!key) {
  console.error("usage: npx tsx scripts/console-screenshots.ts <api key> [base URL]");
  process.exit(2);
}
const out = path.resolve(import.meta.dirname, "../docs");
const get = async (url: string) => (await (await fetch(base + url, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: unknown[] };

const profile = mkdtempSync(path.join(os.tmpdir(), "aa-console-shots-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const shot = async (name: string, fullPage = true) => {
    await page.waitForLoadState("networkidle");
    await page.screenshot({ path: path.join(out, `console-${name}.png`), fullPage });
  };
  await page.goto(`${base}/sign-in`);
  await page.getByLabel("API key").fill(key);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/dashboard$/);
  await page.getByRole("heading", { name: /Service/ }).waitFor();
  await shot("dashboard");

  const audiences = (await get("/v1/audiences")).data as Array<{ id: string; name: string }>;
  const chatters = audiences.find((a) => a.name.startsWith("Chatted"))!;
  await page.goto(`${base}/audiences/${chatters.id}`);
  await page.getByText(/counted in/).waitFor();
  await shot("audience-builder");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("audience-builder-390", false);
  await page.setViewportSize({ width: 1280, height: 900 });

  const streakers = audiences.find((a) => a.name.startsWith("Long streakers"))!;
  const lists = (await get(`/v1/audiences/${streakers.id}/materializations`)).data as Array<{ id: string }>;
  await page.goto(`${base}/materializations/${lists[0]!.id}`);
  await page.getByText(/entered, .* exited/).waitFor();
  await shot("members");

  const campaigns = (await get("/v1/campaigns")).data as Array<{ id: string }>;
  await page.goto(`${base}/campaigns/${campaigns[0]!.id}`);
  await page.getByTestId("lift").waitFor();
  await shot("campaign-results");
  console.log(`screenshots written to ${out}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
