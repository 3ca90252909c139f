// A YAML document that remembers where every value came from, so that every error in a
// config or policy file can be reported as `file:line:col: message`, all at once.
import { isMap, isNode, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node } from "yaml";
import type { ErrorObject, ValidateFunction } from "ajv";

export type Path = ReadonlyArray<string | number>;

export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.message}`;
}

export function sortDiagnostics(ds: Diagnostic[]): Diagnostic[] {
  return ds.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
}

/** `rules[2].allow` from ["rules", 2, "allow"]: how a field is named in messages. */
export function pathLabel(path: Path): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? p : `.${p}`;
  return out === "" ? "(document)" : out;
}

/** How far aliases may expand a document (the yaml library's count; its default is 100). */
const MAX_ALIAS_COUNT = 10_000;

export class YamlSource {
  private constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
    private readonly plain: unknown,
  ) {}

  /** Parses `text`; syntax errors come back as diagnostics and `source` is then undefined. */
  static parse(file: string, text: string): { source?: YamlSource; diagnostics: Diagnostic[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
    const diagnostics: Diagnostic[] = [];
    for (const e of doc.errors) {
      const lp = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      const msg = (e.message.split("\n")[0] ?? e.message).replace(/; please use YAML\.parseAllDocuments\(\)/, " (a file holds one document: remove the extra ---)");
      diagnostics.push({ file, line: lp.line, col: lp.col, message: `YAML ${msg.replace(/ at line \d+, column \d+:?$/, "")}` });
    }
    // YAML 1.2 only: a `%YAML 1.1` header would read `010` as 8, `1:30` as 90 and merge `<<` keys.
    if (doc.directives?.yaml.version !== "1.2") diagnostics.push({ file, line: 1, col: 1, message: `YAML ${doc.directives?.yaml.version ?? "?"} is not accepted: files are YAML 1.2 (remove the %YAML directive)` });
    if (diagnostics.length > 0) return { diagnostics };
    // Aliases: a policy may reuse a node many times (`subjects: *ops` in every rule); only an
    // expansion that multiplies (aliases of aliases, the "billion laughs") is refused, as an
    // error of the file rather than an exception.
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      return { diagnostics: [{ file, line: 1, col: 1, message: `YAML ${(e as Error).message} (aliases expand to more than ${MAX_ALIAS_COUNT} nodes)` }] };
    }
    return { source: new YamlSource(file, doc, lines, value), diagnostics };
  }

  /** The plain JavaScript value of the document. */
  value(): unknown {
    return this.plain;
  }

  /** The node at `path`, or the deepest existing ancestor; `key` selects the map key instead. */
  private locate(path: Path, key: boolean): Node | undefined {
    let node: unknown = this.doc.contents;
    let keyNode: unknown;
    for (const seg of path) {
      keyNode = undefined;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof seg === "number" && node.items[seg] !== undefined) {
        node = node.items[seg];
      } else {
        break;
      }
    }
    const chosen = key && keyNode !== undefined ? keyNode : node;
    return isNode(chosen) ? chosen : undefined;
  }

  position(path: Path, key = false): { line: number; col: number } {
    const node = this.locate(path, key);
    const offset = node?.range?.[0] ?? 0;
    return this.lines.linePos(offset);
  }

  diag(path: Path, message: string, key = false): Diagnostic {
    const { line, col } = this.position(path, key);
    return { file: this.file, line, col, message };
  }

  /** Runs an ajv validator on `data` and turns its errors into positioned diagnostics. */
  validate(validator: ValidateFunction, data: unknown): Diagnostic[] {
    if (validator(data)) return [];
    return ajvDiagnostics(validator.errors ?? [], validator.schema).map((e) => this.diag(e.path, e.message, e.key));
  }
}

function jsonPointerToPath(ptr: string): Array<string | number> {
  if (ptr === "") return [];
  return ptr
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** The schema at an ajv `schemaPath` ("#/properties/a/anyOf") under `root`, if it can be followed. */
function schemaAt(root: unknown, schemaPath: string): unknown {
  let node = root;
  for (const seg of schemaPath.replace(/^#/, "").split("/").filter((s) => s !== "")) {
    if (node === null || typeof node !== "object") return undefined;
    let key: string;
    try {
      key = decodeURIComponent(seg).replace(/~1/g, "/").replace(/~0/g, "~");
    } catch {
      return undefined;
    }
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** The `x-expected` wording of the schema that holds the failed keyword (needs ajv `verbose` or the root schema). */
function expectedOf(e: ErrorObject, root: unknown): string | undefined {
  const parent = e.parentSchema ?? (root === undefined ? undefined : schemaAt(root, e.schemaPath.replace(/\/[^/]*$/, "")));
  const x = parent !== null && typeof parent === "object" ? (parent as { "x-expected"?: unknown })["x-expected"] : undefined;
  return typeof x === "string" ? x : undefined;
}

interface PathMessage {
  path: Array<string | number>;
  message: string;
  key: boolean;
}

/**
 * ajv's errors in words an admin can act on. A union (anyOf) that failed reports the
 * deeper errors of the branch the value was shaped like, or one line naming what was expected.
 */
export function ajvDiagnostics(errors: ErrorObject[], rootSchema?: unknown): PathMessage[] {
  const unions = errors.filter((e) => e.keyword === "anyOf" || e.keyword === "oneOf").map((e) => e.instancePath);
  const out: PathMessage[] = [];
  const seen = new Set<string>();
  const isUnion = (o: ErrorObject) => o.keyword === "anyOf" || o.keyword === "oneOf";
  // Unknown or missing keys at the union's own place mean the value was shaped like its object branch.
  const isObjectShape = (o: ErrorObject) => o.keyword === "additionalProperties" || o.keyword === "required";
  for (const [i, e] of errors.entries()) {
    const path = jsonPointerToPath(e.instancePath);
    const label = pathLabel(path);
    let pm: PathMessage | undefined;
    if (unions.includes(e.instancePath)) {
      const shaped = errors.some((o) => o.instancePath.startsWith(e.instancePath + "/") || (o.instancePath === e.instancePath && isObjectShape(o)));
      if (shaped ? !isObjectShape(e) : !isUnion(e)) continue;
    }
    // Nested unions fail together at one place; the outermost (reported last) says what was expected.
    if (isUnion(e) && errors.some((o, j) => j > i && isUnion(o) && o.instancePath === e.instancePath)) continue;
    switch (e.keyword) {
      case "additionalProperties": {
        const prop = String((e.params as { additionalProperty: string }).additionalProperty);
        pm = { path: [...path, prop], message: `unknown key "${prop}"${label === "(document)" ? "" : ` in ${label}`}`, key: true };
        break;
      }
      case "required": {
        const prop = String((e.params as { missingProperty: string }).missingProperty);
        pm = { path, message: `${label === "(document)" ? "" : label + ": "}missing required key "${prop}"`, key: false };
        break;
      }
      case "enum": {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String).join(", ");
        pm = { path, message: `${label}: must be one of ${allowed}`, key: false };
        break;
      }
      case "anyOf":
      case "oneOf": {
        pm = { path, message: `${label}: must be ${expectedOf(e, rootSchema) ?? "one of the allowed forms"}`, key: false };
        break;
      }
      case "pattern": {
        const expected = expectedOf(e, rootSchema);
        pm = { path, message: `${label}: ${expected === undefined ? (e.message ?? e.keyword) : `must be ${expected}`}`, key: false };
        break;
      }
      default:
        pm = { path, message: `${label}: ${e.message ?? e.keyword}`, key: false };
    }
    const k = `${pm.path.join("/")}|${pm.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(pm);
    }
  }
  return out;
}
