// Policy files → one immutable, indexed PolicySet. Every error of every file is collected
// (YAML syntax, schema, meaning) and positioned; a set is produced only when there are none.
import { createHash } from "node:crypto";
import { Ajv } from "ajv";
import { ACTIONS, TABLES, WRITABLE_TABLES } from "../pdp/operation.js";
import type { Action, Table } from "../pdp/operation.js";
import type { ActionIndex, AddressIndex, Approval, Asset, Point, PolicySet, Rule } from "../pdp/policy-set.js";
import { compileFrom } from "../pdp/conditions/from.js";
import { compileWhen } from "../pdp/conditions/when.js";
import { parseRate } from "../pdp/conditions/rate.js";
import { compileSubjects, roleMaskFor } from "../pdp/subjects.js";
import { isBitTable, isRegisterType, registerCount, OPCUA_TYPES } from "../pdp/values.js";
import type { PointType } from "../pdp/values.js";
import { PolicyFileSchema } from "./schema.js";
import type { PointFile, PolicyFile, RuleFile } from "./schema.js";
import { YamlSource } from "../util/yaml-source.js";
import type { Diagnostic, Path } from "../util/yaml-source.js";

export interface PolicySource {
  /** Name used in messages (relative path, as the admin sees it). */
  readonly file: string;
  readonly text: string;
}

// strictNumbers: NaN and ±Infinity (YAML's .nan, .inf) are no numbers: a limit of .nan would be no limit at all.
const ajv = new Ajv({ allErrors: true, strict: false, strictNumbers: true });
const validateFile = ajv.compile<PolicyFile>(PolicyFileSchema);

const POINT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const MAX_ADDRESS = 65535;

/** A file after its own checks, before cross-file checks and indexing. */
interface FileResult {
  asset?: Asset;
  diagnostics: Diagnostic[];
  /** Asset id and front unit with their places, whenever they are well-formed (even if other parts are not). */
  ids?: { asset: string; assetAt: Pos; frontUnit?: number; frontListener?: string; frontUnitAt: Pos; frontUnitText: string };
}

type Pos = { line: number; col: number };

export function compilePolicies(sources: readonly PolicySource[]): { set?: PolicySet; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const assets = new Map<string, Asset>();
  // Seen ids and front units, also of files with other errors, so that clashes come out at once.
  const assetIds = new Map<string, { file: string; line: number }>();
  // Clients pick a Modbus asset by (listener, unit id); an asset without front.listener answers on every listener.
  const frontUnits = new Map<number, Array<{ asset: string; listener?: string; file: string; line: number }>>();
  const files: Array<{ file: string; asset: string; sha256: string }> = [];
  const hash = createHash("sha256");
  const sorted = [...sources].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  for (const src of sorted) {
    const r = compileFile(src);
    diagnostics.push(...r.diagnostics);
    const sha256 = createHash("sha256").update(src.text).digest("hex");
    // The revision hashes names and contents only, so it does not depend on where the files sit.
    hash.update(`${src.file.replace(/^.*[\\/]/, "")}\0${sha256}\0`);
    const ids = r.ids;
    if (!ids) continue;
    const earlier = assetIds.get(ids.asset);
    if (earlier) {
      diagnostics.push({ file: src.file, ...ids.assetAt, message: `asset "${ids.asset}" is already defined in ${earlier.file}:${earlier.line} (asset ids must be unique)` });
      continue;
    }
    assetIds.set(ids.asset, { file: src.file, line: ids.assetAt.line });
    if (ids.frontUnit !== undefined) {
      const same = frontUnits.get(ids.frontUnit) ?? [];
      const other = same.find((o) => o.listener === undefined || ids.frontListener === undefined || o.listener === ids.frontListener);
      if (other) {
        const where = ids.frontListener ?? other.listener;
        diagnostics.push({
          file: src.file,
          ...ids.frontUnitAt,
          message: `front unit ${ids.frontUnit}${ids.frontUnitText} is already used by asset "${other.asset}" (${other.file}:${other.line})${where !== undefined ? ` on listener ${where}` : ""}; clients pick the asset by listener and unit id, so give each Modbus asset its own front: { unit: N } (or its own front.listener)`,
        });
      } else frontUnits.set(ids.frontUnit, [...same, { asset: ids.asset, ...(ids.frontListener !== undefined && { listener: ids.frontListener }), file: src.file, line: ids.frontUnitAt.line }]);
    }
    if (!r.asset) continue;
    assets.set(r.asset.id, r.asset);
    files.push({ file: src.file, asset: r.asset.id, sha256 });
  }
  if (diagnostics.length > 0) return { diagnostics };
  const revision = hash.digest("hex").slice(0, 16);
  return { set: Object.freeze({ revision, assets, files: Object.freeze(files) }), diagnostics };
}

export function compileFile(src: PolicySource): FileResult {
  const parsed = YamlSource.parse(src.file, src.text);
  if (!parsed.source) return { diagnostics: parsed.diagnostics };
  const y = parsed.source;
  const data = y.value();
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    const found = data === null || data === undefined ? "this file is empty" : Array.isArray(data) ? "this file is a list" : `this file is a single value (${JSON.stringify(data)})`;
    return { diagnostics: [y.diag([], `a policy file must be a mapping with keys asset, protocol, endpoint, points and rules; ${found}`)] };
  }
  const diagnostics = y.validate(validateFile, data);
  // Meaning is checked for every part whose shape is right, so all errors come out at once.
  // A missing key breaks only that key; an unknown key breaks nothing (it is ignored).
  const broken: string[] = [];
  for (const e of validateFile.errors ?? []) {
    if (e.keyword === "additionalProperties") continue;
    const missing = e.keyword === "required" ? (e.params as { missingProperty?: unknown }).missingProperty : undefined;
    broken.push(missing === undefined ? e.instancePath : `${e.instancePath}/${pointerSegment(String(missing))}`);
  }
  const whole = (...path: Array<string | number>): boolean => {
    const ptr = path.map((s) => "/" + pointerSegment(String(s))).join("");
    return !broken.some((b) => b === ptr || b.startsWith(ptr + "/") || ptr.startsWith(b + "/"));
  };
  const f = data as PolicyFile;
  const topOk = typeof f.asset === "string" && (f.protocol === "modbus" || f.protocol === "opcua");
  if (!topOk) return { diagnostics };
  const pointsMap = f.points !== null && typeof f.points === "object" && !Array.isArray(f.points) ? f.points : undefined;
  // Without a well-formed points mapping (already reported), names in rules cannot be checked.
  const ctx: Ctx = { y, f, diagnostics, pointNames: pointsMap ? Object.keys(pointsMap) : f.points === undefined ? [] : undefined };
  let ids: FileResult["ids"];
  if (whole("asset")) {
    const frontKey = f.front?.unit !== undefined ? ["front", "unit"] : f.unit !== undefined ? ["unit"] : ["asset"];
    const frontOk = f.protocol === "modbus" && whole("front") && whole("unit");
    ids = {
      asset: f.asset,
      assetAt: y.position(["asset"]),
      ...(frontOk && { frontUnit: f.front?.unit ?? f.unit ?? 1 }),
      ...(frontOk && f.front?.listener !== undefined && { frontListener: f.front.listener }),
      frontUnitAt: y.position(frontKey),
      frontUnitText: f.front?.unit !== undefined ? "" : f.unit !== undefined ? " (from unit, as front.unit is not set)" : " (the default, as neither front.unit nor unit is set)",
    };
  }

  const points = new Map<string, Point>();
  // Points that exist but are malformed (already reported): rules naming them are not told they are unknown.
  const brokenPoints = new Set<string>();
  for (const [name, p] of Object.entries(pointsMap ?? {})) {
    if (!whole("points", name) || p === null || typeof p !== "object" || Array.isArray(p)) {
      brokenPoints.add(name);
      continue;
    }
    const point = compilePoint(ctx, name, p);
    if (point) points.set(name, point);
    else brokenPoints.add(name);
  }
  const pointAt = indexAddresses(ctx, points);
  const pointByNode = new Map<string, Point>();
  for (const p of points.values()) {
    if (p.node === undefined) continue;
    const other = pointByNode.get(p.node);
    if (other) diagnostics.push(y.diag(["points", p.name, p.type === "method" ? "method" : "node"], `point "${p.name}" names the same node as point "${other.name}"`));
    else pointByNode.set(p.node, p);
  }

  const rules: Rule[] = [];
  const ruleIds = new Map<string, number>();
  (Array.isArray(f.rules) ? f.rules : []).forEach((r, i) => {
    if (r === null || typeof r !== "object" || Array.isArray(r)) return;
    const line = y.position(["rules", i]).line;
    if (whole("rules", i, "id")) {
      const first = ruleIds.get(r.id);
      if (first !== undefined) ctx.diagnostics.push(y.diag(["rules", i, "id"], `duplicate rule id "${r.id}" (first defined at line ${first})`));
      else ruleIds.set(r.id, line);
    }
    const rule = compileRule(ctx, r, i, points, brokenPoints, (...sub) => whole("rules", i, ...sub));
    if (rule) rules.push(rule);
  });
  if (diagnostics.length > 0) return { diagnostics, ...(ids && { ids }) };

  const asset: Asset = {
    id: f.asset,
    ...(f.description !== undefined && { description: f.description }),
    ...(f.zone !== undefined && { zone: f.zone }),
    protocol: f.protocol,
    endpoint: f.endpoint,
    ...(f.protocol === "modbus" && { unit: f.unit ?? 1, frontUnit: f.front?.unit ?? f.unit ?? 1 }),
    ...(f.protocol === "modbus" && f.front?.listener !== undefined && { frontListener: f.front.listener }),
    mode: f.mode ?? "enforce",
    file: src.file,
    points,
    pointAt,
    pointByNode,
    rules,
    actions: indexRules(rules, points),
  };
  return { asset: Object.freeze(asset), diagnostics, ...(ids && { ids }) };
}

function pointerSegment(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

interface Ctx {
  y: YamlSource;
  f: PolicyFile;
  diagnostics: Diagnostic[];
  /** Every point name of the file in file order, malformed points included; undefined when `points` is malformed. */
  pointNames: string[] | undefined;
}

function err(ctx: Ctx, path: Path, message: string, key = false): undefined {
  ctx.diagnostics.push(ctx.y.diag(path, message, key));
  return undefined;
}

function compilePoint(ctx: Ctx, name: string, p: PointFile): Point | undefined {
  const at = ["points", name];
  const before = ctx.diagnostics.length;
  if (!POINT_NAME.test(name)) err(ctx, at, `point name "${name}" must start with a letter or _ and use only letters, digits, _ . -`, true);
  if (p.min !== undefined && p.max !== undefined && p.min > p.max) err(ctx, [...at, "min"], `point "${name}": min ${p.min} is greater than max ${p.max}`);
  const line = ctx.y.position(at, true).line;
  if (ctx.f.protocol === "modbus") {
    for (const k of ["node", "method", "object"] as const) if (p[k] !== undefined) err(ctx, [...at, k], `point "${name}": "${k}" is for OPC UA assets; this asset's protocol is modbus`, true);
    if (p.table === undefined) err(ctx, at, `point "${name}": missing required key "table" (coil, discrete, input or holding)`);
    if (p.address === undefined) err(ctx, at, `point "${name}": missing required key "address" (0-based, 0-65535)`);
    if (p.table === undefined || p.address === undefined) return undefined;
    const bits = isBitTable(p.table);
    const type = (p.type ?? (bits ? "bool" : "uint16")) as PointType;
    if (bits && type !== "bool") err(ctx, [...at, "type"], `point "${name}": type ${type} does not fit table ${p.table} (${p.table} points are 1-bit, type bool)`);
    if (!bits && !isRegisterType(type)) err(ctx, [...at, "type"], `point "${name}": type ${type} does not fit table ${p.table} (registers take uint16, int16, uint32, int32, float32 or float64)`);
    if (bits && (p.min !== undefined || p.max !== undefined)) err(ctx, [...at, p.min !== undefined ? "min" : "max"], `point "${name}": min/max do not apply to 1-bit ${p.table} points`);
    const size = isRegisterType(type) ? registerCount(type) : 1;
    if (p.address < 0 || p.address > MAX_ADDRESS) err(ctx, [...at, "address"], `point "${name}": address ${p.address} is outside 0-65535`);
    else if (p.address + size - 1 > MAX_ADDRESS) err(ctx, [...at, "address"], `point "${name}": a ${type} at ${p.address} spans ${size} registers and runs past 65535`);
    if (ctx.diagnostics.length > before) return undefined;
    return {
      name, type, table: p.table, address: p.address, size, words: p.words ?? "big",
      ...(p.min !== undefined && { min: p.min }), ...(p.max !== undefined && { max: p.max }),
      writable: WRITABLE_TABLES.has(p.table), line,
    };
  }
  for (const k of ["table", "address", "words"] as const) if (p[k] !== undefined) err(ctx, [...at, k], `point "${name}": "${k}" is for Modbus assets; this asset's protocol is opcua`, true);
  if ((p.node === undefined) === (p.method === undefined)) return err(ctx, at, `point "${name}": an OPC UA point needs exactly one of "node" (a variable) or "method"`);
  if (p.method !== undefined) {
    if (p.type !== undefined && p.type !== "method") err(ctx, [...at, "type"], `point "${name}": a method point has no value type (got ${p.type})`);
    if (ctx.diagnostics.length > before) return undefined;
    return { name, type: "method", size: 1, words: "big", node: p.method, ...(p.object !== undefined && { object: p.object }), writable: false, line };
  }
  if (p.object !== undefined) err(ctx, [...at, "object"], `point "${name}": "object" only goes with "method"`, true);
  if (p.type === undefined) return err(ctx, at, `point "${name}": missing required key "type" (one of ${OPCUA_TYPES.join(", ")})`);
  if (!(OPCUA_TYPES as readonly string[]).includes(p.type)) err(ctx, [...at, "type"], `point "${name}": type ${p.type} is not an OPC UA type (${OPCUA_TYPES.join(", ")})`);
  if (ctx.diagnostics.length > before) return undefined;
  return {
    name, type: p.type as PointType, size: 1, words: "big", node: p.node as string,
    ...(p.min !== undefined && { min: p.min }), ...(p.max !== undefined && { max: p.max }),
    writable: true, line,
  };
}

function indexAddresses(ctx: Ctx, points: Map<string, Point>): Partial<Record<Table, Map<number, Point>>> {
  const out: Partial<Record<Table, Map<number, Point>>> = {};
  for (const p of points.values()) {
    if (p.table === undefined || p.address === undefined) continue;
    const m = (out[p.table] ??= new Map());
    for (let a = p.address; a < p.address + p.size; a++) {
      const other = m.get(a);
      if (other) {
        err(ctx, ["points", p.name, "address"], `point "${p.name}" overlaps point "${other.name}" at ${p.table} ${a}`);
        break;
      }
      m.set(a, p);
    }
  }
  return out;
}

function parseAddress(v: number | string): [number, number] | string {
  const bad = `address ${JSON.stringify(v)} must be an address 0-65535 or a range "first-last" within 0-65535`;
  if (typeof v === "number") return v >= 0 && v <= MAX_ADDRESS ? [v, v] : bad;
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v);
  if (!m) return bad;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a > MAX_ADDRESS || b > MAX_ADDRESS) return bad;
  if (a > b) return `address range "${v}": first ${a} is greater than last ${b}`;
  return [a, b];
}

function nodePattern(glob: string): RegExp {
  return new RegExp("^" + glob.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "60s", "5m", "1h", "1500ms" → milliseconds; undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(text);
  return m ? Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] as number)) : undefined;
}

/** A rule is checked field by field (`ok` says whether a field's shape is right); it is built only when all of it is. */
function compileRule(
  ctx: Ctx,
  r: RuleFile,
  i: number,
  points: Map<string, Point>,
  brokenPoints: ReadonlySet<string>,
  ok: (...sub: Array<string | number>) => boolean,
): Rule | undefined {
  const at: Path = ["rules", i];
  const before = ctx.diagnostics.length;
  const protocol = ctx.f.protocol;
  const name = ok("id") ? `rule "${r.id}"` : `rules[${i}]`;
  if ((r.allow === undefined) === (r.deny === undefined)) err(ctx, at, `${name}: needs exactly one of "allow" or "deny" (a list of actions)`);
  const effect = r.allow !== undefined ? "allow" : "deny";
  // With a malformed action list the checks that depend on the actions are skipped.
  const actionsOk = ok("allow") && ok("deny");
  const listed = actionsOk ? (r.allow ?? r.deny ?? []) : [];
  const actions = new Set<Action>(listed.includes("*") ? ACTIONS : (listed as Action[]));
  if (r.points === undefined && r.targets === undefined && r.nodes === undefined) err(ctx, at, `${name}: names no target (give points, targets or nodes)`);
  if (ok("subjects") && typeof r.subjects === "object" && r.subjects !== null && !Object.values(r.subjects).some((v) => v !== undefined && (Array.isArray(v) ? v.length > 0 : typeof v === "object" && v !== null ? Object.keys(v).length > 0 : true))) {
    err(ctx, [...at, "subjects"], `${name}: subjects ${JSON.stringify(r.subjects)} names nobody in particular (an empty selector); write "*" for anyone, or give roles, subs, issuers or claims`);
  }
  const writes = effect === "allow" && actions.has("write") && !listed.includes("*");

  const names = new Set<string>();
  let allPoints = false;
  (Array.isArray(r.points) ? r.points : []).forEach((n, j) => {
    if (!ok("points", j)) return;
    if (n === "*") return void (allPoints = true);
    const p = points.get(n);
    if (!p) {
      if (brokenPoints.has(n) || ctx.pointNames === undefined) return;
      const known = ctx.pointNames;
      return err(ctx, [...at, "points", j], `${name}: unknown point "${n}"${known.length ? ` (asset ${ctx.f.asset} has: ${known.join(", ")})` : " (asset has no points)"}`);
    }
    if (writes && !p.writable) err(ctx, [...at, "points", j], `${name}: allows write on point "${n}", but ${p.type === "method" ? "a method is called, not written" : `${p.table} is read-only`}`);
    if (effect === "allow" && actions.has("call") && !listed.includes("*") && p.type !== "method") err(ctx, [...at, "points", j], `${name}: allows call on point "${n}", which is not a method`);
    names.add(n);
  });

  const ranges: Partial<Record<Table, Array<[number, number]>>> = {};
  (Array.isArray(r.targets) ? r.targets : []).forEach((t, j) => {
    if (!ok("targets", j)) return;
    if (protocol !== "modbus") return err(ctx, [...at, "targets", j], `${name}: raw Modbus targets on an opcua asset (use nodes)`);
    const range = parseAddress(t.address);
    if (typeof range === "string") return err(ctx, [...at, "targets", j, "address"], `${name}: ${range}`);
    if (writes && !WRITABLE_TABLES.has(t.table)) err(ctx, [...at, "targets", j, "table"], `${name}: allows write on table ${t.table}, which is read-only (only coil and holding can be written)`);
    (ranges[t.table] ??= []).push(range);
  });

  const nodes: RegExp[] = [];
  (Array.isArray(r.nodes) ? r.nodes : []).forEach((n, j) => {
    if (!ok("nodes", j)) return;
    if (protocol !== "opcua") return err(ctx, [...at, "nodes", j], `${name}: nodes on a modbus asset (use points or targets)`);
    nodes.push(nodePattern(n));
  });

  if (r.values && ok("values")) {
    const { min, max } = r.values;
    if (min !== undefined && max !== undefined && min > max) err(ctx, [...at, "values", "min"], `${name}: values.min ${min} is greater than values.max ${max}`);
    if (effect === "deny") err(ctx, [...at, "values"], `${name}: values limits go on allow rules (a deny rule denies whatever the value)`, true);
    else if (actionsOk && !actions.has("write")) err(ctx, [...at, "values"], `${name}: values limits only apply to write, which this rule does not allow`, true);
  }
  let when;
  if (r.when && ok("when")) {
    const w = compileWhen(r.when);
    for (const e of w.errors) err(ctx, [...at, "when", e.field], `${name}: when.${e.field}: ${e.message}`);
    when = w.matcher;
  }
  let from;
  if (Array.isArray(r.from) && ok("from")) {
    const fr = compileFrom(r.from);
    for (const e of fr.errors) err(ctx, [...at, "from", e.index], `${name}: from: ${e.message}`);
    from = fr.matcher;
  }
  let rate;
  if (r.rate !== undefined && ok("rate")) {
    const pr = parseRate(r.rate);
    if (pr.error !== undefined) err(ctx, [...at, "rate"], `${name}: rate: ${pr.error}`);
    else if (effect === "deny") err(ctx, [...at, "rate"], `${name}: rate goes on allow rules (a deny rule has nothing to limit)`, true);
    rate = pr.rate;
  }
  let approval: Approval | undefined;
  if (r.approval && ok("approval")) {
    const timeoutMs = parseDuration(r.approval.timeout);
    if (timeoutMs === undefined) err(ctx, [...at, "approval", "timeout"], `${name}: approval.timeout ${JSON.stringify(r.approval.timeout)} must be a duration like 30s, 5m or 1h`);
    else if (timeoutMs < 1000 || timeoutMs > 3_600_000) err(ctx, [...at, "approval", "timeout"], `${name}: approval.timeout ${r.approval.timeout} is outside 1s..1h`);
    if (effect === "deny") err(ctx, [...at, "approval"], `${name}: approval goes on allow rules (a deny rule has nothing to approve)`, true);
    else if (actionsOk && !actions.has("write") && !actions.has("call")) err(ctx, [...at, "approval"], `${name}: approval holds writes and calls, which this rule does not allow`, true);
    if (timeoutMs !== undefined) approval = Object.freeze({ roles: Object.freeze([...new Set(r.approval.roles)]), timeoutMs });
  }
  if (ctx.diagnostics.length > before || !ok()) return undefined;
  const roleMask = roleMaskFor(r.subjects as "*");
  return Object.freeze({
    id: r.id, index: i, effect, actions, subjects: compileSubjects(r.subjects as "*"), ...(roleMask !== undefined && { roleMask }), allPoints, points: names,
    ranges, nodes,
    ...(from && { from }), ...(when && { when }), ...(r.values && { values: r.values }), ...(rate && { rate }), ...(approval && { approval }),
    file: ctx.y.file, line: ctx.y.position(at).line,
  });
}

/**
 * Whether a rule's targets include a named point. An allow must cover a multi-register point
 * whole; a deny on any one of its words denies the whole point.
 */
export function ruleCoversPoint(rule: Rule, p: Point): boolean {
  if (rule.allPoints || rule.points.has(p.name)) return true;
  if (p.table !== undefined && p.address !== undefined) {
    const first = p.address;
    const last = p.address + p.size - 1;
    const ranges = rule.ranges[p.table] ?? [];
    if (rule.effect === "deny") return ranges.some(([a, b]) => a <= last && first <= b);
    // An allow covers the point when its ranges together cover every register of it (10 and 11
    // listed apart cover a float32 at 10).
    let next = first;
    for (const [a, b] of [...ranges].sort((x, y) => x[0] - y[0])) {
      if (a > next) break;
      if (b >= next) next = b + 1;
      if (next > last) return true;
    }
    return false;
  }
  return p.node !== undefined && rule.nodes.some((re) => re.test(p.node as string));
}

/** Cuts the raw ranges of `rules` on one table into disjoint segments with their covering rules. */
function addressIndex(rules: readonly Rule[], table: Table): AddressIndex | undefined {
  const withRanges = rules.filter((r) => (r.ranges[table] ?? []).length > 0);
  if (withRanges.length === 0) return undefined;
  const bounds = [...new Set(withRanges.flatMap((r) => (r.ranges[table] ?? []).flatMap(([a, b]) => [a, b + 1])))].sort((x, y) => x - y);
  const starts: number[] = [];
  const ends: number[] = [];
  const covering: Rule[][] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const a = bounds[i] as number;
    const hit = withRanges.filter((r) => (r.ranges[table] ?? []).some(([x, y]) => x <= a && a <= y));
    if (hit.length === 0) continue;
    starts.push(a);
    ends.push((bounds[i + 1] as number) - 1);
    covering.push(hit);
  }
  return { starts, ends, rules: covering };
}

function indexRules(rules: readonly Rule[], points: ReadonlyMap<string, Point>): Map<Action, ActionIndex> {
  const out = new Map<Action, ActionIndex>();
  for (const action of ACTIONS) {
    const all = rules.filter((r) => r.actions.has(action));
    const byPoint = new Map<string, Rule[]>();
    for (const p of points.values()) byPoint.set(p.name, all.filter((r) => ruleCoversPoint(r, p)));
    const byTable: Partial<Record<Table, AddressIndex>> = {};
    for (const t of TABLES) {
      const index = addressIndex(all, t);
      if (index) byTable[t] = index;
    }
    out.set(action, { all, byPoint, byTable, byNode: all.filter((r) => r.nodes.length > 0) });
  }
  return out;
}
