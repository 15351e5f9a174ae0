import { pp } from "./ui";

export interface IntervalRow {
  label: string;
  estimate: number | null;
  ci: [number, number] | null;
  note?: string;
}

/**
 * Lift estimates with their 95% confidence intervals on one axis through zero: an interval that
 * crosses zero is a lift this data cannot tell from chance. SVG, with the numbers in text beside it.
 */
export function IntervalChart({ rows, title, unit = "pp" }: { rows: IntervalRow[]; title: string; unit?: "pp" | "days" }) {
  const show = (v: number | null) => (unit === "pp" ? pp(v) : v === null ? "—" : `${v >= 0 ? "+" : ""}${v.toFixed(2)} days`);
  const scale = unit === "pp" ? 100 : 1;
  const values = rows.flatMap((r) => [r.estimate, ...(r.ci ?? [])]).filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const pad = (hi - lo || 0.1) * 0.1;
  const min = lo - pad;
  const max = hi + pad;
  const W = 600;
  const left = 150;
  const right = 20;
  const rowH = 34;
  const H = rows.length * rowH + 30;
  const x = (v: number) => left + ((v - min) / (max - min)) * (W - left - right);
  const ticks = niceTicks(min, max);
  return (
    <figure class="interval-chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: ${rows.map((r) => `${r.label} ${show(r.estimate)}${r.ci ? ` (95% CI ${show(r.ci[0])} to ${show(r.ci[1])})` : ""}`).join("; ")}`}>
        {ticks.map((t) => (
          <g key={t}>
            <line x1={x(t)} x2={x(t)} y1={0} y2={H - 24} class={t === 0 ? "zero" : "grid"} />
            <text x={x(t)} y={H - 8} text-anchor="middle" class="tick">
              {(t * scale).toFixed(Math.abs(max - min) * scale < 5 ? 1 : 0)}
            </text>
          </g>
        ))}
        {rows.map((r, i) => {
          const y = i * rowH + rowH / 2;
          return (
            <g key={r.label}>
              <text x={left - 8} y={y + 4} text-anchor="end" class="row-label">
                {r.label}
              </text>
              {r.ci && <line x1={x(r.ci[0])} x2={x(r.ci[1])} y1={y} y2={y} class={r.ci[0] > 0 || r.ci[1] < 0 ? "ci sig" : "ci"} />}
              {r.ci && <line x1={x(r.ci[0])} x2={x(r.ci[0])} y1={y - 6} y2={y + 6} class="ci-cap" />}
              {r.ci && <line x1={x(r.ci[1])} x2={x(r.ci[1])} y1={y - 6} y2={y + 6} class="ci-cap" />}
              {r.estimate !== null && <circle cx={x(r.estimate)} cy={y} r={5} class="estimate" />}
              {r.estimate === null && (
                <text x={x(0) + 8} y={y + 4} class="tick">
                  {r.note ?? "no estimate"}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption class="muted small">{title}: points are the lift {unit === "pp" ? "in percentage points" : "in active days per user"}, bars its 95% confidence interval; the vertical line is no effect.</figcaption>
    </figure>
  );
}

function niceTicks(min: number, max: number): number[] {
  const span = max - min;
  const step = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50].find((s) => span / s <= 8) ?? 100;
  const out: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + 1e-12; t += step) out.push(Math.round(t / step) * step);
  return out;
}
