// The simulated packaging line OPC UA server through a plain node-opcua client (not the
// gateway's OpcuaDevice) on 127.0.0.1: its namespace and nodes as policies name them, reads,
// writes, the method, the counters tests rely on (writes, calls, monitored items), the
// security it offers, stop/start on the same port; the line's model stepped by hand.
import t from "tap";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  AttributeIds,
  ClientMonitoredItem,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  resolveNodeId,
} from "node-opcua";
import type { ClientSession, DataValue } from "node-opcua";
import { LINE_NODES, SIM_APPLICATION_URI, SimulatedOpcuaServer } from "../../src/sim/opcua.js";
import { PackagingLine } from "../../src/sim/packaging-line.js";

// node-opcua is slow to start on a busy machine; `tap` gives every file 120 s (.taprc), so does a direct run.
t.setTimeout(120_000);
const dir = t.testdir({});
const sim = new SimulatedOpcuaServer({ pkiDir: join(dir, "sim-pki"), scanMs: 50 });
const port = await sim.start();
t.teardown(() => sim.stop());
// The test client accepts the sim's self-signed certificate (the gateway's client does not).
const clientCm = new OPCUACertificateManager({ rootFolder: join(dir, "client-pki"), automaticallyAcceptUnknownCertificate: true, disableFileWatchers: true });
t.teardown(() => clientCm.dispose());

async function connect(o: { mode?: MessageSecurityMode; policy?: SecurityPolicy } = {}): Promise<{ client: OPCUAClient; session: ClientSession; close: () => Promise<void> }> {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: clientCm,
    securityMode: o.mode ?? MessageSecurityMode.None,
    securityPolicy: o.policy ?? SecurityPolicy.None,
  });
  await client.connect(`opc.tcp://127.0.0.1:${port}`);
  const session = await client.createSession();
  const close = async () => {
    await session.close().catch(() => undefined);
    await client.disconnect();
  };
  return { client, session, close };
}

const read = (s: ClientSession, nodeId: string) => s.read({ nodeId, attributeId: AttributeIds.Value });
const writeSpeed = (s: ClientSession, value: number) => s.write({ nodeId: LINE_NODES.speed, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value } } });

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test("listens on 127.0.0.1, the port asked (0 = a free one); PKI under the folder given", async (t) => {
  t.ok(port > 0);
  t.same(sim.address(), { host: "127.0.0.1", port });
  t.equal(sim.endpointUrl(), `opc.tcp://127.0.0.1:${port}`);
  t.ok(existsSync(sim.certificateFile()), "its certificate is in pkiDir/server/own/certs");
  t.ok(sim.certificateFile().startsWith(join(dir, "sim-pki", "server")));
  await t.rejects(sim.start(), /already listening/);
});

t.test("namespace 1 is the sim's own; the line's nodes as policies name them", async (t) => {
  const c = await connect();
  t.teardown(c.close);
  const ns = await c.session.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value });
  t.equal((ns.value.value as string[])[1], SIM_APPLICATION_URI, "index 1 is the server's own namespace (its application URI)");
  const browse = await c.session.browse(LINE_NODES.line);
  const names = (browse.references ?? []).map((r) => `${r.browseName.namespaceIndex}:${r.browseName.name}=${r.nodeId.toString()}`).sort();
  t.same(
    names.filter((n) => n.startsWith("1:")),
    ["1:Count=ns=1;s=Line1.Count", "1:ResetCount=ns=1;s=Line1.ResetCount", "1:Speed=ns=1;s=Line1.Speed", "1:State=ns=1;s=Line1.State"],
  );
  const speed = await read(c.session, LINE_NODES.speed);
  t.equal(speed.statusCode.name, "Good");
  t.equal(speed.value.dataType, DataType.Double);
  const count = await read(c.session, LINE_NODES.count);
  t.equal(count.value.dataType, DataType.UInt32);
  const state = await read(c.session, LINE_NODES.state);
  t.equal(state.value.dataType, DataType.String);
  t.match(state.value.value, /^(running|starved|blocked|stopped)$/);
  const objects = await c.session.browse("ns=0;i=85");
  t.ok((objects.references ?? []).some((r) => r.nodeId.toString() === LINE_NODES.line), "Line1 is under Objects");
});

t.test("writes and calls: the model follows, bad ones refused, every one counted", async (t) => {
  const c = await connect();
  t.teardown(c.close);
  const before = sim.stats();
  t.equal((await writeSpeed(c.session, 90)).name, "Good");
  t.equal(sim.line.speed(), 90);
  t.equal((await read(c.session, LINE_NODES.speed)).value.value, 90);
  t.equal((await writeSpeed(c.session, -1)).name, "BadOutOfRange");
  t.equal((await writeSpeed(c.session, sim.line.maxSpeed + 1)).name, "BadOutOfRange");
  t.equal(sim.line.speed(), 90, "a refused write changes nothing");
  const wrongType = await c.session.write({ nodeId: LINE_NODES.speed, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.String, value: "fast" } } });
  t.equal(wrongType.name, "BadTypeMismatch");
  const count = await c.session.write({ nodeId: LINE_NODES.count, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.UInt32, value: 5 } } });
  t.equal(count.name, "BadNotWritable", "Count is read-only");
  await until("a count above 0", async () => ((await read(c.session, LINE_NODES.count)).value.value as number) > 0);
  const r = await c.session.call({ objectId: LINE_NODES.line, methodId: LINE_NODES.resetCount, inputArguments: [] });
  t.equal(r.statusCode.name, "Good");
  t.ok(sim.line.count() <= 2, "reset to 0 (a scan or two may have packed a unit since)");
  const after = sim.stats();
  t.equal(after.writes - before.writes, 5, "every write item counted, refused ones too");
  t.equal(after.calls - before.calls, 1);
  t.ok(after.reads > before.reads);
  t.ok(after.sessions >= 1);
  t.equal((await writeSpeed(c.session, 60)).name, "Good");
});

t.test("values move on the scan timer", async (t) => {
  const c = await connect();
  t.teardown(c.close);
  t.equal((await writeSpeed(c.session, 200)).name, "Good");
  const first = (await read(c.session, LINE_NODES.count)).value.value as number;
  await until("the count to grow", async () => ((await read(c.session, LINE_NODES.count)).value.value as number) > first);
  t.pass("Count grew while the line ran");
  t.equal((await writeSpeed(c.session, 60)).name, "Good");
});

t.test("monitored items are counted per node, and uncounted when deleted", async (t) => {
  const c = await connect();
  t.teardown(c.close);
  const sub = await c.session.createSubscription2({ requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 60, publishingEnabled: true });
  const items: ClientMonitoredItem[] = [];
  const seen: DataValue[] = [];
  for (let i = 0; i < 2; i++) {
    const item = ClientMonitoredItem.create(sub, { nodeId: LINE_NODES.count, attributeId: AttributeIds.Value }, { samplingInterval: 50, queueSize: 1 }, TimestampsToReturn.Both);
    item.on("changed", (dv) => seen.push(dv));
    items.push(item);
  }
  await until("two items on Count", () => sim.monitoredItems(LINE_NODES.count) === 2);
  t.equal(sim.monitoredItems(LINE_NODES.speed), 0);
  t.equal(sim.stats().monitoredItems, 2);
  await until("values", () => seen.length >= 2);
  await items[0]!.terminate();
  await until("one item left", () => sim.monitoredItems(LINE_NODES.count) === 1);
  await sub.terminate();
  await until("none left", () => sim.monitoredItems(LINE_NODES.count) === 0);
  t.pass("deleted items are uncounted");
});

t.test("offers None and the OAEP/PSS policies (never PKCS#1 v1.5 ones); SignAndEncrypt works", async (t) => {
  const c = await connect({ mode: MessageSecurityMode.SignAndEncrypt, policy: SecurityPolicy.Basic256Sha256 });
  t.teardown(c.close);
  const endpoints = await c.client.getEndpoints();
  const offered = new Set(endpoints.map((e) => (e.securityPolicyUri ?? "").split("#")[1]));
  t.same([...offered].sort(), ["Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "Basic256Sha256", "None"]);
  t.ok(endpoints.every((e) => e.userIdentityTokens?.some((u) => u.tokenType === 0)), "anonymous allowed everywhere (the legacy device)");
  t.equal((await read(c.session, LINE_NODES.speed)).statusCode.name, "Good");
});

t.test("stop closes every session; a start on the same port serves again, values kept", async (t) => {
  const c = await connect();
  t.equal((await writeSpeed(c.session, 75)).name, "Good");
  const lost = new Promise<void>((resolve) => c.client.once("connection_lost", () => resolve()));
  await sim.stop();
  await lost;
  t.equal(sim.address(), undefined);
  t.equal(sim.endpointUrl(), undefined);
  await c.client.disconnect();
  t.equal(await sim.start({ port }), port);
  const again = await connect();
  t.teardown(again.close);
  t.equal((await read(again.session, LINE_NODES.speed)).value.value, 75, "the line kept its speed");
  t.equal((await writeSpeed(again.session, 60)).name, "Good");
});

t.test("setCallDelay: ResetCount answers late", async (t) => {
  const c = await connect();
  t.teardown(c.close);
  sim.setCallDelay(300);
  t.teardown(() => sim.setCallDelay(0));
  let answered = false;
  const call = c.session.call({ objectId: LINE_NODES.line, methodId: LINE_NODES.resetCount, inputArguments: [] }).then((r) => ((answered = true), r));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(answered, false, "not answered before the delay");
  t.equal((await call).statusCode.name, "Good");
  t.throws(() => sim.setCallDelay(-1), RangeError);
});

t.test("the model: cycle, count, speed limits (stepped by hand)", async (t) => {
  const line = new PackagingLine();
  t.equal(line.speed(), 60);
  t.equal(line.state(), "running");
  line.step(30);
  t.equal(line.count(), 30, "60/min for 30 s");
  t.equal(line.state(), "starved");
  line.step(4);
  t.equal(line.count(), 30, "nothing packed while starved");
  t.equal(line.state(), "running");
  line.step(20);
  t.equal(line.state(), "blocked");
  t.equal(line.count(), 50);
  line.step(3);
  t.equal(line.state(), "running", "the cycle starts again");
  t.equal(line.setSpeed(0), true);
  t.equal(line.state(), "stopped");
  line.step(10);
  t.equal(line.count(), 50, "nothing packed while stopped");
  t.equal(line.setSpeed(-1), false);
  t.equal(line.setSpeed(Number.NaN), false);
  t.equal(line.setSpeed(201), false);
  t.equal(line.speed(), 0);
  line.resetCount();
  t.equal(line.count(), 0);
  line.step(0);
  line.step(-5);
  t.equal(line.state(), "stopped");
  t.throws(() => new PackagingLine({ initialSpeed: 500 }), RangeError);
  t.throws(() => new SimulatedOpcuaServer({ pkiDir: dir, scanMs: -1 }), RangeError);
  const fast = new PackagingLine({ initialSpeed: 120 });
  fast.step(0.5);
  t.equal(fast.count(), 1);
  t.equal(resolveNodeId(LINE_NODES.speed).namespace, 1);
});
