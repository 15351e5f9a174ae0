import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, get, type Page } from "../api";
import { GRAINS, GROWTH_STATES, type FilterNode, type Grain } from "../fields";
import { GroupEditor, nodePaths, errorsAt, type FieldError } from "../filter-editor";
import { useFacts, useFetch } from "../data";
import { navigate } from "../router";
import { ErrorMessage, fmt, label, Link, Loading, TableScroll, useTitle } from "../ui";
import type { Audience, Definition, Materialization, Preview } from "../types";

const blank = (fact: string): Definition => ({
  name: "",
  fact,
  grain: "day",
  filter: { all: [{ field: "inactivity_periods", op: "between", value: [7, 30] }] },
});

/** The root is edited as a group; a saved single condition or NOT becomes its only child. */
const asGroup = (f: FilterNode): { all: FilterNode[] } | { any: FilterNode[] } => ("all" in f || "any" in f ? (f as { all: FilterNode[] }) : { all: [f] });

const normalizePath = (p: string) => p.replace(/^definition\./, "");

/** JSON with sorted keys and no undefined members: the API's jsonb gives a definition's keys back in another order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * Whether two definitions say the same thing, as the API would store them: the name trimmed, the root
 * as a group, and no description the same as a null or empty one (the API answers a missing one as null).
 */
const sameDefinition = (a: Definition, b: Definition) => {
  const content = (d: Definition) => canonicalJson({ name: d.name.trim(), fact: d.fact, grain: d.grain, filter: asGroup(d.filter), description: d.description || null });
  return content(a) === content(b);
};

export function AudienceBuilder({ id }: { id: string | null }) {
  const facts = useFacts();
  const [saved, setSaved] = useState<Audience | null>(null);
  const [def, setDef] = useState<Definition | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [asOf, setAsOf] = useState("");
  useTitle(saved ? `Audience: ${saved.name}` : id ? "Audience" : "New audience");

  useEffect(() => {
    if (id) {
      get<Audience>(`/v1/audiences/${id}`).then(
        (a) => {
          setSaved(a);
          setDef({ name: a.name, fact: a.fact, grain: a.grain, filter: asGroup(a.filter), description: a.description });
        },
        setLoadError,
      );
    }
  }, [id]);
  useEffect(() => {
    if (!id && !def && facts.data) setDef(blank(facts.data.data[0]?.name ?? ""));
  }, [facts.data]);

  if (loadError) return <ErrorMessage error={loadError} />;
  if (facts.error) return <ErrorMessage error={facts.error} />;
  if (!def || !facts.data) return <Loading what="the audience" />;
  if (!facts.data.data.length)
    return (
      <p>
        There are no facts yet: create one and load events through the API (<Link href="/dashboard">dashboard</Link>).
      </p>
    );
  return <Builder key={saved?.id ?? "new"} facts={facts.data.data.map((f) => f.name)} def={def} setDef={setDef} saved={saved} setSaved={setSaved} asOf={asOf} setAsOf={setAsOf} />;
}

function Builder(props: { facts: string[]; def: Definition; setDef(d: Definition): void; saved: Audience | null; setSaved(a: Audience): void; asOf: string; setAsOf(s: string): void }) {
  const { def, setDef, saved, asOf } = props;
  const [preview, setPreview] = useState<{ result: Preview | null; error: ApiError | Error | null; pending: boolean }>({ result: null, error: null, pending: true });
  const [saveState, setSaveState] = useState<{ busy: boolean; error: unknown; message: string | null }>({ busy: false, error: null, message: null });
  const [versionsTick, setVersionsTick] = useState(0);
  // The name does not change the count: an unnamed draft is counted too (saving still needs a name).
  const payload = useMemo(() => JSON.stringify({ definition: { ...def, name: def.name.trim() || "Unsaved audience" }, ...(asOf ? { as_of: asOf } : {}) }), [def, asOf]);

  // The live count: a debounced preview of what is on screen; older answers never overwrite newer ones.
  useEffect(() => {
    setPreview((p) => ({ ...p, pending: true }));
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      api<Preview>("POST", "/v1/audiences/preview", JSON.parse(payload), { signal: ctl.signal }).then(
        (result) => setPreview({ result, error: null, pending: false }),
        (error) => !ctl.signal.aborted && setPreview((p) => ({ result: p.result, error, pending: false })),
      );
    }, 300);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
  }, [payload]);

  const errors: FieldError[] = preview.error instanceof ApiError ? (preview.error.problem.errors ?? []).filter((e) => e.path !== "definition.name").map((e) => ({ path: normalizePath(e.path), message: e.message })) : [];
  const saveErrors: FieldError[] = saveState.error instanceof ApiError ? (saveState.error.problem.errors ?? []).map((e) => ({ path: normalizePath(e.path), message: e.message })) : [];
  const allErrors = [...errors, ...saveErrors.filter((s) => !errors.some((e) => e.path === s.path))];
  const shown = nodePaths(def.filter);
  const unplaced = allErrors.filter((e) => !["name", "fact", "grain", "description"].includes(e.path) && !shown.some((n) => errorsAt([e], n.path, n.leaf).length));
  const at = (p: string) => allErrors.filter((e) => e.path === p);
  const dirty = !saved || !sameDefinition(saved, def);

  async function save(e: Event) {
    e.preventDefault();
    setSaveState({ busy: true, error: null, message: null });
    try {
      if (!saved) {
        const a = await api<Audience>("POST", "/v1/audiences", def);
        props.setSaved(a);
        navigate(`/audiences/${a.id}`, true);
      } else {
        const a = await api<Audience>("PATCH", `/v1/audiences/${saved.id}`, def);
        props.setSaved(a);
        setSaveState({ busy: false, error: null, message: `Saved as version ${a.version}.` });
        setVersionsTick((t) => t + 1);
        return;
      }
      setSaveState({ busy: false, error: null, message: "Saved as version 1." });
    } catch (error) {
      setSaveState({ busy: false, error, message: null });
    }
  }

  const set = (patch: Partial<Definition>) => setDef({ ...def, ...patch });
  return (
    <div class="builder">
      <div class="builder-main">
        <h1>{saved ? `Audience: ${saved.name}` : "New audience"}</h1>
        <form onSubmit={save} aria-label="Audience definition">
          <div class="grid-fields">
            <div class="field">
              <label for="a-name">Name</label>
              <input id="a-name" required value={def.name} onInput={(e) => set({ name: e.currentTarget.value })} aria-invalid={at("name").length > 0} />
              {at("name").map((e) => (
                <span class="error" role="alert">{e.message}</span>
              ))}
            </div>
            <div class="field">
              <label for="a-fact">Fact</label>
              <select id="a-fact" value={def.fact} onChange={(e) => set({ fact: e.currentTarget.value })}>
                {props.facts.map((f) => (
                  <option key={f} value={f}>
                    {f}
                  </option>
                ))}
              </select>
              {at("fact").map((e) => (
                <span class="error" role="alert">{e.message}</span>
              ))}
            </div>
            <div class="field">
              <label for="a-grain">Grain</label>
              <select id="a-grain" value={def.grain} onChange={(e) => set({ grain: e.currentTarget.value as Grain })}>
                {GRAINS.map((g) => (
                  <option key={g} value={g}>
                    {g}
                  </option>
                ))}
              </select>
              {at("grain").map((e) => (
                <span class="error" role="alert">{e.message}</span>
              ))}
            </div>
            <div class="field">
              <label for="a-asof">
                As of <span class="muted">(empty: latest processed)</span>
              </label>
              <input id="a-asof" type="date" value={asOf} onInput={(e) => props.setAsOf(e.currentTarget.value)} />
            </div>
          </div>
          <GroupEditor node={def.filter as { all: FilterNode[] }} path="filter" name="the filter" prefix="" ctx={{ errors: allErrors, facts: props.facts, fact: def.fact, grain: def.grain }} depth={0} onChange={(filter) => set({ filter })} />
          {unplaced.length > 0 && (
            <ul class="field-errors" role="alert">
              {unplaced.map((e) => (
                <li key={e.path}>
                  <code>{e.path || "definition"}</code>: {e.message}
                </li>
              ))}
            </ul>
          )}
          <div class="row">
            <button type="submit" class="primary" disabled={saveState.busy || !dirty}>
              {saved ? (dirty ? "Save new version" : "Saved") : "Save audience"}
            </button>
            <span aria-live="polite" class="muted">
              {saveState.message}
            </span>
          </div>
          {saveState.error && !(saveState.error instanceof ApiError && saveState.error.problem.errors?.length) ? <ErrorMessage error={saveState.error} /> : null}
          <details>
            <summary>Definition as JSON</summary>
            <pre data-testid="definition-json">{JSON.stringify(def, null, 2)}</pre>
          </details>
        </form>
        {saved && <Materialize audience={saved} asOf={asOf} dirty={dirty} />}
        {/* A version is loaded whole: one saved without a description has none (saving it clears a later one). */}
        {saved && <Versions key={versionsTick} audience={saved} onLoad={(d) => setDef({ name: d.name, fact: d.fact, grain: d.grain, filter: asGroup(d.filter), description: d.description ?? null })} />}
      </div>
      <PreviewPanel preview={preview} grain={def.grain} />
    </div>
  );
}

const STATE_ORDER = ["new", "retained", "reactivated", "inactive"];

function PreviewPanel({ preview, grain }: { preview: { result: Preview | null; error: Error | null; pending: boolean }; grain: Grain }) {
  const r = preview.result;
  const problem = preview.error;
  // Fixed rows and a fixed status line: nothing below moves while the count updates.
  const status = preview.pending ? "Updating…" : problem
      ? problem instanceof ApiError && problem.problem.errors?.length
        ? "Not counted: fix what is marked in the definition."
        : `Not counted: ${problem instanceof ApiError && problem.status === 403 ? "not allowed (403): " : ""}${problem.message}` : r ? `as of ${r.as_of} (${r.grain}), counted in ${r.took_ms} ms` : "";
  return (
    <aside class="preview" aria-label="Live preview">
      <h2 id="count-h">Live count of users</h2>
      <p class="count" aria-busy={preview.pending}>
        <output id="preview-count" data-testid="preview-count" aria-labelledby="count-h" class={problem || preview.pending ? "stale" : undefined}>
          {r ? fmt(r.count) : "—"}
        </output>
      </p>
      <p class={`small status-line ${problem && !preview.pending ? "error" : "muted"}`} aria-live="polite" data-testid="preview-status">
        {status}
      </p>
      <h3>By state</h3>
      <Breakdown values={r?.by_state ?? {}} order={STATE_ORDER} total={r?.count ?? 0} colors="s" />
      {grain === "day" && (
        <>
          <h3>By growth state</h3>
          <Breakdown values={r?.by_growth_state ?? {}} order={GROWTH_STATES} total={r?.count ?? 0} colors="g" />
        </>
      )}
      {r && r.sample.length > 0 && (
        <details>
          <summary>Sample of {r.sample.length} members</summary>
          <ul class="sample">
            {r.sample.map((s) => (
              <li key={String(s.user_id)}>
                <code>{String(s.user_id)}</code> {label(String(s.state))}, inactive {String(s.inactivity_periods)}
              </li>
            ))}
          </ul>
        </details>
      )}
    </aside>
  );
}

/** Counts with bars; `colors` picks the bars' colour classes: activation states (s-) or growth states (g-). */
function Breakdown({ values, order, total, colors }: { values: Record<string, number>; order: string[]; total: number; colors: "s" | "g" }) {
  return (
    <table class="breakdown">
      <tbody>
        {order.map((k) => {
          const v = values[k] ?? 0;
          return (
            <tr key={k}>
              <th scope="row">{label(k)}</th>
              <td class="num">{fmt(v)}</td>
              <td class="bar-cell" aria-hidden="true">
                <span class={`bar ${colors}-${k}`} style={{ width: `${total ? (100 * v) / total : 0}%` }} />
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function Materialize({ audience, asOf, dirty }: { audience: Audience; asOf: string; dirty: boolean }) {
  const list = useFetch<Page<Materialization>>(`/v1/audiences/${audience.id}/materializations?limit=20`);
  const [job, setJob] = useState<Materialization | null>(null);
  const [error, setError] = useState<unknown>(null);
  const alive = useRef(true);
  useEffect(() => () => void (alive.current = false), []);

  async function start() {
    setError(null);
    try {
      let m = await api<Materialization>("POST", `/v1/audiences/${audience.id}/materializations`, asOf ? { as_of: asOf } : {});
      setJob(m);
      while (alive.current && (m.status === "queued" || m.status === "running")) {
        await new Promise((r) => setTimeout(r, 250));
        m = await get<Materialization>(`/v1/materializations/${m.id}`);
        setJob(m);
      }
      list.reload();
    } catch (e) {
      setError(e);
    }
  }
  const running = job && (job.status === "queued" || job.status === "running");
  return (
    <section aria-labelledby="mat-h">
      <h2 id="mat-h">Materialize</h2>
      <p class="muted">
        Freeze version {audience.version}'s members as of {asOf || "the latest processed period"}.{dirty ? " Unsaved edits are not included: save first." : ""}
      </p>
      <div class="row">
        <button type="button" onClick={start} disabled={!!running}>
          {running ? "Materializing…" : "Materialize now"}
        </button>
        <progress aria-label="Materialization progress" max={1} value={job ? (job.status === "succeeded" ? 1 : job.progress) : 0} class={job ? undefined : "idle"} />
        <span aria-live="polite" class="muted">
          {job && (job.status === "succeeded" ? `Done: ${fmt(job.member_count)} members.` : job.status === "failed" ? "Failed." : `${job.status} ${Math.round(job.progress * 100)}%`)}
        </span>
      </div>
      {job?.status === "succeeded" && (
        <p>
          <Link href={`/materializations/${job.id}`}>View the {fmt(job.member_count)} members</Link>
        </p>
      )}
      {job?.status === "failed" && <p class="error" role="alert">{job.error}</p>}
      <ErrorMessage error={error} />
      <ErrorMessage error={list.error} />
      {list.data && list.data.data.length > 0 && (
        <TableScroll label="Lists of this audience">
          <table>
            <caption>Lists of this audience</caption>
            <thead>
              <tr>
                <th scope="col">As of</th>
                <th scope="col">Version</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">Members</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.map((m) => (
                <tr key={m.id}>
                  <td>{m.status === "succeeded" ? <Link href={`/materializations/${m.id}`}>{m.as_of}</Link> : m.as_of}</td>
                  <td>{m.version}</td>
                  <td>{m.status}</td>
                  <td class="num">{fmt(m.member_count)}</td>
                  <td>{new Date(m.created_at).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      )}
    </section>
  );
}

type Version = { version: number; definition: Definition; created_at: string };
// Versions shown per page of the history; older ones come with "Show older versions".
const VERSIONS_PAGE = 20;

function Versions({ audience, onLoad }: { audience: Audience; onLoad(d: Definition): void }) {
  const first = useFetch<Page<Version>>(`/v1/audiences/${audience.id}/versions?limit=${VERSIONS_PAGE}`);
  const [older, setOlder] = useState<{ rows: Version[]; cursor: string | null; loading: boolean; error: unknown }>({ rows: [], cursor: null, loading: false, error: null });
  const cursor = older.rows.length ? older.cursor : (first.data?.next_cursor ?? null);
  const showOlder = async () => {
    setOlder((o) => ({ ...o, loading: true, error: null }));
    try {
      const page = await get<Page<Version>>(`/v1/audiences/${audience.id}/versions?limit=${VERSIONS_PAGE}&cursor=${encodeURIComponent(cursor!)}`);
      setOlder((o) => ({ rows: [...o.rows, ...page.data], cursor: page.next_cursor, loading: false, error: null }));
    } catch (error) {
      setOlder((o) => ({ ...o, loading: false, error }));
    }
  };
  const rows = [...(first.data?.data ?? []), ...older.rows];
  return (
    <section aria-labelledby="ver-h">
      <h2 id="ver-h">Version history</h2>
      <ErrorMessage error={first.error ?? older.error} />
      {first.data && (
        <ul class="versions">
          {rows.map((x) => (
            <li key={x.version}>
              Version {x.version}, {new Date(x.created_at).toLocaleString()}{" "}
              <button type="button" class="link" onClick={() => onLoad(x.definition)} aria-label={`Load version ${x.version} into the editor`}>
                load into editor
              </button>
            </li>
          ))}
        </ul>
      )}
      {cursor && (
        <button type="button" onClick={showOlder} disabled={older.loading}>
          Show older versions
        </button>
      )}
    </section>
  );
}
