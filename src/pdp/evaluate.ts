// The policy decision point: principal + operation + time (+ rate counters) → decision.
// Pure: no I/O, no clock, no randomness; everything it needs is passed in.
//
// Semantics (SPEC §4.3): deny by default; a matching deny beats any allow; a request that
// covers several points or addresses is allowed only when every one of them is; the first
// matching allow (file order) is reported; when nothing allows, the reason names the
// closest miss (an allow rule that matched subject, action and target but failed a condition).
import type { Masks, Operation, Scalar, Table } from "./operation.js";
import type { Principal } from "./principal.js";
import type { ActionIndex, Approval, Asset, Point, PolicySet, Rule } from "./policy-set.js";
import { rulesAt } from "./policy-set.js";
import type { RateState } from "./conditions/rate.js";
import type { Reason } from "./reasons.js";
import { decodeRaw, numericValue } from "./values.js";
import { roleMaskOf } from "./subjects.js";
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
  /** FC22: the masks written (the value itself depends on the register's current value). */
  readonly mask?: Masks;
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
  /**
   * Set on an allow whose rule says `approval` (writes and calls only): the operation is to be
   * held until an approver decides (pep/approvals.ts). When several rules allow parts of one
   * request, the first of them (file order) that asks for approval names it.
   */
  readonly approval?: Approval;
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

/**
 * Walks what a target touches without building anything: `visit` gets each named point or
 * unnamed address (or node) with the raw offset of its value; a structural problem comes back
 * as a reason. decide() runs on this directly; resolve() builds Elements from it.
 */
function walk(
  asset: Asset,
  op: Operation,
  visit: (point: Point | undefined, table: Table | undefined, address: number, node: string | undefined, offset: number) => boolean,
): Reason | undefined {
  const t = op.target;
  const write = op.action === "write";
  if (t.kind === "point" || t.kind === "node") {
    const point = t.kind === "point" ? asset.points.get(t.point) : asset.pointByNode.get(t.node);
    if (t.kind === "point" && !point) return "unknown-point";
    if (t.kind === "node" && asset.protocol !== "opcua") return "unknown-point";
    // Discrete inputs, input registers and methods are never written (`allow: ["*"]` names write too).
    if (write && point && !point.writable) return "unsupported-function";
    visit(point, point?.table, point?.address ?? -1, point ? point.node : (t as { node: string }).node, 0);
    return undefined;
  }
  if (asset.protocol !== "modbus") return "unsupported-function";
  if (write && !WRITABLE_TABLES.has(t.table)) return "unsupported-function";
  const at = asset.pointAt[t.table];
  const last = t.address + t.count - 1;
  // A point only partly inside the range is refused before anything is judged.
  const head = at?.get(t.address);
  const tail = at?.get(last);
  if ((head && (head.address as number) < t.address) || (tail && (tail.address as number) + tail.size - 1 > last)) return "partial-point";
  for (let a = t.address; a <= last; ) {
    const p = at?.get(a);
    if (!visit(p, t.table, a, undefined, a - t.address)) return undefined;
    a += p ? p.size : 1;
  }
  return undefined;
}

/** The written value of one element: from `value` (points, nodes) or decoded from `raw`. */
function elementValue(op: Operation, point: Point | undefined, offset: number): Scalar | undefined {
  if (op.target.kind !== "range") return op.value ?? (op.raw && point ? decodeRaw(point.type, point.words, op.raw, 0) : undefined);
  const raw = op.raw;
  if (!raw) return undefined;
  return point ? decodeRaw(point.type, point.words, raw, offset) : raw[offset];
}

/** Turns the operation's target into the points and raw addresses it touches. */
export function resolve(asset: Asset, op: Operation): Resolved {
  const write = op.action === "write";
  const elements: Element[] = [];
  const reason = walk(asset, op, (point, table, address, node, offset) => {
    const value = write ? elementValue(op, point, offset) : undefined;
    const raw = write && op.raw ? (op.target.kind === "range" ? op.raw.slice(offset, offset + (point?.size ?? 1)) : op.raw) : undefined;
    elements.push({
      ...(point && { point }),
      ...(!point && table !== undefined && { table, address }),
      ...(!point && node !== undefined && { node }),
      known: !write || value !== undefined,
      ...(raw && { raw }),
      ...(value !== undefined && { value }),
    });
    return true;
  });
  return reason !== undefined ? { reason } : { elements };
}

function coversNode(rule: Rule, node: string): boolean {
  for (const re of rule.nodes) if (re.test(node)) return true;
  return false;
}

/** The rules of the action index that may apply to one element (exact for points and addresses). */
function pool(idx: ActionIndex, point: Point | undefined, table: Table | undefined, address: number, node: string | undefined): readonly Rule[] {
  if (point) return idx.byPoint.get(point.name) ?? NONE;
  if (table !== undefined) return rulesAt(idx.byTable[table], address);
  return node !== undefined ? idx.byNode : NONE;
}

/** Only node patterns need a check beyond the index. */
function targets(rule: Rule, point: Point | undefined, table: Table | undefined, node: string | undefined): boolean {
  return point !== undefined || table !== undefined || (node !== undefined && coversNode(rule, node));
}

const NONE: readonly Rule[] = [];

/** The rules that target one element, in file order. */
export function candidates(asset: Asset, op: Operation, el: Element): readonly Rule[] {
  const idx = asset.actions.get(op.action);
  if (!idx) return NONE;
  const node = el.point ? el.point.node : el.node;
  const table = el.point ? el.point.table : el.table;
  return pool(idx, el.point, table, el.address ?? -1, node).filter((r) => targets(r, el.point, table, node));
}

export function rateKey(asset: Asset, rule: Rule, p: Principal): string {
  return `${asset.id}\u0000${rule.id}\u0000${p.iss}\u0000${p.sub}`;
}

/** Whether a written value fits the rule's `values` and the point's own min/max (`undefined` = not known in advance). */
function valueFits(rule: Rule, point: Point | undefined, value: Scalar | undefined, write: boolean): boolean {
  if (!write) return true;
  const pmin = point?.min;
  const pmax = point?.max;
  const rmin = rule.values?.min;
  const rmax = rule.values?.max;
  if (pmin === undefined && pmax === undefined && rmin === undefined && rmax === undefined) return true;
  if (value === undefined) return false;
  const v = numericValue(value);
  if (v === undefined) return false;
  return !((pmin !== undefined && v < pmin) || (pmax !== undefined && v > pmax) || (rmin !== undefined && v < rmin) || (rmax !== undefined && v > rmax));
}

/** Whether the written value of an element fits the rule's `values` and the point's own min/max. */
export function valuesHold(rule: Rule, el: Element, write: boolean): boolean {
  return valueFits(rule, el.point, el.known ? el.value : undefined, write);
}

// The element-independent checks of a rule (subject, from, when), memoized per decision.
export const UNKNOWN = 0, SUBJECT_MISS = 1, PASS = 2, SOURCE_MISS = 3, TIME_MISS = 4;
const MISS_REASON: Record<number, Reason> = { [SOURCE_MISS]: "source-not-allowed", [TIME_MISS]: "outside-time-window" };

/** `roles`: the principal's roleMaskOf, when the caller has it. */
export function preCheck(rule: Rule, p: Principal, op: Operation, now: number, roles?: number): number {
  const mask = rule.roleMask;
  if (mask !== undefined ? (mask & (roles ?? roleMaskOf(p.roles))) === 0 : !rule.subjects.holds(p)) return SUBJECT_MISS;
  if (rule.from && !rule.from.holds(op.source)) return SOURCE_MISS;
  if (rule.when && !rule.when.holds(now)) return TIME_MISS;
  return PASS;
}

// Structural refusals are not policy: monitor mode does not turn them into allows.
const STRUCTURAL: ReadonlySet<Reason> = new Set<Reason>(["unknown-point", "partial-point", "unsupported-function"]);

function decision(set: PolicySet, asset: Asset | undefined, effect: "allow" | "deny", rule: string | null, reason: Reason, values: WrittenValue[] | undefined): Decision {
  const mode = asset?.mode ?? "enforce";
  const monitored = effect === "deny" && mode === "monitor" && !STRUCTURAL.has(reason);
  const d: { -readonly [K in keyof Decision]: Decision[K] } = { effect: monitored ? "allow" : effect, rule, reason, policyRevision: set.revision, mode };
  if (asset?.zone !== undefined) d.zone = asset.zone;
  if (values) d.values = values;
  return d;
}

// Per-decision memo without allocation: entries are tagged with a generation number.
// decide() is synchronous and never re-entered, so one module-level buffer serves every call.
let memo = new Uint32Array(64);
let generation = 0;

export function decide(set: PolicySet, op: Operation, principal: Principal, ctx: DecideContext): Decision {
  const asset = set.assets.get(op.asset);
  if (!asset) return decision(set, undefined, "deny", null, "unknown-asset", undefined);
  const write = op.action === "write";
  const idx = asset.actions.get(op.action);
  if (memo.length < asset.rules.length) memo = new Uint32Array(asset.rules.length * 2);
  if (++generation > 0x0fffffff) {
    generation = 1;
    memo.fill(0);
  }
  const gen = generation << 3;
  let deniedBy: Rule | undefined;
  let missed = false;
  let missRule: Rule | undefined;
  let missReason: Reason = "no-matching-rule";
  let reported: Rule | undefined;
  let rated: Rule[] | undefined;
  let approving: Rule | undefined;
  let touched = 0;
  const roles = roleMaskOf(principal.roles);

  const reason = walk(asset, op, (point, table, address, node, offset) => {
    touched++;
    const value = write ? elementValue(op, point, offset) : undefined;
    let allowedBy: Rule | undefined;
    let miss: Rule | undefined;
    let why: Reason = "no-matching-rule";
    for (const rule of idx ? pool(idx, point, table, address, node) : NONE) {
      if (rule.effect === "allow" && allowedBy) continue;
      if (!targets(rule, point, table, node)) continue;
      const m = memo[rule.index] as number;
      let pre = (m & ~7) === gen ? m & 7 : UNKNOWN;
      if (pre === UNKNOWN) memo[rule.index] = gen | (pre = preCheck(rule, principal, op, ctx.now, roles));
      if (pre === SUBJECT_MISS) continue;
      if (rule.effect === "deny") {
        if (pre === PASS) {
          deniedBy = rule;
          return false;
        }
        continue;
      }
      if (miss) {
        if (pre !== PASS || !valueFits(rule, point, value, write)) continue;
      } else if (pre !== PASS) {
        miss = rule;
        why = MISS_REASON[pre] as Reason;
        continue;
      } else if (!valueFits(rule, point, value, write)) {
        miss = rule;
        why = "value-out-of-range";
        continue;
      }
      if (rule.rate && ctx.rates && !ctx.rates.peek(rateKey(asset, rule, principal), rule.rate, ctx.now)) {
        if (!miss) {
          miss = rule;
          why = "rate-limited";
        }
        continue;
      }
      allowedBy = rule;
    }
    if (allowedBy) {
      if (!reported || allowedBy.index < reported.index) reported = allowedBy;
      if (allowedBy.rate && !rated?.includes(allowedBy)) (rated ??= []).push(allowedBy);
      if (allowedBy.approval !== undefined && (!approving || allowedBy.index < approving.index)) approving = allowedBy;
    } else if (!missed) {
      missed = true;
      missRule = miss;
      missReason = why;
    }
    return true;
  });
  if (reason !== undefined) return decision(set, asset, "deny", null, reason, undefined);
  const values = write ? writtenValues(asset, op) : undefined;
  if (deniedBy) return decision(set, asset, "deny", deniedBy.id, "denied-by-rule", values);
  if (missed || !reported || touched === 0) return decision(set, asset, "deny", missRule?.id ?? null, missReason, values);
  if (rated && ctx.rates && !ctx.dryRun) for (const rule of rated) ctx.rates.take(rateKey(asset, rule, principal), rule.rate as NonNullable<Rule["rate"]>, ctx.now);
  const d = decision(set, asset, "allow", reported.id, "allowed", values);
  return approving !== undefined && (write || op.action === "call") ? { ...d, approval: approving.approval as Approval } : d;
}

/** What the log records of a write: every point or address with its raw words and decoded value. */
function writtenValues(asset: Asset, op: Operation): WrittenValue[] {
  const out: WrittenValue[] = [];
  const range = op.target.kind === "range";
  walk(asset, op, (point, table, address, node, offset) => {
    // Keys in code-point order: the decision log can then serialize it canonically as is.
    const v: { -readonly [K in keyof WrittenValue]: WrittenValue[K] } = {};
    if (table !== undefined) v.address = address;
    if (op.mask) v.mask = op.mask;
    if (node !== undefined) v.node = node;
    if (point) v.point = point.name;
    if (op.raw) v.raw = range ? op.raw.slice(offset, offset + (point?.size ?? 1)) : op.raw;
    if (table !== undefined) v.table = table;
    const value = elementValue(op, point, offset);
    if (value !== undefined) v.value = value;
    out.push(v);
    return true;
  });
  return out;
}
