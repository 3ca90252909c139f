// node-opcua's own messages into the gateway's log. Left alone, node-opcua prints warnings and
// errors with console.log on stdout (timestamp, source file, text): they would break the pino
// JSON lines and anything that parses a command's output. routeOpcuaLogs() swaps its loggers
// (node-opcua-debug's setWarningLogger/setErrorLogger/setDebugLogger, re-exported by
// node-opcua) for ones that write one pino line per message:
//
//   {"level":40,"source":"node-opcua","module":"base_server","code":"NODE-OPCUA-W26","msg":"…"}
//
//   warnings   `warn`, except the known-harmless ones below, at `debug`
//   errors     `error`
//   debug      `debug` (node-opcua emits these only with its DEBUG=<file> environment flag)
//
// Call it once the logger exists and before node-opcua emits anything: its first message
// (W27) comes from a check it starts when it loads and that finishes only after an RSA key
// generation, so a call in the same turn as the import that loaded node-opcua comes first.
// Trace output (node-opcua's request tracing, switched on by its own environment flags) is
// not routed: node-opcua does not export that setter.
import { format } from "node:util";
import { setDebugLogger, setErrorLogger, setWarningLogger } from "node-opcua";
import type { Logger } from "pino";

/** Where node-opcua says a message comes from: its source file's base name and line. */
export interface OpcuaLogContext {
  readonly filename: string;
  readonly callerline: number;
}

/** node-opcua calls its loggers with the context first, then console.log-style arguments. */
type OpcuaLogFunction = (context?: unknown, ...args: unknown[]) => void;

function contextOf(c: unknown): { module: string; line: number | undefined } {
  const ctx = (c !== null && typeof c === "object" ? c : {}) as Partial<OpcuaLogContext>;
  return { module: typeof ctx.filename === "string" ? ctx.filename : "", line: typeof ctx.callerline === "number" && Number.isFinite(ctx.callerline) ? ctx.callerline : undefined };
}

/** Warnings that tell an operator nothing they could act on: logged at `debug`. */
const HARMLESS: ReadonlyArray<{ readonly why: string; readonly test: (module: string, text: string) => boolean }> = [
  // [NODE-OPCUA-W27] and its second line (--security-revert=CVE-2023-46809): RSA PKCS#1 v1.5 is
  // refused by this Node; ztgate offers and uses only the OAEP/PSS policies, which do not need it.
  { why: "PKCS#1 v1.5 is not used (OAEP/PSS policies only)", test: (module, text) => module === "verify_pcks1" || text.includes("CVE-2023-46809") },
  // The upstream client's application certificate, created once in its PKI folder.
  { why: "first-use certificate creation", test: (_m, text) => text.startsWith("Creating default certificate") },
  // A disconnect racing a disconnect (the upstream client's own reconnect loop closes clients).
  { why: "disconnect while disconnecting", test: (_m, text) => text.includes("disconnect called while already disconnecting") },
];

/** Messages logged per source line; past this, one more line says so and the rest are dropped. */
const MAX_PER_LINE = 100;
const MAX_TEXT = 4000;

// eslint-disable-next-line no-control-regex -- the escape sequences of chalk's colours
const ANSI = /\u001b\[[0-9;]*m/g;

/** A node-opcua message as one line of text: formatted like console.log, colours stripped, bounded. */
export function opcuaText(args: readonly unknown[]): string {
  const text = format(...args).replace(ANSI, "").trim();
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}… (${text.length - MAX_TEXT} more characters)` : text;
}

/** The `[NODE-OPCUA-W27]` tag of a message, when it has one. */
function codeOf(text: string): string | undefined {
  return /\[(NODE-OPCUA-[A-Z]\d+)\]/.exec(text)?.[1];
}

export interface OpcuaLoggers {
  readonly warning: OpcuaLogFunction;
  readonly error: OpcuaLogFunction;
  readonly debug: OpcuaLogFunction;
}

/** The three loggers routeOpcuaLogs installs, writing to `log` (exported for tests). */
export function opcuaLoggers(log: Logger): OpcuaLoggers {
  const child = log.child({ source: "node-opcua" });
  const counts = new Map<string, number>();
  const emit = (level: "debug" | "warn" | "error", context: unknown, args: readonly unknown[], extra: Record<string, unknown> = {}) => {
    const { module, line } = contextOf(context);
    const key = `${level} ${module}:${line ?? ""}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    if (n > MAX_PER_LINE + 1) return;
    const where = { ...(module !== "" && { module }), ...(line !== undefined && { line }) };
    if (n === MAX_PER_LINE + 1) {
      child[level](where, `node-opcua: more than ${MAX_PER_LINE} messages from this source line; the rest are not logged`);
      return;
    }
    const text = opcuaText(args);
    const code = codeOf(text);
    child[level]({ ...where, ...(code !== undefined && { code }), ...extra }, text);
  };
  return {
    warning: (context, ...args) => {
      const text = opcuaText(args);
      const harmless = HARMLESS.find((h) => h.test(contextOf(context).module, text));
      if (harmless) emit("debug", context, args, { harmless: harmless.why });
      else emit("warn", context, args);
    },
    error: (context, ...args) => emit("error", context, args),
    debug: (context, ...args) => emit("debug", context, args),
  };
}

/** Sends node-opcua's warnings, errors and debug messages to `log` from now on (the last call wins). */
export function routeOpcuaLogs(log: Logger): void {
  const l = opcuaLoggers(log);
  setWarningLogger(l.warning);
  setErrorLogger(l.error);
  setDebugLogger(l.debug);
}
