// The schema of gateway.yaml. Defaults live here and nowhere else: the loader validates the
// document with ajv (`useDefaults`), so whatever a section or key leaves out is filled in from
// this file. Every object is closed (`additionalProperties: false`), so a misspelt key is an
// error at its line instead of a setting silently ignored.
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";

/** A list of gateway roles: at least one, none empty (an empty role would match nothing). */
function RoleList(fallback: string[], description: string) {
  return Type.Array(Type.String({ minLength: 1 }), { minItems: 1, default: fallback, description });
}

export const PolicySettingsSchema = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: "policies",
      description: "directory of the policy files; a relative path resolves against the config file's directory",
    }),
    watch: Type.Boolean({ default: true, description: "reload the policies when a file in dir changes" }),
    debounceMs: Type.Integer({
      minimum: 0,
      maximum: 10000,
      default: 200,
      description: "wait this long after the last change before reloading",
    }),
  },
  { additionalProperties: false, default: {} },
);

const SYSLOG_FACILITY_NAMES = [
  "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
  "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
] as const;

/** RFC 5424 header fields are printable US-ASCII (33..126); "" means "use the default". */
const printable = (max: number) => `^[!-~]{0,${max}}$`;

/** `log.syslog`: export of the decision log to a syslog collector (RFC 5424 over TCP/TLS). No section, no export. */
export const SyslogSettingsSchema = Type.Object(
  {
    host: Type.String({ pattern: "^[^\\s]+$", "x-expected": "a host name or IP address", description: "the collector" }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 514, description: "the collector's TCP port (6514 is the registered port for syslog over TLS)" }),
    tls: Type.Object(
      {
        enabled: Type.Boolean({ default: false, description: "TLS (RFC 5425) instead of plain TCP" }),
        ca: Type.String({ default: "", description: "PEM file of the CA certificates the collector's certificate must chain to; empty: Node's CA bundle" }),
        cert: Type.String({ default: "", description: "PEM client certificate for mutual TLS (with key); empty: none" }),
        key: Type.String({ default: "", description: "PEM private key of cert" }),
        servername: Type.String({ default: "", description: "the name the collector's certificate must carry; empty: host" }),
        rejectUnauthorized: Type.Boolean({ default: true, description: "refuse a collector whose certificate does not verify" }),
      },
      { additionalProperties: false, default: {} },
    ),
    facility: Type.Union(SYSLOG_FACILITY_NAMES.map((f) => Type.Literal(f)), {
      default: "local0",
      "x-expected": "a syslog facility name (kern … local7)",
      description: "the facility of every message; the severity follows the record (deny: warning, allow: info, others: notice)",
    }),
    appName: Type.String({ pattern: printable(48), minLength: 1, "x-expected": "1 to 48 printable ASCII characters", default: "ztgate", description: "APP-NAME" }),
    hostname: Type.String({ pattern: printable(255), "x-expected": "up to 255 printable ASCII characters", default: "", description: "HOSTNAME; empty: the machine's host name" }),
    spoolDir: Type.String({
      minLength: 1,
      default: "data/syslog-spool",
      description: "where messages wait while the collector is down; relative to the config file's directory",
    }),
    spoolMaxBytes: Type.Integer({
      minimum: 65536,
      default: 64 * 1024 * 1024,
      description: "bound of the spool; beyond it the oldest messages are dropped (and counted)",
    }),
    reconnectMs: Type.Integer({ minimum: 10, maximum: 60000, default: 1000, description: "first reconnect delay, doubled after each failed attempt" }),
    reconnectMaxMs: Type.Integer({ minimum: 10, maximum: 3600000, default: 30000, description: "longest reconnect delay" }),
  },
  // No default: an absent section means no export, and a present one must name its host.
  { additionalProperties: false },
);

export const LogSettingsSchema = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: "data/decisions",
      description: "directory of the decision log segments; a relative path resolves against the config file's directory",
    }),
    syncMs: Type.Integer({
      minimum: 0,
      maximum: 1000,
      default: 20,
      description: "group commit: at most one write + fsync of the log every this many milliseconds",
    }),
    durability: Type.Union([Type.Literal("group"), Type.Literal("strict")], {
      default: "group",
      "x-expected": "group or strict",
      description: "strict: write operations wait until their decision record is fsynced before they are forwarded",
    }),
    onFailure: Type.Union([Type.Literal("deny"), Type.Literal("allow-reads")], {
      default: "deny",
      "x-expected": "deny or allow-reads",
      description: "when the log cannot be written: deny every operation, or let reads go on unlogged",
    }),
    segmentBytes: Type.Integer({
      minimum: 4096,
      default: 64 * 1024 * 1024,
      description: "start a new segment file once the current one reaches this size",
    }),
    segmentMaxAgeSec: Type.Integer({
      minimum: 1,
      default: 86400,
      description: "start a new segment file once the current one holds records older than this",
    }),
    checkpointEvery: Type.Object(
      {
        records: Type.Integer({ minimum: 1, default: 1000, description: "sign a checkpoint after this many records" }),
        seconds: Type.Integer({ minimum: 1, default: 60, description: "sign a checkpoint at least this often while records arrive" }),
      },
      { additionalProperties: false, default: {} },
    ),
    keyFile: Type.String({
      minLength: 1,
      default: "certs/gateway-signing.key.pem",
      description: "the gateway's Ed25519 signing key (PKCS#8 PEM) for checkpoints; relative to the config file's directory",
    }),
    syslog: Type.Optional(SyslogSettingsSchema),
  },
  { additionalProperties: false, default: {} },
);

export const GatewaySettingsSchema = Type.Object(
  {
    adminRoles: RoleList(["admin"], "token roles that may use the admin API"),
    auditorRoles: RoleList(["auditor"], "token roles that may read the decision log and the review page"),
  },
  { additionalProperties: false, default: {} },
);

export const KeysSettingsSchema = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: "certs",
      description: "directory of the development keys and certificates (ztgate keys init); relative to the config file's directory",
    }),
  },
  { additionalProperties: false, default: {} },
);

/** A host to listen on: an IP address or a name (127.0.0.1 by default: SPEC §9, nothing on other addresses unless configured). */
function ListenHost() {
  return Type.String({ pattern: "^[^\\s/]+$", "x-expected": "a host name or IP address", default: "127.0.0.1", description: "address to listen on" });
}

/** A TCP port to listen on; 0 picks a free one (tests). */
function ListenPort(fallback?: number) {
  return Type.Integer({ minimum: 0, maximum: 65535, ...(fallback !== undefined && { default: fallback }), description: "TCP port; 0 = any free port" });
}

/** One Modbus front listener (SPEC §3, §5.1): `lease` (plain TCP, a lease per source) or `mtls` (Modbus/TCP Security). */
export const ModbusListenerSchema = Type.Object(
  {
    name: Type.String({
      pattern: "^[a-z0-9][a-z0-9-]*$",
      "x-expected": "a name of lowercase letters, digits and dashes",
      description: "the listener's name; a policy's front.listener picks it",
    }),
    mode: Type.Union([Type.Literal("lease"), Type.Literal("mtls")], {
      "x-expected": "lease or mtls",
      description: "lease: plain Modbus TCP from sources with a lease (POST /v1/sessions); mtls: TLS with a client certificate carrying the role",
    }),
    host: ListenHost(),
    port: ListenPort(),
    denyException: Type.Union([Type.Literal(1), Type.Literal(2)], {
      default: 1,
      "x-expected": "1 (illegal function) or 2 (illegal data address)",
      description: "the Modbus exception a denied request is answered with",
    }),
    approval: Type.Union([Type.Literal("ack"), Type.Literal("wait")], {
      default: "ack",
      "x-expected": "ack or wait",
      description: "a write held for approval: ack = answer exception 05 (acknowledge) at once and write later if approved; wait = answer when decided (the client's timeout must exceed the rule's approval.timeout)",
    }),
    idleTimeoutMs: Type.Integer({ minimum: 100, maximum: 86_400_000, default: 60_000, description: "close a client connection that sends nothing for this long" }),
    maxConnections: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000, description: "client connections open at once; more are closed at once" }),
  },
  { additionalProperties: false },
);

const DEFAULT_MODBUS_LISTENERS = [
  { name: "lease", mode: "lease", host: "127.0.0.1", port: 5020, denyException: 1, approval: "ack", idleTimeoutMs: 60_000, maxConnections: 1000 },
  { name: "mtls", mode: "mtls", host: "127.0.0.1", port: 8020, denyException: 1, approval: "ack", idleTimeoutMs: 60_000, maxConnections: 1000 },
];

/** The upstream side: how the gateway talks to each Modbus device (SPEC §5.1). */
export const ModbusUpstreamSchema = Type.Object(
  {
    maxConnections: Type.Integer({ minimum: 1, maximum: 64, default: 1, description: "connections per device, shared by every client (many PLCs accept only a few)" }),
    maxInFlight: Type.Integer({ minimum: 1, maximum: 1024, default: 32, description: "requests pipelined per device connection (1 for devices that cannot pipeline)" }),
    maxQueue: Type.Integer({ minimum: 0, maximum: 100_000, default: 256, description: "requests waiting for a device connection; more are answered 0A" }),
    timeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 1000, description: "a request not answered in this time (queue time included) is answered 0B" }),
    connectTimeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 2000, description: "how long one connection attempt may take" }),
    backoff: Type.Object(
      {
        initialMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 100, description: "first reconnect delay" }),
        maxMs: Type.Integer({ minimum: 1, maximum: 3_600_000, default: 5000, description: "longest reconnect delay" }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export const ModbusSettingsSchema = Type.Object(
  {
    listeners: Type.Array(ModbusListenerSchema, { default: DEFAULT_MODBUS_LISTENERS, description: "the Modbus front listeners; [] = none" }),
    upstream: ModbusUpstreamSchema,
  },
  { additionalProperties: false, default: {} },
);

/** Security policies the OPC UA front may offer: RSA-OAEP/PSS based only (never PKCS#1 v1.5 encryption). */
export const OPCUA_SECURITY_POLICIES = ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;

/** The OPC UA front (SPEC §5.2): a node-opcua server with one folder per asset. Owned by fronts/opcua. */
export const OpcuaFrontSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: "serve the OPC UA front" }),
    host: ListenHost(),
    port: ListenPort(4840),
    advertisedHost: Type.Optional(
      Type.String({
        pattern: "^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^[0-9.]+$|^\\[[0-9a-fA-F:.]+\\]$",
        "x-expected": "a host name, an IPv4 address or [an IPv6 address] (what clients reach the gateway by)",
        description: "the host in the endpoint URLs the front advertises (GetEndpoints); default: host, or the machine's full host name when host is 0.0.0.0 or ::",
      }),
    ),
    securityPolicies: Type.Array(Type.Union(OPCUA_SECURITY_POLICIES.map((p) => Type.Literal(p)), { "x-expected": `one of ${OPCUA_SECURITY_POLICIES.join(", ")}` }), {
      minItems: 1,
      default: ["Basic256Sha256", "Aes128_Sha256_RsaOaep"],
      description: "security policies offered (RSA-OAEP/PSS based only); None is added only with allowNone",
    }),
    securityModes: Type.Array(Type.Union([Type.Literal("Sign"), Type.Literal("SignAndEncrypt")], { "x-expected": "Sign or SignAndEncrypt" }), {
      minItems: 1,
      default: ["Sign", "SignAndEncrypt"],
      description: "message security modes offered with each policy",
    }),
    allowNone: Type.Boolean({ default: false, description: "also offer SecurityPolicy None (tokens then cross the wire in clear text: never in production)" }),
    applicationUri: Type.String({
      pattern: "^[a-zA-Z][a-zA-Z0-9+.-]*:[^\\s]+$",
      "x-expected": "a URI such as urn:host:app",
      default: "urn:ztgate:opcua-front",
      description: "the front's ApplicationUri; its application certificate carries it as SAN URI",
    }),
    maxSessions: Type.Integer({ minimum: 1, maximum: 10_000, default: 100, description: "OPC UA sessions open at once" }),
    maxConnections: Type.Integer({ minimum: 1, maximum: 10_000, default: 100, description: "secure channel connections open at once" }),
    minSamplingIntervalMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 100, description: "fastest sampling of a monitored item; faster requests are revised to this" }),
    pki: Type.String({
      minLength: 1,
      default: "pki",
      description: "node-opcua PKI folder (own/, trusted/, rejected/, issuers/); relative to keys.dir",
    }),
  },
  { additionalProperties: false, default: {} },
);

/** Message security modes and policies of the upstream client (devices/opcua.ts keeps the same lists). */
export const UPSTREAM_SECURITY_MODES = ["None", "Sign", "SignAndEncrypt"] as const;
export const UPSTREAM_SECURITY_POLICIES = ["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const;

/** How the gateway talks to each upstream OPC UA server (SPEC §5.2). Owned by devices/opcua. */
export const OpcuaUpstreamSchema = Type.Object(
  {
    securityMode: Type.Union(UPSTREAM_SECURITY_MODES.map((m) => Type.Literal(m)), {
      default: "None",
      "x-expected": "None, Sign or SignAndEncrypt",
      description: "message security towards the upstream servers; None (the default) suits the simulated server only",
    }),
    securityPolicy: Type.Union(UPSTREAM_SECURITY_POLICIES.map((p) => Type.Literal(p)), {
      default: "None",
      "x-expected": "None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss",
      description: "security policy; None exactly when securityMode is None",
    }),
    requestTimeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 2000, description: "a read, write or call not answered in this time gives BadTimeout" }),
    connectTimeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 5000, description: "how long one connection attempt (channel and session) may take" }),
    backoff: Type.Object(
      {
        initialMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 200, description: "first reconnect delay" }),
        maxMs: Type.Integer({ minimum: 1, maximum: 3_600_000, default: 10_000, description: "longest reconnect delay" }),
      },
      { additionalProperties: false, default: {} },
    ),
    readCache: Type.Object(
      {
        idleMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 60_000, description: "a node read with maxAge > 0 is monitored for later reads within that age until no read used it for this long; 0 turns reads within maxAge from the subscription off" }),
        maxItems: Type.Integer({ minimum: 0, maximum: 100_000, default: 1000, description: "at most this many nodes per server monitored for reads" }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export const OpcuaSettingsSchema = Type.Object(
  {
    front: OpcuaFrontSchema,
    upstream: OpcuaUpstreamSchema,
  },
  { additionalProperties: false, default: {} },
);

/** The simulated plant run in-process (SPEC §2.1): for the demo and the tests, never in production. */
export const SimSettingsSchema = Type.Object(
  {
    modbus: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: "run the simulated boiler PLC (the device behind boiler-plc)" }),
        host: ListenHost(),
        port: ListenPort(15020),
        unitId: Type.Integer({ minimum: 1, maximum: 247, default: 1, description: "the PLC's unit id" }),
        scanMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 100, description: "the process moves every this many ms; 0 = frozen" }),
      },
      { additionalProperties: false, default: {} },
    ),
    opcua: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: "run the simulated packaging line OPC UA server (the device behind packaging-line)" }),
        host: ListenHost(),
        port: ListenPort(14840),
        scanMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 100, description: "the line moves every this many ms; 0 = frozen" }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

/** The HTTP API (SPEC §5.3): HTTPS with the server certificate of keys.dir. */
export const HttpSettingsSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: "serve the HTTP API" }),
    host: ListenHost(),
    port: ListenPort(8443),
    tls: Type.Boolean({ default: true, description: "HTTPS with keys.dir/server.pem and server.key.pem; false: plain HTTP (behind a TLS-terminating proxy only)" }),
    bodyLimit: Type.Integer({ minimum: 1024, maximum: 10 * 1024 * 1024, default: 65_536, description: "largest request body accepted, bytes; larger ones get 413" }),
  },
  { additionalProperties: false, default: {} },
);

/** Asymmetric JWS algorithms only: an HMAC algorithm would turn a public key into a shared secret. */
export const TOKEN_ALGORITHMS = ["EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

const DEFAULT_ALGORITHMS: TokenAlgorithm[] = ["EdDSA", "ES256", "RS256"];

/** One trusted token issuer. Exactly one key source (jwks, jwksUrl, publicKey): load.ts checks that. */
export const IssuerSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: "the tokens' iss" }),
    audience: Type.String({ minLength: 1, description: "the aud the tokens must carry" }),
    jwks: Type.Optional(Type.String({ minLength: 1, description: "JWKS file; relative to the config file's directory" })),
    jwksUrl: Type.Optional(
      Type.String({ pattern: "^https?://[^\\s]+$", "x-expected": "an http:// or https:// URL", description: "JWKS URL (cached; refetched for an unknown kid)" }),
    ),
    publicKey: Type.Optional(Type.String({ minLength: 1, description: "PEM (SPKI) public key file; relative to the config file's directory" })),
    algorithms: Type.Array(Type.Union(TOKEN_ALGORITHMS.map((a) => Type.Literal(a)), { "x-expected": `one of ${TOKEN_ALGORITHMS.join(", ")}` }), {
      minItems: 1,
      default: DEFAULT_ALGORITHMS,
      description: "accepted JWS algorithms",
    }),
    clockTolerance: Type.Integer({ minimum: 0, maximum: 300, default: 30, description: "seconds of clock skew accepted on exp, nbf, iat" }),
    rolesClaim: Type.String({
      pattern: "^[^.]+(\\.[^.]+)*$",
      "x-expected": "a claim name or a dotted path such as realm_access.roles",
      default: "roles",
      description: "the claim (dotted path) holding the roles",
    }),
  },
  { additionalProperties: false },
);

/** The issuer of the development tokens: what `ztgate keys init` creates and `ztgate token issue` signs as. */
const DEV_ISSUERS = [
  { issuer: "ztgate-dev", audience: "ztgate", publicKey: "certs/issuer.pub.pem", algorithms: DEFAULT_ALGORITHMS, clockTolerance: 30, rolesClaim: "roles" },
];

/** gateway.yaml as written: every section and key is optional. */
export const GatewayConfigSchema = Type.Object(
  {
    policy: Type.Optional(PolicySettingsSchema),
    gateway: Type.Optional(GatewaySettingsSchema),
    log: Type.Optional(LogSettingsSchema),
    keys: Type.Optional(KeysSettingsSchema),
    issuers: Type.Optional(Type.Array(IssuerSchema, { default: DEV_ISSUERS, description: "trusted token issuers (SPEC §3)" })),
    modbus: Type.Optional(ModbusSettingsSchema),
    opcua: Type.Optional(OpcuaSettingsSchema),
    sim: Type.Optional(SimSettingsSchema),
    http: Type.Optional(HttpSettingsSchema),
  },
  { additionalProperties: false },
);

/** gateway.yaml as written (every key optional). */
export type GatewayConfigInput = Static<typeof GatewayConfigSchema>;

/** Every optional key made present (the schema gives each a default) and everything read-only. */
type Filled<T> = T extends ReadonlyArray<infer E>
  ? ReadonlyArray<Filled<E>>
  : T extends object
    ? { readonly [K in keyof T]-?: Filled<NonNullable<T[K]>> }
    : T;

/** The key sources of an issuer have no default: exactly one of them is present. */
type KeySource = "jwks" | "jwksUrl" | "publicKey";

/** One entry of `issuers:` as the token verifier runs on it (key file paths absolute). */
export type IssuerSettings = Filled<Omit<Static<typeof IssuerSchema>, KeySource>> & {
  readonly [K in KeySource]?: string;
};

/**
 * The configuration the gateway runs on: defaults applied, `policy.dir`, `log.dir`,
 * `log.keyFile`, `keys.dir` and the issuers' key files absolute paths, deep-frozen.
 */
export type GatewayConfig = Omit<Filled<GatewayConfigInput>, "issuers" | "log"> & { readonly issuers: ReadonlyArray<IssuerSettings>; readonly log: LogSettings };

/** `log.syslog` as the export runs on it; the section has no default: without it there is no export. */
export type SyslogSettings = Filled<Static<typeof SyslogSettingsSchema>>;

/** The `log:` section as the decision log runs on it. */
export type LogSettings = Filled<Omit<Static<typeof LogSettingsSchema>, "syslog">> & { readonly syslog?: SyslogSettings };

/** One entry of `modbus.listeners` as a front runs on it. */
export type ModbusListenerSettings = Filled<Static<typeof ModbusListenerSchema>>;

/** `modbus.upstream`: the options of every Modbus device connector. */
export type ModbusUpstreamSettings = Filled<Static<typeof ModbusUpstreamSchema>>;

/** `opcua.upstream`: the options of every OPC UA device connector. */
export type OpcuaUpstreamSettings = Filled<Static<typeof OpcuaUpstreamSchema>>;

/** The `http:` section. */
export type HttpSettings = Filled<Static<typeof HttpSettingsSchema>>;

/** `opcua.front`: the OPC UA front as it runs. */
export type OpcuaFrontSettings = Filled<Static<typeof OpcuaFrontSchema>>;
