// The marketer console end to end in real headless Chromium (Debian's `chromium`, driven by
// playwright-core): the app listens on a real port with a real database, Redis and workers; data is
// loaded through the API; the browser signs in, builds an audience by clicking, materializes it, pages
// the members, downloads the CSV and reads a campaign's results. Screenshots go to test/artifacts/.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { allPages, api, failCampaignAssignment, ingest, processThrough, waitForCampaign } from "./helpers/api.js";
import { whileTableLocked } from "./helpers/locks.js";
import { demoPopulation, eventsForDay, prng } from "../src/cli/demo-data.js";
import { dateToDay, dayToDate } from "../src/activation/periods.js";
import { localDate } from "../src/facts/timezones.js";
import { CONSOLE_SECURITY_HEADERS } from "../src/routes/console.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.resolve(import.meta.dirname, "artifacts");
const TZ = "Asia/Seoul";
const USERS = 600;
const DAYS = 60;
const WINDOW = 14;

let env: TestEnv;
let base: string;
let context: BrowserContext;
let page: Page;
let profileDir: string;
const pageErrors: string[] = [];
let lastDay: number;
let campaignId: string;

const nav = (name: string) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });
const title = (name: string) => `${name} · activation-audiences`;

/** Whether the table of the section under this heading fits its width without scrolling. */
const fitsWithoutScrolling = (heading: string | RegExp) =>
  page
    .locator("section")
    .filter({ has: page.getByRole("heading", { level: 2, name: heading }) })
    .locator(".table-scroll")
    .evaluate((e: { scrollWidth: number; clientWidth: number }) => e.scrollWidth <= e.clientWidth);

async function shot(name: string, fullPage = true) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage });
}

/** What the demo does, through the HTTP API: two facts of one service, users who come and go. */
async function loadData() {
  for (const [fact, share] of [["app_opened", 1], ["chat_sent", 0.55]] as const) {
    const res = await api(env).post("/v1/facts", { name: fact, timezone: TZ, service: "marketplace" });
    expect(res.statusCode, res.body).toBe(201);
    const rnd = prng(fact.length * 7919);
    const events: Array<{ user_id: string; occurred_at: string }> = [];
    for (const person of demoPopulation(USERS, lastDay - DAYS + 1, lastDay)) {
      for (const d of person.days) if (share === 1 || rnd() < share) events.push(...eventsForDay(rnd, person.userId, d, 1 + Math.floor(rnd() * 2)));
    }
    await ingest(env, fact, events);
    await processThrough(env, fact, dayToDate(lastDay));
  }
}

/** A win-back campaign as the demo runs it: list as of the day before launch, 20% held out, an effect. */
async function loadCampaign() {
  const launch = lastDay - WINDOW + 1;
  const a = await api(env).post("/v1/audiences", {
    name: "Long streakers, inactive 3–30 days",
    fact: "app_opened",
    grain: "day",
    filter: { all: [{ field: "inactivity_periods", op: "between", value: [3, 30] }, { field: "last_streak_periods", op: "gte", value: 2 }] },
  });
  expect(a.statusCode, a.body).toBe(201);
  const m = await api(env).post(`/v1/audiences/${a.json().id}/materializations`, { as_of: dayToDate(launch - 1) });
  expect(m.statusCode, m.body).toBe(202);
  for (let s = m.json(); ; s = (await api(env).get(`/v1/materializations/${m.json().id}`)).json()) {
    if (s.status === "succeeded") break;
    if (s.status === "failed") throw new Error(s.error);
    await new Promise((r) => setTimeout(r, 50));
  }
  const c = await api(env).post("/v1/campaigns", {
    name: "Win back long streakers",
    materialization_id: m.json().id,
    holdout_percent: 20,
    launch_date: dayToDate(launch),
    goal: { fact: "app_opened", window_periods: WINDOW, metric: "returned" },
    salt: "e2e",
  });
  expect(c.statusCode, c.body).toBe(202);
  campaignId = c.json().id;
  expect((await waitForCampaign(env, campaignId)).status).toBe("ready");
  const treated = (await allPages(env, `/v1/campaigns/${campaignId}/assignments?group=treatment`)).map((r) => String(r.user_id));
  const rnd = prng(42);
  const sentAt = `${dayToDate(launch)}T10:00:00+09:00`;
  const sends = treated.flatMap((u) => {
    const r = rnd();
    const statuses = ["sent", ...(r < 0.9 ? ["delivered"] : []), ...(r < 0.35 ? ["opened"] : []), ...(r < 0.1 ? ["clicked"] : [])];
    return statuses.map((status) => ({ user_id: u, sent_at: sentAt, channel: "push", status }));
  });
  const sent = await api(env).post(`/v1/campaigns/${campaignId}/sends`, { sends });
  expect(sent.statusCode, sent.body).toBeLessThan(300);
  const extra = treated.filter(() => rnd() < 0.4).flatMap((u) => eventsForDay(rnd, u, launch + Math.floor(rnd() * 7), 1));
  await ingest(env, "app_opened", extra);
  await processThrough(env, "app_opened", dayToDate(lastDay));
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`The console's end-to-end tests need Chromium at ${CHROMIUM}: install Debian's package with \`apt-get install -y chromium\` (or set CHROMIUM_PATH).`);
  mkdirSync(ARTIFACTS, { recursive: true });
  env = await createTestEnv();
  env.startWorkers();
  lastDay = dateToDay(localDate(TZ)) - 2;
  await loadData();
  await loadCampaign();
  await env.app.listen({ port: 0, host: "127.0.0.1" });
  const addr = env.app.server.address();
  if (!addr || typeof addr === "string") throw new Error("no port");
  base = `http://127.0.0.1:${addr.port}`;
  profileDir = mkdtempSync(path.join(os.tmpdir(), "aa-console-chromium-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
  });
  page = context.pages()[0] ?? (await context.newPage());
  // Errors in the page fail the test that caused them, with the browser's message.
  context.on("weberror", (e) => pageErrors.push(e.error().message));
  // So does anything the console's Content-Security-Policy blocks (Chromium reports it on the console).
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) pageErrors.push(m.text());
  });
  page.setDefaultTimeout(20_000);
}, 240_000);

afterAll(async () => {
  await context?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  await env?.close();
});

describe("serving", () => {
  it("serves the console at / and its pages, and keeps /v1, /health and /docs as they were", async () => {
    const html = await fetch(`${base}/`);
    expect(html.status).toBe(200);
    expect(html.headers.get("content-type")).toContain("text/html");
    const body = await html.text();
    expect(body).toContain('<div id="app">');
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(body)![1]!;
    const js = await fetch(`${base}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toContain("immutable");
    for (const p of ["/audiences/new", `/campaigns/${campaignId}`, "/dashboard"]) expect((await fetch(`${base}${p}`)).headers.get("content-type")).toContain("text/html");
    const unknown = await fetch(`${base}/v1/no-such-route`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("content-type")).toContain("application/problem+json");
    expect((await fetch(`${base}/v1/facts`)).status).toBe(401);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect((await fetch(`${base}/docs`, { redirect: "manual" })).status).toBeLessThan(400);
    expect((await fetch(`${base}/nothing-here`)).status).toBe(404);
  });

  it("its pages and assets carry a Content-Security-Policy that allows only its own origin and no framing; the API's answers do not", async () => {
    for (const p of ["/", "/sign-in", "/dashboard", `/campaigns/${campaignId}`]) {
      const res = await fetch(`${base}${p}`);
      expect(res.headers.get("content-security-policy"), p).toBe(CONSOLE_SECURITY_HEADERS["content-security-policy"]);
      expect(res.headers.get("x-frame-options"), p).toBe("DENY");
      expect(res.headers.get("x-content-type-options"), p).toBe("nosniff");
    }
    const body = await (await fetch(`${base}/`)).text();
    const asset = await fetch(`${base}${/src="(\/assets\/[^"]+\.js)"/.exec(body)![1]!}`);
    expect(asset.headers.get("x-content-type-options")).toBe("nosniff");
    expect((await fetch(`${base}/health`)).headers.get("content-security-policy")).toBeNull();
  });
});

describe("console in Chromium", () => {
  afterEach(() => {
    expect(pageErrors.splice(0), "errors in the page").toEqual([]);
  });

  it("refuses a wrong key with the API's 401 detail, then signs in by keyboard", async () => {
    await page.goto(`${base}/`);
    await page.waitForURL(/\/sign-in/);
    await page.getByLabel("API key").fill("aa_wrong_key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/401.*not valid/);
    await shot("sign-in");
    await page.getByLabel("API key").fill("");
    await page.getByLabel("API key").focus();
    await page.keyboard.type(env.keys.rw);
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/dashboard$/);
    expect(await page.evaluate("Object.keys(sessionStorage)")).toContain("aa.console.apiKey");
  });

  it("shows the AU dashboard: composition, segments, contribution, growth lens, service view", async () => {
    await page.getByRole("heading", { name: /Active users: new, retained/ }).waitFor();
    await page.getByRole("heading", { name: /Service “marketplace”/ }).waitFor();
    await page.getByRole("heading", { name: /Why did active users move/ }).waitFor();
    const metrics = (await api(env).get(`/v1/facts/app_opened/metrics?grain=day&from=${dayToDate(lastDay)}&to=${dayToDate(lastDay)}`)).json();
    const last = metrics.data[0];
    const label = await page.getByRole("img", { name: /Stacked bars per day/ }).getAttribute("aria-label");
    expect(label).toContain(`${last.active.toLocaleString("en-US")} active = ${last.new.toLocaleString("en-US")} new`);
    const growth = page.getByRole("table", { name: `Growth states on ${dayToDate(lastDay)}` });
    expect(await growth.getByRole("row", { name: /^dormant/ }).textContent()).toContain(last.growth_dormant.toLocaleString("en-US"));
    expect(await page.title()).toBe(title("Dashboard"));
    // The waterfall's axis does not start at 0: it says so, and every bar (the totals too) stands on it.
    const waterfall = await page.getByRole("img", { name: /^Waterfall from/ }).getAttribute("aria-label");
    const axisNote = (await page.getByTestId("axis-note").textContent())!;
    const axisStart = /The axis starts at ([\d,]+), not at 0/.exec(axisNote)?.[1];
    expect(axisStart, axisNote).toBeDefined();
    expect(waterfall).toContain(`The axis starts at ${axisStart}, not at 0.`);
    // At 1280 px the tables beside the charts, and the segments, fit without scrolling.
    await page.getByRole("table", { name: "Latest day per core action" }).waitFor();
    for (const heading of [/^Service “marketplace”/, "Why did active users move?", "Transition segments by day"]) expect(await fitsWithoutScrolling(heading), String(heading)).toBe(true);
    await page.waitForTimeout(300);
    await shot("dashboard");
    await page.getByLabel("Grain").selectOption("week");
    await page.getByRole("heading", { name: "Transition segments by week" }).waitFor();
    await page.getByText(/DAU\/WAU\/MAU and the growth states are defined at day grain/).waitFor();
    await page.getByRole("table", { name: "Latest week per core action" }).waitFor();
    for (const heading of [/^Service “marketplace”/, "Why did active users move?"]) expect(await fitsWithoutScrolling(heading), String(heading)).toBe(true);

    // Contribution at week and month grain: by default the last two complete periods; a period in
    // progress is marked "*" (with the legend) and, when chosen, the caption warns.
    const periods = page.getByRole("form", { name: "Periods to compare" });
    let partialSeen = false;
    for (const grain of ["week", "month"] as const) {
      await page.getByLabel("Grain").selectOption(grain);
      await page.getByRole("heading", { name: `Transition segments by ${grain}` }).waitFor();
      const options = () => periods.getByLabel("Base").locator("option").allTextContents();
      await expect.poll(async () => (await options()).length).toBeGreaterThan(1);
      const first = (await options())[0]!.replace(/\*$/, "");
      const rows = (await api(env).get(`/v1/facts/app_opened/metrics?grain=${grain}&from=${first}&to=${dayToDate(lastDay)}`)).json().data as Array<{ period: string; period_complete: boolean }>;
      expect(await options()).toEqual(rows.map((r) => `${r.period}${r.period_complete ? "" : "*"}`));
      const complete = rows.filter((r) => r.period_complete).map((r) => r.period);
      expect(complete.length).toBeGreaterThanOrEqual(2);
      await expect.poll(() => periods.getByLabel("Compare").inputValue()).toBe(complete[complete.length - 1]);
      expect(await periods.getByLabel("Base").inputValue()).toBe(complete[complete.length - 2]);
      await expect.poll(() => page.getByTestId("partial-warning").count()).toBe(0);
      const partial = rows.find((r) => !r.period_complete);
      if (!partial) continue;
      partialSeen = true;
      expect(await periods.textContent()).toContain("* the period is not complete yet.");
      await periods.getByLabel("Compare").selectOption(partial.period);
      await expect.poll(() => page.getByTestId("partial-warning").textContent()).toContain(`${partial.period} is not complete yet`);
      if (grain === "week") await shot("dashboard-partial-week");
    }
    // The last processed day ends a week and a month only now and then; usually both are in progress.
    if (!partialSeen) console.warn("no partial week or month at this date: the partial-period marks were not checked");
    await page.getByLabel("Grain").selectOption("day");
  });

  it("builds an audience by clicking; the live count equals the API's preview; errors sit next to the condition", async () => {
    await nav("Audiences").click();
    await page.getByRole("link", { name: "New audience" }).click();
    await expect.poll(() => page.title()).toBe(title("New audience"));
    await page.getByLabel("Name").fill("Chatters who went quiet");
    // Condition 1 (the default): inactivity between 7 and 30 → 3 and 30.
    await page.getByLabel("Low value of condition 1").fill("3");
    // Condition 2: last streak ≥ 2.
    await page.getByRole("button", { name: "Add a condition to the filter" }).click();
    await page.getByLabel("Field of condition 2").selectOption("last_streak_periods");
    await page.getByLabel("Operator of condition 2").selectOption("gte");
    await page.getByLabel("Value of condition 2").fill("2");
    // Condition 3: on chat_sent, active (any active state) within the last 14 days.
    await page.getByRole("button", { name: "Add a condition to the filter" }).click();
    await page.getByLabel("Field of condition 3").selectOption("state");
    await page.getByLabel("Operator of condition 3").selectOption("in");
    const c3 = page.getByRole("group", { name: "condition 3" });
    for (const s of ["retained", "reactivated"]) await c3.getByLabel(s, { exact: true }).check();
    await page.getByLabel("Within how many periods (condition 3)").fill("14");
    await page.getByLabel("Fact of condition 3").selectOption("chat_sent");
    // Condition 4, negated: NOT growth state dormant.
    await page.getByRole("button", { name: "Add a condition to the filter" }).click();
    await page.getByLabel("Field of condition 4").selectOption("growth_state");
    await page.getByLabel("Value of condition 4").selectOption("dormant");
    await page.getByLabel("Exclude condition 4 (NOT)").check();

    const definition = {
      name: "Chatters who went quiet",
      fact: "app_opened",
      grain: "day",
      filter: {
        all: [
          { field: "inactivity_periods", op: "between", value: [3, 30] },
          { field: "last_streak_periods", op: "gte", value: 2 },
          { field: "state", op: "in", value: ["new", "retained", "reactivated"], within_periods: 14, fact: "chat_sent" },
          { not: { field: "growth_state", op: "eq", value: "dormant" } },
        ],
      },
    };
    const expected = (await api(env, env.keys.read).post("/v1/audiences/preview", { definition })).json();
    expect(expected.count).toBeGreaterThan(0);
    await expect.poll(() => page.getByTestId("preview-count").textContent(), { timeout: 10_000 }).toBe(expected.count.toLocaleString("en-US"));
    await page.getByText(/^as of .* counted in/).waitFor();
    expect(JSON.parse((await page.getByTestId("definition-json").textContent())!)).toEqual(definition);
    for (const [state, n] of Object.entries(expected.by_state as Record<string, number>))
      expect(await page.getByRole("complementary", { name: "Live preview" }).getByRole("row", { name: new RegExp(`^${state}`) }).first().textContent()).toContain(n.toLocaleString("en-US"));
    await shot("audience-builder");
    // Each of the seven growth states' bars has a colour of its own.
    const growthColours = (await page.evaluate(`[...document.querySelectorAll("aside table.breakdown")[1].querySelectorAll(".bar")].map((b) => getComputedStyle(b).backgroundColor)`)) as string[];
    expect(growthColours).toHaveLength(7);
    expect(new Set(growthColours).size).toBe(7);

    // A mistake: the API's message appears next to condition 2, and the count is not updated; the
    // preview panel keeps its size (no layout jump).
    const panel = page.getByRole("complementary", { name: "Live preview" });
    const heightBefore = (await panel.boundingBox())!.height;
    await page.getByLabel("Value of condition 2").fill("");
    const c2 = page.getByRole("group", { name: "condition 2" });
    await expect.poll(() => c2.getByRole("alert").textContent()).toContain("filter.all[1].value");
    expect(await page.getByTestId("preview-status").textContent()).toMatch(/^Not counted: /);
    expect(await page.getByTestId("preview-count").textContent()).toBe(expected.count.toLocaleString("en-US"));
    expect((await panel.boundingBox())!.height).toBe(heightBefore);
    await page.getByLabel("Value of condition 2").fill("2");
    await expect.poll(() => c2.getByRole("alert").count()).toBe(0);
    await expect.poll(() => page.getByTestId("preview-count").textContent()).toBe(expected.count.toLocaleString("en-US"));
    // A relative date left empty is a mistake the API names, not "0 days ago".
    await page.getByRole("button", { name: "Add a condition to the filter" }).click();
    await page.getByLabel("Field of condition 5").selectOption("last_active_period");
    await page.getByLabel("Value of condition 5: kind").selectOption("ago");
    await page.getByLabel("Value of condition 5: days ago").fill("");
    await expect.poll(() => page.getByRole("group", { name: "condition 5" }).getByRole("alert").textContent()).toContain("filter.all[4].value");
    expect(JSON.parse((await page.getByTestId("definition-json").textContent())!).filter.all[4].value).toEqual({ periods_ago: "" });
    await page.getByRole("button", { name: "Remove condition 5" }).click();
    await expect.poll(() => page.getByTestId("preview-count").textContent()).toBe(expected.count.toLocaleString("en-US"));

    await page.getByRole("button", { name: "Save audience" }).click();
    await page.waitForURL(/\/audiences\/[0-9a-f-]{36}$/);
    await page.getByRole("button", { name: "Saved", exact: true }).waitFor();
    const id = page.url().split("/").pop()!;
    const saved = (await api(env).get(`/v1/audiences/${id}`)).json();
    expect(saved.filter).toEqual(definition.filter);
    expect(saved.version).toBe(1);
    await expect.poll(() => page.title()).toBe(title("Audience: Chatters who went quiet"));

    // Saved or loaded, a definition that says what the saved one says is not an unsaved edit (the
    // API gives its keys back in another order and no description).
    const saveButton = page.getByRole("button", { name: /^(Saved|Save new version)$/ });
    const materializeNote = page.getByRole("region", { name: "Materialize", exact: true }).locator("p").first();
    await page.getByLabel("Value of condition 2").fill("3");
    await expect.poll(() => saveButton.textContent()).toBe("Save new version");
    expect(await materializeNote.textContent()).toContain("Unsaved edits are not included");
    await saveButton.click();
    await page.getByText("Saved as version 2.").waitFor();
    await expect.poll(() => saveButton.textContent()).toBe("Saved");
    await page.getByRole("button", { name: "Load version 1 into the editor" }).click();
    await expect.poll(() => saveButton.textContent()).toBe("Save new version");
    await page.getByRole("button", { name: "Load version 2 into the editor" }).click();
    await expect.poll(() => saveButton.textContent()).toBe("Saved");
    expect(await materializeNote.textContent()).not.toContain("Unsaved edits");
    // Back to version 1's definition (the tests below count it): a new version, then saved.
    await page.getByRole("button", { name: "Load version 1 into the editor" }).click();
    await saveButton.click();
    await page.getByText("Saved as version 3.").waitFor();
    await expect.poll(() => saveButton.textContent()).toBe("Saved");
    expect((await api(env).get(`/v1/audiences/${id}`)).json().filter).toEqual(definition.filter);

    // An empty group is not "everyone": the API refuses it, and the builder says a group needs a condition.
    await page.getByRole("button", { name: "Add a group to the filter" }).click();
    await page.getByRole("button", { name: "Remove condition 5.1" }).click();
    const emptyGroup = page.getByText(/^No conditions: a group needs at least one condition\. Add one, or remove this group\.$/);
    await emptyGroup.waitFor();
    await page.getByLabel("Combine group 5").selectOption("any");
    await emptyGroup.waitFor();
    expect(await page.getByText(/everyone matches/).count()).toBe(0);
    await expect.poll(() => page.getByText("filter.all[4].any: expected a non-empty array of nodes").count()).toBe(1);
    await page.getByRole("button", { name: "Remove group 5" }).click();
    await expect.poll(() => saveButton.textContent()).toBe("Saved");
  });

  it("materializes with a progress bar, pages the members and downloads the CSV", async () => {
    const id = page.url().split("/").pop()!;
    const a = (await api(env).get(`/v1/audiences/${id}`)).json();
    const expected = (await api(env).post("/v1/audiences/preview", { definition: { name: a.name, fact: a.fact, grain: a.grain, filter: a.filter } })).json();
    await page.getByRole("button", { name: "Materialize now" }).click();
    await page.getByText(`Done: ${expected.count.toLocaleString("en-US")} members.`).waitFor();
    expect(await page.getByRole("progressbar", { name: "Materialization progress" }).getAttribute("value")).toBe("1");
    await page.getByRole("link", { name: /View the .* members/ }).click();
    await page.waitForURL(/\/materializations\/[0-9a-f-]{36}$/);
    const matId = page.url().split("/").pop()!;
    const list = (await api(env).get(`/v1/materializations/${matId}`)).json();
    await expect.poll(() => page.title()).toBe(title(`List as of ${list.as_of}`));
    await page.getByRole("region", { name: "Members, page 1" }).waitFor();
    const all = (await allPages(env, `/v1/materializations/${matId}/members`)).map((r) => String(r.user_id));
    expect(all.length).toBe(expected.count);

    const idsOnPage = () => page.locator("table.members tbody tr td:first-child").allTextContents();
    await expect.poll(idsOnPage).toEqual(all.slice(0, 50));
    await shot("members", false);
    if (all.length > 50) {
      await page.getByRole("button", { name: "Next page" }).click();
      await expect.poll(idsOnPage).toEqual(all.slice(50, 100));
      await expect.poll(() => page.getByTestId("members-page").textContent()).toContain("Page 2");
      await page.getByRole("button", { name: "Previous page" }).click();
      await expect.poll(idsOnPage).toEqual(all.slice(0, 50));
    }

    // A download is for a spreadsheet: it asks for formula-looking ids to be neutralised.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.waitForRequest((r) => r.url().includes("/members?spreadsheet_safe=true")),
      page.getByRole("button", { name: "Download CSV" }).click(),
    ]);
    const file = path.join(ARTIFACTS, "members.csv");
    await download.saveAs(file);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    const col = lines[0]!.split(",").indexOf("user_id");
    expect(col).toBeGreaterThanOrEqual(0);
    expect(lines.slice(1).map((l) => l.split(",")[col]!.replace(/^"|"$/g, "")).sort()).toEqual([...all].sort());
  });

  it("materializes again as of an earlier date: that list is the first one; the later list shows who entered and exited since it", async () => {
    await page.getByRole("link", { name: "← Audience" }).click();
    await page.getByRole("heading", { level: 1, name: /^Audience: / }).waitFor();
    const audienceId = page.url().split("/").pop()!;
    const asOf = dayToDate(lastDay - 7);
    await page.getByLabel(/^As of/).fill(asOf);
    await page.getByText(new RegExp(`^as of ${asOf} \\(day\\)`)).waitFor();
    await page.getByRole("button", { name: "Materialize now" }).click();
    await page.getByText(/^Done: /).waitFor();
    await page.getByRole("link", { name: /View the .* members/ }).click();
    await page.getByRole("heading", { level: 1, name: new RegExp(`List as of ${asOf}`) }).waitFor();
    const lists = (await api(env).get(`/v1/audiences/${audienceId}/materializations`)).json().data;
    // Newest first: the list just made (as of the earlier date), then the first one (a later date).
    const [earlier, later] = lists;
    expect(earlier.as_of).toBe(asOf);
    expect(later.as_of > asOf).toBe(true);
    // No list is as of an earlier date than this one: nothing entered or exited (the list made before
    // it is as of a later date, and would turn entered and exited around).
    await page.getByText("This is the audience's first list").waitFor();
    expect(await page.getByText(/^Versus the list as of/).count()).toBe(0);
    await page.goto(`${base}/materializations/${later.id}`);
    await page.getByRole("heading", { level: 1, name: new RegExp(`List as of ${later.as_of}`) }).waitFor();
    const changes = (await api(env).get(`/v1/materializations/${later.id}/changes?since=${earlier.id}&limit=20`)).json();
    const text = `${changes.counts.entered.toLocaleString("en-US")} entered, ${changes.counts.exited.toLocaleString("en-US")} exited, ${changes.counts.stayed.toLocaleString("en-US")} stayed`;
    await page.getByText(text).waitFor();
    expect(await page.getByText(`Versus the list as of ${earlier.as_of}`).count()).toBe(1);
    await shot("changes");
  });

  it("shows an audience's version history a page at a time, older versions on request", async () => {
    const a = (await api(env).post("/v1/audiences", { name: "Many versions", fact: "app_opened", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 0 } })).json();
    for (let v = 1; v <= 24; v++) expect((await api(env).patch(`/v1/audiences/${a.id}`, { filter: { field: "inactivity_periods", op: "gte", value: v } })).statusCode).toBe(200);
    await page.goto(`${base}/audiences/${a.id}`);
    const versions = page.locator("ul.versions li");
    await page.getByRole("heading", { name: "Version history" }).waitFor();
    await expect.poll(() => versions.count()).toBe(20);
    expect(await versions.first().textContent()).toMatch(/^Version 25,/);
    await page.getByRole("button", { name: "Show older versions" }).click();
    await expect.poll(() => versions.count()).toBe(25);
    expect(await versions.last().textContent()).toMatch(/^Version 1,/);
    expect(await page.getByRole("button", { name: "Show older versions" }).count()).toBe(0);
  });

  it("opens a campaign's results: lift with its interval chart, SRM check, window, inactivity buckets", async () => {
    const results = (await api(env).get(`/v1/campaigns/${campaignId}/results`)).json();
    await nav("Campaigns").click();
    await page.getByRole("link", { name: "Win back long streakers" }).click();
    await page.waitForURL(new RegExp(`/campaigns/${campaignId}$`));
    const lift = `${results.goal.absolute_lift >= 0 ? "+" : ""}${(results.goal.absolute_lift * 100).toFixed(1)} pp`;
    await expect.poll(() => page.getByTestId("lift").textContent()).toBe(lift);
    expect(await page.getByTestId("srm").textContent()).toContain(results.srm.flagged ? "mismatch" : "Sample ratio OK");
    expect(await page.getByTestId("results-badges").textContent()).toContain(`Window ${results.window.complete ? "complete" : "incomplete"}`);
    const chart = await page.getByRole("img", { name: /Lift by inactivity/ }).getAttribute("aria-label");
    expect(chart).toContain(`All members ${lift}`);
    for (const b of results.breakdowns.inactivity_periods.filter((x: { groups: { treatment: { n: number } } }) => x.groups.treatment.n > 0))
      await page.getByRole("row", { name: new RegExp(`^inactive ${b.bucket}`) }).waitFor();
    await expect.poll(() => page.title()).toBe(title("Win back long streakers"));
    // The send funnel in the lifecycle's order (the API's SEND_STATUSES), whatever order its keys come in.
    const funnelOrder = /assigned, .* reached, .* sent, .* delivered, .* failed, .* opened, .* clicked; /;
    expect(await page.getByTestId("funnel").textContent()).toMatch(funnelOrder);
    const tr = results.funnel.treatment.by_status as Record<string, number>;
    expect(await page.getByTestId("funnel").textContent()).toContain(`${tr.sent!.toLocaleString("en-US")} sent, ${tr.delivered!.toLocaleString("en-US")} delivered`);
    await shot("campaign-results");

    // Results without inactivity buckets and with the statuses in another order: no empty
    // parentheses in the caption, the funnel still in the lifecycle's order.
    await page.route(`**/v1/campaigns/${campaignId}/results*`, async (route) => {
      const answer = await route.fetch();
      const body = await answer.json();
      body.breakdowns.inactivity_periods = [];
      body.funnel.treatment.by_status = Object.fromEntries(Object.entries(body.funnel.treatment.by_status).reverse());
      await route.fulfill({ response: answer, json: body });
    });
    await page.reload();
    await page.getByRole("table", { name: "Goal by inactivity bucket", exact: true }).waitFor();
    expect(await page.getByText("()").count()).toBe(0);
    expect(await page.getByTestId("funnel").textContent()).toMatch(funnelOrder);
    await page.unroute(`**/v1/campaigns/${campaignId}/results*`);
    await page.reload();
    await page.getByRole("table", { name: /^Goal by inactivity bucket \(periods inactive/ }).waitFor();

    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download treatment list (CSV)" }).click()]);
    const lines = readFileSync((await download.path())!, "utf8").trim().split("\n");
    expect(lines.length - 1).toBe(results.assignment.treatment);
  });

  it("creates a campaign from a list with the holdout slider, by keyboard", async () => {
    const onChat = await api(env).post("/v1/audiences", { name: "Quiet on chat", fact: "chat_sent", grain: "day", filter: { field: "inactivity_periods", op: "gte", value: 7 } });
    expect(onChat.statusCode, onChat.body).toBe(201);
    await nav("Campaigns").click();
    await expect.poll(() => page.title()).toBe(title("Campaigns"));
    await page.getByLabel("Name").fill("Nudge chatters");
    // The goal fact follows the chosen audience's fact.
    await page.getByLabel("Audience").selectOption({ label: "Quiet on chat" });
    await expect.poll(() => page.getByLabel("Goal fact").inputValue()).toBe("chat_sent");
    await page.getByLabel("Audience").selectOption({ label: "Chatters who went quiet" });
    await expect.poll(() => page.getByLabel("Goal fact").inputValue()).toBe("app_opened");
    await expect.poll(() => page.getByLabel("Frozen list").locator("option").first().textContent()).toMatch(/as of/);
    const slider = page.getByRole("slider");
    await slider.focus();
    for (let i = 0; i < 5; i++) await page.keyboard.press("ArrowRight");
    await page.getByText(/Holdout: 25%/).waitFor();
    await page.getByLabel("Launch date").fill(dayToDate(lastDay + 3));
    // The first answer is lost on the way back (the campaign was created): submitting again must not
    // make a second one, so the form sends the same Idempotency-Key again.
    const keys: string[] = [];
    let dropped = false;
    await page.route("**/v1/campaigns", async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      keys.push(route.request().headers()["idempotency-key"] ?? "");
      if (dropped) return route.continue();
      dropped = true;
      await route.fetch();
      return route.abort("connectionreset");
    });
    await page.getByRole("button", { name: "Create campaign" }).click();
    await expect.poll(() => keys.length).toBe(1);
    await page.getByRole("button", { name: "Create campaign" }).click();
    await page.waitForURL(/\/campaigns\/[0-9a-f-]{36}$/);
    await page.unroute("**/v1/campaigns");
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
    const named = (await allPages(env, "/v1/campaigns")).filter((x) => x.name === "Nudge chatters");
    expect(named.map((x) => x.id)).toEqual([page.url().split("/").pop()]);
    const c = (await api(env).get(`/v1/campaigns/${page.url().split("/").pop()}`)).json();
    expect(c.holdout_percent).toBe(25);
    expect(c.name).toBe("Nudge chatters");
    await page.getByText(/25%: .* treatment/).waitFor();
  });

  it("follows a campaign's assignment job: the list is being split, then the split and the download", async () => {
    const list = (await api(env).get(`/v1/campaigns/${campaignId}`)).json().materialization_id as string;
    // The job's writes wait until this is done: the page must show the campaign as being assigned.
    const id = await whileTableLocked(env.ctx.db.pool, "campaign_assignment", async () => {
      const c = await api(env).post("/v1/campaigns", { name: "Followed", materialization_id: list, holdout_percent: 10, goal: { fact: "app_opened", window_periods: 7, metric: "returned" } });
      expect(c.statusCode, c.body).toBe(202);
      const created = c.json().id as string;
      await page.goto(`${base}/campaigns/${created}`);
      await page.getByTestId("assigning").waitFor();
      expect(await page.getByRole("button", { name: "Download treatment list (CSV)" }).count()).toBe(0);
      await shot("campaign-assigning");
      return created;
    });
    // The page asks again on its own and shows the split once the job is done.
    const ready = await waitForCampaign(env, id);
    await page.getByText(`10%: ${(ready.counts as { treatment: number }).treatment.toLocaleString("en-US")} treatment`).waitFor();
    expect(await page.getByTestId("assigning").count()).toBe(0);
    await page.getByRole("button", { name: "Download treatment list (CSV)" }).waitFor();
  });

  it("a campaign whose assignment failed says why, and Try again assigns it", async () => {
    const list = (await api(env).get(`/v1/campaigns/${campaignId}`)).json().materialization_id as string;
    // The job's only run fails (a database refusing the writes), with no worker to take it first.
    const id = await env.withWorkersStopped(async () => {
      const c = await api(env).post("/v1/campaigns", { name: "Failed once", materialization_id: list, holdout_percent: 20, goal: { fact: "app_opened", window_periods: 7, metric: "returned" } });
      expect(c.statusCode, c.body).toBe(202);
      await failCampaignAssignment(env, c.json().id);
      return c.json().id as string;
    });
    await page.goto(`${base}/campaigns/${id}`);
    await expect.poll(() => page.getByRole("alert").first().textContent()).toMatch(/Assigning the list failed: disk full/);
    expect(await page.getByRole("button", { name: "Download treatment list (CSV)" }).count()).toBe(0);
    await shot("campaign-failed");
    await page.getByRole("button", { name: "Try again" }).click();
    // Still `failed` until the click's request lands: wait for the job's end, not for "not assigning".
    await expect.poll(async () => (await api(env).get(`/v1/campaigns/${id}`)).json().status, { timeout: 20_000 }).toBe("ready");
    const ready = await waitForCampaign(env, id);
    await page.getByText(`20%: ${(ready.counts as { treatment: number }).treatment.toLocaleString("en-US")} treatment`).waitFor();
    expect(await page.getByRole("button", { name: "Try again" }).count()).toBe(0);
    await page.getByRole("button", { name: "Download treatment list (CSV)" }).waitFor();
  });

  it("works at 390 px wide without horizontal scrolling; each page has its title; every table scrolls in a named region", async () => {
    const audience = (await allPages(env, "/v1/audiences")).find((a) => a.name === "Chatters who went quiet")!;
    const lists = (await api(env).get(`/v1/audiences/${audience.id}/materializations`)).json().data as Array<{ id: string; as_of: string }>;
    expect(lists.length).toBeGreaterThanOrEqual(2);
    // The same tab: the key lives in this tab's sessionStorage.
    await page.setViewportSize({ width: 390, height: 844 });
    const pages = [
      ["dashboard-390", "/dashboard", "Active users", "Dashboard"],
      ["audience-builder-390", "/audiences/new", "New audience", "New audience"],
      ["audiences-390", "/audiences", "Audiences", "Audiences"],
      ["audience-lists-390", `/audiences/${audience.id}`, "Audience: Chatters who went quiet", "Audience: Chatters who went quiet"],
      ["members-390", `/materializations/${lists[0]!.id}`, `List as of ${lists[0]!.as_of}`, `List as of ${lists[0]!.as_of}`],
      ["campaigns-390", "/campaigns", "Campaigns", "Campaigns"],
      ["campaign-results-390", `/campaigns/${campaignId}`, "Win back long streakers", "Win back long streakers"],
    ] as const;
    for (const [name, url, heading, pageTitle] of pages) {
      await page.goto(`${base}${url}`);
      await page.getByRole("heading", { level: 1, name: heading }).waitFor();
      await page.waitForLoadState("networkidle");
      if (url.startsWith("/audiences/") && url !== "/audiences/new") await page.getByRole("table", { name: "Lists of this audience" }).waitFor();
      const overflow = await page.evaluate(
        `[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 391 && !e.closest(".table-scroll")).map((e) => e.tagName + "." + e.className).slice(0, 5)`,
      );
      expect(await page.evaluate("document.documentElement.scrollWidth"), `${name}: ${JSON.stringify(overflow)}`).toBeLessThanOrEqual(390);
      expect(await page.title(), name).toBe(title(pageTitle));
      // A table wider than the screen scrolls inside a region named after it, which a keyboard can focus.
      const scrollers = (await page.evaluate(`[...document.querySelectorAll("table")].map((t) => {
        const box = t.closest(".table-scroll");
        return {
          table: t.caption?.textContent ?? t.querySelector("th")?.textContent ?? "",
          wide: t.getBoundingClientRect().width > document.documentElement.clientWidth,
          region: box && { role: box.getAttribute("role"), name: box.getAttribute("aria-label") ?? "", scrolls: box.scrollWidth > box.clientWidth, tabIndex: box.tabIndex },
        };
      })`)) as Array<{ table: string; wide: boolean; region: { role: string | null; name: string; scrolls: boolean; tabIndex: number } | null }>;
      for (const s of scrollers) {
        if (s.wide) expect(s.region, `${name}: ${s.table}`).not.toBeNull();
        if (!s.region) continue;
        expect(s.region.role, `${name}: ${s.table}`).toBe("region");
        expect(s.region.name, `${name}: ${s.table}`).not.toBe("");
        if (s.region.scrolls) expect(s.region.tabIndex, `${name}: ${s.table}`).toBe(0);
      }
      await shot(name);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("says so when a key lacks the scope (403) and sends a revoked key back to sign in (401)", async () => {
    await page.evaluate(`sessionStorage.setItem("aa.console.apiKey", ${JSON.stringify(env.keys.write)})`);
    await page.goto(`${base}/audiences`);
    await expect.poll(() => page.getByRole("alert").first().textContent()).toMatch(/Not allowed \(403\).*'read' scope/);
    await page.evaluate(`sessionStorage.setItem("aa.console.apiKey", "aa_revoked")`);
    await page.goto(`${base}/campaigns`);
    await page.waitForURL(/\/sign-in\?next=%2Fcampaigns/);
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/rejected \(401\)/);
  });
});
