import { join } from "node:path";
import t from "tap";
import { defaultConfigPath, loadConfig, parseConfig } from "../../src/config/load.js";
import { ZtError } from "../../src/errors.js";
import { formatDiagnostic } from "../../src/util/yaml-source.js";

/** A t.testdir fixture holding one gateway.yaml with `lines`. */
const withConfig = (...lines: string[]) => ({ "gateway.yaml": lines.map((l) => l + "\n").join("") });

/** Loads the real file gateway.yaml in `dir`. */
const load = (dir: string) => loadConfig(join(dir, "gateway.yaml"));

/** The ZtError that loading gateway.yaml in `dir` throws. */
async function loadError(dir: string): Promise<ZtError> {
  try {
    await load(dir);
  } catch (err) {
    if (err instanceof ZtError) return err;
    throw err;
  }
  throw new Error("expected a ZtError");
}

/** The `log:` defaults of a gateway.yaml in `dir`: paths resolved against `dir`. */
const logDefaults = (dir: string) => ({
  dir: join(dir, "data", "decisions"),
  syncMs: 20,
  durability: "group",
  onFailure: "deny",
  segmentBytes: 64 * 1024 * 1024,
  segmentMaxAgeSec: 86400,
  checkpointEvery: { records: 1000, seconds: 60 },
  keyFile: join(dir, "certs", "gateway-signing.key.pem"),
});

/** The `keys:` and `issuers:` defaults of a gateway.yaml in `dir`: the dev issuer's key in dir/certs. */
const identityDefaults = (dir: string) => ({
  keys: { dir: join(dir, "certs") },
  issuers: [
    {
      issuer: "ztgate-dev",
      audience: "ztgate",
      publicKey: join(dir, "certs", "issuer.pub.pem"),
      algorithms: ["EdDSA", "ES256", "RS256"],
      clockTolerance: 30,
      rolesClaim: "roles",
    },
  ],
});

/** The `modbus:`, `sim:` and `http:` defaults: SPEC §2.1's addresses, all on 127.0.0.1. */
const frontDefaults = () => ({
  modbus: {
    listeners: [
      { name: "lease", mode: "lease", host: "127.0.0.1", port: 5020, denyException: 1, approval: "ack", idleTimeoutMs: 60000, maxConnections: 1000 },
      { name: "mtls", mode: "mtls", host: "127.0.0.1", port: 8020, denyException: 1, approval: "ack", idleTimeoutMs: 60000, maxConnections: 1000 },
    ],
    upstream: { maxConnections: 1, maxInFlight: 32, maxQueue: 256, timeoutMs: 1000, connectTimeoutMs: 2000, backoff: { initialMs: 100, maxMs: 5000 } },
  },
  opcua: {
    front: {
      enabled: true,
      host: "127.0.0.1",
      port: 4840,
      securityPolicies: ["Basic256Sha256", "Aes128_Sha256_RsaOaep"],
      securityModes: ["Sign", "SignAndEncrypt"],
      allowNone: false,
      applicationUri: "urn:ztgate:opcua-front",
      maxSessions: 100,
      maxConnections: 100,
      minSamplingIntervalMs: 100,
      pki: "pki",
    },
    upstream: { securityMode: "None", securityPolicy: "None", requestTimeoutMs: 2000, connectTimeoutMs: 5000, backoff: { initialMs: 200, maxMs: 10000 }, readCache: { idleMs: 60000, maxItems: 1000 } } },
  sim: { modbus: { enabled: true, host: "127.0.0.1", port: 15020, unitId: 1, scanMs: 100 }, opcua: { enabled: true, host: "127.0.0.1", port: 14840, scanMs: 100 } },
  http: { enabled: true, host: "127.0.0.1", port: 8443, tls: true, bodyLimit: 65536 },
});

/** `line:col message` of every diagnostic, in order. */
const where = (err: ZtError) => err.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`);

t.test("defaults fill every section and key left out", async (t) => {
  const dir = t.testdir(withConfig("policy:", "  watch: false"));
  t.same(await load(dir), {
    policy: { dir: join(dir, "policies"), watch: false, debounceMs: 200 },
    gateway: { adminRoles: ["admin"], auditorRoles: ["auditor"] },
    log: logDefaults(dir),
    ...identityDefaults(dir),
    ...frontDefaults(),
  });
});

t.test("an empty file is all defaults", async (t) => {
  for (const text of ["", "# only a comment", "---"]) {
    const dir = t.testdir(withConfig(text));
    t.same(
      await load(dir),
      {
        policy: { dir: join(dir, "policies"), watch: true, debounceMs: 200 },
        gateway: { adminRoles: ["admin"], auditorRoles: ["auditor"] },
        log: logDefaults(dir),
        ...identityDefaults(dir),
        ...frontDefaults(),
      },
      JSON.stringify(text),
    );
  }
});

t.test("a section with every key commented out is all defaults", async (t) => {
  const config = await load(t.testdir(withConfig("policy:", "  # watch: false", "gateway:")));
  t.equal(config.policy.watch, true);
  t.same(config.gateway.adminRoles, ["admin"]);
});

t.test("unknown keys at every level are reported at once, each at its key", async (t) => {
  const err = await loadError(
    t.testdir(
      withConfig(
        "policy:", //               1
        "  dir: policies", //       2
        "  wach: true", //          3  typo
        "gateway:", //              4
        "  adminRoles: [admin]", // 5
        "  adminRole: root", //     6  typo
        "listners: []", //          7  no such section
      ),
    ),
  );
  t.equal(err.code, "ZT_CONFIG_INVALID");
  t.match(err.message, /gateway\.yaml: 3 errors$/);
  t.same(where(err), [
    '3:3 unknown key "wach" in policy',
    '6:3 unknown key "adminRole" in gateway',
    '7:1 unknown key "listners"',
  ]);
  t.match(formatDiagnostic(err.diagnostics[0]!), /gateway\.yaml:3:3: unknown key "wach" in policy$/);
  t.match(err.describe().split("\n"), [/3 errors$/, /:3:3: /, /:6:3: /, /:7:1: /]);
});

t.test("wrong types and out-of-range values are reported at their values, all at once", async (t) => {
  const err = await loadError(
    t.testdir(
      withConfig(
        "policy:", //                       1
        "  dir: 42", //                     2
        "  watch: yes", //                  3  YAML 1.2: a string, not a boolean
        "  debounceMs: 10001", //           4
        "gateway:", //                      5
        "  adminRoles: admin", //           6  not a list
        "  auditorRoles: [auditor, 7]", //  7
      ),
    ),
  );
  t.same(where(err), [
    "2:8 policy.dir: must be string",
    "3:10 policy.watch: must be boolean",
    "4:15 policy.debounceMs: must be <= 10000",
    "6:15 gateway.adminRoles: must be array",
    "7:27 gateway.auditorRoles[1]: must be string",
  ]);
  t.same(where(await loadError(t.testdir(withConfig("policy:", "  debounceMs: 1.5")))), [
    "2:15 policy.debounceMs: must be integer",
  ]);
  t.same(where(await loadError(t.testdir(withConfig("policy:", "  debounceMs: -1")))), [
    "2:15 policy.debounceMs: must be >= 0",
  ]);
  t.same(where(await loadError(t.testdir(withConfig("policy: policies")))), ["1:9 policy: must be object"]);
  t.same(where(await loadError(t.testdir(withConfig("- policy")))), ["1:1 (document): must be object"]);
});

t.test("role lists must not be empty nor hold empty roles", async (t) => {
  const err = await loadError(t.testdir(withConfig("gateway:", "  adminRoles: []", '  auditorRoles: [auditor, ""]')));
  t.same(where(err), [
    "2:15 gateway.adminRoles: must not be empty",
    "3:27 gateway.auditorRoles[1]: must not be an empty string",
  ]);
  t.same(where(await loadError(t.testdir(withConfig("policy:", '  dir: ""')))), [
    "2:8 policy.dir: must not be an empty string",
  ]);
});

t.test("policy.dir resolves against the config file's directory", async (t) => {
  const dir = t.testdir({ etc: withConfig("policy:", "  dir: ../rules") });
  t.equal((await load(join(dir, "etc"))).policy.dir, join(dir, "rules"));

  const absolute = join(t.testdir({}), "elsewhere");
  const abs = t.testdir(withConfig("policy:", `  dir: ${JSON.stringify(absolute)}`));
  t.equal((await load(abs)).policy.dir, absolute);
});

t.test("log.dir and log.keyFile resolve against the config file's directory", async (t) => {
  const dir = t.testdir({ etc: withConfig("log:", "  dir: ../audit", "  keyFile: /keys/gw.pem", "  durability: strict") });
  const config = await load(join(dir, "etc"));
  t.equal(config.log.dir, join(dir, "audit"));
  t.equal(config.log.keyFile, "/keys/gw.pem");
  t.equal(config.log.durability, "strict");
  t.same(config.log.checkpointEvery, { records: 1000, seconds: 60 });
  t.same(where(await loadError(t.testdir(withConfig("log:", "  durability: lazy", "  checkpointEvery: { record: 5 }")))), [
    "2:15 log.durability: must be group or strict",
    '3:22 unknown key "record" in log.checkpointEvery',
  ]);
});

t.test("keys.dir and the issuers' key files resolve against the config file's directory", async (t) => {
  const dir = t.testdir({
    etc: withConfig(
      "keys:",
      "  dir: ../pki",
      "issuers:",
      "  - issuer: https://idp.example/realms/plant",
      "    audience: ztgate",
      "    jwks: keycloak.json",
      "    rolesClaim: realm_access.roles",
      "  - issuer: other",
      "    audience: ztgate",
      "    jwksUrl: https://idp.example/jwks",
      "    algorithms: [ES256]",
      "    clockTolerance: 5",
    ),
  });
  const config = await load(join(dir, "etc"));
  t.equal(config.keys.dir, join(dir, "pki"));
  t.same(config.issuers, [
    { issuer: "https://idp.example/realms/plant", audience: "ztgate", jwks: join(dir, "etc", "keycloak.json"), rolesClaim: "realm_access.roles", algorithms: ["EdDSA", "ES256", "RS256"], clockTolerance: 30 },
    { issuer: "other", audience: "ztgate", jwksUrl: "https://idp.example/jwks", algorithms: ["ES256"], clockTolerance: 5, rolesClaim: "roles" },
  ]);
  t.same((await load(t.testdir(withConfig("issuers: []")))).issuers, [], "no issuers: every token is refused");
});

t.test("issuers: exactly one key source, no duplicate iss, asymmetric algorithms only", async (t) => {
  const err = await loadError(
    t.testdir(
      withConfig(
        "issuers:", //                                          1
        "  - issuer: a", //                                     2
        "    audience: ztgate", //                              3
        "  - issuer: b", //                                     4
        "    audience: ztgate", //                              5
        "    jwks: b.json", //                                  6
        "    publicKey: b.pem", //                              7
        "  - issuer: b", //                                     8
        "    audience: ztgate", //                              9
        "    publicKey: b.pem", //                              10
      ),
    ),
  );
  t.same(where(err), [
    "2:5 issuers[0]: give exactly one key source, jwks, jwksUrl or publicKey (none is given)",
    "4:5 issuers[1]: give exactly one key source, jwks, jwksUrl or publicKey (jwks and publicKey are given)",
    '8:13 issuers[2].issuer: "b" is listed twice',
  ]);
  const schema = await loadError(
    t.testdir(
      withConfig(
        "issuers:",
        "  - issuer: a",
        "    audience: ztgate",
        "    jwksUrl: ftp://idp/jwks",
        "    algorithms: [HS256]",
        "    clockTolerance: 3600",
        "    rolesClaim: realm_access..roles",
        "    roles: x",
      ),
    ),
  );
  t.match(where(schema), [
    /^4:14 issuers\[0\]\.jwksUrl: must be an http:\/\/ or https:\/\/ URL$/,
    /^5:18 issuers\[0\]\.algorithms\[0\]: must be one of EdDSA, Ed25519, ES256, .*PS512$/,
    /^6:21 issuers\[0\]\.clockTolerance: must be <= 300$/,
    /^7:17 issuers\[0\]\.rolesClaim: must be a claim name or a dotted path/,
    /^8:5 unknown key "roles" in issuers\[0\]$/,
  ]);
});

t.test("the result is deep-frozen", async (t) => {
  const config = await load(t.testdir(withConfig("")));
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.policy));
  t.ok(Object.isFrozen(config.gateway.adminRoles));
  // ESM is strict mode: assigning to a frozen object throws.
  t.throws(() => {
    (config.policy as { watch: boolean }).watch = false;
  }, TypeError);
  t.throws(() => {
    (config.gateway.adminRoles as string[]).push("root");
  }, TypeError);
  // Defaults are fresh objects per load: freezing one config leaves the next one alone.
  const again = await load(t.testdir(withConfig("gateway: {}")));
  t.not(again.gateway.adminRoles, config.gateway.adminRoles);
});

t.test("a file that cannot be read names the path and the OS error", async (t) => {
  const dir = t.testdir({});
  const file = join(dir, "nope.yaml");
  const err = await loadConfig(file).catch((e: unknown) => e);
  t.ok(err instanceof ZtError);
  t.match(err, { code: "ZT_CONFIG_INVALID", diagnostics: [] });
  t.ok((err as ZtError).message.includes(file), "names the path");
  t.match((err as ZtError).message, /ENOENT/);
  await t.rejects(loadConfig(dir), { code: "ZT_CONFIG_INVALID", message: /EISDIR/ });
});

t.test("a YAML syntax error is positioned", async (t) => {
  const err = await loadError(t.testdir(withConfig("policy:", "  dir: [policies", "  watch: true")));
  t.equal(err.code, "ZT_CONFIG_INVALID");
  t.ok(err.diagnostics.length >= 1);
  t.match(formatDiagnostic(err.diagnostics[0]!), /gateway\.yaml:\d+:\d+: YAML /);
  t.ok(err.diagnostics[0]!.line >= 2, "at or after the unclosed list");

  const dup = await loadError(t.testdir(withConfig("policy:", "  watch: true", "  watch: false")));
  t.match(dup.diagnostics, [{ line: 3, message: /^YAML / }]);
});

t.test("parseConfig is the pure core and names the file it was given", async (t) => {
  t.throws(() => parseConfig("conf/x.yaml", "nope: 1\n"), {
    code: "ZT_CONFIG_INVALID",
    message: "conf/x.yaml: 1 error",
    diagnostics: [{ file: "conf/x.yaml", line: 1, col: 1 }],
  });
  t.equal(parseConfig("/srv/zt/gateway.yaml", "").policy.dir, "/srv/zt/policies");
});

t.test("the repository's own gateway.yaml loads and states the defaults", async (t) => {
  const file = defaultConfigPath();
  t.equal(file, join(import.meta.dirname, "..", "..", "gateway.yaml"));
  const config = await loadConfig(file);
  t.same(config, parseConfig(file, ""));
  t.equal(config.policy.dir, join(file, "..", "policies"));
});

t.test("modbus listeners: defaults per entry, unique names and addresses, checked values", async (t) => {
  const config = await load(
    t.testdir(withConfig("modbus:", "  listeners:", "    - { name: plant, mode: lease, port: 0 }", "  upstream: { timeoutMs: 250 }", "sim:", "  modbus: { enabled: false }", "http:", "  tls: false")),
  );
  t.same(config.modbus.listeners, [{ name: "plant", mode: "lease", host: "127.0.0.1", port: 0, denyException: 1, approval: "ack", idleTimeoutMs: 60000, maxConnections: 1000 }]);
  t.equal(config.modbus.upstream.timeoutMs, 250);
  t.equal(config.modbus.upstream.maxConnections, 1);
  t.equal(config.sim.modbus.enabled, false);
  t.same(config.http, { enabled: true, host: "127.0.0.1", port: 8443, tls: false, bodyLimit: 65536 });
  t.same((await load(t.testdir(withConfig("modbus:", "  listeners: []")))).modbus.listeners, [], "no listeners: no Modbus front");

  const err = await loadError(
    t.testdir(
      withConfig(
        "modbus:", //                                                  1
        "  listeners:", //                                             2
        "    - { name: a, mode: lease, port: 5020 }", //               3
        "    - { name: a, mode: mtls, port: 5020, denyException: 3 }", // 4
        "    - { name: B, mode: tls, port: 70000 }", //                5
      ),
    ),
  );
  t.same(where(err), [
    "4:57 modbus.listeners[1].denyException: must be 1 (illegal function) or 2 (illegal data address)",
    "5:15 modbus.listeners[2].name: must be a name of lowercase letters, digits and dashes",
    "5:24 modbus.listeners[2].mode: must be lease or mtls",
    "5:35 modbus.listeners[2].port: must be <= 65535",
  ]);
  const dup = await loadError(t.testdir(withConfig("modbus:", "  listeners:", "    - { name: a, mode: lease, port: 5020 }", "    - { name: a, mode: mtls, port: 5020 }")));
  t.same(where(dup), ['4:15 modbus.listeners[1].name: "a" is listed twice', "4:36 modbus.listeners[1].port: 127.0.0.1:5020 is used by another listener"]);
});

t.test("opcua.upstream: security mode and policy go together; checked values", async (t) => {
  const config = await load(t.testdir(withConfig("opcua:", "  upstream: { securityMode: SignAndEncrypt, securityPolicy: Basic256Sha256, requestTimeoutMs: 500 }")));
  t.same(config.opcua.upstream, { securityMode: "SignAndEncrypt", securityPolicy: "Basic256Sha256", requestTimeoutMs: 500, connectTimeoutMs: 5000, backoff: { initialMs: 200, maxMs: 10000 }, readCache: { idleMs: 60000, maxItems: 1000 } });
  const mismatch = await loadError(t.testdir(withConfig("opcua:", "  upstream:", "    securityMode: Sign")));
  t.same(where(mismatch), ["3:5 opcua.upstream: securityMode Sign with securityPolicy None; give a securityPolicy other than None"]);
  const none = await loadError(t.testdir(withConfig("opcua:", "  upstream:", "    securityPolicy: Aes128_Sha256_RsaOaep")));
  t.same(where(none), ["3:21 opcua.upstream: securityMode None with securityPolicy Aes128_Sha256_RsaOaep; give securityPolicy None (or securityMode Sign or SignAndEncrypt)"]);
  const bad = await loadError(t.testdir(withConfig("opcua:", "  upstream: { securityMode: Encrypt, securityPolicy: Basic128Rsa15, requestTimeoutMs: 0 }")));
  t.same(where(bad), [
    "2:29 opcua.upstream.securityMode: must be None, Sign or SignAndEncrypt",
    "2:54 opcua.upstream.securityPolicy: must be None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss",
    "2:87 opcua.upstream.requestTimeoutMs: must be >= 1",
  ]);
});
