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
  for (const def of audiences) {
    const p = await previewDefinition(ctx, def, undefined);
    const a = await createAudience(ctx, def);
    const mat = await requestMaterialization(ctx, a.id, undefined, "demo");
    const done = await executeMaterialization(ctx, mat.id);
    console.log(`  ${def.name.padEnd(48)} ${n(p.count).padStart(6)} users (preview ${p.took_ms} ms), list ${done.id} with ${n(done.member_count ?? 0)} members`);
  }

  const { key } = await createApiKey(ctx.db.prisma, { name: "demo", scopes: ["read", "write"] });
  const base = `http://${ctx.config.HOST}:${ctx.config.PORT}`;
  console.log(`\nDone in ${((performance.now() - t0) / 1000).toFixed(1)} s. Start the API with \`npm start\`, then:`);
  console.log(`  API docs      ${base}/docs`);
  console.log(`  API key       ${key}   (read,write)`);
  console.log(`  try           curl -H "Authorization: Bearer ${key}" "${base}/v1/facts/app_opened/metrics?grain=week"`);
  console.log(`                curl -H "Authorization: Bearer ${key}" "${base}/v1/facts/app_opened/metrics/contribution?grain=day&base=${from}&compare=${dayToDate(lastDay)}"`);
  console.log(`                curl -H "Authorization: Bearer ${key}" -H "Accept: text/csv" "${base}/v1/facts/app_opened/status?grain=day&period=${dayToDate(lastDay)}&state=inactive"`);
}
