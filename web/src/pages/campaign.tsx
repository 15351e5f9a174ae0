import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { useFetch } from "../data";
import { IntervalChart } from "../interval-chart";
import { CsvButton } from "./materialization";
import { ErrorMessage, fmt, label, Link, Loading, pct, pp, TableScroll, useTitle } from "../ui";
import type { Campaign, CampaignResults, MetricResult } from "../types";

const pval = (p: number | null) => (p === null ? "—" : p < 0.0001 ? "< 0.0001" : p.toFixed(4));
const days = (v: number | null) => (v === null ? "—" : `${v >= 0 ? "+" : ""}${v.toFixed(2)} d`);

// How often the page asks again while a job assigns the list.
const ASSIGNING_POLL_MS = 1000;

// A send's lifecycle, in the API's order (SEND_STATUSES); its answer's keys can come in any order
// (stored results are jsonb), and a status added later goes last.
const SEND_STATUSES = ["sent", "delivered", "failed", "opened", "clicked"];
const lifecycleRank = (status: string) => (SEND_STATUSES.includes(status) ? SEND_STATUSES.indexOf(status) : SEND_STATUSES.length);
const inLifecycleOrder = (byStatus: Record<string, number>) => Object.entries(byStatus).sort(([a], [b]) => lifecycleRank(a) - lifecycleRank(b));

export function CampaignPage({ id }: { id: string }) {
  const c = useFetch<Campaign>(`/v1/campaigns/${id}`);
  useTitle(c.data ? c.data.name : "Campaign");
  const [refresh, setRefresh] = useState(0);
  const assigning = c.data?.status === "assigning";
  useEffect(() => {
    if (!assigning) return;
    const t = setTimeout(c.reload, ASSIGNING_POLL_MS);
    return () => clearTimeout(t);
  }, [c.data]);
  // Results exist once the list is assigned (until then the API answers 409).
  const ready = c.data?.status === "ready";
  const r = useFetch<CampaignResults>(ready ? `/v1/campaigns/${id}/results${refresh ? "?refresh=true" : ""}` : null, [refresh]);
  if (c.error) return <ErrorMessage error={c.error} />;
  if (!c.data) return <Loading what="the campaign" />;
  const camp = c.data;
  return (
    <>
      <p>
        <Link href="/campaigns">← Campaigns</Link>
      </p>
      <h1>{camp.name}</h1>
      <dl class="facts">
        <dt>List</dt>
        <dd>
          <Link href={`/materializations/${camp.materialization_id}`}>as of {camp.as_of}</Link>
          {camp.assigned_at ? ` (${fmt(camp.counts.total)} users)` : ""}
        </dd>
        <dt>Holdout</dt>
        <dd>
          {camp.holdout_percent}%
          {camp.assigned_at && `: ${fmt(camp.counts.treatment)} treatment, ${fmt(camp.counts.control)} control`}
          {camp.assigned_at && camp.counts.global_control ? `, ${fmt(camp.counts.global_control)} in the global control group` : ""}
        </dd>
        <dt>Launch</dt>
        <dd>
          {camp.launch_date}; goal window {camp.window.start} … {camp.window.end}
        </dd>
        <dt>Goal</dt>
        <dd>
          {camp.goal.metric === "returned" ? "returned to" : "active days on"} {camp.goal.fact} within {camp.goal.window_periods} days
        </dd>
      </dl>
      {camp.status === "assigning" && (
        <p role="status" class="muted" data-testid="assigning">
          {camp.pending_changes ? "Applying your change: the list is being split into arms again" : "The list is being split into treatment and control"}
          … this page updates when it is done.
        </p>
      )}
      {camp.status === "failed" && <FailedAssignment camp={camp} onQueued={c.reload} />}
      {camp.status === "ready" && camp.assignment_error && (
        <p class="error" role="alert">
          The last change was not applied: {camp.assignment_error}.
        </p>
      )}
      {ready && <CampaignResultsSection id={id} r={r} onRefresh={() => setRefresh((n) => n + 1)} />}
    </>
  );
}

/** A campaign whose first assignment failed: why, and a button that queues it again as it is. */
function FailedAssignment({ camp, onQueued }: { camp: Campaign; onQueued: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const retry = async () => {
    setBusy(true);
    setError(null);
    try {
      await api<Campaign>("POST", `/v1/campaigns/${camp.id}/retry-assignment`);
      onQueued();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div role="alert">
      <p class="error">
        Assigning the list failed: {camp.assignment_error}. Try again, or change the campaign's list with the API (PATCH), or delete it.
      </p>
      <button type="button" onClick={retry} disabled={busy}>
        Try again
      </button>
      <ErrorMessage error={error} />
    </div>
  );
}

function CampaignResultsSection({ id, r, onRefresh }: { id: string; r: ReturnType<typeof useFetch<CampaignResults>>; onRefresh: () => void }) {
  return (
    <>
      <CsvButton url={`/v1/campaigns/${id}/assignments?group=treatment`} filename={`treatment-${id.slice(0, 8)}.csv`} label="Download treatment list (CSV)" />
      <section aria-labelledby="results-h">
        <div class="row spread">
          <h2 id="results-h">Results</h2>
          <button type="button" onClick={onRefresh} disabled={r.loading}>
            Recompute now
          </button>
        </div>
        <ErrorMessage error={r.error} />
        {r.loading && !r.data && <Loading what="results" />}
        {r.data && <Results r={r.data} />}
      </section>
    </>
  );
}

function Results({ r }: { r: CampaignResults }) {
  const g = r.goal;
  const buckets = r.breakdowns.inactivity_periods.filter((b) => b.groups.treatment.n + b.groups.control.n > 0);
  const isRate = g.metric === "returned";
  const mean = (v: number | null) => (isRate ? pct(v) : v === null ? "—" : v.toFixed(2));
  // A rate's lift is in percentage points; active days' lift in days per user.
  const lift = isRate ? pp : days;
  const ciText = (ci: [number, number] | null) => (ci ? `${lift(ci[0])} to ${lift(ci[1])}` : "—");
  return (
    <>
      <div class="badges" data-testid="results-badges">
        <span class={`badge ${r.window.complete ? "ok" : "warn"}`}>
          Window {r.window.complete ? "complete" : "incomplete"}: {r.window.days_observed}/{r.window.days_total} days observed
          {r.window.processed_through ? ` (processed through ${r.window.processed_through})` : ""}
        </span>
        <span class={`badge ${r.srm.flagged ? "bad" : "ok"}`} data-testid="srm">
          {r.srm.flagged ? "Sample ratio mismatch: check the assignment pipeline" : "Sample ratio OK"} (χ² {r.srm.chi_square === null ? "—" : r.srm.chi_square.toFixed(2)}, p {r.srm.p_value === null ? "—" : r.srm.p_value.toFixed(3)})
        </span>
        {r.stale && !r.recomputation_error && <span class="badge warn">Newer data exists: recomputation queued</span>}
        {r.stale && r.recomputation_error && (
          <span class="badge warn" role="alert">
            Newer data exists, but recomputing failed ({r.recomputation_error.message}): these are the last results computed
          </span>
        )}
      </div>
      <p class="headline">
        Lift <strong data-testid="lift">{lift(g.absolute_lift)}</strong> (95% CI {ciText(g.absolute_ci95)}, p {pval(g.p_value)}
        {g.p_value !== null && g.p_value >= 0.05 ? ": not distinguishable from no effect at 95%" : ""})
        {g.relative_lift !== null && <> — relative {pct(g.relative_lift, 0)}</>}
      </p>
      <p class="muted small">{r.analysis}</p>
      <IntervalChart
        unit={isRate ? "pp" : "days"}
        title="Lift by inactivity at the list's as_of"
        rows={[
          { label: "All members", estimate: g.absolute_lift, ci: g.absolute_ci95 },
          { label: "CUPED-adjusted", estimate: g.cuped.absolute_lift, ci: g.cuped.absolute_ci95 },
          ...buckets.map((b) => ({ label: `inactive ${b.bucket}`, estimate: b.absolute_lift, ci: b.absolute_ci95, note: Object.values(b.reasons)[0] })),
        ]}
      />
      <TableScroll label="Goal by group">
        <table>
          <caption>Goal by inactivity bucket{r.breakdowns.inactivity_periods.length ? " (periods inactive at the list's as_of)" : ""}</caption>
          <thead>
            <tr>
              <th scope="col">Group</th>
              <th scope="col" class="num">Treatment n</th>
              <th scope="col" class="num">Control n</th>
              <th scope="col" class="num">Treatment</th>
              <th scope="col" class="num">Control</th>
              <th scope="col" class="num">Lift</th>
              <th scope="col">95% CI</th>
              <th scope="col" class="num">p</th>
            </tr>
          </thead>
          <tbody>
            <ResultRow name="All members" m={g} mean={mean} lift={lift} ciText={ciText} />
            {buckets.map((b) => (
              <ResultRow key={b.bucket} name={`inactive ${b.bucket}`} m={b} mean={mean} lift={lift} ciText={ciText} />
            ))}
            {r.breakdowns.state
              .filter((b) => b.groups.treatment.n + b.groups.control.n > 0)
              .map((b) => (
                <ResultRow key={`s-${b.bucket}`} name={`state ${label(b.bucket)}`} m={b} mean={mean} lift={lift} ciText={ciText} />
              ))}
          </tbody>
        </table>
      </TableScroll>
      <h3>Send funnel (treatment)</h3>
      <p data-testid="funnel">
        {fmt(r.funnel.treatment.assigned)} assigned, {fmt(r.funnel.treatment.reached)} reached
        {inLifecycleOrder(r.funnel.treatment.by_status).map(([k, v]) => `, ${fmt(v)} ${k}`)}; {fmt(r.funnel.control.held_out)} control users logged as held out.
      </p>
      <p class="muted small">Computed {new Date(r.computed_at).toLocaleString()}.</p>
    </>
  );
}

function ResultRow({ name, m, mean, lift, ciText }: { name: string; m: MetricResult; mean(v: number | null): string; lift(v: number | null): string; ciText(ci: [number, number] | null): string }) {
  return (
    <tr>
      <th scope="row">{name}</th>
      <td class="num">{fmt(m.groups.treatment.n)}</td>
      <td class="num">{fmt(m.groups.control.n)}</td>
      <td class="num">{mean(m.groups.treatment.mean)}</td>
      <td class="num">{mean(m.groups.control.mean)}</td>
      <td class="num">{lift(m.absolute_lift)}</td>
      <td>{ciText(m.absolute_ci95)}</td>
      <td class="num">{pval(m.p_value)}</td>
    </tr>
  );
}
