import type { FastifyReply, FastifyRequest } from "fastify";
import type { Readable } from "node:stream";
import type { ExportFormat } from "../activation/postgres/copy-out.js";

/** The streaming format the Accept header asks for, or null for a JSON page. */
export function exportFormatOf(request: FastifyRequest): ExportFormat | null {
  const accept = (request.headers.accept ?? "").toLowerCase();
  if (accept.includes("text/csv")) return "csv";
  if (accept.includes("application/x-ndjson")) return "ndjson";
  return null;
}

export function sendExport(reply: FastifyReply, format: ExportFormat, stream: Readable, filename: string) {
  return reply
    .header("content-type", format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson")
    .header("content-disposition", `attachment; filename="${filename}.${format === "csv" ? "csv" : "ndjson"}"`)
    .send(stream);
}
