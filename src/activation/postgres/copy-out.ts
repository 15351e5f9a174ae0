import type pg from "pg";
import { escapeLiteral } from "pg";
import { to as copyTo } from "pg-copy-streams";
import { PassThrough, pipeline, type Duplex, type Readable } from "node:stream";
import { CopyTextToNdjson, type JsonColumnKind } from "./ndjson-from-copy.js";

export type ExportFormat = "csv" | "ndjson";

/**
 * COPY takes no bind parameters, so values are inlined as literals: numbers checked finite, strings
 * escaped by pg. Only values our code produced or validated against enums reach here.
 */
export function inlineParams(sql: string, params: readonly unknown[]): string {
  return sql.replace(/\$(\d+)/g, (_m, n: string) => {
    const v = params[Number(n) - 1];
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new Error("non-finite parameter");
      return String(v);
    }
    if (typeof v === "string") return escapeLiteral(v);
    if (v === null || v === undefined) return "NULL";
    throw new Error(`cannot inline parameter of type ${typeof v}`);
  });
}

/**
 * Text columns whose values are words of our own vocabulary (states, segments, arms, actions): they
 * never need JSON escaping, so NDJSON quotes them as they are.
 */
const OWN_WORD_COLUMNS = new Set([
  "state", "previous_state", "transition_segment", "last_active_state", "growth_state", "group", "arm", "action",
]);

// PostgreSQL type oids of the columns an export can have.
const NUMBER_TYPES = new Set([20, 21, 23, 700, 701, 1700]); // int8 int2 int4 float4 float8 numeric
const BOOL = 16, DATE = 1082, TEXT_TYPES = new Set([25, 1043]); // text, varchar

/**
 * The JSON text of column `c` of the row alias q, by its type: numbers, booleans and dates printed
 * as they are (dates under DateStyle ISO, which every export sets), our own words quoted, any
 * other text (user ids) and other types through to_json. Null is null.
 */
function jsonValueSql(c: string, type: number): string {
  const v = `q.${c}`;
  if (NUMBER_TYPES.has(type)) return `COALESCE(${v}::text, 'null')`;
  if (type === BOOL) return `CASE WHEN ${v} THEN 'true' WHEN NOT ${v} THEN 'false' ELSE 'null' END`;
  if (type === DATE || (TEXT_TYPES.has(type) && OWN_WORD_COLUMNS.has(c))) return `COALESCE('"' || ${v}::text || '"', 'null')`;
  return `COALESCE(to_json(${v})::text, 'null')`;
}

/**
 * Streams a query's rows as CSV (with header) or NDJSON straight from PostgreSQL's COPY: constant
 * memory whatever the size. NDJSON documents are written here from COPY's text output by the
 * columns' types (CopyTextToNdjson): the same bytes as ndjsonLineSql, at about half PostgreSQL's cost.
 */
export async function copyQueryOut(
  pool: pg.Pool,
  sql: string,
  params: readonly unknown[],
  columns: readonly string[],
  format: ExportFormat,
  settings?: PlannerSettings,
  /** NDJSON: columns the query gives as day numbers, written as dates (YYYY-MM-DD). */
  dayColumns?: ReadonlySet<string>,
): Promise<Readable> {
  const inner = inlineParams(sql, params);
  if (format === "csv") {
    // ::text everywhere: CSV then shows booleans as true/false (not t/f); other types print the same.
    const select = columns.map((c) => `q.${c}::text AS ${c}`).join(", ");
    return streamCopy(pool, `COPY (SELECT ${select} FROM (${inner}) q) TO STDOUT WITH (FORMAT csv, HEADER true)`, settings);
  }
  // PostgreSQL prints the columns (text COPY, its cheapest output); this process writes the JSON.
  const kinds = (await describeColumns(pool, inner, columns)).map((f) => ({ name: f.name, kind: dayColumns?.has(f.name) ? ("day" as const) : jsonKindOf(f) }));
  const select = kinds.map((f) => (f.kind === "json" ? `to_json(q.${f.name}) AS ${f.name}` : `q.${f.name}`)).join(", ");
  const copied = await streamCopy(pool, `COPY (SELECT ${select} FROM (${inner}) q) TO STDOUT`, settings);
  const ndjson = new CopyTextToNdjson(kinds);
  // Either side going away (an aborted response, a failed COPY) ends both; the COPY's connection is released.
  pipeline(copied, ndjson, () => {});
  return ndjson;
}

/** How a column of this type is written in a JSON document (see CopyTextToNdjson). */
function jsonKindOf(f: ColumnType): JsonColumnKind {
  if (NUMBER_TYPES.has(f.dataTypeID)) return "raw";
  if (f.dataTypeID === BOOL) return "bool";
  if (f.dataTypeID === DATE || (TEXT_TYPES.has(f.dataTypeID) && OWN_WORD_COLUMNS.has(f.name))) return "quoted";
  if (TEXT_TYPES.has(f.dataTypeID)) return "text";
  return "json";
}

export interface ColumnType {
  name: string;
  dataTypeID: number;
}

/** The names and type oids of a query's columns, from planning it without running it. */
export async function describeColumns(c: pg.ClientBase | pg.Pool, sql: string, columns: readonly string[], params: readonly unknown[] = []): Promise<ColumnType[]> {
  const described = await c.query({ text: `SELECT ${columns.map((col) => `q.${col}`).join(", ")} FROM (${sql}) q LIMIT 0`, values: [...params] });
  return described.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
}

/** SQL of one NDJSON document (without its newline) over the columns of row alias q. */
export function ndjsonLineSql(columns: readonly ColumnType[]): string {
  const parts = columns.map((f, i) => `'${i ? "," : "{"}${JSON.stringify(f.name)}:' || ${jsonValueSql(f.name, f.dataTypeID)}`);
  return `${parts.join(" || ")} || '}'`;
}

/**
 * SQL of one CSV line (without its newline) over the columns of row alias q: the line COPY … (FORMAT
 * csv) prints for the row. Null is empty; text is quoted when it holds a comma, a quote, CR or LF, or
 * is empty (quotes doubled); our own words, numbers, booleans and dates never need quoting.
 */
export function csvLineSql(columns: readonly ColumnType[]): string {
  return columns
    .map((f) => {
      const v = `q.${f.name}`;
      if (TEXT_TYPES.has(f.dataTypeID) && !OWN_WORD_COLUMNS.has(f.name))
        return `CASE WHEN ${v} IS NULL THEN '' WHEN ${v} = '' OR strpos(${v}, ',') > 0 OR strpos(${v}, '"') > 0 OR strpos(${v}, E'\\n') > 0 OR strpos(${v}, E'\\r') > 0
          THEN '"' || replace(${v}, '"', '""') || '"' ELSE ${v} END`;
      return `COALESCE(${v}::text, '')`;
    })
    .join(` || ',' || `);
}

/**
 * Planner settings for one export's connection (set before the COPY, reset before the connection goes
 * back to the pool), for exports whose best plan the planner misses — e.g. a merge join of two
 * primary keys instead of a hash join and a sort of millions of rows. Names and values are ours.
 */
export type PlannerSettings = Partial<Record<"jit" | "enable_hashjoin" | "max_parallel_workers_per_gather" | "work_mem", string>>;

/** Settings every export runs under: dates print as YYYY-MM-DD whatever the server's default. */
const EXPORT_SETTINGS = { datestyle: "ISO" } as const;

/**
 * Streams NDJSON from a query whose single column `line` is already one JSON document per row (built
 * in SQL with to_json for strings): for wide exports this is about twice as fast as row_to_json.
 */
export function copyJsonLinesOut(pool: pg.Pool, sql: string, params: readonly unknown[], settings?: PlannerSettings): Promise<Readable> {
  return streamCopy(pool, `COPY (SELECT q.line FROM (${inlineParams(sql, params)}) q) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')`, settings);
}

const SETTING_VALUE = /^[A-Za-z0-9_]+$/;

/**
 * Runs a `COPY … TO STDOUT` on a connection of its own and streams its bytes through `out` (as they
 * are by default). The connection is released when the COPY ends, and discarded when it fails or the
 * reader goes away mid-copy.
 */
export async function streamCopy(pool: pg.Pool, copySql: string, planner: PlannerSettings = {}, out: Duplex = new PassThrough()): Promise<Readable> {
  const client = await pool.connect();
  const settings: Record<string, string | undefined> = { ...EXPORT_SETTINGS, ...planner };
  const names = Object.keys(settings);
  if (names.length) {
    try {
      await client.query(
        names
          .map((n) => {
            const v = settings[n]!;
            if (!SETTING_VALUE.test(v)) throw new Error(`bad value for ${n}`);
            return `SET ${n} = '${v}'`;
          })
          .join("; "),
      );
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
  }
  let released = false;
  const release = (err?: Error) => {
    if (released) return;
    released = true;
    if (err || !names.length) client.release(err);
    // The connection goes back to the pool as it came: settings reset.
    else client.query(names.map((n) => `RESET ${n}`).join("; ")).then(() => client.release(), (e: Error) => client.release(e));
  };
  const stream = client.query(copyTo(copySql));
  stream.on("error", (err) => {
    release(err);
    out.destroy(err);
  });
  stream.on("end", () => release());
  // A client that goes away stops the COPY; the connection is discarded rather than reused mid-copy.
  out.on("close", () => {
    if (!released) {
      stream.destroy();
      release(new Error("export aborted"));
    }
  });
  stream.pipe(out);
  return out;
}
