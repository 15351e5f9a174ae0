import { Transform, type TransformCallback } from "node:stream";
import { z } from "zod";

/**
 * The query parameter of a CSV export that asks for it to be safe to open in a spreadsheet. User ids
 * are the customer's own strings: one such as `=HYPERLINK("http://…")` is a formula to Excel or Sheets
 * (CSV injection). Asked for, every field that starts with `=`, `+`, `-` or `@` gets a leading `'`,
 * which spreadsheets read as "text" and do not show. Off by default: machine readers get the ids exactly.
 */
export const spreadsheetSafeQuery = {
  spreadsheet_safe: z
    .enum(["true", "false"])
    .optional()
    .describe("CSV only: prefix a field starting with =, +, - or @ with ' so that spreadsheets do not run it as a formula (default false: values exactly as stored)"),
};

const FORMULA_START = new Set([0x3d, 0x2b, 0x2d, 0x40]); // = + - @
const QUOTE = 0x22, COMMA = 0x2c, LF = 0x0a, CR = 0x0d, APOSTROPHE = 0x27;

/**
 * Neutralises formula-looking fields of a CSV stream (RFC 4180 as PostgreSQL's COPY writes it: fields
 * quoted when needed, `""` inside quotes). A byte-level state machine, so chunk boundaries may fall
 * anywhere; it only ever inserts the apostrophe, inside the quotes of a quoted field. Every export's
 * columns other than ids are enums, dates and non-negative counts, none of which starts with one of the
 * four characters: only ids change.
 */
export class SpreadsheetSafeCsv extends Transform {
  /** fieldStart: before a field's first byte; quoteStart: after its opening quote; quoted / plain: inside one. */
  private state: "fieldStart" | "quoteStart" | "quoted" | "quotedMaybeEnd" | "plain" = "fieldStart";

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let copiedUpTo = 0;
    const parts: Buffer[] = [];
    const insertApostropheBefore = (i: number) => {
      parts.push(chunk.subarray(copiedUpTo, i), Buffer.from([APOSTROPHE]));
      copiedUpTo = i;
    };
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      switch (this.state) {
        case "fieldStart":
          if (b === QUOTE) this.state = "quoteStart";
          else if (b === COMMA || b === LF || b === CR) this.state = "fieldStart";
          else {
            if (FORMULA_START.has(b)) insertApostropheBefore(i);
            this.state = "plain";
          }
          break;
        case "quoteStart":
          if (FORMULA_START.has(b)) insertApostropheBefore(i);
          this.state = b === QUOTE ? "quotedMaybeEnd" : "quoted";
          break;
        case "quoted":
          if (b === QUOTE) this.state = "quotedMaybeEnd";
          break;
        case "quotedMaybeEnd":
          // `""` is a quote inside the field; anything else ends it.
          if (b === QUOTE) this.state = "quoted";
          else this.state = b === COMMA || b === LF || b === CR ? "fieldStart" : "plain";
          break;
        case "plain":
          if (b === COMMA || b === LF || b === CR) this.state = "fieldStart";
          break;
      }
    }
    parts.push(chunk.subarray(copiedUpTo));
    done(null, parts.length === 1 ? chunk : Buffer.concat(parts));
  }
}
