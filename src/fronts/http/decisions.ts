// Decisions about the gateway's own endpoints (SPEC §5.3: "who may use the admin and audit
// endpoints is decided by gateway roles from the token, and those decisions are logged too";
// SPEC §9: a refused token is a logged deny). They touch no asset, so their records carry
// `asset: null` and name the endpoint's resource as the target point (e.g. "sessions").
import type { ClientRef, DecisionBody } from "../../audit/record.js";
import { subjectOf } from "../../audit/record.js";
import type { Action } from "../../pdp/operation.js";
import type { Principal } from "../../pdp/principal.js";
import type { Reason } from "../../pdp/reasons.js";

export interface GatewayDecision {
  readonly effect: "allow" | "deny";
  readonly reason: Reason;
  /** The gateway setting that allowed it (`gateway.adminRoles`), or null. */
  readonly rule: string | null;
  readonly principal: Principal | null;
  readonly action: Action;
  /** The endpoint's resource, e.g. "sessions". */
  readonly resource: string;
  readonly client: ClientRef;
}

export interface GatewayDecisionLog {
  /** Hands the decision to the decision log; its record id, or null when the log refused it. */
  record(d: GatewayDecision): string | null;
}

/** A GatewayDecisionLog over the decision log's append (which throws when it cannot take a record). */
export function gatewayDecisionLog(deps: { append: (body: DecisionBody) => { readonly id: string }; revision: () => string; onError?: (e: unknown) => void }): GatewayDecisionLog {
  return {
    record(d) {
      const body: DecisionBody = {
        type: "decision",
        decision: d.effect,
        reason: d.reason,
        rule: d.rule,
        policyRevision: deps.revision(),
        mode: "enforce",
        subject: d.principal ? subjectOf(d.principal) : null,
        client: d.client,
        asset: null,
        zone: null,
        action: d.action,
        target: { point: d.resource },
      };
      try {
        return deps.append(body).id;
      } catch (e) {
        deps.onError?.(e);
        return null;
      }
    },
  };
}
