import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

/**
 * The DMMF (Prisma's data model, with native database types) of a schema, computed by the same
 * prisma-schema-wasm module the installed `prisma` CLI uses when it generates the client.
 *
 * The prisma-client generator does not export its DMMF at runtime (its runtime data model has no
 * nullability or native types), and `@prisma/internals` is not a dependency. The wasm ships inside the
 * `prisma` package; its wasm-bindgen glue is a few lines, reproduced here.
 */
export interface DmmfField {
  name: string;
  dbName: string | null;
  kind: "scalar" | "object" | "enum" | "unsupported";
  type: string;
  isList: boolean;
  isRequired: boolean;
  isId: boolean;
  nativeType: [string, string[]] | null;
  relationName?: string | null;
}
export interface DmmfModel {
  name: string;
  dbName: string | null;
  fields: DmmfField[];
}
export interface Dmmf {
  datamodel: { models: DmmfModel[]; enums: unknown[] };
}

// The project compiles without the DOM lib, where the WebAssembly types live: the little used here.
interface WasmTable {
  grow(n: number): number;
  get(i: number): unknown;
  set(i: number, v: unknown): void;
}
interface WasmApi {
  Module: { new (bytes: Uint8Array): object; imports(m: object): Array<{ module: string; name: string }> };
  Instance: new (m: object, imports: object) => { exports: unknown };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface SchemaWasm {
  memory: { buffer: ArrayBuffer };
  __wbindgen_externrefs: WasmTable;
  __wbindgen_malloc(size: number, align: number): number;
  __wbindgen_free(ptr: number, len: number, align: number): void;
  __externref_table_dealloc(idx: number): void;
  __wbindgen_start(): void;
  get_dmmf(ptr: number, len: number): [number, number, number, number];
}

let instance: SchemaWasm | undefined;

function loadWasm(): SchemaWasm {
  if (instance) return instance;
  const require = createRequire(import.meta.url);
  const prismaDir = path.dirname(require.resolve("prisma/package.json"));
  const bytes = readFileSync(path.join(prismaDir, "build/prisma_schema_build_bg.wasm"));
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let wasm!: SchemaWasm;
  const str = (ptr: number, len: number) => decoder.decode(new Uint8Array(wasm.memory.buffer).subarray(ptr >>> 0, (ptr >>> 0) + len));
  // Import names carry a hash that changes between Prisma versions; match them by their stem.
  const module = new WA.Module(bytes);
  const imports: Record<string, Record<string, unknown>> = {};
  for (const imp of WA.Module.imports(module)) {
    const impl =
      imp.name.startsWith("__wbg_Error_") ? (p: number, l: number) => new Error(str(p, l))
      : imp.name.startsWith("__wbg___wbindgen_throw_") ? (p: number, l: number) => { throw new Error(str(p, l)); }
      : imp.name.startsWith("__wbg_set_message_") ? (p: number, l: number) => { lastPanic = str(p, l); }
      : imp.name === "__wbindgen_init_externref_table"
        ? () => {
            const t = wasm.__wbindgen_externrefs;
            const o = t.grow(4);
            t.set(0, undefined);
            t.set(o, undefined);
            t.set(o + 1, null);
            t.set(o + 2, true);
            t.set(o + 3, false);
          }
        : undefined;
    if (!impl) throw new Error(`prisma-schema-wasm needs an import this loader does not know: ${imp.module}.${imp.name} (Prisma upgraded?)`);
    (imports[imp.module] ??= {})[imp.name] = impl;
  }
  wasm = new WA.Instance(module, imports).exports as unknown as SchemaWasm;
  wasm.__wbindgen_start();
  instance = wasm;
  return wasm;
}
let lastPanic = "";

/** get_dmmf of the installed Prisma, on a schema text. Throws with Prisma's message on an invalid schema. */
export function getDmmf(schema: string): Dmmf {
  const wasm = loadWasm();
  const input = new TextEncoder().encode(JSON.stringify({ prismaSchema: schema, noColor: true }));
  const ptr = wasm.__wbindgen_malloc(input.length, 1) >>> 0;
  new Uint8Array(wasm.memory.buffer).set(input, ptr);
  const [outPtr, outLen, errIdx, isErr] = wasm.get_dmmf(ptr, input.length);
  if (isErr) {
    const err = wasm.__wbindgen_externrefs.get(errIdx) as Error;
    wasm.__externref_table_dealloc(errIdx);
    throw new Error(`get_dmmf failed: ${err?.message ?? err} ${lastPanic}`);
  }
  try {
    const text = new TextDecoder().decode(new Uint8Array(wasm.memory.buffer).subarray(outPtr >>> 0, (outPtr >>> 0) + outLen));
    return JSON.parse(text) as Dmmf;
  } finally {
    wasm.__wbindgen_free(outPtr, outLen, 1);
  }
}
