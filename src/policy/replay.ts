// `ztgate policy diff OLD NEW --replay LOG`: the impact of a policy change, measured on the
// traffic the gateway actually saw. Every decision record of the log is turned back into the
// Operation and Principal it was decided on and decided again by the same pure core, at the
// record's own time, against both policy sets (each with its own rate counters, fed in log
// order, which is time order). What changes is reported, grouped, with examples.
//
// What a record cannot give back, and what is done about it:
// - refusals decided before the policy (no session, a refused token, an unknown unit id, a log
//   that could not be written, the gateway's own endpoints) carry no operation the policy ever
//   saw: they are counted and skipped;
// - records name the subject by sub, iss and roles only, never its other claims: a decision
//   that a `subjects.claims` rule could have decided (in either set) is counted and left out,
//   not guessed;
// - a write refused for its structure (unknown point, partial point) records no values: skipped.
import { parseDocument } from "yaml";
import type { DecisionRecord, LogRecord, TargetRef } from "../audit/record.js";
import type { Decision } from "../pdp/evaluate.js";
import { candidates, decide, resolve } from "../pdp/evaluate.js";
import type { Operation, Scalar, Target } from "../pdp/operation.js";
import { TABLES } from "../pdp/operation.js";
import type { Principal } from "../pdp/principal.js";
import type { Asset, PolicySet, SubjectMatcher } from "../pdp/policy-set.js";
import type { Reason } from "../pdp/reasons.js";
import { TokenBucketRates } from "../pdp/conditions/rate.js";
import { compileSubjects } from "../pdp/subjects.js";
import type { SubjectsSpec } from "../pdp/subjects.js";
import type { PolicySource } from "./compile.js";

/** What an operation came to: allowed, denied, or allowed only because its asset is in monitor mode. */
export type Outcome = "allow" | "deny" | "would-deny";

export function outcomeOf(d: { effect?: "allow" | "deny"; decision?: "allow" | "deny"; reason: Reason }): Outcome {
  const effect = d.effect ?? d.decision;
  if (effect === "deny") return "deny";
  return d.reason === "allowed" ? "allow" : "would-deny";
}

/** Reasons decided before the policy is asked: such a record holds nothing to decide again. */
export const PRE_POLICY_REASONS: ReadonlySet<Reason> = new Set<Reason>([
  "no-session", "token-invalid", "token-expired", "token-revoked", "audit-unavailable", "unknown-asset", "upstream-unavailable",
  // The end of a held write (SPEC-extension per-write approval): the policy allowed it; a person
  // or the clock refused it afterwards. Re-deciding it would report a false deny → allow.
  "approval-rejected", "approval-timeout", "approval-queue-full",
]);

/** Refusals for the request's shape rather than its permission. */
export const STRUCTURAL_REASONS: ReadonlySet<Reason> = new Set<Reason>(["unknown-point", "partial-point", "unsupported-function"]);

/** Why a record was not decided again. */
export type SkipReason =
  | Reason
  | "gateway-endpoint"
  | "no-subject"
  | "front-refusal"
  | "asset-not-in-either-policy"
  | "values-not-recorded"
  | "malformed-record";

export interface Rebuilt {
  readonly op: Operation;
  readonly principal: Principal;
  /** Decision time, epoch ms (with the record's microseconds as a fraction). */
  readonly at: number;
}

/** `2026-03-04T10:00:00.123456Z` → epoch ms with microseconds; NaN when not a time. */
export function recordTime(time: string): number {
  const ms = Date.parse(time);
  const us = /\.\d{3}(\d{3})Z$/.exec(time);
  return us ? ms + Number(us[1]) / 1000 : ms;
}

// A float write that decoded to NaN/±Infinity is logged as that text (JSON has no such numbers).
const NON_FINITE: Readonly<Record<string, number>> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

function targetFrom(t: TargetRef | undefined): Target | undefined {
  if (!t || typeof t !== "object") return undefined;
  if (typeof t.point === "string") return { kind: "point", point: t.point };
  if (typeof t.node === "string") return { kind: "node", node: t.node };
  if (typeof t.table === "string" && (TABLES as readonly string[]).includes(t.table) && Number.isSafeInteger(t.address) && Number.isSafeInteger(t.count)) {
    return { kind: "range", table: t.table, address: t.address as number, count: t.count as number };
  }
  return undefined;
}

/**
 * The Operation and Principal a decision record was decided on, or why there is none.
 * `assets` are the policy sets the record will be decided against (an asset known to none of
 * them was refused before the policy: an unknown unit id, a listener-level refusal).
 */
export function rebuild(r: DecisionRecord, sets: readonly PolicySet[]): Rebuilt | { skip: SkipReason } {
  if (r.asset === null) return { skip: "gateway-endpoint" };
  if (PRE_POLICY_REASONS.has(r.reason)) return { skip: r.reason };
  if (!r.subject || typeof r.subject.sub !== "string") return { skip: "no-subject" };
  const target = targetFrom(r.target);
  const at = recordTime(r.time);
  if (!target || typeof r.asset !== "string" || Number.isNaN(at)) return { skip: "malformed-record" };
  // The Modbus front names what it refused before the policy with a pseudo point "(…)".
  if (target.kind === "point" && target.point.startsWith("(")) return { skip: "front-refusal" };
  const assets = sets.map((s) => s.assets.get(r.asset as string)).filter((a): a is Asset => a !== undefined);
  if (assets.length === 0) return { skip: "asset-not-in-either-policy" };
  let op: Operation = { asset: r.asset, action: r.action, target, ...(r.client?.address !== undefined && { source: r.client.address }) };
  if (r.action === "write") {
    const values = r.values ?? [];
    if (values.length === 0) return { skip: STRUCTURAL_REASONS.has(r.reason) ? r.reason : "values-not-recorded" };
    if (target.kind === "range") {
      // One raw word (or bit) per address, in order; a value logged without raw words (FC22) is not known in advance.
      const raw = values.every((v) => Array.isArray(v.raw)) ? values.flatMap((v) => v.raw as number[]) : null;
      op = { ...op, raw };
    } else {
      const v = values[0] as NonNullable<DecisionRecord["values"]>[number];
      const point = target.kind === "point" ? assets[0]?.points.get(target.point) : undefined;
      let value: Scalar | undefined = v.value;
      if (typeof value === "string" && value in NON_FINITE && point?.type !== "string") value = v.raw ? undefined : NON_FINITE[value];
      op = { ...op, ...(v.raw && { raw: v.raw }), ...(value !== undefined && { value }) };
    }
  }
  const s = r.subject;
  const principal: Principal = {
    sub: s.sub,
    iss: s.iss,
    roles: Array.isArray(s.roles) ? s.roles : [],
    // The log never records other claims (see the top of this file).
    claims: {},
    ...(s.sessionId !== undefined && { sessionId: s.sessionId }),
    ...(s.jti !== undefined && { tokenId: s.jti }),
    // Not a live session: "explain" is the core's name for a principal built by a tool.
    via: "explain",
  };
  return { op, principal, at };
}

/** asset → rule id → the rule's subject condition without its claims. */
export type ClaimRules = ReadonlyMap<string, ReadonlyMap<string, SubjectMatcher>>;

/**
 * The rules whose `subjects` name claims, read from the policy files' text (the compiled
 * matcher does not say which conditions it holds). Each maps to its subject condition with the
 * claims left out: when that holds for a recorded subject, only the claims could decide.
 */
export function claimRules(sources: readonly PolicySource[]): ClaimRules {
  const out = new Map<string, Map<string, SubjectMatcher>>();
  for (const src of sources) {
    const data: unknown = parseDocument(src.text).toJS();
    if (data === null || typeof data !== "object") continue;
    const f = data as { asset?: unknown; rules?: unknown };
    if (typeof f.asset !== "string" || !Array.isArray(f.rules)) continue;
    for (const r of f.rules as Array<{ id?: unknown; subjects?: unknown }>) {
      const subjects = r?.subjects as (SubjectsSpec & Record<string, unknown>) | "*" | undefined;
      if (typeof r?.id !== "string" || !subjects || subjects === "*" || typeof subjects !== "object" || !subjects.claims) continue;
      const { claims: _claims, ...rest } = subjects;
      const m = out.get(f.asset) ?? new Map<string, SubjectMatcher>();
      m.set(r.id, Object.keys(rest).length > 0 ? compileSubjects(rest) : compileSubjects("*"));
      out.set(f.asset, m);
    }
  }
  return out;
}

/** The claim rules that could have decided `op` for `p` in `asset`: they target it and the rest of their subject holds. */
export function claimRulesTouched(asset: Asset | undefined, op: Operation, p: Principal, claims: ClaimRules): string[] {
  const rules = asset ? claims.get(asset.id) : undefined;
  if (!asset || !rules || rules.size === 0) return [];
  const r = resolve(asset, op);
  if ("reason" in r) return [];
  const hit = new Set<string>();
  for (const el of r.elements) for (const rule of candidates(asset, op, el)) if (rules.get(rule.id)?.holds(p)) hit.add(rule.id);
  return [...hit];
}

export interface Example {
  readonly id: string;
  readonly seq: number;
  readonly time: string;
  readonly action: string;
  readonly target: string;
  readonly values?: string;
}

export interface ChangeGroup {
  readonly asset: string;
  /** `allow→deny`, `deny→allow`, `allow→would-deny`, `would-deny→deny`, … */
  readonly change: string;
  readonly subject: { readonly sub: string; readonly iss: string; readonly roles: readonly string[] };
  readonly old: { readonly rule: string | null; readonly reason: Reason };
  readonly new: { readonly rule: string | null; readonly reason: Reason };
  count: number;
  readonly examples: Example[];
}

export interface ReplayReport {
  readonly oldRevision: string;
  readonly newRevision: string;
  /** Decision records read. */
  readonly decisions: number;
  readonly replayed: number;
  readonly unchanged: number;
  /** Records not decided again, by why. */
  readonly skipped: Readonly<Record<string, number>>;
  /** Decisions a claim-based rule could have decided: left out, not guessed. */
  readonly claimDependent: { readonly count: number; readonly rules: ReadonlyArray<{ readonly asset: string; readonly rule: string; readonly count: number }> };
  /** Records decided under OLD's revision whose replay under OLD came out differently (should be 0). */
  readonly fidelity: { readonly checked: number; readonly differing: number; readonly examples: readonly Example[] };
  readonly changes: { readonly total: number; readonly byChange: Readonly<Record<string, number>>; readonly groups: readonly ChangeGroup[] };
}

export interface ReplayOptions {
  /** Claim-based rules of each set: claimRules() of each directory's files. */
  readonly oldClaims?: ClaimRules;
  readonly newClaims?: ClaimRules;
  /** Examples kept per group; default 3. */
  readonly examples?: number;
}

export function describeTarget(t: TargetRef | undefined): string {
  if (!t) return "?";
  if (t.point !== undefined) return t.point;
  if (t.node !== undefined) return `node:${t.node}`;
  const last = (t.address ?? 0) + (t.count ?? 1) - 1;
  return `${t.table}:${t.address}${last !== t.address ? `-${last}` : ""}`;
}

export function describeValues(r: DecisionRecord): string | undefined {
  if (!r.values || r.values.length === 0) return undefined;
  return r.values.map((v) => `${v.point ?? (v.node !== undefined ? `node:${v.node}` : `${v.table}:${v.address}`)}=${v.value === undefined ? "?" : JSON.stringify(v.value)}`).join(", ");
}

export function exampleOf(r: DecisionRecord): Example {
  const values = describeValues(r);
  return { id: r.id, seq: r.seq, time: r.time, action: r.action, target: describeTarget(r.target), ...(values !== undefined && { values }) };
}

/** Decides a stream of records again against two sets; feed records in log order with add(). */
export class Replayer {
  private readonly oldRates = new TokenBucketRates();
  private readonly newRates = new TokenBucketRates();
  private readonly oldClaims: ClaimRules;
  private readonly newClaims: ClaimRules;
  private readonly perGroup: number;
  private decisions = 0;
  private replayed = 0;
  private unchanged = 0;
  private readonly skipped: Record<string, number> = {};
  private claimCount = 0;
  private readonly claimHits = new Map<string, { asset: string; rule: string; count: number }>();
  private fidelity = { checked: 0, differing: 0, examples: [] as Example[] };
  private readonly groups = new Map<string, ChangeGroup>();
  private readonly byChange: Record<string, number> = {};
  private total = 0;

  constructor(
    private readonly oldSet: PolicySet,
    private readonly newSet: PolicySet,
    options: ReplayOptions = {},
  ) {
    this.oldClaims = options.oldClaims ?? new Map();
    this.newClaims = options.newClaims ?? new Map();
    this.perGroup = options.examples ?? 3;
  }

  add(record: LogRecord): void {
    if (record.type !== "decision") return;
    const r = record as DecisionRecord;
    this.decisions++;
    const b = rebuild(r, [this.oldSet, this.newSet]);
    if ("skip" in b) {
      this.skipped[b.skip] = (this.skipped[b.skip] ?? 0) + 1;
      return;
    }
    const { op, principal, at } = b;
    const touched = new Set([
      ...claimRulesTouched(this.oldSet.assets.get(op.asset), op, principal, this.oldClaims),
      ...claimRulesTouched(this.newSet.assets.get(op.asset), op, principal, this.newClaims),
    ]);
    if (touched.size > 0) {
      this.claimCount++;
      for (const rule of touched) {
        const k = `${op.asset}\u0000${rule}`;
        const h = this.claimHits.get(k) ?? { asset: op.asset, rule, count: 0 };
        h.count++;
        this.claimHits.set(k, h);
      }
      return;
    }
    this.replayed++;
    const before = decide(this.oldSet, op, principal, { now: at, rates: this.oldRates });
    const after = decide(this.newSet, op, principal, { now: at, rates: this.newRates });
    if (r.policyRevision === this.oldSet.revision) {
      this.fidelity.checked++;
      if (outcomeOf(before) !== outcomeOf(r) || before.reason !== r.reason) {
        this.fidelity.differing++;
        if (this.fidelity.examples.length < this.perGroup) this.fidelity.examples.push(exampleOf(r));
      }
    }
    const from = outcomeOf(before);
    const to = outcomeOf(after);
    if (from === to) {
      this.unchanged++;
      return;
    }
    this.record(r, principal, before, after, `${from}→${to}`);
  }

  private record(r: DecisionRecord, p: Principal, before: Decision, after: Decision, change: string): void {
    this.total++;
    this.byChange[change] = (this.byChange[change] ?? 0) + 1;
    const key = [r.asset, change, p.iss, p.sub, p.roles.join(","), before.rule, before.reason, after.rule, after.reason].join("\u0000");
    let g = this.groups.get(key);
    if (!g) {
      g = {
        asset: r.asset as string, change, subject: { sub: p.sub, iss: p.iss, roles: [...p.roles] },
        old: { rule: before.rule, reason: before.reason }, new: { rule: after.rule, reason: after.reason }, count: 0, examples: [],
      };
      this.groups.set(key, g);
    }
    g.count++;
    if (g.examples.length < this.perGroup) g.examples.push(exampleOf(r));
  }

  report(): ReplayReport {
    const groups = [...this.groups.values()].sort((a, b) => (a.asset < b.asset ? -1 : a.asset > b.asset ? 1 : b.count - a.count || (a.change < b.change ? -1 : 1)));
    return {
      oldRevision: this.oldSet.revision,
      newRevision: this.newSet.revision,
      decisions: this.decisions,
      replayed: this.replayed,
      unchanged: this.unchanged,
      skipped: { ...this.skipped },
      claimDependent: { count: this.claimCount, rules: [...this.claimHits.values()].sort((a, b) => b.count - a.count) },
      fidelity: { ...this.fidelity, examples: [...this.fidelity.examples] },
      changes: { total: this.total, byChange: { ...this.byChange }, groups },
    };
  }
}

/** Replays `records` (in log order) against both sets. */
export function replay(records: Iterable<LogRecord>, oldSet: PolicySet, newSet: PolicySet, options: ReplayOptions = {}): ReplayReport {
  const r = new Replayer(oldSet, newSet, options);
  for (const rec of records) r.add(rec);
  return r.report();
}

function rule(x: { rule: string | null; reason: Reason }): string {
  return `${x.rule ?? "(no rule)"} (${x.reason})`;
}

/** The report as people read it: a summary, then the changes by asset. */
export function formatReplay(rep: ReplayReport): string[] {
  const out: string[] = [];
  const skipped = Object.entries(rep.skipped).sort((a, b) => b[1] - a[1]);
  out.push(`policy ${rep.oldRevision} → ${rep.newRevision}: ${rep.decisions} decisions in the log, ${rep.replayed} replayed, ${rep.unchanged} unchanged, ${rep.changes.total} changed`);
  if (skipped.length > 0) out.push(`not replayable (decided before the policy, or nothing to decide again): ${skipped.map(([k, n]) => `${k} ${n}`).join(", ")}`);
  if (rep.claimDependent.count > 0) {
    out.push(`not replayed: ${rep.claimDependent.count} decisions a rule with subjects.claims could have decided (the log records no claims): ${rep.claimDependent.rules.map((r) => `${r.asset}/${r.rule} ${r.count}`).join(", ")}`);
  }
  if (rep.fidelity.differing > 0) {
    out.push(`warning: ${rep.fidelity.differing} of ${rep.fidelity.checked} decisions logged under revision ${rep.oldRevision} come out differently when replayed against it (e.g. seq ${rep.fidelity.examples.map((e) => e.seq).join(", ")}): rate counters or state before the log began`);
  }
  if (rep.changes.total === 0) {
    out.push("no decision changes");
    return out;
  }
  out.push(`changes: ${Object.entries(rep.changes.byChange).map(([k, n]) => `${k} ${n}`).join(", ")}`);
  let asset: string | undefined;
  for (const g of rep.changes.groups) {
    if (g.asset !== asset) {
      asset = g.asset;
      out.push("", `asset ${asset}:`);
    }
    out.push(`  ${g.change.toUpperCase()}  ${g.count}×  subject ${g.subject.sub} [${g.subject.roles.join(", ")}]  rule ${rule(g.old)} → ${rule(g.new)}`);
    for (const e of g.examples) out.push(`      seq ${e.seq} ${e.time} ${e.action} ${e.target}${e.values !== undefined ? ` ${e.values}` : ""}  (id ${e.id})`);
  }
  return out;
}
