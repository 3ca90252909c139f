// The one enforcement path every front calls (SPEC §3, §6; STYLE "pep/enforce"):
//   decide → hand the decision record to the log (write-ahead) → forward or refuse → record
//   the outcome under the same decision id.
// A front only translates wire requests into Operations and answers from the result.
import type { Decision } from "../pdp/evaluate.js";
import { decide } from "../pdp/evaluate.js";
import type { Operation } from "../pdp/operation.js";
import type { Principal } from "../pdp/principal.js";
import type { PolicySet } from "../pdp/policy-set.js";
import type { Reason } from "../pdp/reasons.js";
import type { RateState } from "../pdp/conditions/rate.js";
import { decisionBody } from "../audit/record.js";
import type { ClientRef, OutcomeStatus, RecordBody } from "../audit/record.js";
import type { Appended } from "../audit/writer.js";
import { AuditUnavailableError } from "../audit/writer.js";
import type { Action } from "../pdp/operation.js";

/** What the enforcement path needs of the decision log (DecisionLog implements it). */
export interface AuditLog {
  append(body: RecordBody): Appended;
  mustAwaitDurable(action: Action): boolean;
  allowsUnlogged(action: Action): boolean;
}

export interface EnforcerDeps {
  /** The policy in force; read once per operation. */
  readonly policy: () => PolicySet;
  readonly log: AuditLog;
  readonly rates: RateState;
  readonly now?: () => number;
  /** Called for every decision (metrics). */
  readonly onDecision?: (d: Decision, op: Operation) => void;
}

export interface Authorization {
  readonly allowed: boolean;
  readonly decision: Decision;
  /** The decision record's id; null when the log could not take it (allow-reads). */
  readonly id: string | null;
}

/** What the device did with a forwarded operation, for the outcome record. */
export interface Forwarded<T> {
  readonly status: OutcomeStatus;
  readonly exception?: number | string;
  readonly result?: T;
}

export interface Enforced<T> {
  readonly allowed: boolean;
  /** One per operation, in order; the first denied one is the reason of a refusal. */
  readonly authorizations: readonly Authorization[];
  readonly refusal?: Authorization;
  readonly forwarded?: Forwarded<T>;
}

function denial(d: Decision, reason: Reason): Decision {
  return { effect: "deny", rule: null, reason, policyRevision: d.policyRevision, mode: d.mode, ...(d.zone !== undefined && { zone: d.zone }) };
}

export class Enforcer {
  private readonly now: () => number;

  constructor(private readonly deps: EnforcerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Decides one operation and hands its record to the log before anything is forwarded. With
   * strict durability, an allowed write waits for its fsync. A log that cannot be written turns
   * the decision into a deny with `audit-unavailable` (reads go on with `onFailure: allow-reads`).
   */
  async authorize(principal: Principal | null, op: Operation, client: ClientRef): Promise<Authorization> {
    const set = this.deps.policy();
    const d: Decision = principal
      ? decide(set, op, principal, { now: this.now(), rates: this.deps.rates })
      : { effect: "deny", rule: null, reason: "no-session", policyRevision: set.revision, mode: "enforce" };
    return this.record(d, principal, op, client);
  }

  /**
   * A refusal decided before the policy is asked (no session, token refused, broadcast, an
   * unknown unit id): logged as a deny like any other.
   */
  async refuse(reason: Reason, principal: Principal | null, op: Operation, client: ClientRef): Promise<Authorization> {
    const d: Decision = { effect: "deny", rule: null, reason, policyRevision: this.deps.policy().revision, mode: "enforce" };
    return this.record(d, principal, op, client);
  }

  private async record(d: Decision, principal: Principal | null, op: Operation, client: ClientRef): Promise<Authorization> {
    const log = this.deps.log;
    let appended: Appended;
    try {
      appended = log.append(decisionBody(d, op, principal, client));
    } catch (e) {
      if (!(e instanceof AuditUnavailableError)) throw e;
      if (d.effect === "allow" && log.allowsUnlogged(op.action)) return this.done({ allowed: true, decision: d, id: null }, op);
      return this.done({ allowed: false, decision: d.effect === "allow" ? denial(d, "audit-unavailable") : d, id: null }, op);
    }
    if (d.effect === "allow" && log.mustAwaitDurable(op.action)) {
      try {
        await appended.durable;
      } catch {
        return this.done({ allowed: false, decision: denial(d, "audit-unavailable"), id: appended.id }, op);
      }
    } else {
      // Group commit: the record is in the chain; a later fsync failure is the log's to report.
      appended.durable.catch(() => undefined);
    }
    return this.done({ allowed: d.effect === "allow", decision: d, id: appended.id }, op);
  }

  private done(a: Authorization, op: Operation): Authorization {
    this.deps.onDecision?.(a.decision, op);
    return a;
  }

  /** Records what the device did with an allowed operation, under its decision's id. */
  outcome(id: string | null, status: OutcomeStatus, latencyMs: number, exception?: number | string): void {
    if (id === null) return;
    try {
      this.deps.log.append({ type: "outcome", ref: id, status, latencyMs: Math.round(latencyMs * 1000) / 1000, ...(exception !== undefined && { exception }) }).durable.catch(() => undefined);
    } catch (e) {
      // The decision is already logged; a lost outcome is counted by the log's own refusals.
      if (!(e instanceof AuditUnavailableError)) throw e;
    }
  }

  /**
   * The straight line for one client request: every operation it maps to (FC23 maps to two) is
   * decided and logged; only if all are allowed is the request forwarded, once; the outcome is
   * recorded for each.
   */
  async enforce<T>(principal: Principal | null, ops: readonly Operation[], client: ClientRef, forward: () => Promise<Forwarded<T>>): Promise<Enforced<T>> {
    const authorizations: Authorization[] = [];
    for (const op of ops) authorizations.push(await this.authorize(principal, op, client));
    const refusal = authorizations.find((a) => !a.allowed);
    if (refusal) return { allowed: false, authorizations, refusal };
    const started = performance.now();
    const forwarded = await forward();
    const latency = performance.now() - started;
    for (const a of authorizations) this.outcome(a.id, forwarded.status, latency, forwarded.exception);
    return { allowed: true, authorizations, forwarded };
  }
}
