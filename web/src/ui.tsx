import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { linkClick } from "./router";

export const fmt = (n: number | null | undefined) => (n === null || n === undefined ? "—" : n.toLocaleString("en-US"));
export const pct = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(digits)}%`);
export const pp = (x: number | null | undefined) => (x === null || x === undefined ? "—" : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} pp`);
export const label = (s: string) => s.replace(/_/g, " ");

export function Link(props: { href: string; children: ComponentChildren; class?: string; "aria-current"?: "page" | undefined }) {
  return (
    <a href={props.href} class={props.class} aria-current={props["aria-current"]} onClick={linkClick}>
      {props.children}
    </a>
  );
}

/** Every API error is shown as its problem+json detail. */
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const text =
    error instanceof ApiError
      ? error.status === 403
        ? `Not allowed (403): ${error.message}`
        : `${error.message}${error.problem.errors?.length ? "" : ""}`
      : error instanceof Error
        ? error.message
        : String(error);
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}

const APP_NAME = "activation-audiences";

/** The tab's title for the page on screen (its history entry and tab strip say which page it is). */
export function useTitle(title: string | null) {
  useEffect(() => {
    document.title = title ? `${title} · ${APP_NAME}` : APP_NAME;
  }, [title]);
}

/**
 * A table's horizontal scroller for narrow screens: a region named after its table, so a screen reader
 * announces what it is; it takes keyboard focus (to scroll by arrow keys) only while it does scroll.
 */
export function TableScroll({ label: name, busy, children }: { label: string; busy?: boolean; children: ComponentChildren }) {
  const box = useRef<HTMLDivElement>(null);
  const [scrolls, setScrolls] = useState(false);
  useEffect(() => {
    const el = box.current!;
    const check = () => setScrolls(el.scrollWidth > el.clientWidth + 1);
    check();
    const watch = new ResizeObserver(check);
    watch.observe(el);
    if (el.firstElementChild) watch.observe(el.firstElementChild);
    return () => watch.disconnect();
  }, []);
  return (
    <div ref={box} class="table-scroll" role="region" aria-label={name} tabIndex={scrolls ? 0 : undefined} aria-busy={busy}>
      {children}
    </div>
  );
}
