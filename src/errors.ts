// Every error ztgate raises has a code from this one registry; the README lists them all
// and test/errors.test.ts keeps the two in step.
import type { Diagnostic } from "./util/yaml-source.js";
import { formatDiagnostic } from "./util/yaml-source.js";

export const ERROR_CODES = {
  ZT_USAGE: "a command was called with missing or unknown arguments (exit 2)",
  ZT_CONFIG_INVALID: "gateway.yaml (or --config) could not be read or did not validate",
  ZT_POLICY_INVALID: "a policy file (or the policy directory) could not be read or did not validate",
  ZT_TOKEN_MALFORMED: "a token given to a command could not be decoded",
  ZT_KEYS_INVALID: "a key, certificate or key set file (keys.dir, an issuer's jwks or publicKey) could not be read, parsed or written",
  ZT_SESSION_INVALID: "a session or lease could not be opened (for example a lease source that is not an IP address)",
  ZT_AUDIT_UNAVAILABLE: "the decision log cannot be written (disk full, I/O error, backlog) or is closed; the operation is refused with reason audit-unavailable",
  ZT_LOG_UNREADABLE: "the decision log directory, a segment or its head file could not be read or opened",
  ZT_LOG_KEY_INVALID: "the checkpoint signing or verification key could not be read or is not an Ed25519 key",
  ZT_API_UNREACHABLE: "a command could not reach the gateway's HTTP API (connection refused, TLS certificate not trusted by the CA, timeout)",
  ZT_API_REFUSED: "the gateway's HTTP API refused a command's request (the status, the problem's detail and any decision id are printed)",
  ZT_TOKEN_UNREADABLE: "the token file of a command (--token-file) could not be read, watched or holds no token",
  ZT_OPCUA_FRONT: "the OPC UA front could not start (its application certificate, PKI folder or listener); the message names which and where",
  ZT_REVOCATIONS_INVALID: "the revocation list (keys.dir/revocations.json) could not be read, parsed or written; the gateway does not start without a list it cannot read",
  ZT_LOG_LOCKED: "the decision log directory is in use by another running process (its writer.lock names the pid): one gateway writes one log",
  ZT_LOG_TAMPERED: "the decision log is shorter than its signed head.jws, or head.jws does not verify: the gateway will not write on top of it",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ZtError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly diagnostics: readonly Diagnostic[] = [],
  ) {
    super(message);
    this.name = "ZtError";
  }

  /** The message followed by one `file:line:col: message` line per diagnostic. */
  describe(): string {
    return [this.message, ...this.diagnostics.map(formatDiagnostic)].join("\n");
  }
}

export class UsageError extends ZtError {
  constructor(message: string) {
    super("ZT_USAGE", message);
    this.name = "UsageError";
  }
}
