import { parseArgs } from "node:util";
import type { AppContext } from "../context.js";
import { bulkLoadFile, type BulkLoadResult, type EventFileFormat } from "../facts/bulk-load.js";
import { ProgressBar } from "./progress.js";

const PHASES: Record<string, string> = {
  users: "adding new users",
  fold: "folding into activity days",
  commit: "committing",
};

const USAGE = "usage: load <fact> <file> [--reject-file out.csv] [--format csv|ndjson]";

/** `npm run cli -- load <fact> <file> [--reject-file out.csv]`: the bulk loader's thin CLI adapter. */
export async function loadCommand(ctx: AppContext, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { "reject-file": { type: "string" }, format: { type: "string" } },
    allowPositionals: true,
  });
  const [fact, file] = positionals;
  if (!fact || !file || positionals.length > 2) throw new Error(USAGE);
  if (values.format !== undefined && values.format !== "csv" && values.format !== "ndjson") throw new Error(`--format must be csv or ndjson\n${USAGE}`);
  const bar = new ProgressBar(`loading ${fact}`);
  let fraction = 0;
  let rowsRead = 0;
  let phase = "";
  const show = () => bar.update(fraction, `${rowsRead.toLocaleString("en-US")} rows read${phase ? ` · ${phase}` : ""}`);
  let result: BulkLoadResult;
  try {
    result = await bulkLoadFile(ctx, fact, file, {
      rejectFile: values["reject-file"],
      format: values.format as EventFileFormat | undefined,
      onProgress: (read, total, rows) => {
        fraction = total > 0 ? read / total : 1;
        rowsRead = rows;
        show();
      },
      onPhase: (p) => {
        phase = PHASES[p] ?? p;
        show();
      },
    });
  } finally {
    bar.done();
  }
  if (result.rejected > 0) console.error(`${result.rejected} rejected row(s) written to ${values["reject-file"]}`);
  console.log(formatLoadLine(result));
}

/** `loaded 5000000 rows (4 rejected) into chat_sent in 21.3 s: 234,000 rows/s` */
export function formatLoadLine(r: BulkLoadResult): string {
  const rate = r.seconds > 0 ? Math.round(r.rows / r.seconds) : r.rows;
  return `loaded ${r.rows} rows (${r.rejected} rejected) into ${r.fact} in ${r.seconds.toFixed(1)} s: ${rate.toLocaleString("en-US")} rows/s`;
}
