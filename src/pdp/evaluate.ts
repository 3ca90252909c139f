// The policy decision point: principal + operation + time (+ rate counters) → decision.
// Pure: no I/O, no clock, no randomness; everything it needs is passed in.
//
// Semantics (SPEC §4.3): deny by default; a matching deny beats any allow; a request that
// covers several points or addresses is allowed only when every one of them is; the first
// matching allow (file order) is reported; when nothing allows, the reason names the
// closest miss (an allow rule that matched subject, action and target but failed a condition).
import type { Operation, Scalar, Table } from "./operation.js";
import type { Principal } from "./principal.js";
import type { Asset, Point, PolicySet, Rule } from "./policy-set.js";
import type { RateState } from "./conditions/rate.js";
import type { Reason } from "./reasons.js";
import { decodeRaw, numericValue } from "./values.js";
import { WRITABLE_TABLES } from "./operation.js";

export interface DecideContext {
  /** Decision time, epoch milliseconds. */
  readonly now: number;
  /** Rate counters; without them `rate` conditions are checked against a fresh bucket. */
  readonly rates?: RateState;
  /** Peek at rate counters without consuming (explain, policy tests). */
  readonly dryRun?: boolean;
}

/** One written value as the log records it: where, raw wire words, decoded value. */
export interface WrittenValue {
  readonly point?: string;
  readonly table?: Table;
  readonly address?: number;
  readonly node?: string;
  readonly raw?: readonly number[];
  readonly value?: Scalar;
}

export interface Decision {
  readonly effect: "allow" | "deny";
  readonly rule: string | null;
  readonly reason: Reason;
  readonly policyRevision: string;
  readonly mode: "enforce" | "monitor";
  readonly zone?: string;
  readonly values?: readonly WrittenValue[];
}

/** One thing a request touches: a named point, or an unnamed address or node. */
export interface Element {
  readonly point?: Point;
  readonly table?: Table;
  readonly address?: number;
  readonly node?: string;
  /** For writes: the raw value(s) and the decoded value; `known` false for FC22-style writes. */
  readonly known: boolean;
  readonly raw?: readonly number[];
  readonly value?: Scalar;
}

export type Resolved = { elements: Element[] } | { reason: Reason };

/** Turns the operation's target into the points and raw addresses it touches. */
export function resolve(asset: Asset, op: Operation): Resolved {
  const t = op.target;
  const write = op.action === "write";
  if (t.kind === "point" || t.kind === "node") {
    const point = t.kind === "point" ? asset.points.get(t.point) : asset.pointByNode.get(t.node);
    if (t.kind === "point" && !point) return { reason: "unknown-point" };
    if (t.kind === "node" && asset.protocol !== "opcua") return { reason: "unknown-point" };
    // Discrete inputs, input registers and methods are never written (`allow: ["*"]` names write too).
    if (write && point && !point.writable) return { reason: "unsupported-function" };
    if (!write) return { elements: [point ? { point, known: true } : { node: (t as { node: string }).node, known: true }] };
    let value = op.value;
    if (value === undefined && op.raw && point) value = decodeRaw(point.type, point.words, op.raw);
    const base = point ? { point } : { node: (t as { node: string }).node };
    return { elements: [{ ...base, known: value !== undefined, ...(op.raw && { raw: op.raw }), ...(value !== undefined && { value }) }] };
  }
  if (asset.protocol !== "modbus") return { reason: "unsupported-function" };
  if (write && !WRITABLE_TABLES.has(t.table)) return { reason: "unsupported-function" };
  const at = asset.pointAt[t.table];
  const elements: Element[] = [];
  const last = t.address + t.count - 1;
  const raw = op.raw;
  for (let a = t.address; a <= last; ) {
    const p = at?.get(a);
    if (p && p.address !== undefined) {
      if (p.address < t.address || p.address + p.size - 1 > last) return { reason: "partial-point" };
      if (write && raw) {
        const words = raw.slice(a - t.address, a - t.address + p.size);
        elements.push({ point: p, known: true, raw: words, value: decodeRaw(p.type, p.words, words) });
      } else elements.push({ point: p, known: !write });
      a += p.size;
    } else {
      const v = write && raw ? raw[a - t.address] : undefined;
      elements.push(v !== undefined ? { table: t.table, address: a, known: true, raw: [v], value: v } : { table: t.table, address: a, known: !write });
      a += 1;
    }
  }
  return { elements };
}

/** The rules that target one element, in file order. */
export function candidates(asset: Asset, op: Operation, el: Element): readonly Rule[] {
  const idx = asset.actions.get(op.action);
  if (!idx) return [];
  if (el.point) {
    const covering = idx.byPoint.get(el.point.name) ?? [];
    const p = el.point;
    if (p.table === undefined || p.address === undefined || p.size === 1) return covering;
    // An allow must cover a multi-register point whole, but a deny on any one of its words denies it.
    const first = p.address, last = p.address + p.size - 1;
    const extra = (idx.byTable[p.table] ?? []).filter((r) => r.effect === "deny" && !covering.includes(r) &&
      (r.ranges[p.table as Table] ?? []).some(([x, y]) => x <= last && first <= y));
    return extra.length === 0 ? covering : [...covering, ...extra].sort((a, b) => a.index - b.index);
  }
  if (el.table !== undefined && el.address !== undefined) {
    const a = el.address;
    return (idx.byTable[el.table] ?? []).filter((r) => (r.ranges[el.table as Table] ?? []).some(([x, y]) => x <= a && a <= y));
  }
  const node = el.node ?? "";
  return idx.byNode.filter((r) => r.nodes.some((re) => re.test(node)));
}

export function rateKey(asset: Asset, rule: Rule, p: Principal): string {
  return `${asset.id}\u0000${rule.id}\u0000${p.iss}\u0000${p.sub}`;
}

/** Whether the written value of an element fits the rule's `values` and the point's own min/max. */
export function valuesHold(rule: Rule, el: Element, write: boolean): boolean {
  if (!write) return true;
  const pmin = el.point?.min;
  const pmax = el.point?.max;
  const rmin = rule.values?.min;
  const rmax = rule.values?.max;
  if (pmin === undefined && pmax === undefined && rmin === undefined && rmax === undefined) return true;
  if (!el.known || el.value === undefined) return false;
  const v = numericValue(el.value);
  if (v === undefined) return false;
  return !((pmin !== undefined && v < pmin) || (pmax !== undefined && v > pmax) || (rmin !== undefined && v < rmin) || (rmax !== undefined && v > rmax));
}

// Per-decision memo of the element-independent checks of a rule (subject, from, when).
export const UNKNOWN = 0, SUBJECT_MISS = 1, PASS = 2, SOURCE_MISS = 3, TIME_MISS = 4;
const MISS_REASON: Record<number, Reason> = { [SOURCE_MISS]: "source-not-allowed", [TIME_MISS]: "outside-time-window" };

export function preCheck(rule: Rule, p: Principal, op: Operation, now: number): number {
  if (!rule.subjects.holds(p)) return SUBJECT_MISS;
  if (rule.from && !rule.from.holds(op.source)) return SOURCE_MISS;
  if (rule.when && !rule.when.holds(now)) return TIME_MISS;
  return PASS;
}

export function decide(set: PolicySet, op: Operation, principal: Principal, ctx: DecideContext): Decision {
  const asset = set.assets.get(op.asset);
  if (!asset) return { effect: "deny", rule: null, reason: "unknown-asset", policyRevision: set.revision, mode: "enforce" };
  const done = (effect: "allow" | "deny", rule: string | null, reason: Reason, values?: WrittenValue[]): Decision => {
    const monitored = effect === "deny" && asset.mode === "monitor";
    return {
      effect: monitored ? "allow" : effect, rule, reason, policyRevision: set.revision, mode: asset.mode,
      ...(asset.zone !== undefined && { zone: asset.zone }), ...(values && { values }),
    };
  };
  const r = resolve(asset, op);
  const write = op.action === "write";
  const values = write && "elements" in r ? writtenValues(r.elements) : undefined;
  if ("reason" in r) return done("deny", null, r.reason);

  const memo = new Uint8Array(asset.rules.length);
  let firstMiss: { rule: Rule; reason: Reason } | null | undefined;
  const used: Rule[] = [];
  for (const el of r.elements) {
    let allowedBy: Rule | undefined;
    let miss: { rule: Rule; reason: Reason } | undefined;
    for (const rule of candidates(asset, op, el)) {
      if (rule.effect === "allow" && allowedBy) continue;
      let pre = memo[rule.index] ?? UNKNOWN;
      if (pre === UNKNOWN) memo[rule.index] = pre = preCheck(rule, principal, op, ctx.now);
      if (pre === SUBJECT_MISS) continue;
      if (rule.effect === "deny") {
        if (pre === PASS) return done("deny", rule.id, "denied-by-rule", values);
        continue;
      }
      if (pre !== PASS) {
        miss ??= { rule, reason: MISS_REASON[pre] as Reason };
        continue;
      }
      if (!valuesHold(rule, el, write)) {
        miss ??= { rule, reason: "value-out-of-range" };
        continue;
      }
      if (rule.rate && ctx.rates && !ctx.rates.peek(rateKey(asset, rule, principal), rule.rate, ctx.now)) {
        miss ??= { rule, reason: "rate-limited" };
        continue;
      }
      allowedBy = rule;
    }
    if (allowedBy) {
      if (!used.includes(allowedBy)) used.push(allowedBy);
    } else if (firstMiss === undefined) firstMiss = miss ?? null;
  }
  if (firstMiss !== undefined) return done("deny", firstMiss?.rule.id ?? null, firstMiss?.reason ?? "no-matching-rule", values);
  if (used.length === 0) return done("deny", null, "no-matching-rule", values);
  if (ctx.rates && !ctx.dryRun) for (const rule of used) if (rule.rate) ctx.rates.take(rateKey(asset, rule, principal), rule.rate, ctx.now);
  const reported = used.reduce((a, b) => (b.index < a.index ? b : a));
  return done("allow", reported.id, "allowed", values);
}

function writtenValues(elements: readonly Element[]): WrittenValue[] {
  return elements.map((e) => ({
    ...(e.point && { point: e.point.name }),
    ...(e.point?.table !== undefined ? { table: e.point.table, address: e.point.address as number } : e.table !== undefined && { table: e.table, address: e.address as number }),
    ...((e.point?.node ?? e.node) !== undefined && { node: (e.point?.node ?? e.node) as string }),
    ...(e.raw && { raw: e.raw }),
    ...(e.value !== undefined && { value: e.value }),
  }));
}
