import { useEffect, useState } from "preact/hooks";
import { download, get, qs, type Page } from "../api";
import { useFetch } from "../data";
import { ErrorMessage, fmt, label, Link, Loading, TableScroll, useTitle } from "../ui";
import type { Materialization } from "../types";

const PAGE = 50;
const COLUMNS = ["user_id", "state", "transition_segment", "growth_state", "inactivity_periods", "last_streak_periods", "last_active_period"];

export function MaterializationPage({ id }: { id: string }) {
  const m = useFetch<Materialization>(`/v1/materializations/${id}`);
  useTitle(m.data ? `List as of ${m.data.as_of}` : "List");
  if (m.error) return <ErrorMessage error={m.error} />;
  if (!m.data) return <Loading what="the list" />;
  const mat = m.data;
  return (
    <>
      <p>
        <Link href={`/audiences/${mat.audience_id}`}>← Audience</Link>
      </p>
      <h1>
        List as of {mat.as_of} <span class="muted">(version {mat.version})</span>
      </h1>
      <p>
        {mat.status === "succeeded" ? `${fmt(mat.member_count)} members, frozen ${new Date(mat.finished_at!).toLocaleString()}.` : `Status: ${mat.status}${mat.error ? `: ${mat.error}` : ""}`}
      </p>
      {mat.status === "succeeded" && (
        <>
          <CsvButton url={`/v1/materializations/${id}/members`} filename={`members-${mat.as_of}-${id.slice(0, 8)}.csv`} label="Download CSV" />
          <Members id={id} />
          <Changes mat={mat} />
        </>
      )}
    </>
  );
}

export function CsvButton({ url, filename, label: text }: { url: string; filename: string; label: string }) {
  const [state, setState] = useState<{ busy: boolean; error: unknown; done: string | null }>({ busy: false, error: null, done: null });
  return (
    <div class="row">
      <button
        type="button"
        disabled={state.busy}
        onClick={async () => {
          setState({ busy: true, error: null, done: null });
          try {
            const bytes = await download(url, filename);
            setState({ busy: false, error: null, done: `${filename} (${fmt(bytes)} bytes)` });
          } catch (error) {
            setState({ busy: false, error, done: null });
          }
        }}
      >
        {state.busy ? "Preparing…" : text}
      </button>
      <span class="muted" aria-live="polite">
        {state.done && `Downloaded ${state.done}`}
      </span>
      <ErrorMessage error={state.error} />
    </div>
  );
}

function Members({ id }: { id: string }) {
  // Keyset paging: remember the cursor of every page seen to go back.
  const [cursors, setCursors] = useState<Array<string | null>>([null]);
  const cursor = cursors[cursors.length - 1]!;
  const page = useFetch<Page<Record<string, unknown>>>(`/v1/materializations/${id}/members${qs({ limit: PAGE, cursor })}`);
  const n = cursors.length;
  return (
    <section aria-labelledby="members-h">
      <h2 id="members-h">Members</h2>
      <ErrorMessage error={page.error} />
      <TableScroll label={`Members, page ${n}`} busy={page.loading}>
        <table class="members">
          <caption class="sr-only">Members, page {n}</caption>
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th scope="col" key={c}>
                  {label(c)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {(page.data?.data ?? []).map((r) => (
              <tr key={String(r.user_id)}>
                {COLUMNS.map((c) => (
                  <td key={c} class={typeof r[c] === "number" ? "num" : undefined}>
                    {r[c] === null || r[c] === undefined ? "—" : typeof r[c] === "string" && c !== "user_id" && c !== "last_active_period" ? label(String(r[c])) : String(r[c])}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </TableScroll>
      <nav class="row pager" aria-label="Members pages">
        <button type="button" disabled={n === 1 || page.loading} onClick={() => setCursors(cursors.slice(0, -1))}>
          Previous page
        </button>
        <span aria-live="polite" data-testid="members-page">
          Page {n}
          {page.data ? `, rows ${fmt((n - 1) * PAGE + 1)}–${fmt((n - 1) * PAGE + page.data.data.length)}` : ""}
        </span>
        <button type="button" disabled={!page.data?.next_cursor || page.loading} onClick={() => setCursors([...cursors, page.data!.next_cursor])}>
          Next page
        </button>
      </nav>
    </section>
  );
}

interface ChangesPage {
  counts: { entered: number; exited: number; stayed: number };
  since: string;
  current: string;
  kind: "entered" | "exited";
  data: Array<{ user_id: string }>;
  next_cursor: string | null;
}

/** Every list of an audience (the API pages them newest first; a scheduled audience has many). */
async function allLists(audienceId: string): Promise<Materialization[]> {
  const lists: Materialization[] = [];
  for (let cursor: string | null = null; ; ) {
    const p: Page<Materialization> = await get<Page<Materialization>>(`/v1/audiences/${audienceId}/materializations${qs({ limit: 1000, cursor })}`);
    lists.push(...p.data);
    if (!p.next_cursor) return lists;
    cursor = p.next_cursor;
  }
}

/** Entered / exited versus the audience's previous finished list: the latest one as of an earlier date. */
function Changes({ mat }: { mat: Materialization }) {
  const [prev, setPrev] = useState<Materialization | null | undefined>(undefined);
  const [kind, setKind] = useState<"entered" | "exited">("entered");
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    allLists(mat.audience_id).then((lists) => {
      // Only a list as of an earlier date is "previous": one as of a later date (made before or after
      // this one) would turn entered and exited around. Among lists as of the same date, the newest.
      const earlier = lists
        .filter((x) => x.status === "succeeded" && x.id !== mat.id && x.as_of < mat.as_of)
        .sort((a, b) => (a.as_of === b.as_of ? b.created_at.localeCompare(a.created_at) : b.as_of.localeCompare(a.as_of)));
      setPrev(earlier[0] ?? null);
    }, setError);
  }, [mat.id]);
  const changes = useFetch<ChangesPage>(prev ? `/v1/materializations/${mat.id}/changes${qs({ since: prev.id, kind, limit: 20 })}` : null);
  return (
    <section aria-labelledby="changes-h">
      <h2 id="changes-h">Entered and exited</h2>
      <ErrorMessage error={error ?? changes.error} />
      {prev === null && <p class="muted">This is the audience's first list: no list of it is as of an earlier date, so no one entered or exited.</p>}
      {prev && (
        <>
          <p>
            Versus the list as of {prev.as_of} ({fmt(prev.member_count)} members):{" "}
            {changes.data && (
              <strong>
                {fmt(changes.data.counts.entered)} entered, {fmt(changes.data.counts.exited)} exited, {fmt(changes.data.counts.stayed)} stayed
              </strong>
            )}
          </p>
          <div class="row" role="radiogroup" aria-label="Show">
            {(["entered", "exited"] as const).map((k) => (
              <label key={k}>
                <input type="radio" name="kind" checked={kind === k} onChange={() => setKind(k)} /> {k}
              </label>
            ))}
          </div>
          {changes.data && (
            <p class="small">
              {changes.data.data.length ? changes.data.data.map((r) => <code key={r.user_id}>{r.user_id} </code>) : <span class="muted">none</span>}
              {changes.data.next_cursor ? " …" : ""}
            </p>
          )}
        </>
      )}
    </section>
  );
}
