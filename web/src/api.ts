// The console's only way to the service: the public /v1 API with the user's key.
const KEY = "aa.console.apiKey";

export const storedKey = () => sessionStorage.getItem(KEY);
export const storeKey = (key: string) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  errors?: Array<{ path: string; message: string; index?: number }>;
}

/** An API answer that was not 2xx, carrying its problem+json body. */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
  get status() {
    return this.problem.status;
  }
}

/** Listeners told when the key is rejected (401), so the shell can send the user to sign in. */
const unauthorizedListeners = new Set<(p: Problem) => void>();
export const onUnauthorized = (fn: (p: Problem) => void) => {
  unauthorizedListeners.add(fn);
  return () => void unauthorizedListeners.delete(fn);
};

async function request(
  method: string, url: string, opts: { body?: unknown; accept?: string; key?: string; signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<Response> {
  const key = opts.key ?? storedKey();
  const headers: Record<string, string> = { accept: opts.accept ?? "application/json", ...opts.headers };
  if (key) headers.authorization = `Bearer ${key}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal: opts.signal });
  if (res.ok) return res;
  let problem: Problem;
  try {
    problem = (await res.json()) as Problem;
  } catch {
    problem = { status: res.status, detail: `${res.status} ${res.statusText}` };
  }
  problem.status ??= res.status;
  if (res.status === 401 && !opts.key) for (const fn of unauthorizedListeners) fn(problem);
  throw new ApiError(problem);
}

export async function api<T>(
  method: string, url: string, body?: unknown, opts: { key?: string; signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<T> {
  const res = await request(method, url, { ...opts, body });
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}
export const get = <T,>(url: string, signal?: AbortSignal) => api<T>("GET", url, undefined, { signal });

/** A random Idempotency-Key (crypto.getRandomValues: unlike randomUUID, also there on plain http). */
export function newIdempotencyKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Streams an export (Accept: text/csv) with the key and hands it to the browser as a file download. A
 * person opens it in a spreadsheet, so ids that look like formulas are neutralised (spreadsheet_safe).
 */
export async function download(url: string, filename: string): Promise<number> {
  const res = await request("GET", `${url}${url.includes("?") ? "&" : "?"}spreadsheet_safe=true`, { accept: "text/csv" });
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
  return blob.size;
}

export const qs = (params: Record<string, string | number | undefined | null>) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : "";
};

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}
