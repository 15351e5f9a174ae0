import type { AppContext } from "../context.js";
// Replaced by the demo (in progress).
export async function runDemo(_ctx: AppContext): Promise<void> {
  throw new Error("demo is not available yet");
}
