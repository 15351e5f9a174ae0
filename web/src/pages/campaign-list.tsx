import { useEffect, useRef, useState } from "preact/hooks";
import { api, get, newIdempotencyKey, type Page } from "../api";
import { useFacts, useFetch } from "../data";
import { navigate } from "../router";
import { ErrorMessage, fmt, Link, Loading, TableScroll, useTitle } from "../ui";
import type { Audience, Campaign, Materialization } from "../types";

export function CampaignList() {
  const list = useFetch<Page<Campaign>>("/v1/campaigns?limit=200");
  useTitle("Campaigns");
  return (
    <>
      <h1>Campaigns</h1>
      <ErrorMessage error={list.error} />
      {list.loading && <Loading what="campaigns" />}
      {list.data && list.data.data.length === 0 && <p>No campaigns yet.</p>}
      {list.data && list.data.data.length > 0 && (
        <TableScroll label="Campaigns">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">List as of</th>
                <th scope="col">Launch</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">Treatment</th>
                <th scope="col" class="num">Control</th>
                <th scope="col">Goal</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.map((c) => (
                <tr key={c.id}>
                  <td>
                    <Link href={`/campaigns/${c.id}`}>{c.name}</Link>
                  </td>
                  <td>{c.as_of}</td>
                  <td>{c.launch_date}</td>
                  <td>{c.status === "ready" ? (c.launched ? "launched" : "ready") : c.status}</td>
                  <td class="num">{c.status === "ready" ? fmt(c.counts.treatment) : "—"}</td>
                  <td class="num">{c.status === "ready" ? fmt(c.counts.control) : "—"}</td>
                  <td>
                    {c.goal.metric} on {c.goal.fact} in {c.goal.window_periods} days
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      )}
      <CreateCampaign />
    </>
  );
}

const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);

function CreateCampaign() {
  const audiences = useFetch<Page<Audience>>("/v1/audiences?limit=200");
  const facts = useFacts();
  const [audienceId, setAudienceId] = useState("");
  const [lists, setLists] = useState<Materialization[]>([]);
  const [form, setForm] = useState({ name: "", materialization_id: "", holdout_percent: 20, launch_date: tomorrow(), fact: "", window_periods: 14, metric: "returned" });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  // Submitting the same form again (after a timeout or a dropped connection) reuses its key, so the
  // service answers with the campaign it may already have created instead of making a second one.
  const attempt = useRef<{ body: string; key: string } | null>(null);
  useEffect(() => {
    if (!audienceId) return setLists([]);
    // The goal is usually the audience's own fact: start from it (the user may pick another).
    const audienceFact = audiences.data?.data.find((a) => a.id === audienceId)?.fact;
    if (audienceFact) setForm((f) => ({ ...f, fact: audienceFact }));
    get<Page<Materialization>>(`/v1/audiences/${audienceId}/materializations?limit=100`).then((p) => {
      const ok = p.data.filter((m) => m.status === "succeeded");
      setLists(ok);
      setForm((f) => ({ ...f, materialization_id: ok[0]?.id ?? "" }));
    }, setError);
  }, [audienceId]);
  useEffect(() => {
    if (facts.data && !form.fact) setForm((f) => ({ ...f, fact: facts.data!.data[0]?.name ?? "" }));
  }, [facts.data]);
  const set = (patch: Partial<typeof form>) => setForm({ ...form, ...patch });
  const chosen = lists.find((l) => l.id === form.materialization_id);
  const control = chosen?.member_count ? Math.round((chosen.member_count * form.holdout_percent) / 100) : null;

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        name: form.name,
        materialization_id: form.materialization_id,
        holdout_percent: form.holdout_percent,
        launch_date: form.launch_date,
        goal: { fact: form.fact, window_periods: form.window_periods, metric: form.metric },
      };
      const text = JSON.stringify(body);
      if (attempt.current?.body !== text) attempt.current = { body: text, key: newIdempotencyKey() };
      const c = await api<Campaign>("POST", "/v1/campaigns", body, { headers: { "idempotency-key": attempt.current.key } });
      navigate(`/campaigns/${c.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <section aria-labelledby="new-c">
      <h2 id="new-c">New campaign</h2>
      {(audiences.loading || facts.loading) && <Loading what="audiences" />}
      <form onSubmit={submit} class="grid-fields">
        <div class="field">
          <label for="c-name">Name</label>
          <input id="c-name" required value={form.name} onInput={(e) => set({ name: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="c-audience">Audience</label>
          <select id="c-audience" required value={audienceId} onChange={(e) => setAudienceId(e.currentTarget.value)}>
            <option value="">Choose…</option>
            {audiences.data?.data.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="c-list">Frozen list</label>
          <select id="c-list" required value={form.materialization_id} onChange={(e) => set({ materialization_id: e.currentTarget.value })}>
            {lists.length === 0 && <option value="">{audienceId ? "No finished list: materialize first" : "Choose an audience"}</option>}
            {lists.map((m) => (
              <option key={m.id} value={m.id}>
                as of {m.as_of}, {fmt(m.member_count)} members
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="c-holdout">Holdout: {form.holdout_percent}%{control !== null ? ` (about ${fmt(control)} held out)` : ""}</label>
          <input id="c-holdout" type="range" aria-valuetext={`${form.holdout_percent}% held out`} min={1} max={50} step={1} value={form.holdout_percent} onInput={(e) => set({ holdout_percent: Number(e.currentTarget.value) })} />
        </div>
        <div class="field">
          <label for="c-launch">Launch date</label>
          <input id="c-launch" type="date" required value={form.launch_date} onInput={(e) => set({ launch_date: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="c-fact">Goal fact</label>
          <select id="c-fact" value={form.fact} onChange={(e) => set({ fact: e.currentTarget.value })}>
            {facts.data?.data.map((f) => (
              <option key={f.name} value={f.name}>
                {f.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="c-metric">Goal metric</label>
          <select id="c-metric" value={form.metric} onChange={(e) => set({ metric: e.currentTarget.value })}>
            <option value="returned">returned (any activity)</option>
            <option value="active_periods">active days</option>
          </select>
        </div>
        <div class="field">
          <label for="c-window">Window (days)</label>
          <input id="c-window" type="number" min={1} max={366} value={form.window_periods} onInput={(e) => set({ window_periods: Number(e.currentTarget.value) })} />
        </div>
        <div class="row">
          <button type="submit" class="primary" disabled={busy}>
            Create campaign
          </button>
        </div>
      </form>
      <ErrorMessage error={error} />
    </section>
  );
}
