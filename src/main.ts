// Composition root: load config, build the parts, start them in order, stop in reverse.
// Order: keys → policy → decision log → identity (verifier, revocations, sessions) →
// enforcement path → simulated plant (PLC, OPC UA server; if configured) → devices (Modbus,
// OPC UA upstream) → Modbus fronts → OPC UA front → HTTP API.
// Every policy change and session event is logged.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config/schema.js";
import { PolicyStore } from "./policy/store.js";
import { displayPath } from "./policy/load.js";
import { initKeys } from "./auth/keys.js";
import { TokenVerifier } from "./auth/tokens.js";
import { LeaseStore } from "./auth/lease-store.js";
import { RevocationList } from "./auth/revocation.js";
import { SessionRegistry } from "./auth/sessions.js";
import type { SessionEnded, SessionInfo } from "./auth/sessions.js";
import type { Principal } from "./pdp/principal.js";
import { DecisionLog } from "./audit/writer.js";
import { readSigningKey } from "./audit/checkpoint.js";
import type { RecordBody, SessionBody } from "./audit/record.js";
import { Enforcer } from "./pep/enforce.js";
import { ApprovalQueue } from "./pep/approvals.js";
import { SyslogExporter, syslogOptions } from "./audit/syslog.js";
import { TokenBucketRates } from "./pdp/conditions/rate.js";
import { KEY_FILES } from "./auth/keys.js";
import { SimulatedPlc } from "./sim/plc.js";
import type { SimulatedOpcuaServer } from "./sim/opcua.js";
import { DeviceRegistry } from "./devices/registry.js";
import { DevicePoints } from "./devices/points.js";
import type { PointIO } from "./devices/types.js";
import { ModbusFront } from "./fronts/modbus.js";
import type { OpcuaFront } from "./fronts/opcua.js";
import type { FrontAddress } from "./fronts/modbus.js";
import { buildHttpApp } from "./fronts/http/app.js";
import type { HttpApp } from "./fronts/http/app.js";
import { gatewayDecisionLog } from "./fronts/http/decisions.js";
import { RecordFeed } from "./audit/feed.js";
import { Metrics } from "./metrics.js";
import { withOpcua } from "./util/opcua-load.js";

export interface Gateway {
  readonly config: GatewayConfig;
  readonly policy: PolicyStore;
  readonly log: DecisionLog;
  readonly verifier: TokenVerifier;
  readonly revocations: RevocationList;
  readonly sessions: SessionRegistry;
  readonly enforcer: Enforcer;
  readonly devices: DeviceRegistry;
  /** One per `modbus.listeners` entry, started. */
  readonly modbus: readonly ModbusFront[];
  /** The HTTP API and where it listens (absent with `http.enabled: false`). */
  readonly http?: { readonly app: HttpApp; readonly address: FrontAddress; readonly tls: boolean };
  /** The simulated PLC (with `sim.modbus.enabled`). */
  readonly plc?: SimulatedPlc;
  /** The OPC UA front, started (absent with `opcua.front.enabled: false`). */
  readonly opcua?: OpcuaFront;
  /** The simulated OPC UA server (with `sim.opcua.enabled`). */
  readonly opcuaSim?: SimulatedOpcuaServer;
  /** Named points of any asset, read and written through the devices (callers enforce first). */
  readonly points: PointIO;
  stop(): Promise<void>;
}

export function createLogger(): Logger {
  // node-opcua, when a part needs it, is loaded through util/opcua-load.ts, which routes its
  // own messages into this log.
  return pino({ name: "ztgate", level: process.env["ZTGATE_LOG_LEVEL"] ?? "info" });
}

function subjectOfSession(s: SessionInfo): SessionBody["subject"] {
  return { sub: s.sub, iss: s.iss, roles: [...s.roles], sessionId: s.id, ...(s.jti !== undefined && { jti: s.jti }) };
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<Gateway> {
  const stops: Array<() => Promise<void> | void> = [];
  // In reverse order of start: fronts stop taking requests and close their connections, then
  // the devices, the sessions (their end records are logged) and last the decision log, which
  // flushes and writes a signed checkpoint on close. A part failing to stop is logged and the
  // others still stop (the log above all); the first failure is rethrown at the end.
  const stop = async () => {
    let failed: unknown;
    for (const s of stops.splice(0).reverse()) {
      try {
        await s();
      } catch (e) {
        log.error({ err: (e as Error).message }, "stopping a part of the gateway failed");
        failed ??= e;
      }
    }
    if (failed !== undefined) throw failed;
  };
  try {
    const keys = await initKeys(config.keys.dir);
    const created = keys.files.filter((f) => f.status === "created").map((f) => f.file);
    if (created.length > 0) log.info({ dir: displayPath(config.keys.dir), created }, "development keys created (first start)");

    const policy = await PolicyStore.open(config.policy.dir, { watch: config.policy.watch, debounceMs: config.policy.debounceMs });
    stops.push(() => policy.close());

    const decisions = await DecisionLog.open(config.log, { signingKey: await readSigningKey(config.log.keyFile) });
    stops.push(() => decisions.close());
    if (decisions.recovered.torn) log.warn({ torn: decisions.recovered.torn }, "decision log: a torn last line was moved aside; the chain resumes from the last whole record");
    decisions.on("unavailable", (e) => log.error({ err: e.message }, "decision log cannot be written: operations are denied (audit-unavailable)"));
    decisions.on("available", () => log.info("decision log writable again"));
    // The log's one export hook, shared by the syslog export and the HTTP API's live streams.
    const feed = new RecordFeed(decisions, (e) => log.error({ err: (e as Error).message }, "decision log listener failed"));
    const metrics = new Metrics();
    metrics.setSources({ log: () => decisions.stats(), policyRevision: () => policy.current().revision });
    const syslogSettings = syslogOptions(config.log.syslog, "/");
    if (syslogSettings) {
      const exporter = new SyslogExporter(syslogSettings);
      exporter.on("connected", (i) => log.info(i, "syslog collector connected"));
      exporter.on("disconnected", (i) => log.warn({ err: i.error?.message, retryInMs: i.retryInMs }, "syslog collector unreachable; spooling"));
      exporter.on("dropped", (i) => log.error(i, "syslog spool full: oldest messages dropped (the local log keeps them)"));
      await exporter.start();
      feed.subscribe((r, line) => exporter.send(r, line));
      metrics.setSources({ syslog: () => exporter.stats() });
      stops.push(() => exporter.stop());
    }
    const audit = (body: RecordBody) => {
      try {
        decisions.append(body).durable.catch(() => undefined);
      } catch (e) {
        log.error({ err: (e as Error).message, record: body.type }, "decision log refused a record");
      }
    };

    const set = policy.current();
    log.info({ revision: set.revision, dir: displayPath(config.policy.dir), assets: [...set.assets.keys()] }, "policy loaded");
    audit({ type: "policy", event: "loaded", revision: set.revision, files: set.files.length });
    policy.on("reloaded", (r) => metrics.policyReloaded(r.trigger));
    policy.on("rejected", (r) => metrics.policyRejected(r.trigger));
    policy.on("reloaded", (r) => {
      log.info({ revision: r.revision, previousRevision: r.previousRevision, trigger: r.trigger }, "policy reloaded");
      audit({ type: "policy", event: "loaded", revision: r.revision, files: policy.current().files.length });
    });
    policy.on("rejected", (r) => {
      log.warn({ revision: r.revision, trigger: r.trigger, errors: r.errors }, "policy change rejected; previous policy stays in force");
      audit({ type: "policy", event: "rejected", revision: r.revision, errors: r.errors });
    });
    const onHup = () => void policy.reload("sighup");
    process.on("SIGHUP", onHup);
    stops.push(() => void process.off("SIGHUP", onHup));

    // Kept next to the keys: a revocation outlives a restart (an unreadable list stops the start).
    const revocations = await RevocationList.open(join(config.keys.dir, "revocations.json"));
    if (revocations.size > 0) log.info({ file: join(config.keys.dir, "revocations.json"), revocations: revocations.size }, "revocations in force from the revocation list");
    stops.push(() => revocations.saved().catch((e: unknown) => log.error({ err: (e as Error).message }, "revocation list not saved")));
    const verifier = await TokenVerifier.fromConfig(config.issuers, { revocations });
    stops.push(() => verifier.close());
    const sessions = new SessionRegistry({ revocations, onListenerError: (e) => log.error({ err: String(e) }, "session end listener failed") });
    metrics.setSources({ sessions: () => sessions.list().map((s) => ({ protocol: s.protocol, kind: s.kind })) });
    stops.push(() => sessions.stop());
    sessions.on("opened", (e) =>
      audit({ type: "session", event: "opened", session: e.session.id, subject: subjectOfSession(e.session), ...(e.replaces !== undefined && { detail: `replaces ${e.replaces}` }), ...(e.restored && { detail: "lease restored after a restart" }) }),
    );
    sessions.on("renewed", (e) => audit({ type: "session", event: "renewed", session: e.session.id, subject: subjectOfSession(e.session) }));
    sessions.on("ended", (e) => {
      const event = e.why === "expired" ? "expired" : e.why === "replaced" ? "replaced" : e.why === "closed" ? "closed" : "revoked";
      audit({ type: "session", event, session: e.session.id, subject: subjectOfSession(e.session), detail: e.detail });
    });
    await restoreLeases(config, sessions, verifier, log, stops);

    // Writes held for approval; stopped (each pending one refused and logged) before the log closes.
    // A held write is refused once its requester may no longer ask: its session or lease ended
    // (closed, revoked, expired, replaced), its token or certificate revoked, or expired (a lease
    // renewed with a fresh token keeps its writes). Checked at every revocation and session end,
    // by a timer at the requester's expiry, and when an approver answers.
    const requesterNow = (p: Principal): Principal | SessionEnded | undefined => {
      if (p.sessionId === undefined) return p;
      const s = sessions.get(p.sessionId);
      return s === undefined ? undefined : (s.ended ?? s.principal);
    };
    const approvals = new ApprovalQueue({
      log: decisions,
      revision: () => policy.current().revision,
      onDecision: (d, asset) => metrics.decision(d, { asset, action: "write" }),
      requesterEnded: (p) => {
        const now = requesterNow(p);
        if (now === undefined) return { ending: "revoked", why: `the requester's session ${p.sessionId as string} is gone` };
        if ("type" in now) return { ending: now.why === "expired" ? "expired" : "revoked", why: `the requester's session ${p.sessionId as string} ended (${now.why}): ${now.detail}` };
        const revoked = sessions.revokedCredential(now, now.issuedAt);
        if (revoked !== undefined) return { ending: "revoked", why: revoked };
        if (now.expiresAt !== undefined && Date.now() >= now.expiresAt) return { ending: "expired", why: `the requester's credential expired at ${new Date(now.expiresAt).toISOString()}` };
        return undefined;
      },
      requesterExpiry: (p) => {
        const now = requesterNow(p);
        return now !== undefined && !("type" in now) ? now.expiresAt : undefined;
      },
    });
    const unwatchRevocations = sessions.onRevocation(() => approvals.sweep());
    const onSessionEnded = (e: SessionEnded) => approvals.sessionEnded(e.session.id, { ending: e.why === "expired" ? "expired" : "revoked", why: `the requester's session ${e.session.id} ended (${e.why}): ${e.detail}` });
    sessions.on("ended", onSessionEnded);
    stops.push(async () => {
      unwatchRevocations();
      sessions.off("ended", onSessionEnded);
      approvals.stop();
    });
    const enforcer = new Enforcer({
      policy: () => policy.current(),
      log: decisions,
      rates: new TokenBucketRates(),
      onDecision: (d, op) => metrics.decision(d, op),
      onOutcome: (c, status, gatewayMs, deviceMs) => metrics.outcome(c.protocol, status, gatewayMs, deviceMs),
      approvals,
    });

    let plc: SimulatedPlc | undefined;
    const sim = config.sim.modbus;
    if (sim.enabled) {
      const started = new SimulatedPlc({ scanMs: sim.scanMs });
      const port = await started.start({ host: sim.host, port: sim.port, unitId: sim.unitId });
      stops.push(() => started.stop());
      plc = started;
      log.info({ address: `${sim.host}:${port}`, unit: sim.unitId }, "simulated Modbus PLC listening");
    }

    let opcuaSim: SimulatedOpcuaServer | undefined;
    const simUa = config.sim.opcua;
    if (simUa.enabled) {
      const { SimulatedOpcuaServer } = await withOpcua(log, () => import("./sim/opcua.js"));
      const started = new SimulatedOpcuaServer({ scanMs: simUa.scanMs, pkiDir: join(config.keys.dir, "sim-opcua-pki") });
      await started.start({ host: simUa.host, port: simUa.port });
      stops.push(() => started.stop());
      opcuaSim = started;
      log.info({ address: started.endpointUrl() }, "simulated OPC UA server listening");
    }

    const devices = new DeviceRegistry({
      modbus: config.modbus.upstream,
      opcua: { ...config.opcua.upstream, pkiDir: join(config.keys.dir, "opcua-upstream-pki") },
      // Loaded by the first policy with an OPC UA asset (at start, or at a reload that adds one).
      loadOpcua: () => withOpcua(log, () => import("./devices/opcua.js")),
    });
    stops.push(() => devices.stop());
    devices.on("state", (d) => log.info({ endpoint: d.endpoint, state: d.state, assets: d.assets }, "device connection state"));
    devices.on("state", (d) => metrics.deviceState(d));
    metrics.setSources({ devices: () => devices.list() });
    const following = devices.follow(policy);
    stops.push(() => following.unfollow());
    const synced = await following.ready;
    for (const e of synced.errors) log.error({ asset: e.asset, endpoint: e.endpoint, err: e.message }, "asset has no device connection (answered 0A)");
    const points = new DevicePoints(devices);

    const pem = (file: string) => readFile(join(config.keys.dir, file), "utf8");
    const listeners = config.modbus.listeners;
    const tls = listeners.some((l) => l.mode === "mtls") ? { key: await pem(KEY_FILES.serverKey), cert: await pem(KEY_FILES.serverCert), ca: await pem(KEY_FILES.caCert) } : undefined;
    const modbus: ModbusFront[] = [];
    for (const listener of listeners) {
      const drainMs = config.modbus.upstream.timeoutMs + 500;
      const front = new ModbusFront({ listener, policy: () => policy.current(), enforcer, sessions, devices, log, audit, drainMs, ...(tls && { tls }) });
      await front.start();
      stops.push(() => front.stop());
      modbus.push(front);
    }

    let opcua: OpcuaFront | undefined;
    if (config.opcua.front.enabled) {
      const { OpcuaFront } = await withOpcua(log, () => import("./fronts/opcua.js"));
      const front = new OpcuaFront({ settings: config.opcua.front, keysDir: config.keys.dir, policy, enforcer, verifier, sessions, upstream: (asset) => devices.opcua(asset), points, log, audit });
      await front.start();
      stops.push(() => front.stop());
      opcua = front;
    }
    const opcuaFront = opcua;
    metrics.setSources({
      connections: () => ({ modbus: modbus.reduce((n, f) => n + f.stats().open, 0), ...(opcuaFront && { opcua: opcuaFront.stats().channels }) }),
    });

    let http: Gateway["http"];
    if (config.http.enabled) {
      const app = buildHttpApp({
        verifier,
        sessions,
        gatewayRoles: config.gateway,
        log,
        decisions: gatewayDecisionLog({
          append: (body) => {
            metrics.decision({ effect: body.decision, reason: body.reason }, { asset: null, action: body.action });
            const a = decisions.append(body);
            a.durable.catch(() => undefined);
            return a;
          },
          revision: () => policy.current().revision,
          onError: (e) => log.error({ err: (e as Error).message }, "decision log refused a record"),
        }),
        ...(config.http.tls && { https: { key: await pem(KEY_FILES.serverKey), cert: await pem(KEY_FILES.serverCert) } }),
        bodyLimit: config.http.bodyLimit,
        policy,
        enforcer,
        approvals,
        points,
        devices,
        audit: { dir: config.log.dir, healthy: () => decisions.healthy(), feed },
        metrics,
      });
      stops.push(() => app.close());
      await app.listen({ host: config.http.host, port: config.http.port });
      const a = app.server.address() as { address: string; port: number };
      http = { app, address: { host: a.address, port: a.port }, tls: config.http.tls };
      log.info({ address: `${config.http.tls ? "https" : "http"}://${a.address}:${a.port}` }, "HTTP API listening");
    }

    // Every part is up: sign the head now, so that a new log (the first start's) verifies at
    // once rather than only after the first timed checkpoint (log.checkpointEvery.seconds).
    await decisions.checkpoint().catch((e: unknown) => log.error({ err: (e as Error).message }, "decision log: the start checkpoint could not be written"));

    return { config, policy, log: decisions, verifier, revocations, sessions, enforcer, devices, points, modbus, ...(opcua && { opcua }), ...(http && { http }), ...(plc && { plc }), ...(opcuaSim && { opcuaSim }), stop };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

/**
 * Leases outlive a restart: kept in leases.json beside the decision log's directory (LeaseStore)
 * on every change, and opened again here when their token still passes verification exactly as
 * a new one would (not expired, not revoked, issuer, key and audience still configured). Each
 * one restored is logged as an `opened` session record.
 */
async function restoreLeases(config: GatewayConfig, sessions: SessionRegistry, verifier: TokenVerifier, log: Logger, stops: Array<() => Promise<void> | void>): Promise<void> {
  // Beside the decision log's directory and named after it: one list per gateway, as the log is.
  const store = new LeaseStore(`${config.log.dir.replace(/[\\/]+$/, "")}.leases.json`, (e) => log.error({ err: e.message }, "lease list not saved (the leases stay open; retried every second)"));
  const kept = await store.load();
  for (const problem of kept.problems) log.warn({ file: store.file }, `leases left out: ${problem}`);
  let restored = 0;
  for (const l of kept.leases) {
    const v = await verifier.verify(l.token, { via: "bearer" });
    if (!v.ok) log.info({ lease: l.id, source: l.source, reason: v.reason }, `lease not restored: ${v.detail}`);
    else if (l.forOther && !v.principal.roles.some((r) => config.gateway.adminRoles.includes(r))) log.info({ lease: l.id, source: l.source, sub: v.principal.sub }, "lease not restored: it was opened for another address, which needs a role of gateway.adminRoles the token no longer has");
    else if (sessions.restore(l, v.principal)) restored++;
  }
  if (restored > 0) log.info({ file: store.file, leases: restored }, "leases restored");
  sessions.persist(store); // from here on every change is written; the file now says what is open
  stops.push(() => store.close().catch((e: unknown) => log.error({ err: (e as Error).message }, "lease list not saved at stop: the last lease changes may be undone at the next start")));
}
