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
import { Outcome, decisionBody, isoMicros } from "../audit/record.js";
import type { ClientRef, OutcomeStatus, RecordBody } from "../audit/record.js";
import type { Appended } from "../audit/writer.js";
import { AuditUnavailableError } from "../audit/writer.js";
import type { Action } from "../pdp/operation.js";
import type { ApprovalQueue, Ticket } from "./approvals.js";

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
  /**
   * Called once per forwarded request (metrics): `gatewayMs` from the call of `enforce()` until
   * the request is handed to the device (decisions and log appends), `deviceMs` the device's
   * answer time. Not called for a request that waited for an approval (that wait is a person's).
   */
  readonly onOutcome?: (client: ClientRef, status: OutcomeStatus, gatewayMs: number, deviceMs: number) => void;
  /** Where writes allowed by a rule with `approval` wait; without it such writes are refused (`approval-queue-full`). */
  readonly approvals?: ApprovalQueue;
}

/**
 * What a front does with a write that waits for approval: `wait` keeps the request open until
 * an approver decides (or the approval times out); `ack` answers at once (`held` in the
 * result) and forwards the write later if it is approved.
 */
export type ApprovalHold = "wait" | "ack";

export interface Authorization {
  readonly allowed: boolean;
  readonly decision: Decision;
  /** The decision record's id; null when the log could not take it (allow-reads). */
  readonly id: string | null;
  /** Set when the operation is allowed but held for approval (pep/approvals.ts). */
  readonly held?: Ticket;
}

/** What the device did with a forwarded operation, for the outcome record. */
export interface Forwarded<T> {
  readonly status: OutcomeStatus;
  readonly exception?: number | string;
  readonly result?: T;
  /** Answered from what the gateway holds of the device (an OPC UA read within maxAge), no older than this many ms. */
  readonly cacheAgeMs?: number;
}

export interface Enforced<T> {
  readonly allowed: boolean;
  /** One per operation, in order; the first denied one is the reason of a refusal. */
  readonly authorizations: readonly Authorization[];
  readonly refusal?: Authorization;
  readonly forwarded?: Forwarded<T>;
  /** With hold `ack`: the request is held for approval (not forwarded yet); `settled` says how it ends. */
  readonly held?: { readonly id: string; readonly expiresAt: number; readonly settled: Promise<Enforced<T>> };
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
  authorize(principal: Principal | null, op: Operation, client: ClientRef): Promise<Authorization> {
    try {
      return settled(this.authorizeNow(principal, op, client));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /**
   * A refusal decided before the policy is asked (no session, token refused, broadcast, an
   * unknown unit id): logged as a deny like any other.
   */
  refuse(reason: Reason, principal: Principal | null, op: Operation, client: ClientRef): Promise<Authorization> {
    try {
      const d: Decision = { effect: "deny", rule: null, reason, policyRevision: this.deps.policy().revision, mode: "enforce" };
      return settled(this.record(d, principal, op, client));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** authorize(), without a promise unless the operation has to wait for the log (strict durability). */
  private authorizeNow(principal: Principal | null, op: Operation, client: ClientRef, dryRun = false): Authorization | Promise<Authorization> {
    const set = this.deps.policy();
    const d: Decision = principal
      ? decide(set, op, principal, { now: this.now(), rates: this.deps.rates, ...(dryRun && { dryRun }) })
      : { effect: "deny", rule: null, reason: "no-session", policyRevision: set.revision, mode: "enforce" };
    return this.record(d, principal, op, client);
  }

  private record(d: Decision, principal: Principal | null, op: Operation, client: ClientRef): Authorization | Promise<Authorization> {
    if (d.approval !== undefined && d.effect === "allow" && principal) return this.recordHeld(d, principal, op, client);
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
      const id = appended.id;
      return appended.durable.then(
        () => this.done({ allowed: true, decision: d, id }, op),
        () => this.done({ allowed: false, decision: denial(d, "audit-unavailable"), id }, op),
      );
    }
    // Group commit: the record is in the chain; a later fsync failure is the log's to report.
    ignoreRejection(appended.durable);
    return this.done({ allowed: d.effect === "allow", decision: d, id: appended.id }, op);
  }

  /** An allowed write that needs approval: a place in the queue, then its record (naming the approval), then held. */
  private recordHeld(d: Decision, principal: Principal, op: Operation, client: ClientRef): Authorization | Promise<Authorization> {
    const approval = d.approval as NonNullable<Decision["approval"]>;
    const ticket = this.deps.approvals?.reserve(approval);
    const { approval: _approval, ...plain } = d;
    if (!ticket) return this.record(denial(plain, "approval-queue-full"), principal, op, client);
    const queue = this.deps.approvals as ApprovalQueue;
    const log = this.deps.log;
    let appended: Appended;
    try {
      // The record says the write is pending, under which approval; the log canonicalizes key order.
      const body = { ...decisionBody(d, op, principal, client), approval: { expires: isoMicros(ticket.expiresAt), id: ticket.id, roles: ticket.roles, status: "pending" } };
      appended = log.append(body);
    } catch (e) {
      queue.cancel(ticket);
      if (!(e instanceof AuditUnavailableError)) throw e;
      return this.done({ allowed: false, decision: denial(plain, "audit-unavailable"), id: null }, op);
    }
    const id = appended.id;
    const held = (): Authorization => {
      queue.hold(ticket, { decision: d, principal, op, client, ref: id });
      return this.done({ allowed: true, decision: d, id, held: ticket }, op);
    };
    if (log.mustAwaitDurable(op.action)) {
      return appended.durable.then(held, () => {
        queue.cancel(ticket);
        return this.done({ allowed: false, decision: denial(plain, "audit-unavailable"), id }, op);
      });
    }
    ignoreRejection(appended.durable);
    return held();
  }

  private done(a: Authorization, op: Operation): Authorization {
    this.deps.onDecision?.(a.decision, op);
    return a;
  }

  /** Records what the device did with an allowed operation, under its decision's id. */
  outcome(id: string | null, status: OutcomeStatus, latencyMs: number, exception?: number | string, cacheAgeMs?: number): void {
    if (id === null) return;
    const body = new Outcome(id, status, Math.round(latencyMs * 1000) / 1000, exception, cacheAgeMs);
    try {
      ignoreRejection(this.deps.log.append(body).durable);
    } catch (e) {
      // The decision is already logged; a lost outcome is counted by the log's own refusals.
      if (!(e instanceof AuditUnavailableError)) throw e;
    }
  }

  /**
   * The straight line for one client request: every operation it maps to (FC23 maps to two) is
   * decided and logged; only if all are allowed is the request forwarded, once; the outcome is
   * recorded for each. Operations that need not wait for the log are decided at once, and the
   * request is forwarded within this call (no promise turn between the decision and the device).
   */
  enforce<T>(principal: Principal | null, ops: readonly Operation[], client: ClientRef, forward: () => Promise<Forwarded<T>>, hold: ApprovalHold = "wait"): Promise<Enforced<T>> {
    const authorizations: Authorization[] = [];
    const t0 = this.deps.onOutcome ? performance.now() : 0;
    try {
      // A request of several operations (FC23) that will be refused takes no `rate` budget:
      // its operations are decided without taking any (each is still logged as decided).
      const dry = ops.length > 1 && !this.allAllowed(principal, ops);
      for (let i = 0; i < ops.length; i++) {
        const a = this.authorizeNow(principal, ops[i] as Operation, client, dry);
        if (a instanceof Promise) return this.enforceRest(principal, ops, i, a, authorizations, client, forward, hold, t0, dry);
        authorizations.push(a);
      }
      return this.forwardAll(authorizations, forward, hold, client, t0);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** enforce() once an operation had to wait for the log: the rest are decided one after another. */
  private async enforceRest<T>(principal: Principal | null, ops: readonly Operation[], from: number, waiting: Promise<Authorization>, authorizations: Authorization[], client: ClientRef, forward: () => Promise<Forwarded<T>>, hold: ApprovalHold, t0: number, dry: boolean): Promise<Enforced<T>> {
    authorizations.push(await waiting);
    for (let i = from + 1; i < ops.length; i++) authorizations.push(await this.authorizeNow(principal, ops[i] as Operation, client, dry));
    return this.forwardAll(authorizations, forward, hold, client, t0);
  }

  /** Whether every operation would be allowed now (decided without logging or taking rate budget). */
  private allAllowed(principal: Principal | null, ops: readonly Operation[]): boolean {
    if (!principal) return false;
    const set = this.deps.policy();
    const ctx = { now: this.now(), rates: this.deps.rates, dryRun: true } as const;
    return ops.every((op) => decide(set, op, principal, ctx).effect === "allow");
  }

  private forwardAll<T>(authorizations: Authorization[], forward: () => Promise<Forwarded<T>>, hold: ApprovalHold, client: ClientRef, t0: number): Promise<Enforced<T>> {
    let ticket: Ticket | undefined;
    for (const a of authorizations) {
      if (!a.allowed) {
        this.release(authorizations);
        return Promise.resolve({ allowed: false, authorizations, refusal: a });
      }
      if (a.held) ticket = a.held;
    }
    return ticket ? this.awaitApproval(authorizations, ticket, forward, hold) : this.forwardNow(authorizations, forward, client, t0);
  }

  /** A request refused for another of its operations gives back the approvals it reserved. */
  private release(authorizations: readonly Authorization[]): void {
    for (const a of authorizations) if (a.held) this.deps.approvals?.cancel(a.held);
  }

  /** A held request: forwarded once approved, refused on rejection or timeout. With `ack`, answered at once. */
  private awaitApproval<T>(authorizations: Authorization[], ticket: Ticket, forward: () => Promise<Forwarded<T>>, hold: ApprovalHold): Promise<Enforced<T>> {
    const settled = ticket.settled.then((s): Enforced<T> | Promise<Enforced<T>> =>
      s.verdict === "approved" ? this.forwardNow(authorizations, forward, undefined, 0) : { allowed: false, authorizations, refusal: s.refusal },
    );
    if (hold === "wait") return settled;
    settled.catch(noop);
    return Promise.resolve({ allowed: true, authorizations, held: { id: ticket.id, expiresAt: ticket.expiresAt, settled } });
  }

  /** Forwards an allowed request; `client` undefined: no onOutcome call (an approved write). */
  private forwardNow<T>(authorizations: Authorization[], forward: () => Promise<Forwarded<T>>, client: ClientRef | undefined, t0: number): Promise<Enforced<T>> {
    const started = performance.now();
    return forward().then(
      (forwarded) => {
        const latency = performance.now() - started;
        for (const a of authorizations) this.outcome(a.id, forwarded.status, latency, forwarded.exception, forwarded.cacheAgeMs);
        if (client && this.deps.onOutcome) this.deps.onOutcome(client, forwarded.status, started - t0, latency);
        return { allowed: true, authorizations, forwarded };
      },
      (e: unknown) => {
        // A forward step that failed in the gateway (a bug, not the device) still closes its
        // decisions: every allow has an outcome. Whether it reached the device is not known.
        const latency = performance.now() - started;
        for (const a of authorizations) this.outcome(a.id, "unavailable", latency, "gateway-error");
        throw e;
      },
    );
  }
}

/** An Authorization as a promise (the public methods' shape). */
function settled(a: Authorization | Promise<Authorization>): Promise<Authorization> {
  return a instanceof Promise ? a : Promise.resolve(a);
}

function noop(): void {}

let lastIgnored: Promise<void> | undefined;

/**
 * A `durable` nobody waits for: its rejection must not surface as unhandled. The records of one
 * group commit share one promise, so a handler is added once per batch, not once per record.
 */
function ignoreRejection(p: Promise<void>): void {
  if (p === lastIgnored) return;
  lastIgnored = p;
  p.catch(noop);
}
