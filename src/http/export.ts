import type { FastifyReply, FastifyRequest } from "fastify";
import { pipeline, type Readable } from "node:stream";
import { SpreadsheetSafeCsv } from "./spreadsheet-safe-csv.js";
import { z } from "zod";
import type { ExportFormat } from "../activation/postgres/copy-out.js";
import { ndjsonOf } from "./openapi.js";
import { ProblemError, problemSchema } from "./problem.js";

const OFFERS = [
  { media: "application/json", format: null },
  { media: "text/csv", format: "csv" },
  { media: "application/x-ndjson", format: "ndjson" },
] as const;

/**
 * The streaming format the Accept header asks for, or null for a JSON page (RFC 9110 negotiation:
 * quality values, `q=0` refusing a type, the most specific range deciding a type's quality, and the
 * earlier range winning a tie). No header, or one that accepts JSON as much as anything else, is JSON;
 * one that accepts none of the three is a 406.
 */
export function exportFormatOf(request: FastifyRequest): ExportFormat | null {
  const header = request.headers.accept;
  if (!header || !header.trim()) return null;
  const ranges = header.split(",").flatMap((part, index) => {
    const [range, ...params] = part.trim().toLowerCase().split(";").map((x) => x.trim());
    if (!range || !/^[^/\s]+\/[^/\s]+$/.test(range)) return [];
    const qParam = params.find((p) => p.startsWith("q="));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    return Number.isFinite(q) ? [{ range, q: Math.min(Math.max(q, 0), 1), index }] : [];
  });
  let best: { format: ExportFormat | null; q: number; specificity: number; index: number } | null = null;
  for (const offer of OFFERS) {
    const [type] = offer.media.split("/");
    // The most specific range that matches the offer decides its quality.
    let match: { q: number; specificity: number; index: number } | null = null;
    for (const r of ranges) {
      const specificity = r.range === offer.media ? 2 : r.range === `${type}/*` ? 1 : r.range === "*/*" ? 0 : -1;
      if (specificity >= 0 && (!match || specificity > match.specificity)) match = { q: r.q, specificity, index: r.index };
    }
    if (!match || match.q === 0) continue;
    if (!best || match.q > best.q || (match.q === best.q && (match.specificity > best.specificity || (match.specificity === best.specificity && match.index < best.index))))
      best = { format: offer.format, ...match };
  }
  if (!best)
    throw new ProblemError(406, `This endpoint answers ${OFFERS.map((o) => o.media).join(", ")}; the Accept header (${header}) takes none of them.`);
  return best.format;
}

/**
 * The answers of a route that serves a page as JSON, or every row as CSV or NDJSON by the Accept
 * header (exportFormatOf): the 200 in its three media types, and the 406 of an Accept it cannot meet.
 */
export function pageOrExport(page: z.ZodType, row: z.ZodType, rows: string) {
  return {
    200: {
      description: `A page of ${rows} (JSON), or every one of them (CSV or NDJSON, by the Accept header)`,
      content: {
        "application/json": { schema: page },
        "text/csv": { schema: z.string().describe(`Every one of ${rows}: a header line naming the columns, then one line each.`) },
        "application/x-ndjson": { schema: ndjsonOf(row, `Every one of ${rows}.`) },
      },
    },
    406: problemSchema,
  };
}

/** Streams an export; `spreadsheetSafe` (the route's spreadsheet_safe parameter) neutralises formula-looking CSV fields. */
export function sendExport(reply: FastifyReply, format: ExportFormat, stream: Readable, filename: string, options: { spreadsheetSafe?: string } = {}) {
  const body = format === "csv" && options.spreadsheetSafe === "true" ? pipeline(stream, new SpreadsheetSafeCsv(), () => {}) : stream;
  return reply
    .header("content-type", format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson")
    .header("content-disposition", `attachment; filename="${filename}.${format === "csv" ? "csv" : "ndjson"}"`)
    .send(body);
}
