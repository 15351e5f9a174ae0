import { useEffect, useRef } from "preact/hooks";
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip, type ChartConfiguration } from "chart.js";

Chart.register(BarController, BarElement, LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Tooltip);
Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
Chart.defaults.color = "#334";

export const COLORS: Record<string, string> = {
  new: "#4e79a7",
  retained: "#59a14f",
  reactivated: "#f28e2b",
  churned: "#e15759",
  inactive: "#9c9c9c",
  wau: "#76b7b2",
  mau: "#b07aa1",
  up: "#59a14f",
  down: "#e15759",
  total: "#4e79a7",
};
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"];
export const paletteColor = (i: number) => PALETTE[i % PALETTE.length]!;

/** A Chart.js canvas in a fixed-height box (no layout jump when data arrives); the label describes it to screen readers. */
export function ChartBox({ config, label, height = 280 }: { config: ChartConfiguration; label: string; height?: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    chart.current = new Chart(canvas.current!, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } });
    return () => chart.current?.destroy();
  }, [JSON.stringify(config.data), JSON.stringify(config.options)]);
  return (
    <div class="chart" style={{ height: `${height}px` }}>
      <canvas ref={canvas} role="img" aria-label={label} />
    </div>
  );
}
