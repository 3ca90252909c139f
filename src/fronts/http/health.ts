// Operations endpoints (SPEC §5.3, §7), unauthenticated like any scrape or probe target (the
// gateway listens on 127.0.0.1 by default; metrics carry asset names, never subjects):
//
//   GET /metrics  Prometheus text exposition of the gateway's own registry (src/metrics.ts)
//   GET /healthz  200 { status: "alive" } while the process serves requests
//   GET /readyz   200 { status: "ready", checks } / 503 problem naming each failing check:
//                 the decision log cannot be written, or no policy is loaded
import type { FastifyInstance } from "fastify";
import type { HttpAppDeps } from "./app.js";
import { HttpProblem, errorType } from "./problem.js";

const check = { type: "object", properties: { ok: { type: "boolean" }, detail: { type: "string" } } } as const;
const readyResponse = {
  type: "object",
  required: ["status", "checks"],
  properties: { status: { type: "string" }, checks: { type: "object", properties: { decisionLog: check, policy: check } } },
} as const;
const aliveResponse = { type: "object", required: ["status"], properties: { status: { type: "string" } } } as const;

export interface Readiness {
  readonly decisionLog: { readonly ok: boolean; readonly detail: string };
  readonly policy: { readonly ok: boolean; readonly detail: string };
}

export function readiness(deps: HttpAppDeps): Readiness {
  const log = deps.audit;
  const healthy = log?.healthy() ?? false;
  const revision = deps.policy?.current().revision;
  return {
    decisionLog: { ok: healthy, detail: !log ? "no decision log" : healthy ? "writable" : "cannot be written: operations are denied (audit-unavailable)" },
    policy: { ok: revision !== undefined, detail: revision !== undefined ? `revision ${revision}` : "no policy loaded" },
  };
}

export async function healthRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps }): Promise<void> {
  const { deps } = opts;

  app.get("/healthz", { schema: { response: { 200: aliveResponse } } }, async (_req, reply) => {
    void reply.header("cache-control", "no-store");
    return { status: "alive" };
  });

  app.get("/readyz", { schema: { response: { 200: readyResponse } } }, async (_req, reply) => {
    void reply.header("cache-control", "no-store");
    const checks = readiness(deps);
    const failing = Object.entries(checks).filter(([, c]) => !c.ok);
    if (failing.length > 0) {
      throw new HttpProblem(503, errorType("not-ready"), "Not ready", failing.map(([name, c]) => `${name}: ${c.detail}`).join("; "));
    }
    return { status: "ready", checks };
  });

  app.get("/metrics", { schema: { response: { 200: { content: { "text/plain": { schema: { type: "string" } } } } } } }, async (_req, reply) => {
    if (!deps.metrics) throw new HttpProblem(404, errorType("not-found"), "Not found", "this gateway was started without metrics");
    const text = await deps.metrics.text();
    return reply.header("cache-control", "no-store").type(deps.metrics.contentType).send(text);
  });
}
