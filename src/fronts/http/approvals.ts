// Approval routes (issue 8): writes a rule holds for approval (pep/approvals.ts).
//
//   GET  /v1/approvals      → { approvals: [{ id, ref, requester, client, asset, zone, action,
//                              target, values, rule, roles, requestedAt, expiresAt }] }
//                              the pending ones the caller may approve (all of them for admins and auditors)
//   POST /v1/approvals/:id  { approve: true|false, comment? } → { id, verdict, decisionId }
//                              by a principal holding one of the approval's roles, never the requester:
//                              the requester → 403 `self-approval`; no approver role → 403
//                              `no-matching-rule`; both logged. Unknown or already decided id → 404.
//                              The requester's credential revoked or expired meanwhile → 409
//                              `requester-ended` (the write is refused, logged `token-revoked` / `token-expired`).
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { HttpAppDeps } from "./app.js";
import { NO_QUERY, auditUnavailable, gate } from "./gate.js";
import { HttpProblem, errorType, forbidden, notFound } from "./problem.js";

const idParams = { type: "object", required: ["id"], additionalProperties: false, properties: { id: { type: "string", minLength: 1, maxLength: 64 } } } as const;
const decideBody = {
  type: "object",
  required: ["approve"],
  additionalProperties: false,
  properties: { approve: { type: "boolean" }, comment: { type: "string", maxLength: 1000 } },
} as const;
const decideResponse = {
  type: "object",
  required: ["id", "verdict", "decisionId"],
  properties: { id: { type: "string" }, verdict: { type: "string" }, decisionId: { type: ["string", "null"] } },
} as const;

export async function approvalRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps; log: Logger }): Promise<void> {
  const { deps, log } = opts;
  const g = gate(deps, log, "approvals");
  const overseers = new Set([...deps.gatewayRoles.adminRoles, ...deps.gatewayRoles.auditorRoles]);

  app.get("/v1/approvals", { schema: { querystring: NO_QUERY } }, async (req) => {
    const p = await g.authenticate(req, "read");
    const all = p.roles.some((r) => overseers.has(r));
    // Seeing everyone's pending writes is a use of a gateway role: logged like the other role-gated reads.
    if (all) g.require(req, p, ["gateway.adminRoles", "gateway.auditorRoles"], "read", "listing every pending approval");
    const approvals = deps.approvals?.list((roles) => all || p.roles.some((r) => roles.includes(r))) ?? [];
    return { approvals };
  });

  app.post<{ Params: { id: string }; Body: { approve: boolean; comment?: string } }>(
    "/v1/approvals/:id",
    { schema: { params: idParams, body: decideBody, response: { 200: decideResponse } } },
    async (req) => {
      const p = await g.authenticate(req, "write");
      const { id } = req.params;
      const a = deps.approvals?.decide(id, p, req.body.approve, g.client(req), req.body.comment) ?? { status: "not-found" as const };
      switch (a.status) {
        case "not-found":
          throw notFound(`no pending approval ${id} (it was decided, timed out, or never existed)`);
        case "audit-unavailable":
          throw auditUnavailable();
        case "self-approval":
          log.warn({ sub: p.sub, approval: id }, "self-approval refused");
          throw forbidden("self-approval", `approval ${id}: the principal who asked for the write (${p.sub}) cannot approve it; another principal with one of the roles ${a.roles.join(", ")} must`, a.decisionId);
        case "not-approver":
          log.info({ sub: p.sub, approval: id }, "approval refused: no approver role");
          throw forbidden("no-matching-rule", `approval ${id} needs one of the roles ${a.roles.join(", ")}`, a.decisionId);
        case "requester-ended":
          log.info({ sub: p.sub, approval: id, why: a.why }, "approval refused: the requester's credential ended");
          throw new HttpProblem(409, errorType("requester-ended"), "The write can no longer be approved", `approval ${id}: ${a.why}; the held write was refused (decision ${a.refusalId ?? "not logged"}) and is not forwarded`, { decisionId: a.refusalId });
        case "decided":
          log.info({ sub: p.sub, approval: id, verdict: a.verdict }, "approval decided");
          return { id, verdict: a.verdict, decisionId: a.decisionId };
      }
    },
  );
}
