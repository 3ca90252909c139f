// The HTTP API's fastify app (SPEC §5.3): sessions (sessions.ts), policy (policy.ts), the
// decision log (audit.ts), assets and points (points.ts), metrics and probes (health.ts) and
// the review page (ui.ts). Every error is an RFC 9457 problem document.
import type https from "node:https";
import { Ajv } from "ajv";
import { fastify } from "fastify";
import type { FastifyError, FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { SessionRegistry } from "../../auth/sessions.js";
import type { RecordListener } from "../../audit/feed.js";
import type { ModbusBinding } from "../../devices/registry.js";
import type { PointIO } from "../../devices/types.js";
import type { Enforcer } from "../../pep/enforce.js";
import type { ApprovalQueue } from "../../pep/approvals.js";
import type { PolicySet } from "../../pdp/policy-set.js";
import type { PolicyInfo, ReloadResult } from "../../policy/store.js";
import type { VerifyOptions, VerifyResult } from "../../auth/tokens.js";
import type { GatewayDecisionLog } from "./decisions.js";
import { HttpProblem, PROBLEM_TYPE, errorType } from "./problem.js";
import { sessionRoutes } from "./sessions.js";
import { auditRoutes } from "./audit.js";
import { healthRoutes } from "./health.js";
import { pointRoutes } from "./points.js";
import { policyRoutes } from "./policy.js";
import { uiRoutes } from "./ui.js";
import { approvalRoutes } from "./approvals.js";

export interface GatewayRoles {
  readonly adminRoles: readonly string[];
  readonly auditorRoles: readonly string[];
}

export interface HttpAppDeps {
  readonly verifier: { verify(token: unknown, opts?: VerifyOptions): Promise<VerifyResult> };
  readonly sessions: SessionRegistry;
  readonly gatewayRoles: GatewayRoles;
  /** Operational log (pino); decisions go to `decisions`. */
  readonly log: Logger;
  /** Where token refusals and gateway-role decisions are recorded; without it they are only in `log`. */
  readonly decisions?: GatewayDecisionLog;
  /** PEM key and certificate: HTTPS. Without them plain HTTP (tests, or behind a TLS-terminating proxy). */
  readonly https?: { readonly key: string; readonly cert: string };
  /** Largest request body, bytes (default 64 KiB); larger ones get 413. */
  readonly bodyLimit?: number;
  /** The policy in force (GET /v1/policy, reload, the asset routes, /readyz). */
  readonly policy?: {
    current(): PolicySet;
    info(): PolicyInfo;
    reload(trigger: "api"): Promise<ReloadResult>;
  };
  /** The one enforcement path: every asset route goes through it. */
  readonly enforcer?: Enforcer;
  /** Writes held for approval (GET/POST /v1/approvals). */
  readonly approvals?: Pick<ApprovalQueue, "list" | "decide">;
  /** Named point reads and writes of any asset (devices/points.ts). */
  readonly points?: PointIO;
  /** The Modbus device of an asset, for raw reads and writes. */
  readonly devices?: { modbus(asset: string): ModbusBinding | undefined };
  /** The decision log: its directory (queries), health (/readyz) and records as they land (streams). */
  readonly audit?: {
    readonly dir: string;
    healthy(): boolean;
    readonly feed?: { subscribe(listener: RecordListener): () => void };
  };
  /** Prometheus exposition for GET /metrics. */
  readonly metrics?: {
    readonly contentType: string;
    text(): Promise<string>;
  };
  /** Wall clock, epoch ms (time filters, stream expiry). */
  readonly now?: () => number;
}

export type HttpApp = FastifyInstance<https.Server>;

export function buildHttpApp(deps: HttpAppDeps): HttpApp {
  const app = fastify({
    // null: plain HTTP. The instance is typed for HTTPS either way; only listen() differs.
    https: deps.https ? { key: deps.https.key, cert: deps.https.cert, minVersion: "TLSv1.2" } : null,
    bodyLimit: deps.bodyLimit ?? 65_536,
    // Requests are logged by the hooks below on deps.log, not by fastify's logger.
    logger: false,
    // Clients never name a request id we would trust; and a leaked stack never leaves the gateway.
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: true,
  });
  const log = deps.log.child({ front: "http" });

  // Schemas: an unknown key is an error, not silently dropped (fastify's default removes it);
  // union types (`["string", "null"]`) are meant. Query strings and path parameters are text,
  // so their numbers and booleans are coerced from it; a JSON body is taken as it is typed:
  // with coercion, `null`, `true` or `"1e3"` would pass as a register value, and a bare
  // scalar as an array of one.
  const options = { removeAdditional: false, allowUnionTypes: true, useDefaults: true, allErrors: false } as const;
  const bodies = new Ajv({ ...options, coerceTypes: false });
  const texts = new Ajv({ ...options, coerceTypes: "array" });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === "body" ? bodies : texts).compile(schema));
  // JSON only, in UTF-8 (RFC 8259 §8.1): fastify's own text/plain parser would hand a string to
  // a schema that then says "must be object"; a charset other than UTF-8 would be decoded as UTF-8.
  app.removeContentTypeParser("text/plain");
  app.addHook("onRequest", async (req) => {
    const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(req.headers["content-type"] ?? "")?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
      throw new HttpProblem(415, errorType("ctp-invalid-media-type"), "Bad request", `request bodies are JSON in UTF-8, not charset ${charset}`);
    }
  });

  app.addHook("onSend", async (_req, reply, payload) => {
    void reply.header("x-content-type-options", "nosniff");
    return payload;
  });
  app.addHook("onResponse", async (req, reply) => {
    log.debug({ method: req.method, url: req.url, status: reply.statusCode, client: req.socket.remoteAddress }, "http request");
  });

  app.setErrorHandler((err: FastifyError | HttpProblem, req, reply) => {
    const problem = toProblem(err);
    if (problem.status >= 500) log.error({ err: (err as Error).stack ?? String(err), url: req.url }, "http request failed");
    for (const [k, v] of Object.entries(problem.extra.headers ?? {})) void reply.header(k, v);
    return reply.code(problem.status).type(PROBLEM_TYPE).send(JSON.stringify(problem.document(req.url)));
  });
  app.setNotFoundHandler((req, reply) => {
    const problem = new HttpProblem(404, errorType("not-found"), "Not found", `no route ${req.method} ${req.url.split("?")[0]}`);
    return reply.code(404).type(PROBLEM_TYPE).send(JSON.stringify(problem.document(req.url)));
  });

  void app.register(sessionRoutes, { deps, log });
  void app.register(policyRoutes, { deps, log });
  void app.register(auditRoutes, { deps, log });
  void app.register(pointRoutes, { deps, log });
  void app.register(approvalRoutes, { deps, log });
  void app.register(healthRoutes, { deps });
  void app.register(uiRoutes);
  return app;
}

/** fastify's own errors (schema validation, body limit, bad JSON, media type) as problems. */
function toProblem(err: FastifyError | HttpProblem): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err.validation) return new HttpProblem(400, errorType("validation"), "The request does not match the endpoint's schema", err.message);
  const status = typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status >= 500) return new HttpProblem(500, errorType("internal"), "Internal error", "the gateway could not handle the request; see its log");
  const code = typeof err.code === "string" ? err.code.replace(/^FST_ERR_/, "").toLowerCase().replace(/_/g, "-") : "bad-request";
  return new HttpProblem(status, errorType(code), status === 413 ? "Request body too large" : "Bad request", err.message);
}
