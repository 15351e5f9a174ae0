/**
 * Binary COPY of the packed islands (day-packs.ts) and the experiments that measured them: arrays in
 * PostgreSQL's binary form (array_send), and COPY in and out of rows whose fields are bytes.
 */
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";

/** The elements of an int4[] in PostgreSQL's binary form (array_send): no nulls, one dimension. */
export function readInt4Array(buf: Buffer): Int32Array {
  const ndim = buf.readInt32BE(0);
  if (ndim === 0) return new Int32Array(0);
  const n = buf.readInt32BE(12);
  // Elements are (length, value) pairs of big-endian int32: swap the bytes natively, keep every second.
  const words = Buffer.from(buf.subarray(20, 20 + 8 * n)).swap32();
  const all = new Int32Array(words.buffer, words.byteOffset, 2 * n);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = all[2 * i + 1]!;
  return out;
}

export function int4ArrayBinary(a: Int32Array): Buffer {
  const buf = Buffer.allocUnsafe(20 + 8 * a.length);
  buf.writeInt32BE(1, 0); // one dimension
  buf.writeInt32BE(0, 4); // no nulls
  buf.writeInt32BE(23, 8); // int4
  buf.writeInt32BE(a.length, 12);
  buf.writeInt32BE(1, 16); // lower bound
  const words = new Int32Array(2 * a.length);
  for (let i = 0; i < a.length; i++) {
    words[2 * i] = 4;
    words[2 * i + 1] = a[i]!;
  }
  Buffer.from(words.buffer).swap32().copy(buf, 20);
  return buf;
}
export function int4(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(v, 0);
  return b;
}
export function int2(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(v, 0);
  return b;
}

/** COPY … FROM STDIN (FORMAT binary) of rows whose fields are already in binary form. */
export async function copyBinary(c: pg.ClientBase, sql: string, rows: Buffer[][]): Promise<void> {
  const header = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), int4(0), int4(0)]);
  const parts: Buffer[] = [header];
  for (const fields of rows) {
    parts.push(int2(fields.length));
    for (const f of fields) parts.push(int4(f.length), f);
  }
  parts.push(int2(-1));
  await pipeline(Readable.from([Buffer.concat(parts)]), c.query(copyFrom(sql)));
}

/** The rows of a COPY … TO STDOUT (FORMAT binary), each as its fields' bytes (no nulls expected). */
export async function copyOutBinary(c: pg.ClientBase, sql: string): Promise<Buffer[][]> {
  const chunks: Buffer[] = [];
  for await (const chunk of c.query(copyTo(sql))) chunks.push(chunk as Buffer);
  const buf = Buffer.concat(chunks);
  const rows: Buffer[][] = [];
  let o = 11 + 4 + 4 + buf.readInt32BE(15);
  for (;;) {
    const n = buf.readInt16BE(o);
    o += 2;
    if (n === -1) break;
    const fields: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const len = buf.readInt32BE(o);
      fields.push(buf.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    rows.push(fields);
  }
  return rows;
}

/** An int8[]'s elements (array_send form) as pairs of int32 words, high word first. */
export function readInt8ArrayWords(buf: Buffer): Int32Array {
  const n = buf.readInt32BE(12);
  // Elements are (length 8, value) = 3 big-endian words each.
  const words = Buffer.from(buf.subarray(20, 20 + 12 * n)).swap32();
  const all = new Int32Array(words.buffer, words.byteOffset, 3 * n);
  const out = new Int32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[2 * i] = all[3 * i + 1]!;
    out[2 * i + 1] = all[3 * i + 2]!;
  }
  return out;
}

export function int8ArrayBinary(words: Int32Array): Buffer {
  const n = words.length / 2;
  const buf = Buffer.allocUnsafe(20 + 12 * n);
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(0, 4);
  buf.writeInt32BE(20, 8); // int8
  buf.writeInt32BE(n, 12);
  buf.writeInt32BE(1, 16);
  const out = new Int32Array(3 * n);
  for (let i = 0; i < n; i++) {
    out[3 * i] = 8;
    out[3 * i + 1] = words[2 * i]!;
    out[3 * i + 2] = words[2 * i + 1]!;
  }
  Buffer.from(out.buffer).swap32().copy(buf, 20);
  return buf;
}
