// Who may use the gateway's own endpoints (SPEC §5.3): the bearer token's principal, and the
// gateway roles of gateway.yaml (`adminRoles`, `auditorRoles`). Every refusal and every use
// of a gateway role is a decision in the log (decisions.ts), like the session routes'.
//
// The asset routes (points.ts) authenticate the same way but record their refusals through
// the enforcement path, since they name an asset.
import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { ClientRef } from "../../audit/record.js";
import type { Action } from "../../pdp/operation.js";
import type { Principal } from "../../pdp/principal.js";
import type { Reason } from "../../pdp/reasons.js";
import type { HttpAppDeps } from "./app.js";
import type { GatewayDecision } from "./decisions.js";
import { HttpProblem, forbidden, reasonType, unauthorized } from "./problem.js";

/** The gateway setting that grants a role-gated endpoint; it is the `rule` of the decision. */
export type GatewayRule = "gateway.adminRoles" | "gateway.auditorRoles";

export type TokenResult = { ok: true; principal: Principal } | { ok: false; reason: Reason; detail: string };

export function clientOf(req: FastifyRequest, https: boolean): ClientRef {
  return { address: req.socket.remoteAddress ?? "unknown", port: req.socket.remotePort ?? 0, protocol: "http", transport: https ? "https" : "http" };
}

/** The token of `Authorization: Bearer <jwt>`, unverified; undefined without one. */
export function bearerToken(req: FastifyRequest): string | undefined {
  return /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? "")?.[1];
}

/** Verifies `Authorization: Bearer <jwt>` (SPEC §3); never throws for a bad token. */
export async function bearer(deps: Pick<HttpAppDeps, "verifier">, req: FastifyRequest): Promise<TokenResult> {
  const token = bearerToken(req);
  if (token === undefined) return { ok: false, reason: "token-invalid", detail: "no bearer token (Authorization: Bearer <jwt>)" };
  const r = await deps.verifier.verify(token, { via: "bearer" });
  return r.ok ? { ok: true, principal: r.principal } : { ok: false, reason: r.reason, detail: r.detail };
}

/** The query string schema of a route that takes no parameters: an unknown one is a 400, as on every other route. */
export const NO_QUERY = { type: "object", additionalProperties: false, properties: {} } as const;

/** The body schema of a POST that takes none: nothing, or an empty JSON object. */
export const NO_BODY = { type: ["object", "null"], additionalProperties: false, properties: {} } as const;

export function auditUnavailable(): HttpProblem {
  return new HttpProblem(503, reasonType("audit-unavailable"), "The decision log cannot be written", "the gateway fails closed while its decision log cannot be written", { reason: "audit-unavailable" });
}

export interface Gate {
  readonly client: (req: FastifyRequest) => ClientRef;
  /** The bearer token's principal; a missing or refused token is a logged deny and a 401. */
  authenticate(req: FastifyRequest, action: Action): Promise<Principal>;
  /** Allowed (and logged) when the principal holds one of the rule's roles; else a logged deny and a 403. */
  require(req: FastifyRequest, p: Principal, rules: readonly GatewayRule[], action: Action, what: string): void;
}

/** The gate of the endpoints of one resource (`policy`, `decisions`): its decisions name it as their target. */
export function gate(deps: HttpAppDeps, log: Logger, resource: string): Gate {
  const roles: Record<GatewayRule, ReadonlySet<string>> = {
    "gateway.adminRoles": new Set(deps.gatewayRoles.adminRoles),
    "gateway.auditorRoles": new Set(deps.gatewayRoles.auditorRoles),
  };
  const client = (req: FastifyRequest) => clientOf(req, deps.https !== undefined);

  /** Records a decision; an allow the log cannot take is refused (fail closed, SPEC §6). */
  const record = (d: Omit<GatewayDecision, "resource">): string | null => {
    const id = deps.decisions?.record({ ...d, resource }) ?? null;
    if (d.effect === "deny") log.info({ reason: d.reason, sub: d.principal?.sub, client: d.client.address, action: d.action, resource }, "http request refused");
    if (d.effect === "allow" && deps.decisions && id === null) throw auditUnavailable();
    return id;
  };

  return {
    client,
    async authenticate(req, action) {
      const r = await bearer(deps, req);
      if (r.ok) return r.principal;
      record({ effect: "deny", reason: r.reason, rule: null, principal: null, action, client: client(req) });
      throw unauthorized(r.reason, r.detail);
    },
    require(req, p, rules, action, what) {
      const rule = rules.find((r) => p.roles.some((role) => roles[r].has(role)));
      if (rule) {
        record({ effect: "allow", reason: "allowed", rule, principal: p, action, client: client(req) });
        return;
      }
      const id = record({ effect: "deny", reason: "no-matching-rule", rule: null, principal: p, action, client: client(req) });
      const need = rules.map((r) => `${[...roles[r]].join(", ")} (${r})`).join(" or ");
      throw forbidden("no-matching-rule", `${what} needs one of the roles ${need}`, id);
    },
  };
}
