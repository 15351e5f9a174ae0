// prisma/schema.prisma and the migrations are written by hand (Prisma's migrate engine cannot run on
// our machines), so this test holds them together: the data model Prisma generates the client from
// must describe exactly the tables and columns the migrations create.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { getDmmf, type Dmmf, type DmmfField } from "./helpers/prisma-dmmf.js";

const SCHEMA_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../prisma/schema.prisma");

/** A column as PostgreSQL describes it, normalised so schema and database compare as strings. */
interface Column {
  type: string;
  nullable: boolean;
}
type Shape = Map<string, Map<string, Column>>;
interface Model {
  columns: Shape;
  primaryKeys: Map<string, string[]>;
}

// Prisma's default column types on PostgreSQL for a field without @db.*.
const DEFAULT_TYPES: Record<string, string> = {
  String: "text",
  Boolean: "boolean",
  Int: "integer",
  BigInt: "bigint",
  Float: "double precision",
  Decimal: "numeric(65,30)",
  DateTime: "timestamp(3) without time zone",
  Json: "jsonb",
  Bytes: "bytea",
};

// @db.<native> → the type information_schema reports (arguments handled in nativeTypeName).
const NATIVE_TYPES: Record<string, string> = {
  Text: "text",
  Uuid: "uuid",
  SmallInt: "smallint",
  Integer: "integer",
  BigInt: "bigint",
  DoublePrecision: "double precision",
  Real: "real",
  Boolean: "boolean",
  Date: "date",
  Json: "json",
  JsonB: "jsonb",
  ByteA: "bytea",
  Xml: "xml",
  Inet: "inet",
  Citext: "citext",
  Money: "money",
  Oid: "oid",
};

function nativeTypeName([name, args]: [string, string[]]): string {
  switch (name) {
    case "Timestamptz":
      return `timestamp(${args[0] ?? "6"}) with time zone`;
    case "Timestamp":
      return `timestamp(${args[0] ?? "6"}) without time zone`;
    case "Timetz":
      return `time(${args[0] ?? "6"}) with time zone`;
    case "Time":
      return `time(${args[0] ?? "6"}) without time zone`;
    case "VarChar":
      return args[0] ? `character varying(${args[0]})` : "character varying";
    case "Char":
      return `character(${args[0] ?? "1"})`;
    case "Decimal":
      return args.length ? `numeric(${args.join(",")})` : "numeric";
    case "Bit":
      return `bit(${args[0] ?? "1"})`;
    case "VarBit":
      return args[0] ? `bit varying(${args[0]})` : "bit varying";
  }
  const t = NATIVE_TYPES[name];
  if (!t) throw new Error(`schema-drift test: no mapping for @db.${name}; add it to NATIVE_TYPES`);
  return t;
}

function expectedColumn(f: DmmfField): Column {
  const base = f.nativeType ? nativeTypeName(f.nativeType) : DEFAULT_TYPES[f.type];
  if (!base) throw new Error(`schema-drift test: no default PostgreSQL type for Prisma type ${f.type}`);
  return {
    type: f.isList ? `${base}[]` : base,
    // Prisma creates scalar lists without NOT NULL (an absent list reads as []), whatever isRequired says.
    nullable: f.isList ? true : !f.isRequired,
  };
}

/** Tables, columns and primary keys as the schema's DMMF describes them. */
export function modelFromDmmf(dmmf: Dmmf): Model {
  const columns: Shape = new Map();
  const primaryKeys = new Map<string, string[]>();
  for (const m of dmmf.datamodel.models) {
    const table = m.dbName ?? m.name;
    const cols = new Map<string, Column>();
    const dbNameOf = new Map<string, string>();
    for (const f of m.fields) {
      if (f.kind === "object") continue;
      if (f.kind === "enum") throw new Error("schema-drift test: enums are not mapped yet");
      dbNameOf.set(f.name, f.dbName ?? f.name);
      cols.set(f.dbName ?? f.name, expectedColumn(f));
    }
    columns.set(table, cols);
    const pk = (m as { primaryKey?: { fields: string[] } | null }).primaryKey?.fields ?? m.fields.filter((f) => f.isId).map((f) => f.name);
    primaryKeys.set(table, pk.map((n) => dbNameOf.get(n) ?? n));
  }
  return { columns, primaryKeys };
}

/** Tables, columns and primary keys of the `public` schema of a database (Prisma's bookkeeping table aside). */
export async function modelFromDatabase(client: pg.ClientBase | pg.Pool): Promise<Model> {
  const r = await client.query<{ table_name: string; column_name: string; type: string; is_nullable: "YES" | "NO" }>(
    `SELECT c.table_name, c.column_name, format_type(a.atttypid, a.atttypmod) AS type, c.is_nullable
       FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
       JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass AND a.attname = c.column_name
       JOIN pg_class rel ON rel.oid = a.attrelid
      WHERE c.table_schema = 'public' AND c.table_name <> '_prisma_migrations'
        AND NOT rel.relispartition -- a partition is part of its parent's model, not one of its own
      ORDER BY c.table_name, c.ordinal_position`,
  );
  const columns: Shape = new Map();
  for (const row of r.rows) {
    if (!columns.has(row.table_name)) columns.set(row.table_name, new Map());
    // format_type says "timestamp(3) with time zone", "integer[]", "character varying(20)": Prisma's vocabulary above.
    columns.get(row.table_name)!.set(row.column_name, { type: row.type, nullable: row.is_nullable === "YES" });
  }
  const pk = await client.query<{ table_name: string; columns: string[] }>(
    `SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position) AS columns
       FROM information_schema.table_constraints tc
       JOIN information_schema.key_column_usage k ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
      WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY' AND tc.table_name <> '_prisma_migrations'
      GROUP BY tc.table_name`,
  );
  // A table partitioned by an expression cannot have a primary key: the model's key is then a unique
  // index on every partition, the same columns in each.
  const partitionedKeys = await client.query<{ table_name: string; columns: string[] }>(
    `SELECT parent.relname AS table_name, k.columns
       FROM pg_class parent
       JOIN pg_inherits inh ON inh.inhparent = parent.oid
       JOIN pg_index ix ON ix.indrelid = inh.inhrelid AND ix.indisunique
       CROSS JOIN LATERAL (
         SELECT array_agg(att.attname::text ORDER BY o.n) AS columns
           FROM unnest(ix.indkey::int2[]) WITH ORDINALITY o(attnum, n)
           JOIN pg_attribute att ON att.attrelid = ix.indrelid AND att.attnum = o.attnum) k
      WHERE parent.relkind = 'p' AND parent.relnamespace = 'public'::regnamespace
      GROUP BY parent.oid, parent.relname, k.columns
     HAVING count(*) = (SELECT count(*) FROM pg_inherits i2 WHERE i2.inhparent = parent.oid)`,
  );
  return { columns, primaryKeys: new Map([...pk.rows, ...partitionedKeys.rows].map((x) => [x.table_name, x.columns])) };
}

/** Every disagreement, one line each; empty when schema and database agree. */
export function compareModels(schema: Model, db: Model): string[] {
  const out: string[] = [];
  for (const table of [...new Set([...schema.columns.keys(), ...db.columns.keys()])].sort()) {
    const s = schema.columns.get(table);
    const d = db.columns.get(table);
    if (!d) {
      out.push(`table ${table}: in schema.prisma, missing from the migrated database`);
      continue;
    }
    if (!s) {
      out.push(`table ${table}: in the migrated database, missing from schema.prisma`);
      continue;
    }
    for (const col of [...new Set([...s.keys(), ...d.keys()])].sort()) {
      const sc = s.get(col);
      const dc = d.get(col);
      if (!dc) out.push(`${table}.${col}: in schema.prisma, missing from the database`);
      else if (!sc) out.push(`${table}.${col}: in the database, missing from schema.prisma`);
      else {
        if (sc.type !== dc.type) out.push(`${table}.${col}: schema.prisma says ${sc.type}, the database has ${dc.type}`);
        if (sc.nullable !== dc.nullable)
          out.push(`${table}.${col}: schema.prisma says ${sc.nullable ? "nullable" : "NOT NULL"}, the database has ${dc.nullable ? "nullable" : "NOT NULL"}`);
      }
    }
    const spk = (schema.primaryKeys.get(table) ?? []).join(", ");
    const dpk = (db.primaryKeys.get(table) ?? []).join(", ");
    if (spk !== dpk) out.push(`${table}: primary key (${spk}) in schema.prisma, (${dpk}) in the database`);
  }
  return out;
}

let env: TestEnv;
let schemaText: string;
beforeAll(async () => {
  env = await createTestEnv();
  schemaText = readFileSync(SCHEMA_FILE, "utf8");
});
afterAll(async () => env?.close());

describe("prisma/schema.prisma and the migrated database", () => {
  it("agree on tables, columns, types, nullability and primary keys", async () => {
    const drift = compareModels(modelFromDmmf(getDmmf(schemaText)), await modelFromDatabase(env.ctx.db.pool));
    expect(drift, `schema.prisma and prisma/migrations disagree:\n  ${drift.join("\n  ")}\nWrite a migration (or fix the schema).`).toEqual([]);
  });

  it("the generated client was generated from this schema (run `npm run generate` when this fails)", () => {
    // The prisma-client generator keeps only names at runtime; they must match the schema's DMMF.
    const runtime = (env.ctx.db.prisma as unknown as { _runtimeDataModel: { models: Record<string, { dbName: string | null; fields: Array<{ name: string; kind: string; dbName?: string | null }> }> } })
      ._runtimeDataModel;
    expect(runtime?.models, "PrismaClient no longer exposes _runtimeDataModel; update this test").toBeTruthy();
    const names = (fields: Array<{ name: string; kind: string; dbName?: string | null }>) =>
      fields.filter((f) => f.kind !== "object").map((f) => `${f.name}->${f.dbName ?? f.name}`).sort();
    const fromClient = Object.fromEntries(Object.entries(runtime.models).map(([n, m]) => [n, { table: m.dbName ?? n, fields: names(m.fields) }]));
    const fromSchema = Object.fromEntries(getDmmf(schemaText).datamodel.models.map((m) => [m.name, { table: m.dbName ?? m.name, fields: names(m.fields) }]));
    expect(fromClient).toEqual(fromSchema);
  });

  describe("the comparison itself catches drift", () => {
    it("reports a column the database lacks, a nullability change, a type change and an extra table", async () => {
      const client = await env.ctx.db.pool.connect();
      try {
        await client.query("BEGIN");
        await client.query(`ALTER TABLE fact DROP COLUMN description`);
        await client.query(`ALTER TABLE fact ALTER COLUMN service SET NOT NULL`);
        await client.query(`ALTER TABLE processing_run ALTER COLUMN created_at TYPE timestamp(3) without time zone`);
        await client.query(`ALTER TABLE api_key ALTER COLUMN scopes TYPE varchar(20)[]`);
        await client.query(`CREATE TABLE stray (id int PRIMARY KEY)`);
        const baseline = compareModels(modelFromDmmf(getDmmf(schemaText)), await modelFromDatabase(env.ctx.db.pool));
        const drift = compareModels(modelFromDmmf(getDmmf(schemaText)), await modelFromDatabase(client)).filter((d) => !baseline.includes(d));
        expect(drift).toEqual(
          expect.arrayContaining([
            "fact.description: in schema.prisma, missing from the database",
            "fact.service: schema.prisma says nullable, the database has NOT NULL",
            "processing_run.created_at: schema.prisma says timestamp(3) with time zone, the database has timestamp(3) without time zone",
            "api_key.scopes: schema.prisma says text[], the database has character varying(20)[]",
            "table stray: in the migrated database, missing from schema.prisma",
          ]),
        );
        expect(drift).toHaveLength(5);
      } finally {
        await client.query("ROLLBACK");
        client.release();
      }
    });

    it("reports a schema change no migration made: new field, optional field, other native type, other key", async () => {
      const changed = schemaText
        .replace(/(model Fact \{\n)/, "$1  archived Boolean @default(false)\n")
        .replace(/(\n\s+externalId\s+String)(\s)/, "$1?$2")
        .replace(/(\n\s+grain\s+Int\s+)@db\.SmallInt(\n\s+nextStart)/, "$1$2")
        .replace(/@@id\(\[factId, activityDate, userKey\]\)/, "@@id([factId, userKey, activityDate])");
      expect(changed).not.toBe(schemaText);
      const db = await modelFromDatabase(env.ctx.db.pool);
      const baseline = compareModels(modelFromDmmf(getDmmf(schemaText)), db);
      const drift = compareModels(modelFromDmmf(getDmmf(changed)), db).filter((d) => !baseline.includes(d));
      expect(drift.sort()).toEqual(
        [
          "activity_day: primary key (fact_id, user_key, activity_date) in schema.prisma, (fact_id, activity_date, user_key) in the database",
          "app_user.external_id: schema.prisma says nullable, the database has NOT NULL",
          "fact.archived: in schema.prisma, missing from the database",
          "layer_closed_pack.grain: schema.prisma says integer, the database has smallint",
        ].sort(),
      );
    });
  });
});
