// Monitored items serve only the principal they were decided for (a review found they did
// not): after ActivateSession changes the session's user (or renews its token with other
// roles), and after TransferSubscriptions moves a subscription to another session, the items
// are decided again for whoever owns them now (logged) and stop when that principal may not
// read the point; a later policy reload still reaches them. Also: a session activated on a new
// secure channel is recorded with that channel's client address.
// Real gateway front, real node-opcua sessions, real JWTs (test/support/opcua-front.ts).
import t from "tap";
import { AttributeIds, ClientMonitoredItem, MessageSecurityMode, NumericRange, PublishRequest, TimestampsToReturn, coerceQualifiedName } from "node-opcua";
import type { ClientSession, ClientSubscription, PublishResponse, UserIdentityInfo } from "node-opcua";
import { LINE, frontFixture } from "../support/opcua-front.js";
import { connectClient, jwtIdentity } from "../support/opcua-client.js";

const COUNT = "ns=1;s=packaging-line.count";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function subscribe(session: ClientSession): Promise<{ sub: ClientSubscription; seen: string[] }> {
  const sub = await session.createSubscription2({ requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true, maxNotificationsPerPublish: 100, priority: 1 });
  const seen: string[] = [];
  const item = ClientMonitoredItem.create(sub, { nodeId: COUNT, attributeId: AttributeIds.Value }, { samplingInterval: 50, queueSize: 10, discardOldest: true }, TimestampsToReturn.Both);
  item.on("changed", (dv) => seen.push(dv.statusCode.name));
  return { sub, seen };
}

/** Polls until `f` holds (generous: the box is shared; no timing is asserted). */
async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const fx = frontFixture(t);

function changeUser(session: ClientSession, identity: UserIdentityInfo): Promise<{ isGood(): boolean }> {
  return (session as unknown as { changeUser(i: UserIdentityInfo): Promise<{ isGood(): boolean }> }).changeUser(identity);
}

async function decisionsOf(sub: string): Promise<Array<Record<string, unknown>>> {
  return ((await fx.h.decisions()) as Array<Record<string, unknown>>).filter((r) => (r["subject"] as { sub?: string } | null)?.sub === sub && r["type"] === "decision");
}

t.test("ActivateSession with another user is refused: the session keeps its user and its items", async (t) => {
  const c = await fx.as("mes-9", ["mes"]);
  const { seen } = await subscribe(c.session);
  await until("values for mes", () => seen.filter((s) => s === "Good").length >= 2);
  const status = await changeUser(c.session, jwtIdentity("guest", await fx.h.token("guest", [])));
  t.notOk(status.isGood(), "refused");
  const n = seen.length;
  await until("more values for mes", () => seen.slice(n).includes("Good"));
  t.notOk(seen.includes("BadUserAccessDenied"), "the items go on for mes-9");
  t.ok((await decisionsOf("guest")).some((r) => r["decision"] === "deny" && r["reason"] === "token-invalid"), "the refused change is logged");
});

t.test("ActivateSession of the same user with a token of no roles: the items are decided for it and stop", async (t) => {
  const c = await fx.as("mes-6", ["mes"]);
  const { seen } = await subscribe(c.session);
  await until("values for mes", () => seen.filter((s) => s === "Good").length >= 2);
  t.ok((await changeUser(c.session, jwtIdentity("mes-6", await fx.h.token("mes-6", [])))).isGood(), "the token is renewed");
  await until("the item stopped", () => seen.at(-1) === "BadUserAccessDenied");
  const n = seen.length;
  await sleep(500);
  t.same(seen.slice(n), [], "nothing more after the stop");
  const denies = (await decisionsOf("mes-6")).filter((r) => r["decision"] === "deny" && (r["subject"] as { roles: string[] }).roles.length === 0 && (r["target"] as { point?: string }).point === "count");
  t.ok(denies.length >= 1, "the item's decision for the renewed principal is logged as a deny");
});

async function publish(session: ClientSession, times: number): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < times; i++) {
    const r = await (session as unknown as { performMessageTransaction(req: PublishRequest): Promise<PublishResponse> }).performMessageTransaction(new PublishRequest({ subscriptionAcknowledgements: [] }));
    for (const n of r.notificationMessage?.notificationData ?? []) for (const m of (n as { monitoredItems?: Array<{ value: { statusCode: { name: string } } }> }).monitoredItems ?? []) got.push(m.value.statusCode.name);
    await sleep(200);
  }
  return got;
}

t.test("TransferSubscriptions to a session of other rights (same user name, no roles) is refused", async (t) => {
  const a = await fx.as("mes-8", ["mes"]);
  const { sub } = await subscribe(a.session);
  await sleep(300);
  const b = await fx.as("mes-8", []); // the same user name (node-opcua's transfer check), no roles
  const tr = await (b.session as unknown as { transferSubscriptions(r: object): Promise<{ results: Array<{ statusCode: { name: string } }> }> }).transferSubscriptions({ subscriptionIds: [sub.subscriptionId], sendInitialValues: true });
  t.equal(tr.results[0]?.statusCode.name, "BadUserAccessDenied", "refused: its items were decided for other rights");
  await t.rejects(publish(b.session, 1), /BadNoSubscription/, "the destination has no subscription: it gets nothing of it");
  t.ok((await decisionsOf("mes-8")).some((r) => r["decision"] === "deny" && (r["subject"] as { roles: string[] }).roles.length === 0), "the refusal is logged");
});

t.test("TransferSubscriptions to an allowed session: it keeps serving; a later reload that removes the right stops it", async (t) => {
  const a = await fx.as("mes-7", ["mes"]);
  const { sub } = await subscribe(a.session);
  await sleep(300);
  const b = await fx.as("mes-7", ["mes"]);
  await (b.session as unknown as { transferSubscriptions(r: object): Promise<unknown> }).transferSubscriptions({ subscriptionIds: [sub.subscriptionId], sendInitialValues: true });
  await a.close(); // its creator is gone: the item belongs to B
  const got = await publish(b.session, 4);
  t.ok(got.includes("Good"), "B gets values");
  t.teardown(() => fx.h.rewritePolicy("packaging-line.yaml", LINE));
  await fx.h.rewritePolicy("packaging-line.yaml", LINE.replace(/- id: mes-read\n {4}allow: \[read, browse\]\n {4}subjects: \{ roles: \[mes\] \}\n {4}points: \["\*"\]\n/, ""));
  t.notOk(fx.h.policy.current().assets.get("packaging-line")?.rules.some((r) => r.id === "mes-read"), "mes-read is gone");
  const after = await publish(b.session, 5);
  t.ok(after.includes("BadUserAccessDenied"), "stopped by the reload");
  t.notOk(after.slice(after.indexOf("BadUserAccessDenied") + 1).includes("Good"));
});

t.test("a session activated on a new secure channel is recorded with that channel's client", async (t) => {
  const a = await fx.as("hist-8", ["historian"]);
  await a.session.read({ nodeId: COUNT, attributeId: AttributeIds.Value });
  const before = (await decisionsOf("hist-8")).at(-1)?.["client"] as { port: number };
  const c2 = await connectClient(fx.h.address.endpointUrl, { pki: fx.pki, mode: MessageSecurityMode.SignAndEncrypt });
  t.teardown(() => c2.disconnect());
  await (c2 as unknown as { reactivateSession(s: ClientSession): Promise<void> }).reactivateSession(a.session);
  await a.client.disconnect(); // the old channel is gone
  t.equal((await a.session.read({ nodeId: COUNT, attributeId: AttributeIds.Value })).statusCode.name, "Good", "served on the new channel");
  const after = (await decisionsOf("hist-8")).at(-1)?.["client"] as { port: number };
  t.not(after.port, before.port, "the record names the new channel's client port");
});

t.test("a Read of a point's Value with an indexRange or a dataEncoding is refused, not answered with the whole value", async (t) => {
  const c = await fx.as("hist-7", ["historian"]);
  const r = await c.session.read([
    { nodeId: COUNT, attributeId: AttributeIds.Value, indexRange: new NumericRange("5:7") },
    { nodeId: COUNT, attributeId: AttributeIds.Value, dataEncoding: coerceQualifiedName("Default Binary") },
    { nodeId: COUNT, attributeId: AttributeIds.Value },
  ]);
  t.same(r.map((d) => d.statusCode.name), ["BadIndexRangeNoData", "BadDataEncodingInvalid", "Good"]);
});
