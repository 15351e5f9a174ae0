import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import "./styles.css";
import { api, ApiError, forgetKey, onUnauthorized, storedKey, storeKey } from "./api";
import { navigate, useLocation } from "./router";
import { Link, useTitle } from "./ui";
import { Dashboard } from "./pages/dashboard";
import { AudienceList } from "./pages/audience-list";
import { AudienceBuilder } from "./pages/audience-builder";
import { MaterializationPage } from "./pages/materialization";
import { CampaignList } from "./pages/campaign-list";
import { CampaignPage } from "./pages/campaign";

function SignIn({ notice }: { notice: string | null }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);
  useTitle("Sign in");
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // Any read route tells whether the key is valid and may read.
      await api("GET", "/v1/facts?limit=1", undefined, { key: key.trim() });
      storeKey(key.trim());
      const next = new URLSearchParams(location.search).get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/dashboard", true);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError(`That key was not accepted (401): ${err.message}`);
      else if (err instanceof ApiError && err.status === 403) setError(`That key may not read (403): ${err.message}`);
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <main class="sign-in">
      <h1>activation-audiences</h1>
      <p>Sign in with an API key. It is kept for this browser tab only and sent as <code>Authorization: Bearer</code> to the API.</p>
      <form onSubmit={submit}>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        <button type="submit" disabled={busy || !key.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
      <p class="muted">
        Create a key with <code>npm run --silent cli -- keys create --name me --scopes read,write</code>, or use the one <code>npm run demo</code> prints.
      </p>
    </main>
  );
}

function NoSuchPage() {
  useTitle("No such page");
  return (
    <p>
      No such page. <Link href="/dashboard">Go to the dashboard</Link>.
    </p>
  );
}

const NAV = [
  { href: "/dashboard", label: "Dashboard" },
  { href: "/audiences", label: "Audiences" },
  { href: "/campaigns", label: "Campaigns" },
];

function App() {
  const { path } = useLocation();
  const [notice, setNotice] = useState<string | null>(null);
  useEffect(
    () =>
      onUnauthorized((p) => {
        forgetKey();
        setNotice(`Your key was rejected (401): ${p.detail ?? "sign in again"}`);
        navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, true);
      }),
    [],
  );
  useEffect(() => {
    if (path !== "/sign-in" && !storedKey()) navigate(`/sign-in${path === "/" ? "" : `?next=${encodeURIComponent(path + location.search)}`}`, true);
    else if (path === "/" && storedKey()) navigate("/dashboard", true);
  }, [path]);

  const first = useRef(true);
  useEffect(() => {
    // After a client-side page change, move focus to the new page (as a full page load would).
    if (first.current) first.current = false;
    else document.getElementById("main")?.focus();
  }, [path]);

  if (path === "/sign-in" || !storedKey()) return <SignIn notice={notice} />;

  let page;
  let m: RegExpMatchArray | null;
  if (path === "/dashboard" || path === "/") page = <Dashboard />;
  else if (path === "/audiences") page = <AudienceList />;
  else if (path === "/audiences/new") page = <AudienceBuilder id={null} />;
  else if ((m = path.match(/^\/audiences\/([0-9a-f-]{36})$/))) page = <AudienceBuilder key={m[1]} id={m[1]!} />;
  else if ((m = path.match(/^\/materializations\/([0-9a-f-]{36})$/))) page = <MaterializationPage key={m[1]} id={m[1]!} />;
  else if (path === "/campaigns") page = <CampaignList />;
  else if ((m = path.match(/^\/campaigns\/([0-9a-f-]{36})$/))) page = <CampaignPage key={m[1]} id={m[1]!} />;
  else page = <NoSuchPage />;

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">activation-audiences</span>
        <nav aria-label="Main">
          {NAV.map((n) => (
            <Link key={n.href} href={n.href} aria-current={path.startsWith(n.href) || (n.href.startsWith("/aud") && path.startsWith("/materializations")) ? "page" : undefined}>
              {n.label}
            </Link>
          ))}
        </nav>
        <button
          type="button"
          class="link"
          onClick={() => {
            forgetKey();
            setNotice(null);
            navigate("/sign-in");
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
