// `ztgate policy suggest --from LOG --asset A`: least-privilege allow rules learned from what an
// asset's clients actually did (typically during a `mode: monitor` period, when every
// operation flows and the would-denies are logged).
//
// Each operation the policy decided on (allowed, would-deny, or denied for a permission
// reason) is split into the points, unnamed addresses and nodes it touched, and counted per
// role, action and element. The rules proposed are then exactly as wide as that:
// - per role (a subject with several roles counts for each; a subject with none gets a rule
//   for its sub and issuer), per action;
// - reads, browses, calls: one rule per role and action listing the points, the unnamed
//   addresses merged into ranges of adjacent addresses, and the nodes;
// - writes: one rule per role and point (or merged address range, or node) with the
//   observed min/max as `values`, so a write outside what was seen is refused.
// The asset's file keeps its header (asset, protocol, endpoint, points, front, mode…) and
// its deny rules (they state intent; they are not learned); its allow rules are replaced.
// Operations denied by a deny rule, or refused for their shape, are not learned.
import { isMap, isScalar, isSeq, parseDocument } from "yaml";
import type { Document, Pair, Scalar as YamlScalar, YAMLMap, YAMLSeq } from "yaml";
import type { DecisionRecord, LogRecord } from "../audit/record.js";
import { resolve } from "../pdp/evaluate.js";
import type { Action, Table } from "../pdp/operation.js";
import { ACTIONS } from "../pdp/operation.js";
import type { Asset, PolicySet } from "../pdp/policy-set.js";
import { numericValue } from "../pdp/values.js";
import type { Diagnostic } from "../util/yaml-source.js";
import { compilePolicies } from "./compile.js";
import type { PolicySource } from "./compile.js";
import { PRE_POLICY_REASONS, STRUCTURAL_REASONS, outcomeOf, rebuild } from "./replay.js";

export interface SuggestOptions {
  readonly asset: string;
  /** Only decisions at or after this time (the log's own format, compared as text). */
  readonly since?: string;
  /** Where the log was read from, for the file's header comment. */
  readonly from?: string;
  /** When the suggestion was made (ISO), for the header comment. */
  readonly generatedAt?: string;
}

export interface Suggestion {
  /** The asset's policy file with learned rules. */
  readonly text: string;
  /** Decisions of the asset the rules are based on. */
  readonly learned: number;
  /** Decisions of the asset not learned from, by why. */
  readonly skipped: Readonly<Record<string, number>>;
  readonly rules: number;
  /** The suggested file compiled with the rest of the directory: empty when `policy check` accepts it. */
  readonly diagnostics: readonly Diagnostic[];
}

/**
 * Observations behind one element (or run, or rule): decisions counted once each. An unnamed
 * address counts a decision only where that decision's block of adjacent addresses starts, so
 * that adjacent addresses merged into one run count each decision once.
 */
class Seen {
  count = 0;
  first = "";
  last = "";
  readonly outcomes = { allow: 0, deny: 0, "would-deny": 0 };
  readonly subjects = new Set<string>();
  min = Infinity;
  max = -Infinity;
  /** A written value not known in advance (FC22), or one with no numeric meaning (text). */
  unbounded = false;

  add(r: DecisionRecord, value?: { known: boolean; v: unknown }, counts = true): void {
    if (counts) {
      this.count++;
      this.outcomes[outcomeOf(r)]++;
    }
    if (this.first === "" || r.time < this.first) this.first = r.time;
    if (r.time > this.last) this.last = r.time;
    this.subjects.add((r.subject as { sub: string }).sub);
    if (!value) return;
    const n = value.known ? numericValue(value.v as never) : undefined;
    if (n === undefined) this.unbounded = true;
    else {
      this.min = Math.min(this.min, n);
      this.max = Math.max(this.max, n);
    }
  }

  merge(o: Seen): Seen {
    const m = new Seen();
    for (const s of [this, o]) {
      m.count += s.count;
      if (s.first !== "" && (m.first === "" || s.first < m.first)) m.first = s.first;
      if (s.last > m.last) m.last = s.last;
      for (const k of ["allow", "deny", "would-deny"] as const) m.outcomes[k] += s.outcomes[k];
      for (const x of s.subjects) m.subjects.add(x);
      m.min = Math.min(m.min, s.min);
      m.max = Math.max(m.max, s.max);
      m.unbounded ||= s.unbounded;
    }
    return m;
  }
}

/** Who a rule is for: a role, or (for a subject without roles) its sub and issuer. */
type Who = { role: string } | { sub: string; iss: string };

function whoKey(w: Who): string {
  return "role" in w ? `r\u0000${w.role}` : `s\u0000${w.iss}\u0000${w.sub}`;
}

/** What one element is: a named point, an unnamed address, or a node. */
type ElementKey = { point: string } | { table: Table; address: number } | { node: string };

function elementKey(e: ElementKey): string {
  return "point" in e ? `p\u0000${e.point}` : "node" in e ? `n\u0000${e.node}` : `a\u0000${e.table}\u0000${String(e.address).padStart(5, "0")}`;
}

interface Bucket {
  readonly who: Who;
  readonly action: Action;
  readonly elements: Map<string, { key: ElementKey; seen: Seen }>;
  /** Every decision of the bucket, once. */
  readonly total: Seen;
}

function slug(s: string): string {
  const t = s.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^[^a-z0-9]+/, "").replace(/-+$/, "");
  return t === "" ? "x" : t;
}

function summary(s: Seen): string {
  const parts = [`${s.count} decision${s.count === 1 ? "" : "s"}`];
  const o = Object.entries(s.outcomes).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k === "allow" ? "allowed" : k === "deny" ? "denied" : "would-deny (monitor)"}`);
  if (o.length > 0) parts[0] += ` (${o.join(", ")})`;
  parts.push(`first ${s.first}`, `last ${s.last}`);
  const subjects = [...s.subjects].sort();
  parts.push(`subjects ${subjects.slice(0, 8).join(", ")}${subjects.length > 8 ? `, … (${subjects.length})` : ""}`);
  return parts.join("; ");
}

/** Adjacent unnamed addresses of one table merged into [first, last] runs with their observations. */
function runs(list: Array<{ key: ElementKey; seen: Seen }>): Array<{ table: Table; first: number; last: number; seen: Seen }> {
  const out: Array<{ table: Table; first: number; last: number; seen: Seen }> = [];
  const addrs = list
    .filter((e): e is { key: { table: Table; address: number }; seen: Seen } => "table" in e.key)
    .sort((a, b) => (a.key.table < b.key.table ? -1 : a.key.table > b.key.table ? 1 : a.key.address - b.key.address));
  for (const e of addrs) {
    const prev = out.at(-1);
    if (prev && prev.table === e.key.table && prev.last + 1 === e.key.address) {
      prev.last = e.key.address;
      prev.seen = prev.seen.merge(e.seen);
    } else out.push({ table: e.key.table, first: e.key.address, last: e.key.address, seen: e.seen });
  }
  return out;
}

function range(first: number, last: number): number | string {
  return first === last ? first : `${first}-${last}`;
}

/** One proposed rule: its YAML data and the comment saying what it is based on. */
interface Proposed {
  readonly id: string;
  readonly data: Record<string, unknown>;
  readonly comment: string;
}

function subjectsOf(w: Who): Record<string, unknown> {
  return "role" in w ? { roles: [w.role] } : { subs: [w.sub], issuers: [w.iss] };
}

function whoText(w: Who): string {
  return "role" in w ? `role ${w.role}` : `subject ${w.sub} (issuer ${w.iss}, no roles)`;
}

function valuesOf(seen: Seen): { values?: { min: number; max: number }; note: string } {
  if (seen.unbounded) return { note: "; no values limit: a written value was not known in advance (FC22) or not a number" };
  if (!Number.isFinite(seen.min)) return { note: "" };
  return { values: { min: seen.min, max: seen.max }, note: `; values seen ${seen.min}..${seen.max}` };
}

function propose(asset: Asset, buckets: Iterable<Bucket>): Proposed[] {
  const out: Proposed[] = [];
  const pointOrder = [...asset.points.keys()];
  const byWho = [...buckets].sort((a, b) => (whoKey(a.who) < whoKey(b.who) ? -1 : whoKey(a.who) > whoKey(b.who) ? 1 : ACTIONS.indexOf(a.action) - ACTIONS.indexOf(b.action)));
  for (const b of byWho) {
    const base = "role" in b.who ? slug(b.who.role) : `sub-${slug(b.who.sub)}`;
    const list = [...b.elements.values()];
    const points = list.filter((e): e is { key: { point: string }; seen: Seen } => "point" in e.key).sort((x, y) => pointOrder.indexOf(x.key.point) - pointOrder.indexOf(y.key.point));
    const nodes = list.filter((e): e is { key: { node: string }; seen: Seen } => "node" in e.key).sort((x, y) => (x.key.node < y.key.node ? -1 : 1));
    const addressRuns = runs(list);
    if (b.action === "write") {
      for (const p of points) {
        const v = valuesOf(p.seen);
        out.push({
          id: `${base}-write-${slug(p.key.point)}`,
          data: { allow: ["write"], subjects: subjectsOf(b.who), points: [p.key.point], ...(v.values && { values: v.values }) },
          comment: `learned: ${whoText(b.who)} wrote ${p.key.point}: ${summary(p.seen)}${v.note}`,
        });
      }
      for (const r of addressRuns) {
        const v = valuesOf(r.seen);
        out.push({
          id: `${base}-write-${r.table}-${r.first}${r.last !== r.first ? `-${r.last}` : ""}`,
          data: { allow: ["write"], subjects: subjectsOf(b.who), targets: [{ table: r.table, address: range(r.first, r.last) }], ...(v.values && { values: v.values }) },
          comment: `learned: ${whoText(b.who)} wrote unnamed ${r.table} ${range(r.first, r.last)}: ${summary(r.seen)}${v.note}`,
        });
      }
      for (const n of nodes) {
        const v = valuesOf(n.seen);
        out.push({
          id: `${base}-write-node-${slug(n.key.node)}`,
          data: { allow: ["write"], subjects: subjectsOf(b.who), nodes: [n.key.node], ...(v.values && { values: v.values }) },
          comment: `learned: ${whoText(b.who)} wrote node ${n.key.node}: ${summary(n.seen)}${v.note}`,
        });
      }
      continue;
    }
    if (list.length === 0) continue;
    const total = b.total;
    const per = [
      ...points.map((p) => `${p.key.point} ${p.seen.count}`),
      ...addressRuns.map((r) => `${r.table} ${range(r.first, r.last)} ${r.seen.count}`),
      ...nodes.map((n) => `node ${n.key.node} ${n.seen.count}`),
    ];
    out.push({
      id: `${base}-${b.action}`,
      data: {
        allow: [b.action],
        subjects: subjectsOf(b.who),
        ...(points.length > 0 && { points: points.map((p) => p.key.point) }),
        ...(addressRuns.length > 0 && { targets: addressRuns.map((r) => ({ table: r.table, address: range(r.first, r.last) })) }),
        ...(nodes.length > 0 && { nodes: nodes.map((n) => n.key.node) }),
      },
      comment: `learned: ${whoText(b.who)} ${b.action}: ${summary(total)}\nper target: ${per.join(", ")}`,
    });
  }
  return out;
}

/** The kept deny rules and their ids, from the current file's document. */
function denyRules(doc: Document): { nodes: YAMLMap[]; ids: Set<string> } {
  const rules = doc.get("rules", true);
  const nodes: YAMLMap[] = [];
  const ids = new Set<string>();
  if (!isSeq(rules)) return { nodes, ids };
  for (const item of rules.items) {
    if (!isMap(item) || !item.has("deny")) continue;
    nodes.push(item);
    const id = item.get("id");
    if (typeof id === "string") ids.add(id);
  }
  return { nodes, ids };
}

function unique(id: string, taken: Set<string>): string {
  let out = id;
  for (let i = 2; taken.has(out); i++) out = `${id}-${i}`;
  taken.add(out);
  return out;
}

/**
 * Learns allow rules for `options.asset` from `records` (log order) and writes them into the
 * asset's file among `sources` (the current policy directory).
 */
export function suggest(records: Iterable<LogRecord>, sources: readonly PolicySource[], set: PolicySet, options: SuggestOptions): Suggestion {
  const asset = set.assets.get(options.asset);
  if (!asset) throw new Error(`asset "${options.asset}" is not defined in the policy directory (it has: ${[...set.assets.keys()].join(", ") || "none"})`);
  const source = sources.find((s) => s.file === asset.file);
  if (!source) throw new Error(`the policy file of asset "${asset.id}" (${asset.file}) is not among the sources`);

  const buckets = new Map<string, Bucket>();
  const skipped: Record<string, number> = {};
  const skip = (why: string) => void (skipped[why] = (skipped[why] ?? 0) + 1);
  let learned = 0;
  for (const rec of records) {
    if (rec.type !== "decision") continue;
    const r = rec as DecisionRecord;
    if (r.asset !== asset.id || (options.since !== undefined && r.time < options.since)) continue;
    if (r.reason === "denied-by-rule") {
      skip("denied-by-rule");
      continue;
    }
    if (STRUCTURAL_REASONS.has(r.reason) || PRE_POLICY_REASONS.has(r.reason)) {
      skip(r.reason);
      continue;
    }
    const b = rebuild(r, [set]);
    if ("skip" in b) {
      skip(b.skip);
      continue;
    }
    const resolved = resolve(asset, b.op);
    if ("reason" in resolved) {
      skip(resolved.reason);
      continue;
    }
    // `call` goes on methods only; anything else called cannot be allowed by a valid rule.
    if (b.op.action === "call" && resolved.elements.some((e) => e.point?.type !== "method")) {
      skip("call-on-non-method");
      continue;
    }
    learned++;
    const whos: Who[] = b.principal.roles.length > 0 ? [...new Set(b.principal.roles)].map((role) => ({ role })) : [{ sub: b.principal.sub, iss: b.principal.iss }];
    for (const who of whos) {
      const bk = `${whoKey(who)}\u0000${b.op.action}`;
      let bucket = buckets.get(bk);
      if (!bucket) buckets.set(bk, (bucket = { who, action: b.op.action, elements: new Map(), total: new Seen() }));
      bucket.total.add(r);
      let prev: (typeof resolved.elements)[number] | undefined;
      for (const el of resolved.elements) {
        const key: ElementKey = el.point ? { point: el.point.name } : el.node !== undefined ? { node: el.node } : { table: el.table as Table, address: el.address as number };
        const k = elementKey(key);
        let e = bucket.elements.get(k);
        if (!e) bucket.elements.set(k, (e = { key, seen: new Seen() }));
        const continues = !el.point && el.table !== undefined && prev !== undefined && !prev.point && prev.table === el.table && prev.address === (el.address as number) - 1;
        e.seen.add(r, b.op.action === "write" ? { known: el.known, v: el.value } : undefined, !continues);
        prev = el;
      }
    }
  }

  const doc = parseDocument(source.text);
  const kept = denyRules(doc);
  const taken = new Set(kept.ids);
  const proposed = propose(asset, buckets.values());
  const seq = doc.createNode([]) as YAMLSeq;
  kept.nodes.forEach((n, i) => {
    if (i === 0) n.commentBefore = [" kept from the current policy: deny rules state what must never happen; they are not learned", n.commentBefore].filter(Boolean).join("\n");
    seq.items.push(n);
  });
  for (const p of proposed) {
    const node = doc.createNode({ id: unique(p.id, taken), ...p.data }) as YAMLMap;
    for (const k of ["allow", "subjects", "values"]) {
      const v = node.get(k, true);
      if (isMap(v) || isSeq(v)) v.flow = true;
    }
    node.commentBefore = p.comment.split("\n").map((l) => ` ${l}`).join("\n");
    seq.items.push(node);
  }
  const root = doc.contents;
  const pair = isMap(root) ? (root.items as Pair[]).find((it) => isScalar(it.key) && (it.key as YamlScalar).value === "rules") : undefined;
  const header = ` rules suggested by ztgate policy suggest from ${learned} decision${learned === 1 ? "" : "s"}${options.from !== undefined ? ` in ${options.from}` : ""}${options.since !== undefined ? ` since ${options.since}` : ""}${options.generatedAt !== undefined ? ` (${options.generatedAt})` : ""}.\n Review before use: each rule allows exactly what was seen, no more.${asset.mode === "monitor" ? "\n The asset is still in mode: monitor; set mode: enforce once the would-denies under these rules are gone." : ""}`;
  if (pair) {
    pair.value = seq;
    (pair.key as YamlScalar).commentBefore = header;
  } else doc.set("rules", seq);

  const text = doc.toString({ lineWidth: 0 });
  const others = sources.filter((s) => s !== source);
  const compiled = compilePolicies([...others, { file: source.file, text }]);
  return { text, learned, skipped, rules: proposed.length, diagnostics: compiled.diagnostics };
}
