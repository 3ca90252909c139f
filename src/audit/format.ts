// Records for people (table) and spreadsheets (csv); `json` prints the stored line unchanged.
// Fields such as `sub`, a node id or a point name come from clients and tokens: the table
// escapes control characters (no terminal escape sequences from a log), and csv neutralises
// cells a spreadsheet would run as a formula (OWASP "CSV injection").
import type { WrittenValue } from "../pdp/evaluate.js";
import type { Found } from "./query.js";
import type { ClientRef, LogRecord, TargetRef } from "./record.js";

export type OutputFormat = "table" | "json" | "csv";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json", "csv"];

type Loose = Record<string, unknown>;

export function targetText(t: TargetRef | undefined): string {
  if (!t) return "";
  const raw = t.table !== undefined ? `${t.table}:${t.address ?? "?"}${t.count !== undefined && t.count > 1 ? `-${(t.address ?? 0) + t.count - 1}` : ""}` : "";
  const node = t.node !== undefined ? `node:${t.node}` : "";
  return [t.point, raw, node].filter((s) => s).join(" ");
}

export function clientText(c: ClientRef | undefined): string {
  if (!c) return "";
  const addr = c.address === undefined ? "" : c.address.includes(":") ? `[${c.address}]` : c.address;
  return `${addr}${c.port !== undefined ? `:${c.port}` : ""} ${c.protocol}/${c.transport}`.trim();
}

function valuesText(values: readonly WrittenValue[] | undefined): string {
  if (!values || values.length === 0) return "";
  const hex = (n: number) => `0x${n.toString(16).padStart(4, "0")}`;
  const written = (v: WrittenValue) => (v.value !== undefined ? String(v.value) : v.mask ? `mask and ${hex(v.mask.and)} or ${hex(v.mask.or)}` : `raw ${JSON.stringify(v.raw ?? null)}`);
  return values.map((v) => `${v.point ?? v.node ?? `${v.table}:${v.address}`}=${written(v)}`).join(",");
}

/** What the DETAIL column says, per record type. */
function detail(r: Loose): string {
  switch (r["type"]) {
    case "decision":
      return [clientText(r["client"] as ClientRef), valuesText(r["values"] as WrittenValue[]), r["mode"] === "monitor" ? "monitor" : ""].filter((s) => s).join(" ");
    case "outcome":
      return `${String(r["status"])}${r["exception"] !== undefined ? ` exception=${String(r["exception"])}` : ""} ${String(r["latencyMs"])}ms${r["cacheAgeMs"] !== undefined ? ` cached age<=${String(r["cacheAgeMs"])}ms` : ""} ref=${String(r["ref"])}`;
    case "session":
      return `${String(r["event"])} session=${String(r["session"])}${r["detail"] !== undefined ? ` ${String(r["detail"])}` : ""}`;
    case "policy":
      return `${String(r["event"])} revision=${String(r["revision"])}${Array.isArray(r["errors"]) ? ` errors=${r["errors"].length}` : ""}`;
    case "checkpoint": {
      const h = r["head"] as { seq?: number; hash?: string } | undefined;
      return `signs seq ${String(h?.seq)} hash ${String(h?.hash).slice(0, 16)}…${r["jws"] === null ? " (unsigned)" : ""}`;
    }
    default:
      return "";
  }
}

const COLUMNS = ["TIME", "SEQ", "TYPE", "DECISION", "REASON", "RULE", "SUBJECT", "ASSET", "ACTION", "TARGET", "DETAIL"] as const;
const WIDTHS = [27, 7, 10, 8, 20, 18, 14, 14, 8, 20, 0];

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
const safe = (s: string) => s.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

export function tableHeader(): string {
  return row([...COLUMNS]);
}

function row(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 0))).join("  ").trimEnd();
}

export function tableRow(f: Found): string {
  const r = f.record as unknown as Loose | null;
  if (!r) return `(not a JSON record in ${f.file}) ${safe(f.line)}`;
  const subject = r["subject"] as { sub?: string } | null | undefined;
  const cells = [r["time"], r["seq"], r["type"], r["decision"], r["reason"], r["rule"], subject?.sub, r["asset"], r["action"], targetText(r["target"] as TargetRef), detail(r)];
  return row(cells.map((c) => (c === undefined || c === null ? "-" : safe(String(c)))));
}

const CSV_COLUMNS = ["time", "seq", "id", "type", "decision", "reason", "rule", "policyRevision", "mode", "subject", "issuer", "roles", "session", "jti", "client", "protocol", "transport", "asset", "zone", "action", "target", "values", "ref", "status", "exception", "latencyMs", "cacheAgeMs", "detail"] as const;

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return "";
  let s = typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvHeader(): string {
  return CSV_COLUMNS.join(",");
}

export function csvRow(f: Found): string {
  const r = (f.record ?? {}) as unknown as Loose & Partial<LogRecord>;
  const s = (r["subject"] ?? {}) as { sub?: string; iss?: string; roles?: string[]; sessionId?: string; jti?: string };
  const c = r["client"] as ClientRef | undefined;
  const cells: unknown[] = [
    r["time"], r["seq"], r["id"], r["type"], r["decision"], r["reason"], r["rule"], r["policyRevision"], r["mode"],
    s.sub, s.iss, s.roles?.join(";"), s.sessionId ?? r["session"], s.jti,
    c ? `${c.address ?? ""}${c.port !== undefined ? `:${c.port}` : ""}` : undefined, c?.protocol, c?.transport,
    r["asset"], r["zone"], r["action"], targetText(r["target"] as TargetRef) || undefined, r["values"],
    r["ref"], r["status"], r["exception"], r["latencyMs"], r["cacheAgeMs"],
    r["type"] === "decision" || r["type"] === "outcome" ? undefined : detail(r),
  ];
  return cells.map(csvCell).join(",");
}
