// Session routes (SPEC §3, §5.3): leases for plain Modbus clients, opened with a bearer token.
//
//   POST   /v1/sessions             { protocol: "modbus", source? } → 201 { id, sub, source, expiresAt }
//   GET    /v1/sessions             → 200 { sessions: [...] }: the caller's own; an admin's: all
//   DELETE /v1/sessions/:id         → 204: by its owner (closed) or an admin (revoked)
//   POST   /v1/sessions/:id/renew   → 200 { id, sub, source, expiresAt }: a fresh token of the same sub
//   POST   /v1/sessions/revoke      { sub } | { jti } → 200 { sub | jti, ended: [ids] }: admins only;
//                                    revokes the subject's tokens issued so far (or the one token)
//                                    and ends every session resting on them
//
// Each handler reads top to bottom: authenticate → decide what the caller may do → act → answer.
// `source` defaults to the caller's address; naming another needs a role of gateway.adminRoles,
// and that decision, allowed or not, is logged.
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { ClientRef } from "../../audit/record.js";
import type { Session } from "../../auth/sessions.js";
import { normalizeAddress } from "../../auth/sessions.js";
import type { Action } from "../../pdp/operation.js";
import type { Principal } from "../../pdp/principal.js";
import type { HttpAppDeps } from "./app.js";
import type { GatewayDecision } from "./decisions.js";
import { NO_BODY, bearer, bearerToken } from "./gate.js";
import { HttpProblem, badRequest, errorType, forbidden, notFound, reasonType, unauthorized } from "./problem.js";

const RESOURCE = "sessions";
const ADMIN_RULE = "gateway.adminRoles";

const idParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "string", minLength: 1, maxLength: 64 } },
} as const;

const openBody = {
  type: "object",
  required: ["protocol"],
  additionalProperties: false,
  properties: {
    protocol: { type: "string", enum: ["modbus"] },
    source: { type: "string", minLength: 1, maxLength: 64 },
  },
} as const;

const listQuery = {
  type: "object",
  additionalProperties: false,
  properties: { sub: { type: "string", minLength: 1, maxLength: 256 } },
} as const;

// Exactly one of sub and jti: min/maxProperties say it without oneOf's unreadable errors.
const revokeBody = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: {
    sub: { type: "string", minLength: 1, maxLength: 256 },
    jti: { type: "string", minLength: 1, maxLength: 256 },
  },
} as const;

type RevokeBody = { sub: string; jti?: undefined } | { jti: string; sub?: undefined };

interface OpenBody {
  protocol: "modbus";
  source?: string;
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** What POST and renew answer. */
function leaseView(s: Session) {
  return { id: s.id, sub: s.principal.sub, source: s.source ?? null, expiresAt: iso(s.expiresAt) };
}

/** One entry of GET /v1/sessions: never the token, only what the decision log would show. */
function sessionView(s: Session) {
  const p = s.principal;
  return {
    id: s.id,
    kind: s.kind,
    protocol: s.protocol,
    sub: p.sub,
    iss: p.iss,
    roles: [...p.roles],
    // The token's id, so an admin can revoke it (POST /v1/sessions/revoke {jti}); never the token.
    jti: p.tokenId ?? null,
    via: p.via,
    source: s.source ?? null,
    openedAt: iso(s.openedAt),
    expiresAt: iso(s.expiresAt),
  };
}

export async function sessionRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps; log: Logger }): Promise<void> {
  const { deps, log } = opts;
  const admins = new Set(deps.gatewayRoles.adminRoles);
  const isAdmin = (p: Principal) => p.roles.some((r) => admins.has(r));
  const owns = (p: Principal, s: Session) => s.principal.sub === p.sub && s.principal.iss === p.iss;

  const clientOf = (req: FastifyRequest): ClientRef => ({
    address: req.socket.remoteAddress ?? "unknown",
    port: req.socket.remotePort ?? 0,
    protocol: "http",
    transport: deps.https ? "https" : "http",
  });

  /** Records a decision; an allow the log cannot take is refused (fail closed, SPEC §6). */
  const record = (d: Omit<GatewayDecision, "resource">): string | null => {
    const id = deps.decisions?.record({ ...d, resource: RESOURCE }) ?? null;
    if (d.effect === "deny") log.info({ reason: d.reason, sub: d.principal?.sub, client: d.client.address, action: d.action }, "http request refused");
    if (d.effect === "allow" && deps.decisions && id === null) {
      throw new HttpProblem(503, reasonType("audit-unavailable"), "The decision log cannot be written", "the gateway fails closed while its decision log cannot be written", { reason: "audit-unavailable" });
    }
    return id;
  };

  /** The lease file written (leases outlive a restart); a 500 when it cannot be, naming what stands. */
  const leasesSaved = async (what: string): Promise<void> => {
    try {
      await deps.sessions.leasesSaved();
    } catch (e) {
      log.error({ err: (e as Error).message }, "lease list not saved");
      throw new HttpProblem(500, errorType("lease-not-saved"), "Lease list not saved", `${(e as Error).message}; ${what}`);
    }
  };

  /** The bearer token's principal; a missing or refused token is a logged deny and a 401. */
  const authenticate = async (req: FastifyRequest, action: Action): Promise<Principal> => {
    const r = await bearer(deps, req);
    if (r.ok) return r.principal;
    record({ effect: "deny", reason: r.reason, rule: null, principal: null, action, client: clientOf(req) });
    throw unauthorized(r.reason, r.detail);
  };

  /** An admin power used: allowed (and logged) for an admin role, else a logged deny and a 403. */
  const requireAdmin = (req: FastifyRequest, p: Principal, action: Action, what: string): void => {
    const client = clientOf(req);
    if (isAdmin(p)) {
      record({ effect: "allow", reason: "allowed", rule: ADMIN_RULE, principal: p, action, client });
      return;
    }
    const id = record({ effect: "deny", reason: "no-matching-rule", rule: null, principal: p, action, client });
    throw forbidden("no-matching-rule", `${what} needs one of the roles ${[...admins].join(", ")} (gateway.adminRoles)`, id);
  };

  const lookup = (id: string): Session => {
    const s = deps.sessions.get(id);
    if (!s) throw notFound(`no open session ${id}`);
    return s;
  };

  app.post<{ Body: OpenBody }>("/v1/sessions", { schema: { body: openBody } }, async (req, reply) => {
    const p = await authenticate(req, "write");
    const caller = normalizeAddress(req.socket.remoteAddress ?? "");
    const source = req.body.source === undefined ? caller : normalizeAddress(req.body.source);
    if (source === undefined) throw badRequest(`source ${JSON.stringify(req.body.source ?? req.socket.remoteAddress)} is not an IP address`);
    if (source !== caller) requireAdmin(req, p, "write", `opening a lease for another source (${source})`);
    const token = bearerToken(req);
    const s = deps.sessions.open(p, { kind: "lease", protocol: req.body.protocol, source, forOther: source !== caller, ...(token !== undefined && { token }) });
    log.info({ session: s.id, sub: p.sub, source, expiresAt: iso(s.expiresAt) }, "lease opened");
    await leasesSaved(`lease ${s.id} is open but would not outlive a restart of the gateway`);
    return reply.code(201).header("location", `/v1/sessions/${s.id}`).send(leaseView(s));
  });

  app.get<{ Querystring: { sub?: string } }>("/v1/sessions", { schema: { querystring: listQuery } }, async (req) => {
    const p = await authenticate(req, "read");
    const filter = req.query.sub;
    // An admin sees everyone's sessions (a logged use of the admin role); anyone else their own.
    const all = isAdmin(p) && (filter === undefined || filter !== p.sub);
    if (all) requireAdmin(req, p, "read", "listing other subjects' sessions");
    const list = all ? deps.sessions.list(filter !== undefined ? { sub: filter } : {}) : deps.sessions.list({ sub: p.sub }).filter((s) => owns(p, s));
    return { sessions: list.map(sessionView) };
  });

  app.delete<{ Params: { id: string } }>("/v1/sessions/:id", { schema: { params: idParams } }, async (req, reply) => {
    const p = await authenticate(req, "write");
    const s = lookup(req.params.id);
    if (owns(p, s)) deps.sessions.close(s.id, p.sub);
    else {
      requireAdmin(req, p, "write", `ending another subject's session (${s.id})`);
      deps.sessions.revokeById(s.id, p.sub);
    }
    log.info({ session: s.id, by: p.sub }, "session ended by request");
    if (s.kind === "lease") await leasesSaved(`session ${s.id} is ended, but the lease list on disk still holds it: it would be opened again after a restart until the list is written`);
    return reply.code(204).send();
  });

  // Revocation by id is DELETE /v1/sessions/:id; by subject or token it names no one session.
  app.post<{ Body: RevokeBody }>("/v1/sessions/revoke", { schema: { body: revokeBody } }, async (req) => {
    const p = await authenticate(req, "write");
    const { sub, jti } = req.body;
    requireAdmin(req, p, "write", sub !== undefined ? `revoking the tokens and sessions of subject ${sub}` : `revoking token ${jti}`);
    const ended = sub !== undefined ? deps.sessions.revokeBySub(sub, p.sub) : deps.sessions.revokeByJti(jti, p.sub);
    const ids = ended.map((s) => s.id);
    log.info({ ...(sub !== undefined ? { sub } : { jti }), sessions: ids, by: p.sub }, sub !== undefined ? "subject revoked" : "token revoked");
    // The answer means the revocation outlives a restart: it waits for the list on disk.
    try {
      await deps.sessions.revocationsSaved();
    } catch (e) {
      log.error({ err: (e as Error).message }, "revocation not saved");
      throw new HttpProblem(500, errorType("revocation-not-saved"), "Revocation not saved", `${(e as Error).message}; the sessions resting on it are ended`);
    }
    return { ...(sub !== undefined ? { sub } : { jti }), ended: ids };
  });

  app.post<{ Params: { id: string } }>("/v1/sessions/:id/renew", { schema: { params: idParams, body: NO_BODY } }, async (req) => {
    const p = await authenticate(req, "write");
    const s = lookup(req.params.id);
    if (s.kind !== "lease") throw new HttpProblem(409, errorType("not-a-lease"), "Not a lease", `session ${s.id} rests on a ${s.principal.via} credential, not a token; only leases are renewed`);
    // As at opening and at a restart: a lease for another address stays an admin's to keep.
    if (deps.sessions.openedForOther(s.id)) requireAdmin(req, p, "write", `renewing lease ${s.id}, opened for another source (${s.source})`);
    const r = deps.sessions.renew(s.id, p, bearerToken(req));
    if (!r.ok) {
      const id = record({ effect: "deny", reason: "no-matching-rule", rule: null, principal: p, action: "write", client: clientOf(req) });
      throw forbidden("no-matching-rule", `${r.detail}; a lease is renewed with a token of its own subject`, id);
    }
    log.info({ session: s.id, sub: p.sub, expiresAt: iso(r.session.expiresAt) }, "lease renewed");
    await leasesSaved(`lease ${s.id} is renewed, but after a restart of the gateway it would rest on its previous token until the list is written`);
    return leaseView(r.session);
  });
}
