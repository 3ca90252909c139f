// Per-write approval (SPEC issue 8): a write (or call) allowed by a rule with `approval` is
// held here, not forwarded, until a second principal holding one of the rule's approver roles
// (never the requester) approves it, or it is refused on rejection or timeout.
//
// Every step is a decision record, linked by the approval id and the write's decision id:
//   1. the write's decision (pep/enforce.ts): allow, reason `allowed`, with
//      `approval: { expires, id, roles, status: "pending" }`;
//   2. the approver's decision: asset null, target { point: "approvals" } (a gateway endpoint,
//      like the other gateway-role decisions), subject = the approver, and
//      `approval: { asset, comment?, id, ref, requester, verdict }`: both identities in one record.
//      A refused approver is a deny: `self-approval`, or `no-matching-rule` without an approver role;
//   3. the end: an outcome record of the write (ref = its decision id) once it is forwarded, or a
//      deny of the write itself with reason `approval-rejected` / `approval-timeout`, or
//      `token-revoked` / `token-expired` when the requester's credential is revoked or expires
//      while the write waits (continuous verification, SPEC §3: a held write is not forwarded
//      on behalf of someone who may no longer ask for it).
import { randomUUID } from "node:crypto";
import type { ClientRef, DecisionBody, SubjectRef, TargetRef } from "../audit/record.js";
import { clientOf, decisionBody, isoMicros, subjectOf } from "../audit/record.js";
import { AuditUnavailableError } from "../audit/writer.js";
import type { Decision, WrittenValue } from "../pdp/evaluate.js";
import type { Operation } from "../pdp/operation.js";
import type { Approval } from "../pdp/policy-set.js";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";
import type { AuditLog, Authorization } from "./enforce.js";

/** Pending approvals at once; a write beyond them is refused with `approval-queue-full`. */
export const DEFAULT_MAX_PENDING = 100;

/** How a held write ended. */
export type Settlement = { readonly verdict: "approved"; readonly approver: SubjectRef } | { readonly verdict: Ending; readonly refusal: Authorization };

/** How a held write ends without being forwarded. */
type Ending = "rejected" | "timeout" | "revoked" | "expired";
const ENDING_REASON: Readonly<Record<Ending, Reason>> = { rejected: "approval-rejected", timeout: "approval-timeout", revoked: "token-revoked", expired: "token-expired" };

/** A place in the queue, reserved before the write's decision is logged (the record names its id). */
export interface Ticket {
  readonly id: string;
  readonly roles: readonly string[];
  readonly requestedAt: number;
  readonly expiresAt: number;
  /** Settles once an approver decides, the timeout passes or the queue stops. */
  readonly settled: Promise<Settlement>;
}

/** A pending approval as GET /v1/approvals lists it. */
export interface PendingApproval {
  readonly id: string;
  /** The write's decision record id. */
  readonly ref: string | null;
  readonly requester: SubjectRef;
  readonly client: ClientRef;
  readonly asset: string;
  readonly zone: string | null;
  readonly action: string;
  readonly target: TargetRef;
  readonly values: readonly WrittenValue[];
  readonly rule: string | null;
  readonly roles: readonly string[];
  readonly requestedAt: string;
  readonly expiresAt: string;
}

export type ApprovalAnswer =
  | { readonly status: "not-found" }
  | { readonly status: "audit-unavailable" }
  | { readonly status: "self-approval" | "not-approver"; readonly decisionId: string | null; readonly roles: readonly string[] }
  /** The requester's credential was revoked or expired: the write was refused (`refusalId`), nobody's answer is taken. */
  | { readonly status: "requester-ended"; readonly why: string; readonly refusalId: string | null }
  | { readonly status: "decided"; readonly verdict: "approved" | "rejected"; readonly decisionId: string | null };

export interface ApprovalQueueDeps {
  readonly log: Pick<AuditLog, "append">;
  /** The policy revision in force, for the approver's decision. */
  readonly revision: () => string;
  readonly now?: () => number;
  readonly maxPending?: number;
  /** Called for every decision the queue records (metrics). */
  readonly onDecision?: (d: Pick<Decision, "effect" | "reason">, asset: string | null) => void;
  /**
   * Why the requester can no longer have a held write forwarded (its session or lease ended, its
   * credential revoked or expired), or undefined while it can (main.ts asks the session
   * registry, so a renewed lease keeps its writes). Without it: the principal's own expiry.
   */
  readonly requesterEnded?: (p: Principal) => RequesterEnded | undefined;
  /** When the requester's right to ask ends as things stand (epoch ms; a renewed lease moves it); default `p.expiresAt`. */
  readonly requesterExpiry?: (p: Principal) => number | undefined;
}

/** Why a requester may no longer have a held write forwarded. */
export interface RequesterEnded {
  readonly ending: "revoked" | "expired";
  readonly why: string;
}

interface Entry {
  readonly ticket: Ticket;
  readonly settle: (s: Settlement) => void;
  timer?: NodeJS.Timeout;
  held?: { readonly decision: Decision; readonly principal: Principal; readonly op: Operation; readonly client: ClientRef; readonly ref: string | null; readonly body: DecisionBody };
}

export class ApprovalQueue {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly max: number;

  constructor(private readonly deps: ApprovalQueueDeps) {
    this.now = deps.now ?? Date.now;
    this.max = deps.maxPending ?? DEFAULT_MAX_PENDING;
  }

  get size(): number {
    return this.entries.size;
  }

  /** A place for one held write, or undefined when the queue is full. */
  reserve(approval: Approval): Ticket | undefined {
    if (this.entries.size >= this.max) return undefined;
    const requestedAt = this.now();
    let settle!: (s: Settlement) => void;
    const settled = new Promise<Settlement>((resolve) => (settle = resolve));
    const ticket: Ticket = { id: randomUUID(), roles: approval.roles, requestedAt, expiresAt: requestedAt + approval.timeoutMs, settled };
    this.entries.set(ticket.id, { ticket, settle });
    return ticket;
  }

  /** Gives back a reservation whose write was never held (its record could not be logged, or another part of the request was denied). */
  cancel(ticket: Ticket): void {
    const e = this.entries.get(ticket.id);
    if (!e) return;
    if (e.timer) clearTimeout(e.timer);
    this.entries.delete(ticket.id);
  }

  /** The write is logged as pending under decision `ref`: it waits for an approver from now on. */
  hold(ticket: Ticket, held: { decision: Decision; principal: Principal; op: Operation; client: ClientRef; ref: string | null }): void {
    const e = this.entries.get(ticket.id);
    if (!e) return;
    e.held = { ...held, body: decisionBody(held.decision, held.op, held.principal, held.client) };
    this.arm(e);
  }

  /**
   * One timer per held write: at the approval's timeout, or earlier when the requester's right
   * to ask ends first; then it is checked again (a lease renewed meanwhile keeps the write).
   */
  private arm(e: Entry): void {
    const held = e.held as NonNullable<Entry["held"]>;
    const expiry = this.deps.requesterExpiry ? this.deps.requesterExpiry(held.principal) : held.principal.expiresAt;
    const requesterFirst = expiry !== undefined && expiry < e.ticket.expiresAt;
    const at = requesterFirst ? expiry : e.ticket.expiresAt;
    e.timer = setTimeout(() => {
      if (!requesterFirst) return this.end(e, "timeout", null);
      const gone = this.ended(held.principal);
      if (gone) this.end(e, gone.ending, null);
      else this.arm(e);
    }, Math.max(0, at - this.now()));
    e.timer.unref();
  }

  /** Refuses every held write whose requester can no longer ask (call it after each revocation and session end). */
  sweep(): void {
    for (const e of [...this.entries.values()]) {
      const gone = e.held ? this.ended(e.held.principal) : undefined;
      if (gone) this.end(e, gone.ending, null);
    }
  }

  /** Refuses the held writes asked for on session `id`, which just ended. */
  sessionEnded(id: string, ending: RequesterEnded): void {
    for (const e of [...this.entries.values()]) if (e.held?.principal.sessionId === id) this.end(e, ending.ending, null);
  }

  /** Why the requester can no longer have the write forwarded; undefined while it can. */
  private ended(p: Principal): RequesterEnded | undefined {
    if (this.deps.requesterEnded) return this.deps.requesterEnded(p);
    return p.expiresAt !== undefined && this.now() >= p.expiresAt ? { ending: "expired", why: `the requester's credential expired at ${new Date(p.expiresAt).toISOString()}` } : undefined;
  }

  /** Pending approvals, oldest first; `visible` filters by the approver roles they need. */
  list(visible: (roles: readonly string[]) => boolean = () => true): PendingApproval[] {
    const out: PendingApproval[] = [];
    for (const { ticket, held } of this.entries.values()) {
      if (!held || !visible(ticket.roles)) continue;
      const b = held.body;
      out.push({
        id: ticket.id, ref: held.ref, requester: subjectOf(held.principal), client: b.client, asset: b.asset as string, zone: b.zone, action: b.action,
        target: b.target, values: b.values ?? [], rule: b.rule, roles: ticket.roles, requestedAt: isoMicros(ticket.requestedAt), expiresAt: isoMicros(ticket.expiresAt),
      });
    }
    return out;
  }

  /** An approver's answer to approval `id`; every answer is logged, a refused one too. */
  decide(id: string, approver: Principal, approve: boolean, client: ClientRef, comment?: string): ApprovalAnswer {
    const e = this.entries.get(id);
    if (!e?.held) return { status: "not-found" };
    const held = e.held;
    const gone = this.ended(held.principal);
    if (gone) return { status: "requester-ended", why: gone.why, refusalId: this.end(e, gone.ending, null) };
    const roles = e.ticket.roles;
    const requester = subjectOf(held.principal);
    // Never the requester: the same `sub` is refused even from another issuer (the stricter reading).
    const self = approver.sub === held.principal.sub;
    const mayApprove = !self && approver.roles.some((r) => roles.includes(r));
    const reason: Reason = self ? "self-approval" : mayApprove ? "allowed" : "no-matching-rule";
    const approval = {
      asset: held.op.asset,
      ...(comment !== undefined && comment !== "" && { comment }),
      id,
      ref: held.ref,
      requester,
      verdict: approve ? "approved" : "rejected",
    };
    const body = {
      type: "decision",
      decision: mayApprove ? "allow" : "deny",
      reason,
      rule: mayApprove ? held.decision.rule : null,
      policyRevision: this.deps.revision(),
      mode: "enforce",
      subject: subjectOf(approver),
      client: clientOf(client),
      asset: null,
      zone: null,
      action: held.op.action,
      target: { point: "approvals" },
      approval,
    } as const;
    const decisionId = this.append(body, null);
    if (!mayApprove) return { status: self ? "self-approval" : "not-approver", decisionId, roles };
    if (decisionId === null) return { status: "audit-unavailable" };
    this.end(e, approve ? "approved" : "rejected", subjectOf(approver));
    return { status: "decided", verdict: approve ? "approved" : "rejected", decisionId };
  }

  /** Ends every pending approval (the gateway stops): each is refused as timed out, and logged. */
  stop(): void {
    for (const e of [...this.entries.values()]) {
      try {
        if (e.held) this.end(e, "timeout", null);
        else this.cancel(e.ticket);
      } catch {
        // The log is already closed: the held write is refused all the same (end() settled it first).
      }
    }
  }

  /** Settles a held write; for a refusal, returns the id of the deny it logged. */
  private end(e: Entry, verdict: "approved" | Ending, approver: SubjectRef | null): string | null {
    if (this.entries.get(e.ticket.id) !== e) return null;
    this.entries.delete(e.ticket.id);
    if (e.timer) clearTimeout(e.timer);
    const held = e.held as NonNullable<Entry["held"]>;
    if (verdict === "approved") {
      e.settle({ verdict, approver: approver as SubjectRef });
      return null;
    }
    const d = held.decision;
    const decision: Decision = {
      effect: "deny", rule: d.rule, reason: ENDING_REASON[verdict], policyRevision: d.policyRevision, mode: d.mode,
      ...(d.zone !== undefined && { zone: d.zone }), ...(d.values !== undefined && { values: d.values }),
    };
    const body = { ...decisionBody(decision, held.op, held.principal, held.client), approval: { ...(approver && { approver }), id: e.ticket.id, ref: held.ref } };
    let id: string | null = null;
    try {
      id = this.append(body, held.op.asset);
    } finally {
      e.settle({ verdict, refusal: { allowed: false, decision, id } });
    }
    return id;
  }

  /** Appends a record (keys need not be in order: the log canonicalizes); null when the log refuses it. */
  private append(body: DecisionBody & { readonly approval: object }, asset: string | null): string | null {
    this.deps.onDecision?.({ effect: body.decision, reason: body.reason }, asset);
    try {
      const a = this.deps.log.append(body);
      a.durable.catch(noop);
      return a.id;
    } catch (e) {
      if (!(e instanceof AuditUnavailableError)) throw e;
      return null;
    }
  }
}

function noop(): void {}
