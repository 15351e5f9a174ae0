import { Transform, type TransformCallback } from "node:stream";

/**
 * NDJSON from a `COPY … TO STDOUT` stream in text format, converted byte by byte in this process.
 * Building each JSON line in SQL costs PostgreSQL about as much again as producing the row; here the
 * database only prints the columns (its cheapest output) while this process, on the other core,
 * writes the documents. The output is byte for byte the line the SQL builder gives (same key order,
 * numbers and booleans bare, dates and our own words quoted as they are, other text escaped as
 * to_json escapes it).
 *
 * How each column is written:
 * - `raw`: printed as PostgreSQL prints it (numbers); `\N` (null) becomes null;
 * - `bool`: t/f become true/false;
 * - `quoted`: in quotes as it is (dates, our own words: never anything to escape);
 * - `text`: in quotes, COPY's backslash escapes undone and JSON's applied;
 * - `json`: already a JSON value (to_json of another type): COPY's escapes undone;
 * - `day`: an integer number of days since 1970-01-01, written as that date in quotes ("YYYY-MM-DD").
 */
export type JsonColumnKind = "raw" | "bool" | "quoted" | "text" | "json" | "day";

const TAB = 9, LF = 10, BACKSLASH = 92, QUOTE = 34;
const HEX = "0123456789abcdef";
// COPY text escapes: \b \f \n \r \t \v and \\ (and an escaped delimiter).
const COPY_UNESCAPE: Record<number, number> = { 98: 8, 102: 12, 110: 10, 114: 13, 116: 9, 118: 11 };

export class CopyTextToNdjson extends Transform {
  private readonly keys: Uint8Array[];
  private readonly kinds: JsonColumnKind[];
  private readonly keysLength: number;
  private pending: Buffer | null = null;
  private out: Buffer = Buffer.allocUnsafe(0);
  private pos = 0;

  constructor(columns: ReadonlyArray<{ name: string; kind: JsonColumnKind }>) {
    super();
    this.keys = columns.map((c, i) => Buffer.from(`${i ? "," : "{"}${JSON.stringify(c.name)}:`, "utf8"));
    this.kinds = columns.map((c) => c.kind);
    this.keysLength = this.keys.reduce((n, k) => n + k.length, 0);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let start = 0;
    try {
      for (let end = buf.indexOf(LF, start); end >= 0; end = buf.indexOf(LF, start)) {
        this.writeLine(buf, start, end);
        start = end + 1;
      }
    } catch (err) {
      done(err as Error);
      return;
    }
    if (start < buf.length) this.pending = Buffer.from(buf.subarray(start));
    this.flushOut();
    done();
  }

  override _flush(done: TransformCallback): void {
    done(this.pending ? new Error("COPY stream ended inside a row") : null);
  }

  private flushOut(): void {
    if (this.pos > 0) {
      this.push(this.out.subarray(0, this.pos));
      this.out = Buffer.allocUnsafe(0);
      this.pos = 0;
    }
  }

  /** "YYYY-MM-DD" with its quotes, of a day number (a list holds few distinct dates: kept). */
  private readonly dates = new Map<number, Buffer>();
  private dateOf(day: number): Buffer {
    let d = this.dates.get(day);
    if (!d) this.dates.set(day, (d = Buffer.from(`"${new Date(day * 86_400_000).toISOString().slice(0, 10)}"`, "latin1")));
    return d;
  }

  /** Room for one more line of `len` input bytes (each expands to at most 6: \u00XX). */
  private reserve(len: number): void {
    // Per field besides its bytes: quotes, or a date of a day number of one digit (12 bytes).
    const need = len * 6 + this.keysLength + 12 * this.kinds.length + 16;
    if (this.out.length - this.pos >= need) return;
    this.flushOut();
    this.out = Buffer.allocUnsafe(Math.max(256 * 1024, need));
  }

  private writeLine(buf: Buffer, start: number, end: number): void {
    this.reserve(end - start);
    const out = this.out;
    let p = this.pos;
    let i = start;
    const n = this.kinds.length;
    for (let f = 0; f < n; f++) {
      if (i > end) throw new Error(`COPY row has ${f} of ${n} columns`);
      // The key (10–30 bytes with its quotes and comma) in one native copy: a byte loop here took
      // about a quarter of the server's CPU in a whole-population export.
      const key = this.keys[f]!;
      out.set(key, p);
      p += key.length;
      // A field runs to the next tab or the end of the row: a tab inside text is escaped ("\t"),
      // so every raw tab separates fields. Scanned here rather than by indexOf: a call per field
      // costs more than the few bytes of most fields.
      if (buf[i] === BACKSLASH && buf[i + 1] === 78 /* N */ && (i + 2 === end || buf[i + 2] === TAB)) {
        out[p++] = 110; out[p++] = 117; out[p++] = 108; out[p++] = 108; // null
        i += 3;
        continue;
      }
      let j = i;
      switch (this.kinds[f]) {
        case "raw":
          for (let c = buf[j]!; j < end && c !== TAB; c = buf[++j]!) out[p++] = c;
          break;
        case "bool":
          if (buf[j] === 116 /* t */) { out[p++] = 116; out[p++] = 114; out[p++] = 117; out[p++] = 101; }
          else { out[p++] = 102; out[p++] = 97; out[p++] = 108; out[p++] = 115; out[p++] = 101; }
          j++;
          break;
        case "quoted":
          out[p++] = QUOTE;
          for (let c = buf[j]!; j < end && c !== TAB; c = buf[++j]!) out[p++] = c;
          out[p++] = QUOTE;
          break;
        case "day": {
          let neg = false, day = 0;
          if (buf[j] === 45 /* - */) {
            neg = true;
            j++;
          }
          for (let c = buf[j]!; j < end && c !== TAB; c = buf[++j]!) day = day * 10 + (c - 48);
          const date = this.dateOf(neg ? -day : day);
          out.set(date, p);
          p += date.length;
          break;
        }
        case "json":
          for (let c = buf[j]!; j < end && c !== TAB; c = buf[++j]!) {
            if (c === BACKSLASH && j + 1 < end) {
              const next = buf[++j]!;
              out[p++] = COPY_UNESCAPE[next] ?? next;
            } else out[p++] = c;
          }
          break;
        default:
          while (j < end && buf[j] !== TAB) j = j + (buf[j] === BACKSLASH ? 2 : 1);
          if (j > end) j = end;
          p = writeJsonString(buf, i, j, out, p);
      }
      if (f < n - 1 && buf[j] !== TAB) throw new Error(`COPY row has ${f + 1} of ${n} columns`);
      i = j + 1;
    }
    if (i - 1 !== end) throw new Error(`COPY row has more than ${n} columns`);
    out[p++] = 125; // }
    out[p++] = LF;
    this.pos = p;
  }
}

/** A COPY text value [i, e) as a JSON string at out[p]: COPY's escapes undone, JSON's applied. */
function writeJsonString(buf: Buffer, i: number, e: number, out: Buffer, p: number): number {
  out[p++] = QUOTE;
  for (let j = i; j < e; j++) {
    let c = buf[j]!;
    if (c === BACKSLASH && j + 1 < e) {
      const next = buf[++j]!;
      c = COPY_UNESCAPE[next] ?? next;
    }
    if (c === QUOTE || c === BACKSLASH) {
      out[p++] = BACKSLASH;
      out[p++] = c;
    } else if (c < 0x20) {
      out[p++] = BACKSLASH;
      if (c === 8) out[p++] = 98;
      else if (c === 12) out[p++] = 102;
      else if (c === 10) out[p++] = 110;
      else if (c === 13) out[p++] = 114;
      else if (c === 9) out[p++] = 116;
      else {
        out[p++] = 117; out[p++] = 48; out[p++] = 48; // u00
        out[p++] = HEX.charCodeAt(c >> 4);
        out[p++] = HEX.charCodeAt(c & 15);
      }
    } else out[p++] = c;
  }
  out[p++] = QUOTE;
  return p;
}
