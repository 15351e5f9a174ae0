import type pg from "pg";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { csvLineSql, describeColumns, inlineParams, ndjsonLineSql, streamCopy, type ExportFormat } from "./copy-out.js";

/**
 * A finished materialisation's exports, rendered once. The list is frozen, so its NDJSON and CSV
 * never change: the job formats every member once, in user order, into chunks of at most CHUNK_KEYS
 * lines (member_export_chunk, lz4-compressed), and a pull is then a sequential read of the chunks
 * instead of formatting 16 columns of every row again (which bounded exports at PostgreSQL's COPY).
 */
const CHUNK_KEYS = 8192;

export const EXPORT_FORMATS = ["ndjson", "csv"] as const satisfies readonly ExportFormat[];

/**
 * Renders the members of `materializationId` (committed in audience_member) as the export chunks of
 * one format, replacing any earlier ones, on the caller's transaction. `membersSql` selects
 * user_key and the exported columns (`columns`, by name) with `$1` the materialisation id; its order
 * does not matter.
 */
export async function renderMemberExport(
  c: pg.ClientBase,
  materializationId: string,
  format: ExportFormat,
  membersSql: string,
  columns: readonly string[],
): Promise<void> {
  const types = await describeColumns(c, membersSql, columns, [materializationId]);
  const line = format === "csv" ? csvLineSql(types) : ndjsonLineSql(types);
  // Dates print as YYYY-MM-DD, as every export prints them.
  await c.query(`SET LOCAL datestyle = ISO`);
  await c.query(`DELETE FROM member_export_chunk WHERE materialization_id = $1 AND format = '${format}'`, [materializationId]);
  // A chunk per range of CHUNK_KEYS user keys (so no numbering of the rows is needed), its lines
  // in user order.
  await c.query(
    `INSERT INTO member_export_chunk (materialization_id, format, seq, row_count, body)
     SELECT $1, '${format}', k, count(*), string_agg(line, E'\\n' ORDER BY user_key) || E'\\n'
     FROM (SELECT q.user_key, q.user_key / ${CHUNK_KEYS} AS k, ${line} AS line FROM (${membersSql}) q) s
     GROUP BY k`,
    [materializationId],
  );
}

/** Whether the materialisation's exports were rendered (lists from before renditions existed were not). */
export async function hasRenderedExports(pool: pg.Pool, materializationId: string, format: ExportFormat): Promise<boolean> {
  const r = await pool.query(`SELECT 1 FROM member_export_chunk WHERE materialization_id = $1 AND format = $2 LIMIT 1`, [materializationId, format]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * Streams the rendered chunks of one format, `header` first. COPY in binary format hands each chunk
 * over as its raw bytes (no escaping, no decoding to a JS string and back): the transform below
 * strips the framing. Constant memory: one chunk at a time, under the response's backpressure.
 */
export function streamRenderedExport(pool: pg.Pool, materializationId: string, format: ExportFormat, header: string): Promise<Readable> {
  const sql = inlineParams(
    `COPY (SELECT body FROM member_export_chunk WHERE materialization_id = $1 AND format = $2 ORDER BY seq) TO STDOUT WITH (FORMAT binary)`,
    [materializationId, format],
  );
  return streamCopy(pool, sql, {}, new CopyBinaryFieldBytes(header));
}

/**
 * The bytes of every field of a one-column binary COPY stream, in order. The format: an 11-byte
 * signature, a 4-byte flags word and a 4-byte header-extension length (plus that many bytes), then
 * per row a 2-byte field count (-1 ends the data) and per field a 4-byte length (-1: null) and the bytes.
 */
export class CopyBinaryFieldBytes extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  private headerSkipped = false;
  /** Bytes of the current field still to pass through. */
  private fieldLeft = 0;
  private ended = false;

  constructor(private readonly prefix: string) {
    super();
    if (prefix) this.push(Buffer.from(prefix, "utf8"));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    let i = 0;
    try {
      for (;;) {
        if (this.ended) break;
        if (this.fieldLeft > 0) {
          const take = Math.min(this.fieldLeft, buf.length - i);
          if (take === 0) break;
          this.push(buf.subarray(i, i + take));
          i += take;
          this.fieldLeft -= take;
          continue;
        }
        if (!this.headerSkipped) {
          if (buf.length - i < 19) break;
          if (buf.toString("latin1", i, i + 11) !== "PGCOPY\n\xff\r\n\0") throw new Error("not a binary COPY stream");
          const extension = buf.readUInt32BE(i + 15);
          if (buf.length - i < 19 + extension) break;
          i += 19 + extension;
          this.headerSkipped = true;
          continue;
        }
        // A row: its field count then (one column) the field's length.
        if (buf.length - i < 2) break;
        const fields = buf.readInt16BE(i);
        if (fields === -1) {
          this.ended = true;
          i += 2;
          break;
        }
        if (fields !== 1) throw new Error(`expected one column, got ${fields}`);
        if (buf.length - i < 6) break;
        const len = buf.readInt32BE(i + 2);
        i += 6;
        this.fieldLeft = Math.max(len, 0);
      }
    } catch (err) {
      done(err as Error);
      return;
    }
    if (i < buf.length) this.pending = Buffer.from(buf.subarray(i));
    done();
  }

  override _flush(done: TransformCallback): void {
    done(this.ended ? null : new Error("binary COPY stream ended early"));
  }
}
