// Every error ztgate raises has a code from this one registry; the README lists them all
// and test/errors.test.ts keeps the two in step.
import type { Diagnostic } from "./util/yaml-source.js";
import { formatDiagnostic } from "./util/yaml-source.js";

export const ERROR_CODES = {
  ZT_USAGE: "a command was called with missing or unknown arguments (exit 2)",
  ZT_CONFIG_INVALID: "gateway.yaml (or --config) could not be read or did not validate",
  ZT_POLICY_INVALID: "a policy file (or the policy directory) could not be read or did not validate",
  ZT_TOKEN_MALFORMED: "a token given to a command could not be decoded",
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
