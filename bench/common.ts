import pg from "pg";

/** Helpers the benchmarks share. */

/** The URL of database `name` on the server of `adminUrl` (each bench has a database of its own). */
export function databaseUrlFor(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs one statement on a short-lived connection (CREATE/DROP DATABASE cannot use a pool's transaction). */
export async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Times `fn`, reports the milliseconds to `report`, and returns the result with them. */
export async function timedWith<T>(fn: () => Promise<T>, report: (ms: number) => void): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  const t = performance.now() - t0;
  report(t);
  return [out, t];
}
