// The one fixed list of reasons a decision can carry (SPEC §4.4). The README documents each;
// test/pdp/reasons.test.ts keeps the two in step. Never free text in a decision.
export const REASONS = {
  allowed: "an allow rule matched and no deny rule did",
  "no-matching-rule": "no rule allows this subject, action and target (deny by default)",
  "denied-by-rule": "a deny rule matched; deny beats any allow",
  "value-out-of-range": "an allow rule matched but a written value is outside its `values` or the point's min/max",
  "outside-time-window": "an allow rule matched but the time is outside its `when` window",
  "source-not-allowed": "an allow rule matched but the client address is not in its `from` list",
  "rate-limited": "an allow rule matched but its `rate` for this subject and asset is used up",
  "partial-point": "the request covers only part of a multi-register point (float32, uint32, …); points are only read or written whole",
  "unknown-asset": "no policy file defines the asset (or no asset answers on this listener and unit id)",
  "unknown-point": "the named point or node is not defined in the asset's policy",
  "unsupported-function": "the protocol operation is not supported by the gateway",
  "no-session": "the connection has no session (no lease for its source, no certificate, anonymous)",
  "token-invalid": "the token failed verification (signature, issuer, audience, algorithm, claims)",
  "token-expired": "the token has expired",
  "token-revoked": "the token, its session or its lease was revoked",
  "audit-unavailable": "the decision log cannot be written, so the gateway fails closed",
  "upstream-unavailable": "the device behind the asset cannot be reached",
  "approval-rejected": "the write needed approval (the rule's `approval`) and an approver rejected it",
  "approval-timeout": "the write needed approval and no approver decided within the rule's `approval.timeout`",
  "approval-queue-full": "the write needed approval but too many writes are already waiting for one",
  "self-approval": "an approval was refused because the approver is the principal who asked for the write",
} as const;

export type Reason = keyof typeof REASONS;

/** Condition failures, in the order they are checked; the first failing one names the miss. */
export const CONDITION_REASONS = ["source-not-allowed", "outside-time-window", "value-out-of-range", "rate-limited"] as const;
export type ConditionReason = (typeof CONDITION_REASONS)[number];
