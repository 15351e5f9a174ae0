import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { LightMyRequestResponse } from "fastify";

// ajv-formats is CommonJS: under NodeNext its function is the default import's `default`.
type AddFormats = (ajv: Ajv2020) => unknown;
const addFormats: AddFormats = (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

interface MediaType {
  /** For NDJSON, a string whose `x-item-schema` keyword is the schema of each line (OpenAPI 3.1 has no field for it). */
  schema?: unknown;
}
interface Response {
  description?: string;
  headers?: Record<string, { required?: boolean; schema?: unknown }>;
  content?: Record<string, MediaType>;
}
interface Operation {
  parameters?: Array<{ in: string; name: string; required?: boolean }>;
  requestBody?: { required?: boolean; content: Record<string, MediaType> };
  responses: Record<string, Response>;
}
export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
const DOC_ID = "openapi.json";
/** A JSON Pointer segment (RFC 6901). */
const pointer = (segment: string) => segment.replace(/~/g, "~0").replace(/\//g, "~1");
const mediaTypeOf = (header: string | undefined) => (header ?? "").split(";")[0]!.trim().toLowerCase();
const isJson = (media: string) => media === "application/json" || media.endsWith("+json");
/** Request headers that are HTTP's or the security scheme's, not parameters of an operation. */
const PROTOCOL_HEADERS = new Set(["authorization", "content-type", "accept", "content-length", "user-agent", "host"]);

export interface Exchange {
  method: string;
  /** The URL as sent, query string included. */
  url: string;
  /** The request's Content-Type, when it had a body. */
  requestContentType?: string;
  /** The request body: parsed when it was JSON, the text when it was NDJSON. */
  requestBody?: unknown;
  /** The request's headers (names in lower case). */
  requestHeaders?: Record<string, string>;
  response: LightMyRequestResponse;
}

/**
 * Holds exchanges to an OpenAPI 3.1 document, as a client generated from it would: the operation
 * exists, the status code is declared for it, the content type is one it declares, the body validates
 * against the declared schema (each line of NDJSON against the declared item schema), required response
 * headers are present; and a request the server accepted is one the document describes. Keeps which
 * operations were exercised, so a test can require all of them.
 */
export class OpenApiContract {
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly templates: Array<{ path: string; pattern: RegExp; literalSegments: number }>;
  readonly exercised = new Set<string>();
  /** Each status an operation answered, as "METHOD /path STATUS". */
  readonly answered = new Set<string>();
  readonly problems: string[] = [];

  constructor(private readonly doc: OpenApiDocument) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    addFormats(this.ajv);
    this.ajv.addSchema(doc as object, DOC_ID);
    this.templates = Object.keys(doc.paths).map((path) => ({
      path,
      pattern: new RegExp(`^${path.split("/").map((s) => (/^\{.+\}$/.test(s) ? "[^/]+" : s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/")}$`),
      literalSegments: path.split("/").filter((s) => !/^\{.+\}$/.test(s)).length,
    }));
  }

  /** Every operation of the document, as "METHOD /path". */
  operations(): string[] {
    const out: string[] = [];
    for (const [path, item] of Object.entries(this.doc.paths)) for (const m of Object.keys(item)) if (METHODS.includes(m)) out.push(`${m.toUpperCase()} ${path}`);
    return out.sort();
  }

  unexercised(): string[] {
    return this.operations().filter((o) => !this.exercised.has(o));
  }

  /** The answers of `statuses` operations declare and no exchange gave, as "METHOD /path STATUS". */
  unanswered(statuses: number[]): string[] {
    const out: string[] = [];
    for (const [path, item] of Object.entries(this.doc.paths))
      for (const [m, op] of Object.entries(item))
        if (METHODS.includes(m))
          for (const code of statuses) if (op.responses[String(code)] && !this.answered.has(`${m.toUpperCase()} ${path} ${code}`)) out.push(`${m.toUpperCase()} ${path} ${code}`);
    return out.sort();
  }

  /** The document's path template a request path falls under (literal segments win over parameters), or null. */
  templateOf(path: string): string | null {
    const matches = this.templates.filter((t) => t.pattern.test(path)).sort((a, b) => b.literalSegments - a.literalSegments);
    return matches[0]?.path ?? null;
  }

  private validator(pointerPath: string): ValidateFunction {
    let v = this.validators.get(pointerPath);
    if (!v) {
      v = this.ajv.compile({ $ref: `${DOC_ID}#${pointerPath}` });
      this.validators.set(pointerPath, v);
    }
    return v;
  }

  private validate(pointerPath: string, value: unknown): string | null {
    const v = this.validator(pointerPath);
    if (v(value)) return null;
    return this.ajv.errorsText(v.errors, { separator: "; ", dataVar: "body" });
  }

  /** Why a body is not the document's Problem, or null (for answers outside any operation: 404, 405). */
  validateProblem(body: unknown): string | null {
    return this.validate("/components/schemas/Problem", body);
  }

  /** Checks one exchange; returns its problems (also kept in `problems`). */
  check(exchange: Exchange): string[] {
    const { method, url, response } = exchange;
    const [path, query = ""] = url.split("?") as [string, string?];
    const template = this.templateOf(path);
    const found: string[] = [];
    const where = `${method} ${url} → ${response.statusCode}`;
    const opMethod = method.toLowerCase();
    const op = template ? this.doc.paths[template]![opMethod] : undefined;
    if (!template || !op) {
      found.push(`${where}: no operation ${method} ${template ?? path} in the document`);
      this.problems.push(...found);
      return found;
    }
    const opName = `${method.toUpperCase()} ${template}`;
    this.exercised.add(opName);
    const opPointer = `/paths/${pointer(template)}/${opMethod}`;

    // The request, when the server took it: a generated client must be able to send it.
    if (response.statusCode < 300) {
      for (const name of new URLSearchParams(query).keys())
        if (!op.parameters?.some((p) => p.in === "query" && p.name === name)) found.push(`${where}: query parameter '${name}' is not declared`);
      for (const name of Object.keys(exchange.requestHeaders ?? {}))
        if (!PROTOCOL_HEADERS.has(name) && !op.parameters?.some((p) => p.in === "header" && p.name.toLowerCase() === name)) found.push(`${where}: header parameter '${name}' is not declared`);
      if (exchange.requestContentType !== undefined) {
        const media = mediaTypeOf(exchange.requestContentType);
        const declared = op.requestBody?.content[media];
        if (!declared) found.push(`${where}: request Content-Type ${media} is not declared (declared: ${Object.keys(op.requestBody?.content ?? {}).join(", ") || "no body"})`);
        else if (isJson(media) && declared.schema !== undefined) {
          const error = this.validate(`${opPointer}/requestBody/content/${pointer(media)}/schema`, exchange.requestBody);
          if (error) found.push(`${where}: the request body the server accepted does not match the declared schema: ${error}`);
        } else if (media === "application/x-ndjson" && typeof exchange.requestBody === "string") {
          for (const [i, line] of exchange.requestBody.split("\n").entries()) {
            if (line.trim() === "") continue;
            const error = this.validate(`${opPointer}/requestBody/content/${pointer(media)}/schema/x-item-schema`, JSON.parse(line));
            if (error) found.push(`${where}: request line ${i + 1} the server accepted does not match the declared item schema: ${error}`);
          }
        }
      } else if (op.requestBody?.required) found.push(`${where}: the server accepted no body, but the document says a body is required`);
    }

    const code = String(response.statusCode);
    this.answered.add(`${opName} ${code}`);
    const codeKey = [code, `${code[0]}XX`, "default"].find((k) => op.responses[k] !== undefined);
    if (!codeKey) {
      found.push(`${where}: status ${code} is not declared (declared: ${Object.keys(op.responses).join(", ")})`);
      this.problems.push(...found);
      return found;
    }
    const declared = op.responses[codeKey]!;
    for (const [name, header] of Object.entries(declared.headers ?? {}))
      if (header.required && response.headers[name.toLowerCase()] === undefined) found.push(`${where}: required header ${name} is missing`);

    const contentType = response.headers["content-type"] as string | undefined;
    const content = declared.content ?? {};
    if (Object.keys(content).length === 0) {
      if (response.body.length > 0) found.push(`${where}: the document declares no content, the answer has ${contentType ?? "a body without Content-Type"}`);
      this.problems.push(...found);
      return found;
    }
    const media = mediaTypeOf(contentType);
    const mediaObject = content[media];
    if (!mediaObject) {
      found.push(`${where}: Content-Type ${contentType ?? "(none)"} is not declared (declared: ${Object.keys(content).join(", ")})`);
      this.problems.push(...found);
      return found;
    }
    const mediaPointer = `${opPointer}/responses/${pointer(codeKey)}/content/${pointer(media)}`;
    if (isJson(media)) {
      let body: unknown;
      try {
        body = JSON.parse(response.body);
      } catch {
        found.push(`${where}: the ${media} body is not JSON`);
      }
      if (body !== undefined && mediaObject.schema !== undefined) {
        const error = this.validate(`${mediaPointer}/schema`, body);
        if (error) found.push(`${where}: ${error}`);
      }
    } else if (media === "application/x-ndjson") {
      if ((mediaObject.schema as Record<string, unknown> | undefined)?.["x-item-schema"] === undefined) found.push(`${where}: NDJSON answer without a declared item schema (x-item-schema)`);
      else {
        const lines = response.body.split("\n").filter((l) => l !== "");
        for (const [i, line] of lines.entries()) {
          const error = this.validate(`${mediaPointer}/schema/x-item-schema`, JSON.parse(line));
          if (error) {
            found.push(`${where}: line ${i + 1}: ${error}`);
            break;
          }
        }
      }
    }
    this.problems.push(...found);
    return found;
  }
}
