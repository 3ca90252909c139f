// The OPC UA front with everything it stands on, real: keys made by initKeys, the policy store,
// the decision log, the token verifier and session registry, the enforcement path, the
// simulated boiler PLC behind boiler-plc (through DeviceRegistry and DevicePoints) and the
// simulated packaging line behind packaging-line (through an OpcuaDevice), all on free ports
// of 127.0.0.1.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Test } from "tap";
import { parseConfig } from "../../src/config/load.js";
import { KEY_FILES, initKeys, readPrivateKey } from "../../src/auth/keys.js";
import { issueToken } from "../../src/auth/issue.js";
import { RevocationList } from "../../src/auth/revocation.js";
import { SessionRegistry } from "../../src/auth/sessions.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import { DecisionLog } from "../../src/audit/writer.js";
import { readSigningKey } from "../../src/audit/checkpoint.js";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";
import { Enforcer } from "../../src/pep/enforce.js";
import { ApprovalQueue } from "../../src/pep/approvals.js";
import { PolicyStore } from "../../src/policy/store.js";
import { DeviceRegistry } from "../../src/devices/registry.js";
import { DevicePoints } from "../../src/devices/points.js";
import { OpcuaDevice } from "../../src/devices/opcua.js";
import { SimulatedPlc } from "../../src/sim/plc.js";
import { SimulatedOpcuaServer } from "../../src/sim/opcua.js";
import { OpcuaFront } from "../../src/fronts/opcua.js";
import type { OpcuaFrontAddress } from "../../src/fronts/opcua.js";
import { clientPki, jwtIdentity, openSession } from "./opcua-client.js";
import type { ClientPki, Connected } from "./opcua-client.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BOILER = readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8");
export const LINE = readFileSync(join(ROOT, "policies", "packaging-line.yaml"), "utf8");

export interface FrontHarness {
  readonly dir: string;
  readonly keysDir: string;
  readonly policiesDir: string;
  readonly front: OpcuaFront;
  readonly address: OpcuaFrontAddress;
  readonly plc: SimulatedPlc;
  readonly line: SimulatedOpcuaServer;
  readonly policy: PolicyStore;
  readonly sessions: SessionRegistry;
  /** Writes held for approval (rules with `approval`). */
  readonly approvals: ApprovalQueue;
  token(sub: string, roles: readonly string[], opts?: { ttl?: number; jti?: string }): Promise<string>;
  /** Replaces a policy file (endpoint filled in) and reloads. */
  rewritePolicy(file: "packaging-line.yaml" | "boiler-plc.yaml", text: string): Promise<void>;
  records(): Promise<LogRecord[]>;
  decisions(): Promise<Array<Record<string, unknown>>>;
}

export async function startFrontHarness(t: Test, o: { front?: readonly string[] } = {}): Promise<FrontHarness> {
  const plc = new SimulatedPlc({ scanMs: 0 });
  const plcPort = await plc.start();
  t.teardown(() => plc.stop());
  const dir = t.testdir({
    "gateway.yaml": ["policy: { dir: policies, watch: false }", "log: { dir: data/decisions, syncMs: 2 }", "opcua:", "  front:", "    port: 0", ...(o.front ?? []).map((l) => `    ${l}`), ""].join("\n"),
    policies: {},
  });
  const file = join(dir, "gateway.yaml");
  const config = parseConfig(file, readFileSync(file, "utf8"));
  const keysDir = config.keys.dir;
  await initKeys(keysDir);
  const line = new SimulatedOpcuaServer({ pkiDir: join(dir, "sim-pki"), scanMs: 50 });
  const linePort = await line.start();
  t.teardown(() => line.stop());
  const policiesDir = config.policy.dir;
  const fill = (text: string) => text.replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${plcPort}`).replace("opc.tcp://127.0.0.1:14840", `opc.tcp://127.0.0.1:${linePort}`);
  writeFileSync(join(policiesDir, "boiler-plc.yaml"), fill(BOILER));
  writeFileSync(join(policiesDir, "packaging-line.yaml"), fill(LINE));

  const policy = await PolicyStore.open(policiesDir, { watch: false });
  t.teardown(() => policy.close());
  const log = await DecisionLog.open(config.log, { signingKey: await readSigningKey(config.log.keyFile) });
  t.teardown(() => log.close());
  const revocations = new RevocationList();
  const verifier = await TokenVerifier.fromConfig(config.issuers, { revocations });
  t.teardown(() => verifier.close());
  const sessions = new SessionRegistry({ revocations });
  t.teardown(() => sessions.stop());
  const audit = (body: Parameters<DecisionLog["append"]>[0]) => void log.append(body).durable.catch(() => undefined);
  sessions.on("ended", (e) => audit({ type: "session", event: e.why === "expired" ? "expired" : e.why === "closed" ? "closed" : "revoked", session: e.session.id, subject: { sub: e.session.sub, iss: e.session.iss, roles: [...e.session.roles], sessionId: e.session.id }, detail: e.detail }));
  const approvals = new ApprovalQueue({ log, revision: () => policy.current().revision });
  t.teardown(() => approvals.stop());
  const enforcer = new Enforcer({ policy: () => policy.current(), log, rates: new TokenBucketRates(), approvals });

  const devices = new DeviceRegistry({ modbus: { timeoutMs: 5000, connectTimeoutMs: 3000, backoff: { initialMs: 20, maxMs: 100 } } });
  const following = devices.follow(policy);
  await following.ready;
  t.teardown(async () => {
    following.unfollow();
    await devices.stop();
  });
  const upstream = new OpcuaDevice({ endpoint: `opc.tcp://127.0.0.1:${linePort}`, pkiDir: join(dir, "upstream-pki"), backoff: { initialMs: 50, maxMs: 200 } });
  await upstream.start();
  t.teardown(() => upstream.stop());

  const front = new OpcuaFront({
    settings: config.opcua.front,
    keysDir,
    policy,
    enforcer,
    verifier,
    sessions,
    upstream: (asset) => (asset === "packaging-line" ? upstream : undefined),
    points: new DevicePoints(devices),
    log: pino({ level: process.env["ZTGATE_TEST_LOG"] ?? "silent" }),
    audit,
  });
  const address = await front.start();
  t.teardown(() => front.stop());
  const issuerKey = await readPrivateKey(join(keysDir, KEY_FILES.issuerKey));

  const records = async () => {
    await log.flush();
    const out: LogRecord[] = [];
    for await (const f of readLog(config.log.dir)) if (f.record) out.push(f.record);
    return out;
  };
  return {
    dir,
    keysDir,
    policiesDir,
    front,
    address,
    plc,
    line,
    policy,
    sessions,
    approvals,
    token: (sub, roles, opts = {}) => issueToken({ key: issuerKey, sub, roles, ttl: opts.ttl ?? 900, ...(opts.jti !== undefined && { jti: opts.jti }) }),
    async rewritePolicy(name, text) {
      writeFileSync(join(policiesDir, name), fill(text));
      const r = await policy.reload("manual");
      if (!r.ok) throw new Error(`policy reload rejected: ${r.errors.join("; ")}`);
    },
    records,
    decisions: async () => (await records()).filter((r) => r.type === "decision") as unknown as Array<Record<string, unknown>>,
  };
}

/**
 * One front harness for a whole test file, a client PKI from its dev CA, and sessions on the
 * front as a subject with roles (a JWT from the harness's issuer), each closed after the test
 * that opened it. `h` and `pki` are set once the file's `before` has run.
 */
export interface FrontFixture {
  h: FrontHarness;
  pki: ClientPki;
  as(sub: string, roles: readonly string[], ttl?: number): Promise<Connected>;
}

export function frontFixture(t: Test): FrontFixture {
  const open: Connected[] = [];
  const f = {
    async as(sub: string, roles: readonly string[], ttl?: number): Promise<Connected> {
      const c = await openSession(f.h.address.endpointUrl, jwtIdentity(sub, await f.h.token(sub, roles, ttl !== undefined ? { ttl } : {})), { pki: f.pki });
      open.push(c);
      return c;
    },
  } as FrontFixture;
  t.before(async () => {
    f.h = await startFrontHarness(t);
    f.pki = await clientPki(f.h.dir, f.h.keysDir);
  });
  t.afterEach(async () => {
    for (const c of open.splice(0)) await c.close();
  });
  return f;
}
