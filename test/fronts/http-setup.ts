// The HTTP API as the gateway builds it, part by part, with real parts: dev keys and tokens,
// the token verifier, the policy store over the default boiler policy (pointed at a simulated
// PLC on a free port; optionally a second asset, `feed-pump`, on a second simulated PLC), a
// real decision log on disk, the enforcement path, the device registry with DevicePoints,
// metrics and the record feed; HTTPS with the dev server certificate when asked. Used by the
// http-*.test.ts files.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Test } from "tap";
import { initKeys, KEY_FILES, readPrivateKey } from "../../src/auth/keys.js";
import { issueToken } from "../../src/auth/issue.js";
import type { IssueTokenOptions } from "../../src/auth/issue.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import { SessionRegistry } from "../../src/auth/sessions.js";
import { RevocationList } from "../../src/auth/revocation.js";
import { readSigningKey } from "../../src/audit/checkpoint.js";
import { RecordFeed } from "../../src/audit/feed.js";
import { DecisionLog } from "../../src/audit/writer.js";
import type { WriterSettings } from "../../src/audit/writer.js";
import { DeviceRegistry } from "../../src/devices/registry.js";
import { DevicePoints } from "../../src/devices/points.js";
import { buildHttpApp } from "../../src/fronts/http/app.js";
import type { HttpApp } from "../../src/fronts/http/app.js";
import { gatewayDecisionLog } from "../../src/fronts/http/decisions.js";
import { Metrics } from "../../src/metrics.js";
import { Enforcer } from "../../src/pep/enforce.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";
import { PolicyStore } from "../../src/policy/store.js";
import { SimulatedPlc } from "../../src/sim/plc.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BOILER_POLICY = readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8");

/** A second Modbus asset (front unit 2) for tests that need decisions on two assets. */
export const FEED_PUMP_POLICY = `asset: feed-pump
description: Boiler feed water pump, line 1
zone: boiler-house
protocol: modbus
endpoint: tcp://127.0.0.1:PORT
unit: 1
front: { unit: 2 }
mode: enforce

points:
  flow:  { table: input, address: 0, type: float32, words: big }
  speed: { table: holding, address: 100, type: uint16, min: 0, max: 3000 }

rules:
  - id: historian-read
    allow: [read, browse]
    subjects: { roles: [historian] }
    points: ["*"]

  - id: mes-speed
    allow: [read, write]
    subjects: { roles: [mes] }
    points: [speed]
    values: { min: 500, max: 2500 }
`;

export interface Api {
  readonly app: HttpApp;
  readonly dir: string;
  readonly logDir: string;
  readonly policyDir: string;
  readonly log: DecisionLog;
  readonly policy: PolicyStore;
  readonly plc: SimulatedPlc;
  /** The feed pump's PLC, with `feedPump: true`. */
  readonly pumpPlc?: SimulatedPlc;
  /** The dev keys (server.pem, ca.pem, …). */
  readonly keysDir: string;
  readonly devices: DeviceRegistry;
  readonly metrics: Metrics;
  readonly feed: RecordFeed;
  /** Sessions, with an in-memory revocation list that the token verifier shares. */
  readonly sessions: SessionRegistry;
  token(sub: string, roles?: readonly string[], over?: Partial<IssueTokenOptions>): Promise<string>;
  /** Listens on 127.0.0.1:0 (HTTPS with `https: true`); the base URL. */
  listen(): Promise<string>;
  call(method: "GET" | "POST" | "PUT" | "DELETE", url: string, o?: { token?: string; body?: unknown; payload?: string }): Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> | undefined; text: string }>;
}

export interface ApiOptions {
  readonly bodyLimit?: number;
  readonly log?: Partial<WriterSettings>;
  /** A second asset, feed-pump, on its own simulated PLC. */
  readonly feedPump?: boolean;
  /** HTTPS with the dev server certificate (certs/server.pem, signed by certs/ca.pem). */
  readonly https?: boolean;
  /** The device timeout, ms (default 500). */
  readonly deviceTimeoutMs?: number;
}

export async function setupApi(t: Test, opts: ApiOptions = {}): Promise<Api> {
  const dir = t.testdir({});
  const keysDir = join(dir, "certs");
  await initKeys(keysDir);
  const key = await readPrivateKey(join(keysDir, KEY_FILES.issuerKey));
  const revocations = new RevocationList();
  const verifier = await TokenVerifier.fromConfig([
    { issuer: "ztgate-dev", audience: "ztgate", publicKey: join(keysDir, KEY_FILES.issuerPublicKey), algorithms: ["EdDSA"], clockTolerance: 0, rolesClaim: "roles" },
  ], { revocations });
  t.teardown(() => verifier.close());

  const plc = new SimulatedPlc({ scanMs: 0 });
  const port = await plc.start({ port: 0 });
  t.teardown(() => plc.stop());
  const policyDir = join(dir, "policies");
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, "boiler-plc.yaml"), BOILER_POLICY.replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${port}`));
  let pumpPlc: SimulatedPlc | undefined;
  if (opts.feedPump) {
    const pump = new SimulatedPlc({ scanMs: 0 });
    const pumpPort = await pump.start({ port: 0 });
    t.teardown(() => pump.stop());
    writeFileSync(join(policyDir, "feed-pump.yaml"), FEED_PUMP_POLICY.replace("PORT", String(pumpPort)));
    pumpPlc = pump;
  }
  const policy = await PolicyStore.open(policyDir);
  t.teardown(() => policy.close());

  const logDir = join(dir, "decisions");
  const settings: WriterSettings = { dir: logDir, syncMs: 2, durability: "group", onFailure: "deny", segmentBytes: 64 << 20, segmentMaxAgeSec: 86400, checkpointEvery: { records: 10_000, seconds: 3600 }, ...opts.log };
  const log = await DecisionLog.open(settings, { signingKey: await readSigningKey(join(keysDir, KEY_FILES.signingKey)), retryMs: 20 });
  t.teardown(() => log.close().catch(() => undefined));
  const feed = new RecordFeed(log);

  const metrics = new Metrics();
  const sessions = new SessionRegistry({ revocations });
  t.teardown(() => sessions.stop());
  metrics.setSources({ log: () => log.stats(), policyRevision: () => policy.current().revision, sessions: () => sessions.list().map((s) => ({ protocol: s.protocol, kind: s.kind })) });
  policy.on("reloaded", (r) => metrics.policyReloaded(r.trigger));
  policy.on("rejected", (r) => metrics.policyRejected(r.trigger));

  const devices = new DeviceRegistry({ modbus: { timeoutMs: opts.deviceTimeoutMs ?? 5000, backoff: { initialMs: 20, maxMs: 100 } } });
  t.teardown(() => devices.stop());
  devices.on("state", (d) => metrics.deviceState(d));
  metrics.setSources({ devices: () => devices.list() });
  const following = devices.follow(policy);
  t.teardown(() => following.unfollow());
  await following.ready;

  const enforcer = new Enforcer({ policy: () => policy.current(), log, rates: new TokenBucketRates(), onDecision: (d, op) => metrics.decision(d, op), onOutcome: (c, status, gatewayMs, deviceMs) => metrics.outcome(c.protocol, status, gatewayMs, deviceMs) });
  const gatewayLog = gatewayDecisionLog({
    append: (body) => {
      const a = log.append(body);
      a.durable.catch(() => undefined);
      return a;
    },
    revision: () => policy.current().revision,
  });
  const app = buildHttpApp({
    verifier,
    sessions,
    gatewayRoles: { adminRoles: ["admin"], auditorRoles: ["auditor"] },
    log: pino({ level: "silent" }),
    decisions: {
      record: (d) => {
        metrics.decision(d, { asset: null, action: d.action });
        return gatewayLog.record(d);
      },
    },
    policy,
    enforcer,
    points: new DevicePoints(devices),
    devices,
    audit: { dir: logDir, healthy: () => log.healthy(), feed },
    metrics,
    ...(opts.bodyLimit !== undefined && { bodyLimit: opts.bodyLimit }),
    ...(opts.https && { https: { key: readFileSync(join(keysDir, KEY_FILES.serverKey), "utf8"), cert: readFileSync(join(keysDir, KEY_FILES.serverCert), "utf8") } }),
  });
  t.teardown(() => app.close());

  const token = (sub: string, roles: readonly string[] = [], over: Partial<IssueTokenOptions> = {}) => issueToken({ key, sub, roles, ttl: 900, ...over });
  const call: Api["call"] = async (method, url, o = {}) => {
    const r = await app.inject({
      method,
      url,
      headers: {
        ...(o.token !== undefined && { authorization: `Bearer ${o.token}` }),
        ...((o.body !== undefined || o.payload !== undefined) && { "content-type": "application/json" }),
      },
      ...(o.body !== undefined && { payload: JSON.stringify(o.body) }),
      ...(o.payload !== undefined && { payload: o.payload }),
    });
    let body: Record<string, unknown> | undefined;
    try {
      body = r.body === "" ? undefined : (JSON.parse(r.body) as Record<string, unknown>);
    } catch {
      body = undefined;
    }
    return { status: r.statusCode, headers: r.headers, body, text: r.body };
  };
  const listen = async () => {
    await app.listen({ host: "127.0.0.1", port: 0 });
    const a = app.server.address() as AddressInfo;
    return `${opts.https ? "https" : "http"}://127.0.0.1:${a.port}`;
  };
  return { app, dir, keysDir, logDir, policyDir, log, policy, plc, ...(pumpPlc && { pumpPlc }), devices, metrics, feed, sessions, token, listen, call };
}
