import { createReadStream, createWriteStream, type ReadStream, type WriteStream } from "node:fs";
import { open, stat, unlink } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import type { AppContext } from "../context.js";
import { checkEvent, MAX_REPORTED_ERRORS } from "./event-validation.js";
import { getFactRecord } from "./facts.js";

/**
 * The bulk loader's domain side: reads a CSV (header `user_id,occurred_at`, RFC 4180 quoting, LF or
 * CRLF) or NDJSON file, optionally gzipped, validates every row exactly like HTTP ingestion
 * (checkEvent), and streams the good rows to the layer engine's COPY path. Memory stays constant
 * whatever the file's size: the file is read in chunks, each chunk becomes one batch of rows.
 *
 * A file with bad rows is rejected whole (nothing stored) with the line number and reason of the
 * first 100 bad rows and their total count, unless a reject file is given: then the good rows load
 * and each bad row is written to it as CSV `line,user_id,occurred_at,reason`.
 */

export type EventFileFormat = "csv" | "ndjson";

export interface RowError {
  /** 1-based line of the file where the row starts (the CSV header is line 1). */
  line: number;
  /** The field at fault (user_id, occurred_at, or a CSV column/NDJSON key), "" for the whole row. */
  path: string;
  message: string;
  user_id: string;
  occurred_at: string;
}

/** A file the loader refuses as a whole (bad header, not UTF-8, unterminated quote, …). */
export class BulkLoadFileError extends Error {}

/** The file had bad rows and no reject file was given: nothing was stored. */
export class BulkLoadRejected extends Error {
  constructor(
    readonly file: string,
    /** The first MAX_REPORTED_ERRORS bad rows, in file order. */
    readonly errors: RowError[],
    readonly errorCount: number,
    readonly validCount: number,
  ) {
    super(
      `${errorCount} invalid row${errorCount === 1 ? "" : "s"} in ${file}; nothing was stored` +
        (errorCount > errors.length ? ` (first ${errors.length} shown)` : "") +
        ":\n" +
        errors.map((e) => `  ${formatRowError(e)}`).join("\n") +
        (errorCount > errors.length ? `\n  … and ${errorCount - errors.length} more` : ""),
    );
  }
}

export function formatRowError(e: RowError): string {
  return `line ${e.line}: ${e.message}`;
}

/** One chunk of the file, parsed and validated. */
export interface ParsedBatch {
  userIds: string[];
  timesMs: number[];
  bad: RowError[];
}

/** A record longer than this (an unterminated quote, a file without line breaks) stops the load. */
export const MAX_RECORD_CHARS = 1 << 20;
const READ_CHUNK = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Parsing

interface RowSink {
  row(line: number, userId: unknown, occurredAt: unknown): void;
  bad(line: number, path: string, message: string, userId: unknown, occurredAt: unknown): void;
}

const rawText = (v: unknown): string => (v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));

/** Validates rows with the HTTP path's checkEvent and fills a batch. */
class Validator implements RowSink {
  batch: ParsedBatch = { userIds: [], timesMs: [], bad: [] };
  constructor(private readonly nowMs: number) {}

  take(): ParsedBatch {
    const b = this.batch;
    this.batch = { userIds: [], timesMs: [], bad: [] };
    return b;
  }

  row(line: number, userId: unknown, occurredAt: unknown) {
    const c = checkEvent({ user_id: userId, occurred_at: occurredAt }, this.nowMs);
    if (c.ok) {
      this.batch.userIds.push(c.event.userId);
      this.batch.timesMs.push(c.event.occurredAtMs);
    } else this.bad(line, c.path, c.message, userId, occurredAt);
  }

  /** An already parsed NDJSON object: checkEvent also refuses unknown keys. */
  object(line: number, obj: unknown) {
    const c = checkEvent(obj, this.nowMs);
    if (c.ok) {
      this.batch.userIds.push(c.event.userId);
      this.batch.timesMs.push(c.event.occurredAtMs);
    } else {
      const o = obj !== null && typeof obj === "object" && !Array.isArray(obj) ? (obj as Record<string, unknown>) : {};
      this.bad(line, c.path, c.message, o.user_id, o.occurred_at);
    }
  }

  bad(line: number, path: string, message: string, userId: unknown, occurredAt: unknown) {
    this.batch.bad.push({ line, path, message, user_id: rawText(userId), occurred_at: rawText(occurredAt) });
  }
}

const COLUMNS = ["user_id", "occurred_at"] as const;

/**
 * A streaming RFC 4180 reader: fields separated by commas, records by LF or CRLF, fields optionally
 * in double quotes (a quote inside doubled; commas and line breaks allowed inside). Lines without a
 * quote take a fast path. Blank lines are skipped.
 */
class CsvEventParser {
  private carry = "";
  private line = 1;
  private headerSeen = false;
  private ncols = 0;
  private uidCol = 0;
  private atCol = 1;
  private readonly fields: string[] = [];

  constructor(private readonly sink: Validator) {}

  push(text: string, final: boolean) {
    const s = this.carry.length ? this.carry + text : text;
    this.carry = "";
    const len = s.length;
    let p = 0;
    let nextQuote = s.indexOf('"');
    if (nextQuote === -1) nextQuote = len;
    while (p < len) {
      let nl = s.indexOf("\n", p);
      if (nl === -1) {
        if (!final) break;
        nl = len;
      }
      if (nextQuote < p) {
        nextQuote = s.indexOf('"', p);
        if (nextQuote === -1) nextQuote = len;
      }
      if (nextQuote >= nl) {
        // Fast path: no quote on this line.
        const end = nl > p && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
        if (end > p) this.record(this.splitPlain(s, p, end), this.line);
        this.line++;
        p = nl + 1;
        continue;
      }
      const r = this.parseQuoted(s, p, final);
      if (r === null) break; // needs more text
      p = r;
    }
    if (p < len) {
      if (len - p > MAX_RECORD_CHARS)
        throw new BulkLoadFileError(`line ${this.line}: a record longer than ${MAX_RECORD_CHARS} characters (an unterminated quote?)`);
      this.carry = s.slice(p);
    }
  }

  private splitPlain(s: string, p: number, end: number): string[] {
    const f = this.fields;
    f.length = 0;
    for (;;) {
      const c = s.indexOf(",", p);
      if (c === -1 || c >= end) {
        f.push(s.slice(p, end));
        return f;
      }
      f.push(s.slice(p, c));
      p = c + 1;
    }
  }

  /** Parses one record that holds a quote, from p. Returns the position after it, or null to wait for more text. */
  private parseQuoted(s: string, p: number, final: boolean): number | null {
    const f = this.fields;
    f.length = 0;
    const len = s.length;
    const startLine = this.line;
    let i = p;
    let error: string | null = null;
    let next = -1;
    for (;;) {
      if (i < len && s.charCodeAt(i) === 34) {
        let j = i + 1;
        let value = "";
        for (;;) {
          const q = s.indexOf('"', j);
          if (q === -1) {
            if (!final) return null;
            throw new BulkLoadFileError(`line ${startLine}: a quoted field is never closed`);
          }
          if (q + 1 >= len && !final) return null;
          if (s.charCodeAt(q + 1) === 34) {
            value += s.slice(j, q + 1);
            j = q + 2;
            continue;
          }
          value += s.slice(j, q);
          i = q + 1;
          break;
        }
        f.push(value);
        const c = i < len ? s.charCodeAt(i) : -1;
        if (c === 44) {
          i++;
          continue;
        }
        if (c === 10) {
          next = i + 1;
          break;
        }
        if (c === 13) {
          if (i + 1 >= len && !final) return null;
          if (i + 1 >= len || s.charCodeAt(i + 1) === 10) {
            next = Math.min(i + 2, len);
            break;
          }
        }
        if (c === -1) {
          next = len;
          break;
        }
        error = "a quoted field is followed by text (expected a comma or the end of the line)";
      } else {
        let nl = s.indexOf("\n", i);
        if (nl === -1) {
          if (!final) return null;
          nl = len;
        }
        const c = s.indexOf(",", i);
        const end = c !== -1 && c < nl ? c : nl;
        let fieldEnd = end;
        if (end === nl && end > i && s.charCodeAt(end - 1) === 13) fieldEnd = end - 1;
        const value = s.slice(i, fieldEnd);
        if (value.includes('"')) error = "a quote inside an unquoted field (quote the whole field and double inner quotes)";
        else {
          f.push(value);
          if (end === c && c < nl) {
            i = c + 1;
            continue;
          }
          next = Math.min(nl + 1, len);
          break;
        }
      }
      // Malformed: skip to the end of this physical line.
      let nl = s.indexOf("\n", i);
      if (nl === -1) {
        if (!final) return null;
        nl = len;
      }
      next = Math.min(nl + 1, len);
      break;
    }
    for (let k = p; k < next; k++) if (s.charCodeAt(k) === 10) this.line++;
    if (error) {
      if (!this.headerSeen) throw new BulkLoadFileError(`line ${startLine}: ${error}`);
      this.sink.bad(startLine, "", error, undefined, undefined);
    } else this.record(f, startLine);
    return next;
  }

  private record(f: string[], line: number) {
    if (!this.headerSeen) return this.readHeader(f, line);
    if (f.length !== this.ncols) {
      const uid = f.length > this.uidCol ? f[this.uidCol] : undefined;
      const at = f.length > this.atCol ? f[this.atCol] : undefined;
      return this.sink.bad(line, "", `expected ${this.ncols} fields, got ${f.length}`, uid, at);
    }
    this.sink.row(line, f[this.uidCol], f[this.atCol]);
  }

  private readHeader(f: string[], line: number) {
    const names = f.map((n, i) => (i === 0 ? n.replace(/^\uFEFF/, "") : n).trim());
    const seen = new Set<string>();
    for (const n of names) {
      if (!(COLUMNS as readonly string[]).includes(n))
        throw new BulkLoadFileError(`line ${line}: unknown column '${n}' (the header must be ${COLUMNS.join(",")})`);
      if (seen.has(n)) throw new BulkLoadFileError(`line ${line}: column '${n}' appears twice`);
      seen.add(n);
    }
    for (const c of COLUMNS) if (!seen.has(c)) throw new BulkLoadFileError(`line ${line}: missing column '${c}' (the header must be ${COLUMNS.join(",")})`);
    this.headerSeen = true;
    this.ncols = names.length;
    this.uidCol = names.indexOf("user_id");
    this.atCol = names.indexOf("occurred_at");
  }

  /** Called after the last chunk: a file without even a header is refused. */
  finish() {
    if (!this.headerSeen) throw new BulkLoadFileError(`the file is empty (expected a header ${COLUMNS.join(",")})`);
  }
}

/** One JSON object per line; blank lines are skipped; LF or CRLF. */
class NdjsonEventParser {
  private carry = "";
  private line = 1;

  constructor(private readonly sink: Validator) {}

  push(text: string, final: boolean) {
    const s = this.carry.length ? this.carry + text : text;
    this.carry = "";
    const len = s.length;
    let p = 0;
    while (p < len) {
      let nl = s.indexOf("\n", p);
      if (nl === -1) {
        if (!final) break;
        nl = len;
      }
      const line = this.line++;
      const start = p;
      p = nl + 1;
      const body = s.slice(start, nl);
      let obj: unknown;
      try {
        obj = JSON.parse(body);
      } catch {
        // JSON.parse skips surrounding whitespace (so CRLF is fine); a blank line is no event.
        if (body.trim() === "") continue;
        this.sink.bad(line, "", "line is not valid JSON", undefined, undefined);
        continue;
      }
      this.sink.object(line, obj);
    }
    if (p < len) {
      if (len - p > MAX_RECORD_CHARS) throw new BulkLoadFileError(`line ${this.line}: a line longer than ${MAX_RECORD_CHARS} characters`);
      this.carry = s.slice(p);
    }
  }

  finish() {}
}

// ---------------------------------------------------------------------------------------------
// Files

export interface EventFile {
  format: EventFileFormat;
  gzip: boolean;
  /** Size of the file on disk (compressed, when gzipped). */
  totalBytes: number;
  /** Bytes of the file read so far (compressed, when gzipped): the progress measure. */
  bytesRead(): number;
  /** The file's text, decoded from UTF-8 (after gunzip), in chunks. */
  text(): AsyncGenerator<string>;
  close(): void;
}

function formatFromName(file: string): EventFileFormat | null {
  const name = file.toLowerCase().replace(/\.gz$/, "");
  if (name.endsWith(".csv")) return "csv";
  if (name.endsWith(".ndjson") || name.endsWith(".jsonl") || name.endsWith(".json")) return "ndjson";
  return null;
}

/** Opens an event file: gzip is told by its magic bytes; the format by the name, else by the first character. */
export async function openEventFile(file: string, format?: EventFileFormat, chunkBytes = READ_CHUNK): Promise<EventFile> {
  const info = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new BulkLoadFileError(err.code === "ENOENT" ? `no such file: ${file}` : `cannot read ${file}: ${err.message}`);
  });
  if (!info.isFile()) throw new BulkLoadFileError(`not a file: ${file}`);
  const head = Buffer.alloc(2);
  const fh = await open(file, "r");
  const { bytesRead: headBytes } = await fh.read(head, 0, 2, 0).finally(() => fh.close());
  const gzip = headBytes === 2 && head[0] === 0x1f && head[1] === 0x8b;
  if (!gzip && /\.gz$/i.test(file)) throw new BulkLoadFileError(`${file} is named .gz but is not gzip data`);

  const raw: ReadStream = createReadStream(file, { highWaterMark: chunkBytes });
  const source = gzip ? raw.pipe(createGunzip({ chunkSize: Math.max(64, chunkBytes) })) : raw;
  if (gzip) raw.on("error", (err) => source.destroy(err));
  let resolved = format ?? formatFromName(file);

  async function* text(): AsyncGenerator<string> {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let decoded = 0;
    let first = true;
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        let t: string;
        try {
          t = decoder.decode(chunk, { stream: true });
        } catch {
          throw new BulkLoadFileError(`${file} is not valid UTF-8 text (near byte ${decoded} of its content)`);
        }
        decoded += chunk.length;
        if (first && t.length) {
          first = false;
          if (t.charCodeAt(0) === 0xfeff) t = t.slice(1); // a byte order mark is no data
          if (!resolved) resolved = /^\s*\{/.test(t) ? "ndjson" : "csv";
        }
        if (t.length) yield t;
      }
      const rest = decoder.decode();
      if (rest.length) yield rest;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "Z_DATA_ERROR" || (err as NodeJS.ErrnoException).code === "Z_BUF_ERROR")
        throw new BulkLoadFileError(`${file} is not a valid gzip file: ${(err as Error).message}`);
      throw err;
    }
  }

  return {
    get format() {
      return resolved ?? "csv";
    },
    gzip,
    totalBytes: info.size,
    bytesRead: () => raw.bytesRead,
    text,
    close: () => {
      raw.destroy();
      if (source !== raw) source.destroy();
    },
  };
}

/**
 * Parses and validates a whole event file, one batch per chunk read (rows in file order). Pure
 * domain work, no database: the loader streams these batches into the engine.
 */
export async function* parseEventFile(file: EventFile, nowMs: number): AsyncGenerator<ParsedBatch> {
  const validator = new Validator(nowMs);
  let parser: CsvEventParser | NdjsonEventParser | null = null;
  for await (const t of file.text()) {
    parser ??= file.format === "ndjson" ? new NdjsonEventParser(validator) : new CsvEventParser(validator);
    parser.push(t, false);
    yield validator.take();
  }
  parser ??= file.format === "ndjson" ? new NdjsonEventParser(validator) : new CsvEventParser(validator);
  parser.push("", true);
  parser.finish();
  yield validator.take();
}

/** Parses text given in chunks (split anywhere) into one batch: the parsers without a file, for tests. */
export function parseEventChunks(chunks: Iterable<string>, format: EventFileFormat, nowMs: number): ParsedBatch {
  const validator = new Validator(nowMs);
  const parser = format === "ndjson" ? new NdjsonEventParser(validator) : new CsvEventParser(validator);
  for (const c of chunks) parser.push(c, false);
  parser.push("", true);
  parser.finish();
  return validator.take();
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface BulkLoadOptions {
  /** Load the good rows and write the bad ones here (CSV line,user_id,occurred_at,reason). */
  rejectFile?: string;
  format?: EventFileFormat;
  /** Bounds how far in the future an event may be (default: now). */
  nowMs?: number;
  /** Bytes of the file read so far, of its size; called once per chunk. */
  onProgress?: (bytesRead: number, totalBytes: number, rows: number) => void;
  /** The database phase of the segment being loaded (copy, group, users, fold, commit). */
  onPhase?: (phase: string) => void;
  /** Events per database segment (default: the engine's, a million); small values exercise segmenting in tests. */
  segmentRows?: number;
  /** Bytes read from the file at a time (default 1 MiB); each read becomes one batch of rows. */
  readChunkBytes?: number;
}

export interface BulkLoadResult {
  fact: string;
  format: EventFileFormat;
  gzip: boolean;
  /** Rows stored (valid rows). */
  rows: number;
  /** Bad rows written to the reject file. */
  rejected: number;
  seconds: number;
  earliest_date: string | null;
  latest_date: string | null;
  /** Milliseconds per database phase, summed over segments ("copy" includes waiting for the parser). */
  timings: Record<string, number>;
  segments: number;
}

const csvCell = (v: string) => (/[",\r\n]/.test(v) || v !== v.trim() ? `"${v.replace(/"/g, '""')}"` : v);

function rejectLine(e: RowError): string {
  return `${e.line},${csvCell(e.user_id)},${csvCell(e.occurred_at)},${csvCell(e.message)}\n`;
}

async function write(out: WriteStream, text: string) {
  if (!out.write(text)) await new Promise<void>((resolve, reject) => {
    out.once("drain", resolve);
    out.once("error", reject);
  });
}

async function closeStream(out: WriteStream) {
  await new Promise<void>((resolve, reject) => {
    out.once("error", reject);
    out.end(resolve);
  });
}

/**
 * Loads an event file into a fact in one transaction (domain function of `cli load`). Throws
 * BulkLoadRejected when rows are bad and no reject file is given (nothing is stored), and
 * BulkLoadFileError when the file itself is unreadable.
 */
export async function bulkLoadFile(ctx: AppContext, factName: string, path: string, options: BulkLoadOptions = {}): Promise<BulkLoadResult> {
  const fact = await getFactRecord(ctx, factName);
  const t0 = performance.now();
  const nowMs = options.nowMs ?? Date.now();
  const file = await openEventFile(path, options.format, options.readChunkBytes);
  let rejectOut: WriteStream | null = null;
  if (options.rejectFile) {
    rejectOut = createWriteStream(options.rejectFile);
    await new Promise<void>((resolve, reject) => {
      rejectOut!.once("open", () => resolve());
      rejectOut!.once("error", (err) => reject(new BulkLoadFileError(`cannot write the reject file ${options.rejectFile}: ${err.message}`)));
    });
    await write(rejectOut, "line,user_id,occurred_at,reason\n");
  }
  const errors: RowError[] = [];
  let errorCount = 0;
  let valid = 0;

  async function* batches() {
    for await (const b of parseEventFile(file, nowMs)) {
      valid += b.userIds.length;
      for (const e of b.bad) {
        errorCount++;
        if (errors.length < MAX_REPORTED_ERRORS) errors.push(e);
        if (rejectOut) await write(rejectOut, rejectLine(e));
      }
      // Without a reject file the first bad row dooms the load: keep reading only to report them all.
      if (rejectOut || errorCount === 0) yield { userIds: b.userIds, timesMs: b.timesMs };
      options.onProgress?.(file.bytesRead(), file.totalBytes, valid + errorCount);
    }
    if (errorCount > 0 && !rejectOut) throw new BulkLoadRejected(path, errors, errorCount, valid);
    if (rejectOut) {
      await closeStream(rejectOut);
      rejectOut = null;
    }
  }

  try {
    const summary = await ctx.engine.bulkLoad({ id: fact.id, name: fact.name, timezone: fact.timezone }, batches(), {
      progress: (phase) => options.onPhase?.(phase),
      segmentRows: options.segmentRows,
    });
    return {
      fact: fact.name,
      format: file.format,
      gzip: file.gzip,
      rows: summary.rows,
      rejected: options.rejectFile ? errorCount : 0,
      seconds: (performance.now() - t0) / 1000,
      earliest_date: summary.earliest_date,
      latest_date: summary.latest_date,
      timings: summary.timings,
      segments: summary.segments,
    };
  } catch (err) {
    // Nothing was stored, so a reject file would describe a load that did not happen.
    if (options.rejectFile) {
      const out = rejectOut as WriteStream | null;
      if (out) await closeStream(out).catch(() => {});
      await unlink(options.rejectFile).catch(() => {});
    }
    throw err;
  } finally {
    file.close();
  }
}
