// The OPC UA front end to end (SPEC §3, §5.2): node-opcua clients over SignAndEncrypt with
// application certificates from the dev CA, real JWTs, the simulated packaging line and boiler
// PLC behind the gateway, every decision checked in the decision log.
import t from "tap";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { generateKeyPair } from "jose";
import { AttributeIds, DataType, MonitoringMode, StatusCodes, TimestampsToReturn, UserTokenPolicy, UserTokenType, Variant, makeBrowsePath } from "node-opcua";
import type { ClientSession, CreateMonitoredItemsRequestOptions, CreateMonitoredItemsResponse, DataValue, EndpointDescription } from "node-opcua";
import { issueToken } from "../../src/auth/issue.js";
import { LINE, frontFixture } from "../support/opcua-front.js";
import type { FrontHarness } from "../support/opcua-front.js";
import { clientPki, connectClient, jwtIdentity, openSession, userCertificate } from "../support/opcua-client.js";
import type { ClientPki, Connected } from "../support/opcua-client.js";

const node = (asset: string, point: string) => `ns=1;s=${asset}.${point}`;
const SPEED = node("packaging-line", "speed");
const COUNT = node("packaging-line", "count");
const STATE = node("packaging-line", "state");
const TEMPERATURE = node("boiler-plc", "temperature");

function pointOf(r: Record<string, unknown>): string | undefined {
  return (r["target"] as { point?: string } | undefined)?.point;
}

/** Polls `f` until it gives something (generous: the box is shared; no timing is asserted). */
async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The raw service (ClientSessionImpl has it; the ClientSession interface does not declare it): every item's own status code. */
function createMonitoredItems(session: ClientSession, request: CreateMonitoredItemsRequestOptions): Promise<CreateMonitoredItemsResponse> {
  return (session as unknown as { createMonitoredItems(r: CreateMonitoredItemsRequestOptions): Promise<CreateMonitoredItemsResponse> }).createMonitoredItems(request);
}

async function subscription(session: ClientSession) {
  return session.createSubscription2({ requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true, maxNotificationsPerPublish: 100, priority: 1 });
}

const fx = frontFixture(t);
let h: FrontHarness;
let pki: ClientPki;
t.before(() => {
  ({ h, pki } = fx);
});
const as = (sub: string, roles: readonly string[], ttl?: number): Promise<Connected> => fx.as(sub, roles, ttl);

t.test("anonymous sessions are refused, and the refusal is logged", async (t) => {
  await t.rejects(openSession(h.address.endpointUrl, { type: UserTokenType.Anonymous }, { pki }), "node-opcua's client finds no anonymous policy to use");
  // A client that sends an anonymous token anyway is refused by the gateway, and that is logged.
  const client = await connectClient(h.address.endpointUrl, { pki });
  t.teardown(() => client.disconnect());
  for (const e of (client as unknown as { _serverEndpoints: EndpointDescription[] })._serverEndpoints) {
    e.userIdentityTokens = [...(e.userIdentityTokens ?? []), new UserTokenPolicy({ policyId: "anonymous", tokenType: UserTokenType.Anonymous })];
  }
  await t.rejects(client.createSession({ type: UserTokenType.Anonymous }));
  const d = await h.decisions();
  t.match(d.at(-1), { decision: "deny", reason: "no-session", subject: null, client: { address: "127.0.0.1", protocol: "opcua", transport: "opcua-sign-encrypt" } });
  t.equal(h.sessions.list().length, 0, "no session opened");
});

t.test("an expired JWT and a JWT signed by another key are refused", async (t) => {
  const expired = await h.token("hist-1", ["historian"], { ttl: -120 });
  await t.rejects(openSession(h.address.endpointUrl, jwtIdentity("hist-1", expired), { pki }));
  const other = await generateKeyPair("EdDSA");
  const forged = await issueToken({ key: other.privateKey, sub: "hist-1", roles: ["historian"], ttl: 900 });
  await t.rejects(openSession(h.address.endpointUrl, jwtIdentity("hist-1", forged), { pki }));
  const wrongName = await h.token("hist-1", ["historian"]);
  await t.rejects(openSession(h.address.endpointUrl, jwtIdentity("someone-else", wrongName), { pki }), "the user name must be the token's sub");
  const refusals = (await h.decisions()).slice(-3);
  t.match(refusals, [
    { decision: "deny", reason: "token-expired", subject: null, client: { protocol: "opcua" } },
    { decision: "deny", reason: "token-invalid", subject: null },
    { decision: "deny", reason: "token-invalid", subject: null },
  ]);
  t.equal(h.sessions.list().length, 0);
});

t.test("historian reads speed (OPC UA asset) and the bridged Modbus temperature", async (t) => {
  const c = await as("hist-1", ["historian"]);
  const [speed, temperature, count] = await c.session.read([
    { nodeId: SPEED, attributeId: AttributeIds.Value },
    { nodeId: TEMPERATURE, attributeId: AttributeIds.Value },
    { nodeId: COUNT, attributeId: AttributeIds.Value },
  ]);
  t.equal(speed?.statusCode.name, "Good");
  t.equal(speed?.value.dataType, DataType.Double);
  t.equal(speed?.value.value, h.line.line.speed());
  t.equal(temperature?.statusCode.name, "Good");
  t.equal(temperature?.value.dataType, DataType.Float, "float32 input registers decoded as Float");
  t.ok(Math.abs((temperature?.value.value as number) - h.plc.boiler.temperature()) < 0.01, "the PLC's temperature");
  t.equal(count?.value.dataType, DataType.UInt32);
  const d = (await h.decisions()).filter((r) => r["action"] === "read");
  t.match(d.find((r) => pointOf(r) === "speed"), {
    decision: "allow",
    rule: "historian-read",
    asset: "packaging-line",
    zone: "packaging",
    subject: { sub: "hist-1", roles: ["historian"], sessionId: String },
    client: { address: "127.0.0.1", port: Number, protocol: "opcua", transport: "opcua-sign-encrypt" },
  });
  t.match(d.find((r) => pointOf(r) === "temperature"), { decision: "allow", asset: "boiler-plc", rule: "historian-read" });
  const outcomes = (await h.records()).filter((r) => r.type === "outcome");
  t.ok(outcomes.length >= 3, "an outcome per forwarded read");
});

t.test("reads within maxAge: answered from the gateway's subscription, each one still decided and logged with the value's age bound", async (t) => {
  const c = await as("hist-cache", ["historian"]);
  const visitor = await as("guest-cache", ["visitor"]);
  const outcomeOf = async (dv: DataValue, sub: string) => {
    const records = await h.records();
    const decision = records.filter((r) => r.type === "decision" && (r as { subject?: { sub?: string } }).subject?.sub === sub).at(-1) as { id: string } | undefined;
    return { dv, outcome: records.find((r) => r.type === "outcome" && (r as { ref?: string }).ref === decision?.id) as Record<string, unknown> | undefined };
  };
  const read = async (maxAge: number) => outcomeOf(await c.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value }, maxAge), "hist-cache");
  const first = await read(5000);
  t.equal(first.dv.statusCode.name, "Good");
  t.equal(first.outcome?.["cacheAgeMs"], undefined, "the first read went to the server (and started monitoring the node)");
  const hit = await until("a read answered from the subscription", async () => {
    const r = await read(5000);
    return r.outcome?.["cacheAgeMs"] !== undefined ? r : undefined;
  });
  t.equal(hit.dv.statusCode.name, "Good");
  t.equal(hit.dv.value.value, h.line.line.speed(), "the server's value");
  t.match(hit.outcome, { status: "ok", cacheAgeMs: Number }, "the outcome says where the value came from");
  t.ok((hit.outcome?.["cacheAgeMs"] as number) <= 5000, "no older than the client allowed");
  const before = (await h.decisions()).length;
  for (let i = 0; i < 5; i++) t.equal((await c.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value }, 5000)).statusCode.name, "Good");
  t.equal((await h.decisions()).length, before + 5, "a decision per read, held value or not");
  const fresh = await read(0);
  t.equal(fresh.dv.statusCode.name, "Good");
  t.match(fresh.outcome, { status: "ok" });
  t.equal(fresh.outcome?.["cacheAgeMs"], undefined, "maxAge 0: from the server");
  const denied = await visitor.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value }, 5000);
  t.equal(denied.statusCode.name, "BadUserAccessDenied", "a value held is no way around the policy");
  t.equal(denied.value.value, null);
});

t.test("historian write and method call: BadUserAccessDenied, nothing reaches the device", async (t) => {
  const c = await as("hist-1", ["historian"]);
  const before = h.line.stats();
  const speedBefore = h.line.line.speed();
  const status = await c.session.write({ nodeId: SPEED, attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.Double, value: 10 }) } });
  t.equal(status.name, "BadUserAccessDenied");
  const call = await c.session.call({ objectId: "ns=1;s=packaging-line", methodId: node("packaging-line", "reset_count"), inputArguments: [] });
  t.equal(call.statusCode.name, "BadUserAccessDenied");
  t.equal(h.line.line.speed(), speedBefore);
  t.equal(h.line.stats().writes, before.writes, "no write reached the device");
  t.equal(h.line.stats().calls, before.calls, "no call reached the device");
  const d = (await h.decisions()).slice(-2);
  t.match(d, [
    { decision: "deny", action: "write", reason: "no-matching-rule", target: { point: "speed" }, values: [{ point: "speed", value: 10 }], subject: { sub: "hist-1" } },
    { decision: "deny", action: "call", reason: "no-matching-rule", target: { point: "reset_count" } },
  ]);
});

t.test("mes writes speed within limits (read back), is refused outside them, calls reset_count", async (t) => {
  const c = await as("mes-1", ["mes"]);
  const write = (v: number) => ({ nodeId: SPEED, attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.Double, value: v }) } });
  // One request, three items: each decided on its own.
  const statuses = await c.session.write([write(75), write(150), { nodeId: COUNT, attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.UInt32, value: 1 }) } }]);
  t.same(statuses.map((s) => s.name), ["Good", "BadUserAccessDenied", "BadUserAccessDenied"]);
  const back = await c.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value });
  t.equal(back.value.value, 75, "read back");
  t.equal(h.line.line.speed(), 75);
  const d = (await h.decisions()).filter((r) => r["action"] === "write").slice(-3);
  t.match(d, [
    { decision: "allow", rule: "mes-speed", values: [{ point: "speed", value: 75 }] },
    { decision: "deny", reason: "value-out-of-range", rule: "mes-speed", values: [{ point: "speed", value: 150 }] },
    { decision: "deny", target: { point: "count" } },
  ]);
  const wrongType = await c.session.write({ nodeId: SPEED, attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.String, value: "fast" }) } });
  t.equal(wrongType.name, "BadTypeMismatch");

  await until("some count", () => (h.line.line.count() > 0 ? true : undefined));
  const r = await c.session.call({ objectId: "ns=1;s=packaging-line", methodId: node("packaging-line", "reset_count"), inputArguments: [] });
  t.equal(r.statusCode.name, "Good");
  t.match((await h.decisions()).filter((x) => x["action"] === "call").at(-1), { decision: "allow", rule: "mes-reset-count", subject: { sub: "mes-1" } });
  t.ok(h.line.stats().calls > 0, "the call reached the line");
});

t.test("browse: points listed per principal; the Objects folder lists the assets it may see", async (t) => {
  const hist = await as("hist-1", ["historian"]);
  const folder = await hist.session.browse("ns=1;s=boiler-plc");
  t.same(folder.references?.map((r) => r.browseName.name).sort(), ["alarm_reset", "burner_on", "flame", "mode", "pressure", "setpoint", "temperature"]);
  const objects = await hist.session.browse("ns=0;i=85");
  t.ok(objects.references?.some((r) => r.browseName.name === "packaging-line"));
  const visitor = await as("guest-1", ["visitor"]);
  const none = await visitor.session.browse("ns=1;s=boiler-plc");
  t.same(none.references ?? [], [], "a principal without browse rights sees no points");
  const objects2 = await visitor.session.browse("ns=0;i=85");
  t.notOk(objects2.references?.some((r) => r.browseName.name === "packaging-line" || r.browseName.name === "boiler-plc"), "nor the asset folders");
  const point = await visitor.session.browse(TEMPERATURE);
  t.equal(point.statusCode.name, "BadUserAccessDenied");
  const read = await visitor.session.read({ nodeId: TEMPERATURE, attributeId: AttributeIds.Value });
  t.equal(read.statusCode.name, "BadUserAccessDenied", "reading by node id is decided too");
  t.match((await h.decisions()).filter((r) => r["action"] === "browse" && r["decision"] === "deny").at(-1), { subject: { sub: "guest-1" }, reason: "no-matching-rule" });
});

t.test("TranslateBrowsePathsToNodeIds is filtered as Browse is: no point or asset a principal may not browse is found by path", async (t) => {
  const path = (p: string) => makeBrowsePath("RootFolder", p);
  const hist = await as("hist-2", ["historian"]);
  const found = await hist.session.translateBrowsePath([path("/Objects/1:boiler-plc/1:temperature"), path("/Objects/1:boiler-plc"), path("/Objects/Server.ServerStatus")]);
  t.same(found.map((r) => r.statusCode.name), ["Good", "Good", "Good"]);
  t.equal(found[0]!.targets?.[0]?.targetId.toString(), TEMPERATURE, "the point's node id");
  t.equal(found[1]!.targets?.[0]?.targetId.toString(), "ns=1;s=boiler-plc");
  t.match((await h.decisions()).filter((r) => r["action"] === "browse").at(-1), { decision: "allow", subject: { sub: "hist-2" }, target: { point: "temperature" } });

  const visitor = await as("guest-2", ["visitor"]);
  const hidden = await visitor.session.translateBrowsePath([path("/Objects/1:boiler-plc/1:temperature"), path("/Objects/1:boiler-plc"), path("/Objects/Server.ServerStatus"), path("/Objects/1:boiler-plc/1:no-such-point")]);
  t.same(hidden.map((r) => r.statusCode.name), ["BadNoMatch", "BadNoMatch", "Good", "BadNoMatch"], "as if the point and the asset were not there; the server's own nodes as before");
  t.same(hidden[0]!.targets ?? [], []);
  t.match((await h.decisions()).filter((r) => r["action"] === "browse" && r["decision"] === "deny").at(-1), { subject: { sub: "guest-2" }, target: { point: "temperature" }, reason: "no-matching-rule" });
  const read = await visitor.session.read({ nodeId: TEMPERATURE, attributeId: AttributeIds.Value });
  t.equal(read.statusCode.name, "BadUserAccessDenied", "and reading by node id is still decided");
});

t.test("X.509 user identity: the role extension gives the role; no role, no session", async (t) => {
  const user = await userCertificate(h.keysDir, { cn: "hist-x509", role: "historian" });
  const c = await openSession(h.address.endpointUrl, { type: UserTokenType.Certificate, certificateData: user.certificateData, privateKey: user.privateKey }, { pki });
  t.teardown(() => c.close());
  const dv = await c.session.read({ nodeId: STATE, attributeId: AttributeIds.Value });
  t.equal(dv.statusCode.name, "Good");
  t.match((await h.decisions()).at(-1), { decision: "allow", subject: { sub: "hist-x509", roles: ["historian"] } });
  const noRole = await userCertificate(h.keysDir, { cn: "nobody" });
  await t.rejects(openSession(h.address.endpointUrl, { type: UserTokenType.Certificate, certificateData: noRole.certificateData, privateKey: noRole.privateKey }, { pki }));
  t.match((await h.decisions()).at(-1), { decision: "deny", reason: "token-invalid", subject: null });

  // A revoked certificate (here its subject) is refused at the next session, not only ended now.
  const revoker = await userCertificate(h.keysDir, { cn: "rev-x509", role: "historian" });
  const identity = { type: UserTokenType.Certificate, certificateData: revoker.certificateData, privateKey: revoker.privateKey } as const;
  const r1 = await openSession(h.address.endpointUrl, identity, { pki });
  t.teardown(() => r1.close());
  t.equal((await r1.session.read({ nodeId: STATE, attributeId: AttributeIds.Value })).statusCode.name, "Good");
  t.ok(h.sessions.revokeBySub("rev-x509").length >= 1, "its open session is ended");
  await t.rejects(openSession(h.address.endpointUrl, identity, { pki }), "a new session with the revoked certificate is refused");
  t.match((await h.decisions()).at(-1), { decision: "deny", reason: "token-revoked", subject: null });
});

t.test("an untrusted client application certificate is refused and lands in rejected/", async (t) => {
  const stranger = await clientPki(h.dir, h.keysDir, { untrusted: true, name: "stranger" });
  const before = await readdir(join(h.front.pki(), "rejected"));
  await t.rejects(openSession(h.address.endpointUrl, jwtIdentity("hist-1", await h.token("hist-1", ["historian"])), { pki: stranger }));
  const after = await until("a certificate in rejected/", async () => {
    const files = await readdir(join(h.front.pki(), "rejected"));
    return files.length > before.length ? files : undefined;
  });
  t.ok(after.some((f) => f.endsWith(".pem") || f.endsWith(".der")), "the client's certificate is kept for an admin to trust");
});

t.test("token expiry closes the OPC UA session, logged", async (t) => {
  const c = await as("hist-2", ["historian"], 6);
  const sessionId = h.sessions.list({ sub: "hist-2" })[0]?.id;
  t.ok(sessionId, "a registry session for the OPC UA session");
  const first = await c.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value });
  t.equal(first.statusCode.name, "Good");
  const failed = await until("the session to be closed", async () => {
    try {
      const dv = await c.session.read({ nodeId: SPEED, attributeId: AttributeIds.Value });
      return dv.statusCode.isGood() ? undefined : dv.statusCode.name;
    } catch (e) {
      return (e as Error).message;
    }
  });
  t.match(failed, /BadSession|closed|Bad/i);
  t.equal(h.sessions.list({ sub: "hist-2" }).length, 0);
  const rec = (await h.records()).filter((r) => r.type === "session" && (r as unknown as { session: string }).session === sessionId);
  t.ok(rec.some((r) => r.type === "session" && r.event === "expired" && r.subject.sub === "hist-2"), "the session's expiry is logged");
  t.ok(rec.some((r) => r.type === "session" && r.event === "expired" && /OPC UA session closed/.test(r.detail ?? "") && r.client?.protocol === "opcua"), "the closed OPC UA session is logged");
});

t.test("monitored items: allowed ones deliver changes, denied ones are refused, a reload stops them and a later one resumes them", async (t) => {
  const c = await as("hist-1", ["historian"]);
  const sub = await subscription(c.session);
  const item = await sub.monitor({ nodeId: COUNT, attributeId: AttributeIds.Value }, { samplingInterval: 50, queueSize: 100, discardOldest: true }, TimestampsToReturn.Both);
  const seen: DataValue[] = [];
  item.on("changed", (dv: DataValue) => seen.push(dv));
  await until("two count changes", () => (seen.filter((v) => v.statusCode.isGood()).length >= 2 ? true : undefined));
  t.ok(seen.every((v) => v.value.dataType === DataType.UInt32 || !v.statusCode.isGood()));
  t.match((await h.decisions()).find((r) => r["action"] === "read" && pointOf(r) === "count" && (r["subject"] as { sub: string } | null)?.sub === "hist-1"), { decision: "allow" });

  const visitor = await as("guest-1", ["visitor"]);
  const vsub = await subscription(visitor.session);
  const denied = await createMonitoredItems(visitor.session, {
    subscriptionId: vsub.subscriptionId,
    timestampsToReturn: TimestampsToReturn.Both,
    itemsToCreate: [{ itemToMonitor: { nodeId: COUNT, attributeId: AttributeIds.Value }, monitoringMode: MonitoringMode.Reporting, requestedParameters: { clientHandle: 7, samplingInterval: 100, queueSize: 1, discardOldest: true } }],
  });
  t.equal(denied.results?.[0]?.statusCode.name, "BadUserAccessDenied");
  t.match((await h.decisions()).at(-1), { decision: "deny", action: "read", target: { point: "count" }, subject: { sub: "guest-1" } });

  // The historian may no longer read count: its live item stops with BadUserAccessDenied.
  await h.rewritePolicy("packaging-line.yaml", LINE.replace(/(id: historian-read[\s\S]*?points: )\["\*"\]/, "$1[speed, state]"));
  const stop = await until("the stop notification", () => seen.find((v) => v.statusCode.name === "BadUserAccessDenied"));
  t.equal(stop.value.dataType, DataType.Null, "no value with it");
  t.match(
    (await h.decisions()).filter((r) => pointOf(r) === "count" && (r["subject"] as { sub: string } | null)?.sub === "hist-1").at(-1),
    { decision: "deny", action: "read", reason: "no-matching-rule", policyRevision: h.policy.current().revision },
  );
  const n = seen.length;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(seen.length, n, "nothing more after the stop");

  // In one request: speed still allowed, count denied, each item on its own.
  const mixed = await createMonitoredItems(c.session, {
    subscriptionId: sub.subscriptionId,
    timestampsToReturn: TimestampsToReturn.Both,
    itemsToCreate: [SPEED, COUNT].map((nodeId, i) => ({ itemToMonitor: { nodeId, attributeId: AttributeIds.Value }, monitoringMode: MonitoringMode.Reporting, requestedParameters: { clientHandle: 100 + i, samplingInterval: 100, queueSize: 1, discardOldest: true } })),
  });
  t.same(mixed.results?.map((r) => r.statusCode.name), ["Good", "BadUserAccessDenied"]);
  t.equal(StatusCodes.Good.name, "Good");

  // Allowed again: the stopped item resumes with the point's values (the decision logged).
  const before = seen.length;
  await h.rewritePolicy("packaging-line.yaml", LINE);
  await until("count values again", () => (seen.slice(before).filter((v) => v.statusCode.isGood()).length >= 2 ? true : undefined));
  t.ok(seen.slice(before).every((v) => !v.statusCode.isGood() || v.value.dataType === DataType.UInt32), "the point's values");
  t.match(
    (await h.decisions()).filter((r) => pointOf(r) === "count" && (r["subject"] as { sub: string } | null)?.sub === "hist-1").at(-1),
    { decision: "allow", action: "read", policyRevision: h.policy.current().revision },
  );
});
