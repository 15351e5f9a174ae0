/**
 * Limits count in fixed windows aligned to the clock. A test that starts in a window's last seconds
 * waits for the next one, so its count cannot roll over half-way (tests use windows of an hour).
 */
export async function waitOutWindowEnd(windowMs: number, marginMs = 20_000): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginMs) await new Promise((r) => setTimeout(r, left + 50));
}
