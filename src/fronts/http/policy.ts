// Policy routes (SPEC §4.5, §5.3); each use is a logged decision by gateway roles.
//
//   GET  /v1/policy         → { revision, dir, loadedAt, files, lastRejected }: admins and auditors
//   POST /v1/policy/reload  → 200 { ok, revision, previousRevision, changed }: admins; a change
//                             that does not validate → 422 problem with every `errors` line
//                             (the previous policy stays in force)
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { HttpAppDeps } from "./app.js";
import { NO_BODY, NO_QUERY, gate } from "./gate.js";
import { HttpProblem, errorType } from "./problem.js";

const infoResponse = {
  type: "object",
  required: ["revision", "loadedAt", "files", "lastRejected"],
  properties: {
    revision: { type: "string" },
    dir: { type: "string" },
    loadedAt: { type: "string" },
    files: { type: "array", items: { type: "object", properties: { file: { type: "string" }, asset: { type: "string" }, sha256: { type: "string" } } } },
    lastRejected: {
      type: ["object", "null"],
      properties: { at: { type: "string" }, trigger: { type: "string" }, errors: { type: "array", items: { type: "string" } } },
    },
  },
} as const;

const reloadResponse = {
  type: "object",
  required: ["ok", "revision", "previousRevision", "changed"],
  properties: { ok: { type: "boolean" }, revision: { type: "string" }, previousRevision: { type: "string" }, changed: { type: "boolean" } },
} as const;

export async function policyRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps; log: Logger }): Promise<void> {
  const { deps, log } = opts;
  const g = gate(deps, log, "policy");
  const store = () => {
    if (!deps.policy) throw new HttpProblem(503, errorType("no-policy"), "No policy loaded", "the gateway has no policy store");
    return deps.policy;
  };

  app.get("/v1/policy", { schema: { querystring: NO_QUERY, response: { 200: infoResponse } } }, async (req) => {
    const p = await g.authenticate(req, "read");
    g.require(req, p, ["gateway.adminRoles", "gateway.auditorRoles"], "read", "reading the policy status");
    return store().info();
  });

  app.post("/v1/policy/reload", { schema: { body: NO_BODY, response: { 200: reloadResponse } } }, async (req) => {
    const p = await g.authenticate(req, "write");
    g.require(req, p, ["gateway.adminRoles"], "write", "reloading the policy");
    const r = await store().reload("api");
    log.info({ by: p.sub, ok: r.ok, revision: r.revision, changed: r.changed }, "policy reload requested");
    if (!r.ok) {
      throw new HttpProblem(422, errorType("policy-invalid"), "The policy change does not validate", `${r.errors.length} error(s); the previous policy (revision ${r.revision}) stays in force`, { errors: r.errors });
    }
    return { ok: r.ok, revision: r.revision, previousRevision: r.previousRevision, changed: r.changed };
  });
}
