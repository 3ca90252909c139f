// Operations written by people (CLI flags, policy test cases) rather than by a protocol front:
// `holding:100-101`, `coil:0`, `node:ns=1;s=Line1.Speed`, values as text or YAML values.
import ipaddr from "ipaddr.js";
import { ACTIONS, TABLES } from "../pdp/operation.js";
import type { Action, Operation, Scalar, Table, Target } from "../pdp/operation.js";
import type { PolicySet } from "../pdp/policy-set.js";
import { resolve } from "../pdp/evaluate.js";
import { encodeValue } from "../pdp/values.js";

export interface RequestSpec {
  readonly asset: string;
  readonly action: string;
  readonly point?: string;
  readonly target?: string;
  readonly value?: Scalar | readonly Scalar[];
  readonly from?: string;
}

/** Parses `TABLE:ADDR[-ADDR]` or `node:NODEID`; throws an Error naming the bad text. */
export function parseTarget(text: string): Target {
  const i = text.indexOf(":");
  const kind = i < 0 ? text : text.slice(0, i);
  const rest = i < 0 ? "" : text.slice(i + 1);
  if (kind === "node") {
    if (rest === "") throw new Error(`target "${text}": node:NODEID needs a node id`);
    return { kind: "node", node: rest };
  }
  if (!(TABLES as readonly string[]).includes(kind)) {
    throw new Error(`target "${text}": must be TABLE:ADDR[-ADDR] (TABLE: ${TABLES.join(", ")}) or node:NODEID`);
  }
  const m = /^(\d+)(?:-(\d+))?$/.exec(rest);
  const first = Number(m?.[1]);
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!m || first > 65535 || last > 65535 || last < first) {
    throw new Error(`target "${text}": address must be ADDR or FIRST-LAST, 0-based, within 0-65535`);
  }
  return { kind: "range", table: kind as Table, address: first, count: last - first + 1 };
}

/** A value typed on a command line: true/false, a number, or else the text itself. */
export function parseScalar(text: string): Scalar {
  if (text === "true" || text === "false") return text === "true";
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

/**
 * An ISO 8601 date or date-time (`2026-03-02`, `2026-03-02T08:00:00+01:00`; no offset = local
 * time) as epoch ms, or NaN. Date.parse alone is lenient: it reads "1" as 2001-01-01 and
 * rolls 2026-02-30 over into March, silently deciding at a time nobody asked for.
 */
export function parseTime(text: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?$/.exec(text);
  if (!m) return NaN;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return NaN;
  return Date.parse(text);
}

/** A client address as a socket reports it: dotted-quad IPv4 (no `10.1` shorthand) or IPv6. */
export function isIpAddress(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || (text.includes(":") && ipaddr.IPv6.isValid(text));
}

export function parseAction(text: string): Action {
  if (!(ACTIONS as readonly string[]).includes(text)) throw new Error(`action "${text}": must be one of ${ACTIONS.join(", ")}`);
  return text as Action;
}

/**
 * Builds the operation a front would build. For a written range, `value` gives one value
 * per point or unnamed address in it, each encoded by its point's type (raw words otherwise).
 */
export function buildOperation(set: PolicySet, spec: RequestSpec): Operation {
  const action = parseAction(spec.action);
  if ((spec.point === undefined) === (spec.target === undefined)) throw new Error("give exactly one of point or target");
  const target: Target = spec.point !== undefined ? { kind: "point", point: spec.point } : parseTarget(spec.target as string);
  if (spec.from !== undefined && !isIpAddress(spec.from)) throw new Error(`from "${spec.from}": not an IP address (like 10.20.1.5 or fd00::5)`);
  const base = { asset: spec.asset, action, target, ...(spec.from !== undefined && { source: spec.from }) };
  if (action !== "write" || spec.value === undefined) return base;
  if (target.kind !== "range") {
    if (Array.isArray(spec.value)) throw new Error("a point or node takes one value");
    return { ...base, value: spec.value as Scalar };
  }
  const asset = set.assets.get(spec.asset);
  const values: readonly Scalar[] = Array.isArray(spec.value) ? spec.value : typeof spec.value === "string" ? spec.value.split(",").map(parseScalar) : [spec.value as Scalar];
  if (!asset) return base;
  const r = resolve(asset, { asset: spec.asset, action: "read", target });
  if ("reason" in r) return base;
  if (values.length !== r.elements.length) {
    throw new Error(`target ${spec.target} holds ${r.elements.length} point(s)/address(es); give that many values (got ${values.length})`);
  }
  const raw: number[] = [];
  r.elements.forEach((el, i) => {
    const v = values[i] as Scalar;
    const bits = target.table === "coil" || target.table === "discrete";
    const words = el.point ? encodeValue(el.point.type, el.point.words, v) : encodeValue(bits ? "bool" : "uint16", "big", v);
    if (!words) throw new Error(`value ${JSON.stringify(v)} does not fit ${el.point ? `point ${el.point.name} (${el.point.type})` : `${target.table} ${el.address} (raw ${bits ? "0/1" : "0-65535"})`}`);
    raw.push(...words);
  });
  return { ...base, raw };
}
