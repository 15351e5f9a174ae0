import { useEffect, useMemo, useState } from "preact/hooks";
import type { Chart, ChartConfiguration, Plugin } from "chart.js";
import { qs } from "../api";
import { ChartBox, COLORS, paletteColor } from "../chart";
import { useFacts, useFetch } from "../data";
import { GRAINS, TRANSITION_SEGMENTS, GROWTH_STATES, type Grain } from "../fields";
import { ErrorMessage, fmt, label, Loading, pct, TableScroll, useTitle } from "../ui";
import type { MetricsRow } from "../types";

const SPAN: Record<Grain, number> = { day: 30, week: 16, month: 12 };

/** The first day of the period `n` periods before the one containing `date`, as YYYY-MM-DD. */
function periodsBefore(date: string, grain: Grain, n: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  if (grain === "day") d.setUTCDate(d.getUTCDate() - n);
  else if (grain === "week") d.setUTCDate(d.getUTCDate() - 7 * n - ((d.getUTCDay() + 6) % 7));
  else d.setUTCMonth(d.getUTCMonth() - n, 1);
  return d.toISOString().slice(0, 10);
}

interface Metrics {
  fact: string;
  grain: Grain;
  processed_through: string;
  data: MetricsRow[];
}
interface Contribution {
  base: { period: string; active: number; period_complete: boolean };
  compare: { period: string; active: number; period_complete: boolean };
  delta_active: number;
  by_state: Array<{ name: string; base: number; compare: number; delta: number; share: number | null }>;
  by_segment: Array<{ name: string; base: number; compare: number; delta: number; share: number | null }>;
  outflow: { churned: { base: number; compare: number; delta: number } };
}

export function Dashboard() {
  const facts = useFacts();
  const [fact, setFact] = useState("");
  const [grain, setGrain] = useState<Grain>("day");
  useEffect(() => {
    if (facts.data && !fact) setFact(facts.data.data.find((f) => f.processed_through)?.name ?? facts.data.data[0]?.name ?? "");
  }, [facts.data]);
  const factRow = facts.data?.data.find((f) => f.name === fact);
  const through = factRow?.processed_through ?? null;
  const metricsUrl = fact && through ? `/v1/facts/${encodeURIComponent(fact)}/metrics${qs({ grain, from: periodsBefore(through, grain, SPAN[grain] - 1), to: through })}` : null;
  const metrics = useFetch<Metrics>(metricsUrl);
  useTitle("Dashboard");

  if (facts.error) return <ErrorMessage error={facts.error} />;
  if (!facts.data) return <Loading what="facts" />;
  if (!facts.data.data.length) return <p>No facts yet. Define one with <code>POST /v1/facts</code> and load events.</p>;
  return (
    <>
      <div class="row spread wrap">
        <h1>Active users</h1>
        <form class="row wrap controls" onSubmit={(e) => e.preventDefault()} aria-label="Dashboard settings">
          <label>
            Fact{" "}
            <select value={fact} onChange={(e) => setFact(e.currentTarget.value)}>
              {facts.data.data.map((f) => (
                <option key={f.name} value={f.name}>
                  {f.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Grain{" "}
            <select value={grain} onChange={(e) => setGrain(e.currentTarget.value as Grain)}>
              {GRAINS.map((g) => (
                <option key={g} value={g}>
                  {g}
                </option>
              ))}
            </select>
          </label>
        </form>
      </div>
      {!through && <p>{fact} has not been processed yet: start a run with <code>POST /v1/facts/{fact}/runs</code>.</p>}
      <ErrorMessage error={metrics.error} />
      {metrics.data && metrics.data.data.length > 0 && (
        <>
          <p class="muted">
            {fact}, last {metrics.data.data.length} {grain}s, processed through {metrics.data.processed_through}
            {factRow?.timezone ? ` (${factRow.timezone})` : ""}.
          </p>
          <Composition rows={metrics.data.data} grain={grain} />
          <SegmentTable rows={metrics.data.data} grain={grain} />
          <ContributionView fact={fact} grain={grain} rows={metrics.data.data} />
          <GrowthLens rows={metrics.data.data} grain={grain} />
          {factRow?.service && <ServiceView service={factRow.service} grain={grain} from={String(metrics.data.data[0]!.period)} to={through!} />}
        </>
      )}
    </>
  );
}

const num = (r: MetricsRow, k: string) => Number(r[k] ?? 0);
// A period still in progress is marked "*" wherever periods are listed, with the same legend.
const PARTIAL_MARK = "*";
const PARTIAL_LEGEND = `${PARTIAL_MARK} the period is not complete yet.`;
const periodLabel = (r: MetricsRow) => `${String(r.period)}${r.period_complete === false ? PARTIAL_MARK : ""}`;

function Composition({ rows, grain }: { rows: MetricsRow[]; grain: Grain }) {
  const config: ChartConfiguration = useMemo(
    () => ({
      type: "bar",
      data: {
        labels: rows.map(periodLabel),
        datasets: [
          ...["new", "retained", "reactivated"].map((k) => ({ label: k, data: rows.map((r) => num(r, k)), backgroundColor: COLORS[k], stack: "au" })),
          { label: "churned", data: rows.map((r) => -num(r, "churned")), backgroundColor: COLORS.churned, stack: "au" },
        ],
      },
      options: {
        scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "users" } } },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmt(Math.abs(Number(c.raw)))}` } } },
      },
    }),
    [rows],
  );
  const last = rows[rows.length - 1]!;
  return (
    <section aria-labelledby="comp-h">
      <h2 id="comp-h">Active users: new, retained, reactivated (churned below the axis)</h2>
      <ChartBox
        config={config}
        label={`Stacked bars per ${grain}. Latest ${String(last.period)}: ${fmt(num(last, "active"))} active = ${fmt(num(last, "new"))} new + ${fmt(num(last, "retained"))} retained + ${fmt(num(last, "reactivated"))} reactivated; ${fmt(num(last, "churned"))} churned.`}
      />
      {rows.some((r) => r.period_complete === false) && <p class="muted small">{PARTIAL_LEGEND}</p>}
    </section>
  );
}

function SegmentTable({ rows, grain }: { rows: MetricsRow[]; grain: Grain }) {
  const shown = rows.slice(-12).reverse();
  return (
    <section aria-labelledby="seg-h">
      <h2 id="seg-h">Transition segments by {grain}</h2>
      <TableScroll label={`Transition segments by ${grain}`}>
        <table class="segments">
          <thead>
            <tr>
              <th scope="col">{grain}</th>
              <th scope="col" class="num">active</th>
              {TRANSITION_SEGMENTS.map((s) => (
                <th scope="col" class="num" key={s}>
                  {label(s)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={String(r.period)}>
                <th scope="row">{periodLabel(r)}</th>
                <td class="num">{fmt(num(r, "active"))}</td>
                {TRANSITION_SEGMENTS.map((s) => (
                  <td class="num" key={s}>
                    {fmt(num(r, `segment_${s}`))}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </TableScroll>
    </section>
  );
}

/**
 * The periods compared by default: the last complete one against the one before it (a week before at
 * day grain). A period still in progress has only part of its users yet, so it would look like a drop.
 */
function defaultComparison(rows: MetricsRow[], grain: Grain): { base: string; compare: string } {
  const complete = rows.filter((r) => r.period_complete !== false).map((r) => String(r.period));
  const pool = complete.length >= 2 ? complete : rows.map((r) => String(r.period));
  return { base: pool[Math.max(0, pool.length - (grain === "day" ? 8 : 2))]!, compare: pool[pool.length - 1]! };
}

/**
 * Marks a broken (truncated) value axis: a zigzag across the foot of the y axis and of the total bars,
 * which stand on the axis' start, not on 0.
 */
const axisBreak = (totalBars: number[]): Plugin<"bar"> => ({
  id: "axisBreak",
  afterDatasetsDraw(chart: Chart<"bar">) {
    const { ctx, chartArea, scales } = chart;
    const y = chartArea.bottom - 8;
    const zigzag = (left: number, right: number) => {
      ctx.fillStyle = "#fff";
      ctx.fillRect(left, y - 4, right - left, 8);
      ctx.beginPath();
      for (const dy of [-4, 4]) {
        ctx.moveTo(left, y + dy);
        for (let x = left, up = true; x < right; x += 4, up = !up) ctx.lineTo(Math.min(right, x + 4), y + dy + (up ? -2 : 2));
      }
      ctx.stroke();
    };
    ctx.save();
    ctx.strokeStyle = "#334";
    ctx.lineWidth = 1.2;
    zigzag(scales.y!.right - 6, scales.y!.right + 6);
    const meta = chart.getDatasetMeta(0);
    for (const i of totalBars) {
      const bar = meta.data[i] as unknown as { x: number; width: number } | undefined;
      if (bar) zigzag(bar.x - bar.width / 2, bar.x + bar.width / 2);
    }
    ctx.restore();
  },
});

function ContributionView({ fact, grain, rows }: { fact: string; grain: Grain; rows: MetricsRow[] }) {
  const periods = rows.map((r) => String(r.period));
  const partial = new Set(rows.filter((r) => r.period_complete === false).map((r) => String(r.period)));
  const [base, setBase] = useState(() => defaultComparison(rows, grain).base);
  const [compare, setCompare] = useState(() => defaultComparison(rows, grain).compare);
  useEffect(() => {
    const d = defaultComparison(rows, grain);
    setBase(d.base);
    setCompare(d.compare);
  }, [fact, grain, periods[0]]);
  const c = useFetch<Contribution>(`/v1/facts/${encodeURIComponent(fact)}/metrics/contribution${qs({ grain, base, compare })}`);
  const chart = useMemo(() => {
    if (!c.data) return null;
    const d = c.data;
    // A waterfall: each segment's change floats from where the previous one ended.
    let level = d.base.active;
    const steps: Array<[number, number]> = [];
    const colors = [COLORS.total!];
    for (const s of d.by_segment) {
      steps.push([level, level + s.delta]);
      colors.push(s.delta >= 0 ? COLORS.up! : COLORS.down!);
      level += s.delta;
    }
    colors.push(COLORS.total!);
    // The changes are small next to the totals: the axis starts near the lowest level so they show.
    // The totals stand on that same start (not on 0), and the break is drawn and said.
    const levels = steps.flat().concat(d.base.active, d.compare.active);
    const lo = Math.min(...levels), hi = Math.max(...levels);
    const pad = Math.max(5, (hi - lo) * 0.6);
    const span = hi - lo + 1.5 * pad;
    const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000].find((s) => span / s <= 8) ?? 10 ** Math.ceil(Math.log10(span));
    const axisStart = Math.max(0, Math.floor((lo - pad) / step) * step);
    const bars: Array<[number, number]> = [[axisStart, d.base.active], ...steps, [axisStart, d.compare.active]];
    const config: ChartConfiguration = {
      type: "bar",
      data: {
        labels: [`active ${d.base.period}${d.base.period_complete ? "" : PARTIAL_MARK}`, ...d.by_segment.map((s) => label(s.name)), `active ${d.compare.period}${d.compare.period_complete ? "" : PARTIAL_MARK}`],
        datasets: [{ label: "active users", data: bars as unknown as number[], backgroundColor: colors }],
      },
      options: {
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (ctx) => { const [a, b] = ctx.raw as [number, number]; return ctx.dataIndex === 0 || ctx.dataIndex === bars.length - 1 ? fmt(b) : `${b - a >= 0 ? "+" : ""}${fmt(b - a)}`; } } },
        },
        scales: {
          y: {
            min: axisStart,
            max: Math.ceil((hi + pad / 2) / step) * step,
            ticks: { stepSize: step },
            title: { display: true, text: axisStart > 0 ? `active users (axis starts at ${fmt(axisStart)})` : "active users" },
          },
        },
      },
      plugins: axisStart > 0 ? [axisBreak([0, bars.length - 1]) as unknown as Plugin] : [],
    };
    return { config, axisStart };
  }, [c.data]);
  const option = (p: string) => (
    <option key={p} value={p}>
      {p}
      {partial.has(p) ? PARTIAL_MARK : ""}
    </option>
  );
  const incomplete = c.data ? [c.data.base, c.data.compare].filter((x) => !x.period_complete).map((x) => x.period) : [];
  return (
    <section aria-labelledby="contrib-h">
      <h2 id="contrib-h">Why did active users move?</h2>
      <form class="row wrap" onSubmit={(e) => e.preventDefault()} aria-label="Periods to compare">
        <label>
          Base{" "}
          <select value={base} onChange={(e) => setBase(e.currentTarget.value)}>
            {periods.map(option)}
          </select>
        </label>
        <label>
          Compare{" "}
          <select value={compare} onChange={(e) => setCompare(e.currentTarget.value)}>
            {periods.map(option)}
          </select>
        </label>
        {partial.size > 0 && <span class="muted small">{PARTIAL_LEGEND}</span>}
      </form>
      <ErrorMessage error={c.error} />
      {chart && c.data ? (
        <div class="two-col fit-table">
          <div>
            <ChartBox
              config={chart.config}
              label={`Waterfall from ${fmt(c.data.base.active)} active users in ${c.data.base.period} to ${fmt(c.data.compare.active)} in ${c.data.compare.period}: ${c.data.by_segment.map((s) => `${label(s.name)} ${s.delta >= 0 ? "+" : ""}${s.delta}`).join(", ")}.${chart.axisStart > 0 ? ` The axis starts at ${fmt(chart.axisStart)}, not at 0.` : ""}`}
            />
            {chart.axisStart > 0 && (
              <p class="muted small" data-testid="axis-note">
                The axis starts at {fmt(chart.axisStart)}, not at 0 (the zigzag marks the break): every bar, the totals too, is drawn from there.
              </p>
            )}
          </div>
          <TableScroll label="Change of active users by part">
            <table>
              <caption>
                {fmt(c.data.base.active)} → {fmt(c.data.compare.active)} ({c.data.delta_active >= 0 ? "+" : ""}
                {fmt(c.data.delta_active)})
                {incomplete.length > 0 && (
                  <span class="warn-text" data-testid="partial-warning">
                    ⚠ {incomplete.join(" and ")} {incomplete.length > 1 ? "are" : "is"} not complete yet: only {incomplete.length > 1 ? "their" : "its"} active users so far are counted, so the change is not like for like.
                  </span>
                )}
              </caption>
              <thead>
                <tr>
                  <th scope="col">part</th>
                  <th scope="col" class="num">base</th>
                  <th scope="col" class="num">compare</th>
                  <th scope="col" class="num">change</th>
                  <th scope="col" class="num">share</th>
                </tr>
              </thead>
              <tbody>
                {[...c.data.by_state.map((s) => ({ ...s, name: `state: ${s.name}` })), ...c.data.by_segment].map((s) => (
                  <tr key={s.name}>
                    <th scope="row">{label(s.name)}</th>
                    <td class="num">{fmt(s.base)}</td>
                    <td class="num">{fmt(s.compare)}</td>
                    <td class="num">{(s.delta >= 0 ? "+" : "") + fmt(s.delta)}</td>
                    <td class="num">{pct(s.share, 0)}</td>
                  </tr>
                ))}
                <tr>
                  <th scope="row">churned (outflow)</th>
                  <td class="num">{fmt(c.data.outflow.churned.base)}</td>
                  <td class="num">{fmt(c.data.outflow.churned.compare)}</td>
                  <td class="num">{(c.data.outflow.churned.delta >= 0 ? "+" : "") + fmt(c.data.outflow.churned.delta)}</td>
                  <td />
                </tr>
              </tbody>
            </table>
          </TableScroll>
        </div>
      ) : (
        <div class="chart" style={{ height: "280px" }} />
      )}
    </section>
  );
}

function GrowthLens({ rows, grain }: { rows: MetricsRow[]; grain: Grain }) {
  if (grain !== "day")
    return (
      <section aria-labelledby="growth-h">
        <h2 id="growth-h">Growth model</h2>
        <p class="muted">DAU/WAU/MAU and the growth states are defined at day grain: switch the grain to day.</p>
      </section>
    );
  const last = rows[rows.length - 1]!;
  const config: ChartConfiguration = {
    type: "line",
    data: {
      labels: rows.map((r) => String(r.period)),
      datasets: [
        { label: "DAU", data: rows.map((r) => num(r, "active")), borderColor: COLORS.new, backgroundColor: COLORS.new, pointRadius: 0 },
        { label: "WAU", data: rows.map((r) => num(r, "wau")), borderColor: COLORS.wau, backgroundColor: COLORS.wau, pointRadius: 0 },
        { label: "MAU", data: rows.map((r) => num(r, "mau")), borderColor: COLORS.mau, backgroundColor: COLORS.mau, pointRadius: 0 },
      ],
    },
    options: { scales: { y: { beginAtZero: true } } },
  };
  return (
    <section aria-labelledby="growth-h">
      <h2 id="growth-h">Growth model: DAU, WAU, MAU and the states behind them</h2>
      <div class="two-col">
        <ChartBox config={config} label={`Lines of DAU, WAU and MAU; latest ${String(last.period)}: DAU ${fmt(num(last, "active"))}, WAU ${fmt(num(last, "wau"))}, MAU ${fmt(num(last, "mau"))}.`} />
        <table>
          <caption>Growth states on {String(last.period)}</caption>
          <tbody>
            {GROWTH_STATES.map((s) => (
              <tr key={s}>
                <th scope="row">{label(s)}</th>
                <td class="num">{fmt(num(last, `growth_${s}`))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

interface CoreActions {
  service: string;
  grain: Grain;
  facts: Array<{ fact: string; processed_through: string | null; data: MetricsRow[] }>;
}

function ServiceView({ service, grain, from, to }: { service: string; grain: Grain; from: string; to: string }) {
  const s = useFetch<CoreActions>(`/v1/services/${encodeURIComponent(service)}/core-actions${qs({ grain, from, to })}`);
  if (s.error) return <ErrorMessage error={s.error} />;
  if (!s.data) return <div class="chart" style={{ height: "280px" }} />;
  const periods = [...new Set(s.data.facts.flatMap((f) => f.data.map((r) => String(r.period))))].sort();
  const config: ChartConfiguration = {
    type: "line",
    data: {
      labels: periods,
      datasets: s.data.facts.map((f, i) => {
        const by = new Map(f.data.map((r) => [String(r.period), num(r, "active")]));
        return { label: f.fact, data: periods.map((p) => by.get(p) ?? null) as number[], borderColor: paletteColor(i), backgroundColor: paletteColor(i), pointRadius: 0 };
      }),
    },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: `active users per ${grain}` } } } },
  };
  return (
    <section aria-labelledby="svc-h">
      <h2 id="svc-h">Service “{service}”: its core actions side by side</h2>
      <div class="two-col fit-table">
        <ChartBox config={config} label={`Active users per ${grain} of each core action of ${service}: ${s.data.facts.map((f) => f.fact).join(", ")}.`} />
        <TableScroll label={`Latest ${grain} per core action`}>
          <table>
            <caption>Latest {grain} per core action</caption>
            <thead>
              <tr>
                <th scope="col">fact</th>
                <th scope="col" class="num">active</th>
                <th scope="col" class="num">new</th>
                <th scope="col" class="num">retained</th>
                <th scope="col" class="num">reactivated</th>
                <th scope="col" class="num">churned</th>
              </tr>
            </thead>
            <tbody>
              {s.data.facts.map((f) => {
                const r = f.data[f.data.length - 1];
                return (
                  <tr key={f.fact}>
                    <th scope="row">{f.fact}</th>
                    {["active", "new", "retained", "reactivated", "churned"].map((k) => (
                      <td class="num" key={k}>
                        {r ? fmt(num(r, k)) : "—"}
                      </td>
                    ))}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableScroll>
      </div>
    </section>
  );
}
