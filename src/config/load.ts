// Loads gateway.yaml: read once, validate against the schema with its defaults, report every
// error at once as `file:line:col: message`, then freeze. Nothing else in the gateway reads
// the file or checks a setting again.
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import type { ErrorObject, ValidateFunction } from "ajv";
import { ZtError } from "../errors.js";
import { YamlSource, sortDiagnostics } from "../util/yaml-source.js";
import type { Diagnostic } from "../util/yaml-source.js";
import { GatewayConfigSchema } from "./schema.js";
import type { GatewayConfig } from "./schema.js";

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
const validateSchema = ajv.compile(GatewayConfigSchema);

/** ajv's words for an empty list or string, replaced by ones an admin can act on. */
function plainMessage(e: ErrorObject): ErrorObject {
  if (e.keyword === "minItems" && (e.params as { limit: number }).limit === 1) return { ...e, message: "must not be empty" };
  if (e.keyword === "minLength" && (e.params as { limit: number }).limit === 1) return { ...e, message: "must not be an empty string" };
  return e;
}

/** The compiled schema with plainer messages; same contract as an ajv ValidateFunction. */
const validate = ((data: unknown) => {
  const ok = validateSchema(data);
  validate.errors = validateSchema.errors?.map(plainMessage) ?? null;
  return ok;
}) as ValidateFunction;
// The diagnostics look up a schema's `x-expected` wording through the root schema.
validate.schema = GatewayConfigSchema;

/** The default configuration: `gateway.yaml` at the repository root. */
export function defaultConfigPath(): string {
  return fileURLToPath(new URL("../../gateway.yaml", import.meta.url));
}

/** Reads and validates the configuration file `file` (see `parseConfig`). */
export async function loadConfig(file: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new ZtError("ZT_CONFIG_INVALID", `${file}: cannot read configuration file (${why})`);
  }
  return parseConfig(file, text);
}

/**
 * Validates the text of a configuration file named `file`: throws ZT_CONFIG_INVALID with one
 * positioned diagnostic per problem, or returns the deep-frozen configuration with defaults
 * applied and `policy.dir`, `log.dir`, `log.keyFile`, `keys.dir` and the issuers' `jwks` and
 * `publicKey` files resolved against the directory of `file`.
 */
export function parseConfig(file: string, text: string): GatewayConfig {
  const parsed = YamlSource.parse(file, text);
  if (!parsed.source) fail(file, parsed.diagnostics);
  const source = parsed.source;

  const data = emptySectionsOmitted(source.value());
  const diagnostics = sortDiagnostics(source.validate(validate, data));
  if (diagnostics.length > 0) fail(file, diagnostics);
  const issuerErrors = issuerDiagnostics(source, (data as { issuers: IssuerInput[] }).issuers);
  const listenerErrors = listenerDiagnostics(source, (data as { modbus: { listeners: ListenerInput[] } }).modbus.listeners);
  const upstreamErrors = opcuaUpstreamDiagnostics(source, (data as { opcua: { upstream: OpcuaUpstreamInput } }).opcua.upstream);
  if (issuerErrors.length + listenerErrors.length + upstreamErrors.length > 0) fail(file, sortDiagnostics([...issuerErrors, ...listenerErrors, ...upstreamErrors]));

  const config = data as { policy: { dir: string }; log: { dir: string; keyFile: string }; keys: { dir: string }; issuers: IssuerInput[] };
  const base = dirname(resolve(file));
  config.keys.dir = resolve(base, config.keys.dir);
  for (const i of config.issuers) {
    if (i.jwks !== undefined) i.jwks = resolve(base, i.jwks);
    if (i.publicKey !== undefined) i.publicKey = resolve(base, i.publicKey);
  }
  config.policy.dir = resolve(base, config.policy.dir);
  config.log.dir = resolve(base, config.log.dir);
  config.log.keyFile = resolve(base, config.log.keyFile);
  const syslog = (config.log as { syslog?: { spoolDir: string; tls: { ca: string; cert: string; key: string } } }).syslog;
  if (syslog) {
    syslog.spoolDir = resolve(base, syslog.spoolDir);
    for (const k of ["ca", "cert", "key"] as const) if (syslog.tls[k] !== "") syslog.tls[k] = resolve(base, syslog.tls[k]);
  }
  return deepFreeze(config as unknown as GatewayConfig);
}

/**
 * An empty document is an empty mapping, and a section whose keys are all commented out
 * (`policy:` with nothing under it, which YAML reads as null) is an omitted section: both
 * mean "all defaults".
 */
function emptySectionsOmitted(value: unknown): unknown {
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = v;
  return out;
}

function fail(file: string, diagnostics: Diagnostic[]): never {
  const n = diagnostics.length;
  throw new ZtError("ZT_CONFIG_INVALID", `${file}: ${n} error${n === 1 ? "" : "s"}`, diagnostics);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

type IssuerInput = { issuer: string; jwks?: string; jwksUrl?: string; publicKey?: string };

/**
 * What the schema cannot say: each issuer has exactly one key source, and no two issuers share
 * an `iss` (a token's `iss` picks the one that verifies it).
 */
function issuerDiagnostics(source: YamlSource, issuers: IssuerInput[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  issuers.forEach((i, n) => {
    const sources = (["jwks", "jwksUrl", "publicKey"] as const).filter((k) => i[k] !== undefined);
    if (sources.length !== 1) {
      const what = sources.length === 0 ? "none is given" : `${sources.join(" and ")} are given`;
      out.push(source.diag(["issuers", n], `issuers[${n}]: give exactly one key source, jwks, jwksUrl or publicKey (${what})`));
    }
    if (seen.has(i.issuer)) out.push(source.diag(["issuers", n, "issuer"], `issuers[${n}].issuer: "${i.issuer}" is listed twice`));
    seen.add(i.issuer);
  });
  return out;
}

type OpcuaUpstreamInput = { securityMode: string; securityPolicy: string };

/** Security policy None goes with security mode None and only with it (OPC UA Part 4 §7.15). */
function opcuaUpstreamDiagnostics(source: YamlSource, u: OpcuaUpstreamInput): Diagnostic[] {
  if ((u.securityMode === "None") === (u.securityPolicy === "None")) return [];
  const want = u.securityMode === "None" ? "securityPolicy None (or securityMode Sign or SignAndEncrypt)" : "a securityPolicy other than None";
  return [source.diag(["opcua", "upstream", "securityPolicy"], `opcua.upstream: securityMode ${u.securityMode} with securityPolicy ${u.securityPolicy}; give ${want}`)];
}

type ListenerInput = { name: string; host: string; port: number };

/** Listener names are unique (a policy's front.listener picks one), and so are their addresses. */
function listenerDiagnostics(source: YamlSource, listeners: ListenerInput[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const names = new Set<string>();
  const addresses = new Set<string>();
  listeners.forEach((l, n) => {
    if (names.has(l.name)) out.push(source.diag(["modbus", "listeners", n, "name"], `modbus.listeners[${n}].name: "${l.name}" is listed twice`));
    names.add(l.name);
    const at = `${l.host}:${l.port}`;
    if (l.port !== 0 && addresses.has(at)) out.push(source.diag(["modbus", "listeners", n, "port"], `modbus.listeners[${n}].port: ${at} is used by another listener`));
    addresses.add(at);
  });
  return out;
}
