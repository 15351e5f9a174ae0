import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { mulberry32 } from "../../src/util/prng.js";

/** The shared fixtures: event logs with every model's answers, from an independent program. */
export const FIXTURES_DIR = process.env.FIXTURES_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../shared/fixtures");
export const FIXTURE_NAMES = ["seoul-70d", "la-dst-60d"] as const;

export interface FixtureMeta {
  fact_timezone: string;
  through: string;
  part1_through: string;
}

export type CsvRow = Record<string, string>;

/** Minimal CSV reader for the fixtures (no quoted fields occur in them); CRLF or LF. */
export function parseCsv(text: string): CsvRow[] {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  const head = lines[0]!.split(",");
  return lines.slice(1).map((l) => {
    const cells = l.split(",");
    return Object.fromEntries(head.map((h, i) => [h, cells[i] ?? ""]));
  });
}

export function readFixtureCsv(name: string, file: string): CsvRow[] {
  return parseCsv(readFileSync(path.join(FIXTURES_DIR, name, file), "utf8"));
}

export function fixtureMeta(name: string): FixtureMeta {
  return JSON.parse(readFileSync(path.join(FIXTURES_DIR, name, "fixture.json"), "utf8"));
}

/** Rows as comparable strings: null → "", booleans and numbers as text, in the given column order. */
export function canonical(rows: Array<Record<string, unknown>>, columns: string[]): string[] {
  return rows
    .map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? "" : String(r[c]))).join(","))
    .sort();
}

/** Deterministic shuffle (mulberry32) so a failing order can be reproduced. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const rnd = mulberry32(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
