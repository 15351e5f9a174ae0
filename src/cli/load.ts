import type { AppContext } from "../context.js";
// Replaced by the bulk loader (in progress).
export async function loadCommand(_ctx: AppContext, _args: string[]): Promise<void> {
  throw new Error("load is not available yet");
}
