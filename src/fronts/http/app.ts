// The HTTP API's fastify app (SPEC §5.3). This release serves the session routes (sessions.ts);
// the HTTP API issue adds its routes beside them. Every error is an RFC 9457 problem document.
import type https from "node:https";
import { fastify } from "fastify";
import type { FastifyError, FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { SessionRegistry } from "../../auth/sessions.js";
import type { VerifyOptions, VerifyResult } from "../../auth/tokens.js";
import type { GatewayDecisionLog } from "./decisions.js";
import { HttpProblem, PROBLEM_TYPE, errorType } from "./problem.js";
import { sessionRoutes } from "./sessions.js";

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
    // An unknown key is an error, not silently dropped (fastify's default removes it).
    ajv: { customOptions: { removeAdditional: false } },
    forceCloseConnections: true,
  });
  const log = deps.log.child({ front: "http" });

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
