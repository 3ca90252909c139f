// Errors of the HTTP API as RFC 9457 problem details (`application/problem+json`). A route
// throws an HttpProblem; the app's error handler turns it (and fastify's own errors: schema
// validation, body too large, bad JSON) into one problem document.
import type { Reason } from "../../pdp/reasons.js";

export const PROBLEM_TYPE = "application/problem+json";

export interface ProblemDocument {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly instance?: string;
  /** The decision reason, for refusals (SPEC §4.4). */
  readonly reason?: Reason;
  /** The decision record's id, for 403s (SPEC §5.3), so the refusal can be found in the log. */
  readonly decisionId?: string;
  /** Every error, when there are several (a rejected policy reload: `file:line:col: message`). */
  readonly errors?: readonly string[];
}

/** `type` of a refusal: the reason code, documented in the README's reason table. */
export function reasonType(reason: Reason): string {
  return `urn:ztgate:reason:${reason}`;
}

/** `type` of any other error: a short code. */
export function errorType(code: string): string {
  return `urn:ztgate:error:${code}`;
}

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly title: string,
    readonly detail?: string,
    readonly extra: { reason?: Reason; decisionId?: string | null; headers?: Record<string, string>; errors?: readonly string[] } = {},
  ) {
    super(detail ?? title);
    this.name = "HttpProblem";
  }

  document(instance: string): ProblemDocument {
    return {
      type: this.type,
      title: this.title,
      status: this.status,
      ...(this.detail !== undefined && { detail: this.detail }),
      instance,
      ...(this.extra.reason !== undefined && { reason: this.extra.reason }),
      ...(this.extra.decisionId != null && { decisionId: this.extra.decisionId }),
      ...(this.extra.errors !== undefined && { errors: this.extra.errors }),
    };
  }
}

/** A quoted-string for an HTTP auth-param: no quotes, backslashes or control characters. */
function quoted(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0) as number;
    out += ch === '"' || ch === "\\" || c < 0x20 || c === 0x7f ? "'" : ch;
  }
  return `"${out}"`;
}

/** 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3, SPEC §5.3). */
export function unauthorized(reason: Reason, detail: string): HttpProblem {
  return new HttpProblem(401, reasonType(reason), "The request carries no valid bearer token", detail, {
    reason,
    headers: { "www-authenticate": `Bearer realm="ztgate", error="invalid_token", error_description=${quoted(detail)}` },
  });
}

export function forbidden(reason: Reason, detail: string, decisionId: string | null): HttpProblem {
  return new HttpProblem(403, reasonType(reason), "Not allowed", detail, { reason, decisionId });
}

export function notFound(detail: string): HttpProblem {
  return new HttpProblem(404, errorType("not-found"), "Not found", detail);
}

export function badRequest(detail: string): HttpProblem {
  return new HttpProblem(400, errorType("bad-request"), "Bad request", detail);
}
