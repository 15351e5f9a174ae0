import type { AppContext } from "../context.js";
import { checkEvent } from "../facts/event-validation.js";
import { localDate } from "../facts/timezones.js";
import { dateToDay, dayToDate } from "../activation/periods.js";
import { requestRun, executeRun } from "../activation/runs.js";
import { metricsOf, contributionOf } from "../activation/layer-queries.js";
import { createAudience, previewDefinition } from "../audiences/audiences.js";
import { executeMaterialization, requestMaterialization } from "../audiences/materializations.js";
import { createApiKey } from "../keys/api-keys.js";
import { demoPopulation, eventsForDay, prng } from "./demo-data.js";
import { ProgressBar } from "./progress.js";
import { assignmentsPage, createCampaign, deleteCampaign, getCampaign } from "../campaigns/campaigns.js";
import { recordSends } from "../campaigns/recording.js";
import { computeAndStoreResults, type CampaignResults } from "../campaigns/results.js";
import { executeCampaignAssignment } from "../campaigns/assigning.js";

const USERS = 20_000;
const DAYS = 90;
const TZ = "Asia/Seoul";
const FACTS = [
  { name: "app_opened", description: "The app came to the foreground", share: 1, perDay: 3 },
  { name: "chat_sent", description: "A chat message sent to another user", share: 0.55, perDay: 2 },
  { name: "listing_created", description: "A new item listed for sale", share: 0.12, perDay: 1 },
] as const;

const n = (x: number) => x.toLocaleString("en-US");
const pct = (x: number | null) => (x === null ? "   —" : `${(x * 100).toFixed(0).padStart(3)}%`);

async function resetDemo(ctx: AppContext) {
  // Re-running the demo starts over: its audiences first, then its facts.
  const ours = await ctx.db.prisma.fact.findMany({ where: { name: { in: FACTS.map((f) => f.name) } } });
  if (ours.length === 0) return;
  const ids = ours.map((f) => f.id);
  for (const c of await ctx.db.prisma.campaign.findMany({ where: { goalFactId: { in: ids } }, select: { id: true } })) await deleteCampaign(ctx, c.id);
  await ctx.db.prisma.audience.updateMany({ where: { factIds: { hasSome: ids }, deletedAt: null }, data: { deletedAt: new Date() } });
  await ctx.db.prisma.processingRun.deleteMany({ where: { factId: { in: ids } } });
  for (const f of ours) {
    await ctx.engine.deleteFactData(f.id);
    await ctx.db.prisma.fact.delete({ where: { id: f.id } });
  }
}

export async function runDemo(ctx: AppContext): Promise<void> {
  const t0 = performance.now();
  const lastDay = dateToDay(localDate(TZ)) - 1; // through yesterday, as the daily scheduler would
  const firstDay = lastDay - DAYS + 1;
  console.log(`activation-audiences demo: ${n(USERS)} synthetic users of a marketplace app, ${dayToDate(firstDay)} to ${dayToDate(lastDay)} (${TZ})\n`);
  await resetDemo(ctx);

  const people = demoPopulation(USERS, firstDay, lastDay);
  for (const spec of FACTS) {
    const fact = await ctx.db.prisma.fact.create({ data: { name: spec.name, timezone: TZ, service: "marketplace", description: spec.description } });
    const rnd = prng(spec.name.length * 7919);
    const bar = new ProgressBar(`loading ${spec.name}`.padEnd(24));
    let batch: Array<{ user_id: string; occurred_at: string }> = [];
    let total = 0;
    const flush = async () => {
      if (!batch.length) return;
      // Through the same validation and ingestion as POST /v1/facts/{name}/events.
      const valid = batch.map((e) => {
        const c = checkEvent(e, Date.now());
        if (!c.ok) throw new Error(`demo generated a bad event: ${c.message}`);
        return c.event;
      });
      await ctx.engine.ingestEvents({ id: fact.id, name: fact.name, timezone: TZ }, valid);
      total += batch.length;
      batch = [];
    };
    for (const [i, person] of people.entries()) {
      for (const d of person.days) {
        if (spec.share < 1 && rnd() > spec.share) continue;
        batch.push(...eventsForDay(rnd, person.userId, d, 1 + Math.floor(rnd() * spec.perDay)));
        if (batch.length >= 10_000) await flush();
      }
      bar.update(i / people.length);
    }
    await flush();
    bar.done();
    const factRow = (await ctx.db.prisma.fact.findUniqueOrThrow({ where: { id: fact.id } }))!;
    const { run } = await requestRun(ctx, factRow, dayToDate(lastDay), "demo");
    const done = await executeRun(ctx, run.id);
    console.log(`  ${spec.name.padEnd(16)} ${n(total).padStart(9)} events ingested, processed through ${done.through} in ${(done.duration_ms! / 1000).toFixed(2)} s`);
  }

  const audiences = [
    {
      name: "New users who went inactive within 3 days",
      fact: "app_opened",
      grain: "day" as const,
      filter: { field: "transition_segment", op: "eq", value: "new_to_inactive", within_periods: 3 },
    },
    {
      name: "Long streakers, inactive 7–30 days",
      fact: "app_opened",
      grain: "day" as const,
      filter: { all: [{ field: "inactivity_periods", op: "between", value: [7, 30] }, { field: "last_streak_periods", op: "gte", value: 5 }] },
    },
    {
      name: "Chatted last week but stopped opening the app",
      fact: "app_opened",
      grain: "day" as const,
      filter: {
        all: [
          { field: "inactivity_periods", op: "between", value: [2, 14] },
          { field: "state", op: "in", value: ["new", "retained", "reactivated"], within_periods: 7, fact: "chat_sent" },
        ],
      },
    },
  ];
  console.log("\nAudiences (preview, then a materialized list):");
  const saved = new Map<string, string>();
  for (const def of audiences) {
    const p = await previewDefinition(ctx, def, undefined);
    const a = await createAudience(ctx, def);
    saved.set(def.name, a.id);
    const { materialization } = await requestMaterialization(ctx, a.id, undefined, "demo");
    const done = await executeMaterialization(ctx, materialization.id);
    console.log(`  ${def.name.padEnd(48)} ${n(p.count).padStart(6)} users (preview ${p.took_ms} ms), list ${done.id} with ${n(done.member_count ?? 0)} members`);
  }

  await campaignStep(ctx, saved.get("Long streakers, inactive 7–30 days")!, lastDay);

  // Last: the campaign's simulated effect adds events in the last week, and this shows the data as the API now does.
  const app = await ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: "app_opened" } });
  const from = dayToDate(lastDay - 6);
  const m = await metricsOf(ctx, app, { grain: "day", from, to: dayToDate(lastDay) });
  console.log(`\nWhy did daily active users move? app_opened, last 7 days (active = new + retained + reactivated)`);
  console.log("  date          active =   new + retained + reactivated   churned |  current reactiv. resurr. at-risk-W at-risk-M  dormant |     WAU      MAU");
  for (const r of m.data) {
    const v = (k: string) => n(r[k] as number);
    console.log(
      `  ${r.period}  ${v("active").padStart(7)} = ${v("new").padStart(5)} + ${v("retained").padStart(8)} + ${v("reactivated").padStart(11)}   ${v("churned").padStart(7)} |` +
        ` ${v("growth_current").padStart(8)} ${v("growth_reactivated").padStart(8)} ${v("growth_resurrected").padStart(7)} ${v("growth_at_risk_wau").padStart(9)} ${v("growth_at_risk_mau").padStart(9)} ${v("growth_dormant").padStart(8)} |` +
        ` ${v("wau").padStart(7)} ${v("mau").padStart(8)}`,
    );
  }
  const c = await contributionOf(ctx, app, { grain: "day", base: from, compare: dayToDate(lastDay) });
  console.log(`\n  ${c.compare.period} vs ${c.base.period}: active ${n(c.base.active)} → ${n(c.compare.active)} (${c.delta_active >= 0 ? "+" : ""}${n(c.delta_active)})`);
  for (const s of c.by_segment) console.log(`    ${s.name.padEnd(26)} ${(s.delta >= 0 ? "+" : "") + n(s.delta)}`.padEnd(40) + ` ${pct(s.share)} of the change`);
  console.log(`    churned (outflow)          ${n(c.outflow.churned.base)} → ${n(c.outflow.churned.compare)}`);

  const { key } = await createApiKey(ctx.db.prisma, { name: "demo", scopes: ["read", "write"] });
  const base = `http://${ctx.config.HOST}:${ctx.config.PORT}`;
  console.log(`\nDone in ${((performance.now() - t0) / 1000).toFixed(1)} s. Start the API with \`npm start\`, then:`);
  console.log(`  console       ${base}/   (sign in with the API key below: dashboard, audience builder, campaign results)`);
  console.log(`  API docs      ${base}/docs`);
  console.log(`  API key       ${key}   (read,write)`);
  console.log(`  try           curl -H "Authorization: Bearer ${key}" "${base}/v1/facts/app_opened/metrics?grain=week"`);
  console.log(`                curl -H "Authorization: Bearer ${key}" "${base}/v1/facts/app_opened/metrics/contribution?grain=day&base=${from}&compare=${dayToDate(lastDay)}"`);
  console.log(`                curl -H "Authorization: Bearer ${key}" -H "Accept: text/csv" "${base}/v1/facts/app_opened/status?grain=day&period=${dayToDate(lastDay)}&state=inactive"`);
}

const WINDOW_DAYS = 14;

/**
 * A win-back campaign on the long streakers who went quiet, measured on the activation layer: the list
 * as of the day before launch (14 days before the data ends), 20% held out, a push to the treatment
 * arm, and a simulated effect (some treated users come back in the week after launch, ingested like
 * any late events), processed again; then the results as GET /v1/campaigns/{id}/results serves them.
 */
async function campaignStep(ctx: AppContext, audienceId: string, lastDay: number) {
  const launchDay = lastDay - WINDOW_DAYS + 1;
  const list = await executeMaterialization(ctx, (await requestMaterialization(ctx, audienceId, dayToDate(launchDay - 1), "demo")).materialization.id);
  const created = await createCampaign(ctx, {
    name: "Win back long streakers",
    materialization_id: list.id,
    holdout_percent: 20,
    launch_date: dayToDate(launchDay),
    goal: { fact: "app_opened", window_periods: WINDOW_DAYS, metric: "returned" },
    salt: "demo-win-back",
  });
  // The job's work, done here and now (the job queued at creation then finds the campaign ready).
  const assigned = await executeCampaignAssignment(ctx, created.id, created.version);
  if (assigned.status !== "ready") throw new Error(`assigning the demo campaign: ${assigned.status} ${assigned.error ?? ""}`);
  const campaign = await getCampaign(ctx, created.id);
  console.log(
    `\nCampaign "${campaign.name}" on "Long streakers, inactive 7–30 days" as of ${list.as_of}: ${n(campaign.counts.total)} users, ` +
      `holdout ${campaign.holdout_percent}% → ${n(campaign.counts.treatment)} treatment, ${n(campaign.counts.control)} control; ` +
      `launched ${campaign.launch_date}, window ${campaign.window.start} … ${campaign.window.end}`,
  );

  // What the CRM does: pull the treatment arm, send, report the sends.
  const treated: string[] = [];
  for (let cursor: string | undefined; ; ) {
    const page = await assignmentsPage(ctx, campaign.id, { group: "treatment", limit: 10_000, cursor });
    treated.push(...page.data.map((r) => r.user_id));
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  const rnd = prng(20_260_417);
  const sentAt = `${dayToDate(launchDay)}T10:00:00+09:00`;
  const sends: Array<{ user_id: string; sent_at: string; channel: string; status: string }> = [];
  for (const u of treated) {
    sends.push({ user_id: u, sent_at: sentAt, channel: "push", status: "sent" });
    const r = rnd();
    if (r < 0.92) sends.push({ user_id: u, sent_at: sentAt, channel: "push", status: "delivered" });
    if (r < 0.3) sends.push({ user_id: u, sent_at: sentAt, channel: "push", status: "opened" });
    if (r < 0.08) sends.push({ user_id: u, sent_at: sentAt, channel: "push", status: "clicked" });
  }
  for (let i = 0; i < sends.length; i += 10_000) await recordSends(ctx, campaign.id, { sends: sends.slice(i, i + 10_000) });

  // The simulated effect: 40% of the treated users open the app on 1–3 days of the week after launch.
  const fact = await ctx.db.prisma.fact.findUniqueOrThrow({ where: { name: "app_opened" } });
  const extra: Array<{ user_id: string; occurred_at: string }> = [];
  for (const u of treated) {
    if (rnd() >= 0.4) continue;
    const days = 1 + Math.floor(rnd() * 3);
    for (let k = 0; k < days; k++) extra.push(...eventsForDay(rnd, u, launchDay + Math.floor(rnd() * 7), 1));
  }
  const valid = extra.map((e) => {
    const c = checkEvent(e, Date.now());
    if (!c.ok) throw new Error(`demo generated a bad event: ${c.message}`);
    return c.event;
  });
  await ctx.engine.ingestEvents({ id: fact.id, name: fact.name, timezone: fact.timezone }, valid);
  const factRow = await ctx.db.prisma.fact.findUniqueOrThrow({ where: { id: fact.id } });
  const { run } = await requestRun(ctx, factRow, dayToDate(lastDay), "demo");
  const done = await executeRun(ctx, run.id);
  console.log(
    `  sends recorded for the treatment arm (push); ${n(extra.length)} simulated extra events after launch, reprocessed from ${done.from} in ${(done.duration_ms! / 1000).toFixed(2)} s`,
  );
  const r = await computeAndStoreResults(ctx, campaign.id);
  if (r) printResults(r);
}

const pp = (x: number | null) => (x === null ? "—" : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} pp`);
const rate = (x: number | null) => (x === null ? "—" : `${(x * 100).toFixed(1)}%`);
const ciPp = (ci: [number, number] | null) => (ci ? `[${pp(ci[0]).replace(" pp", "")}, ${pp(ci[1])}]` : "—");
const pval = (p: number | null) => (p === null ? "—" : p < 0.0001 ? "< 0.0001" : p.toFixed(4));

function printResults(r: CampaignResults) {
  const g = r.goal;
  const f = r.funnel;
  console.log(
    `  window ${r.window.complete ? "complete" : "incomplete"} (processed through ${r.window.processed_through}, ${r.window.days_observed}/${r.window.days_total} days); ` +
      `funnel: ${n(f.treatment.by_status.sent ?? 0)} sent, ${n(f.treatment.by_status.delivered ?? 0)} delivered, ${n(f.treatment.by_status.opened ?? 0)} opened, ` +
      `${n(f.treatment.by_status.clicked ?? 0)} clicked; ${n(f.control.held_out)} held out`,
  );
  console.log(`  goal: returned to ${g.fact} within ${g.window_periods} days of launch (intent to treat)`);
  console.log("                      treatment    control    lift            95% CI                 relative   p-value");
  const line = (label: string, t: string, c: string, lift: number | null, ci: [number, number] | null, rel: string, p: number | null) =>
    console.log(`    ${label.padEnd(18)}${t.padStart(9)}  ${c.padStart(9)}    ${pp(lift).padEnd(14)}  ${ciPp(ci).padEnd(21)}  ${rel.padStart(8)}   ${pval(p)}`);
  line("returned", rate(g.groups.treatment.mean), rate(g.groups.control.mean), g.absolute_lift, g.absolute_ci95, g.relative_lift === null ? "—" : `${g.relative_lift >= 0 ? "+" : ""}${(g.relative_lift * 100).toFixed(0)}%`, g.p_value);
  line(`CUPED (θ ${g.cuped.theta === null ? "—" : g.cuped.theta.toFixed(3)})`, "", "", g.cuped.absolute_lift, g.cuped.absolute_ci95, "", g.cuped.p_value);
  if (g.p_value !== null && g.p_value >= 0.05)
    console.log(`    (${n(g.groups.treatment.n + g.groups.control.n)} users: too few to tell this lift from chance at 95% — a bigger list or holdout narrows the interval)`);
  console.log(
    `  sample-ratio check: χ² = ${r.srm.chi_square === null ? "—" : r.srm.chi_square.toFixed(2)}, p = ${r.srm.p_value === null ? "—" : r.srm.p_value.toFixed(3)} ` +
      `(${r.srm.flagged ? "MISMATCH: check the assignment pipeline" : `fair ${100 - r.assignment.holdout_percent}/${r.assignment.holdout_percent} split`})`,
  );
  console.log("  by inactivity at the list's as_of (days):");
  for (const b of r.breakdowns.inactivity_periods) {
    if (b.groups.treatment.n + b.groups.control.n === 0) continue;
    line(`  ${b.bucket} (n ${n(b.groups.treatment.n)}/${n(b.groups.control.n)})`, rate(b.groups.treatment.mean), rate(b.groups.control.mean), b.absolute_lift, b.absolute_ci95, "", b.p_value);
  }
}
