import { useEffect, useState } from "preact/hooks";
import { get, type Page } from "./api";
import type { Fact } from "./types";

/** Loads once per mount; `reload` fetches again. */
export function useFetch<T>(url: string | null, deps: unknown[] = []) {
  const [state, setState] = useState<{ data: T | null; error: unknown; loading: boolean }>({ data: null, error: null, loading: !!url });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!url) return;
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    get<T>(url, ctl.signal).then(
      (data) => setState({ data, error: null, loading: false }),
      (error) => !ctl.signal.aborted && setState({ data: null, error, loading: false }),
    );
    return () => ctl.abort();
  }, [url, tick, ...deps]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export const useFacts = () => useFetch<Page<Fact>>("/v1/facts?limit=1000");
