// Upstream trouble through the OPC UA front (SPEC §5.2): a device that goes away gives bad
// status codes, never its last good value; when it comes back on the same port, values flow
// again without restarting anything in the gateway. Real node-opcua clients over
// SignAndEncrypt, the simulated packaging line behind packaging-line (one OpcuaDevice session)
// and the simulated boiler PLC behind boiler-plc (a Modbus asset read through the front).
import t from "tap";
import { AttributeIds, DataType, TimestampsToReturn } from "node-opcua";
import type { ClientSession, DataValue } from "node-opcua";
import { frontFixture } from "../support/opcua-front.js";
import type { FrontHarness } from "../support/opcua-front.js";

import type { Connected } from "../support/opcua-client.js";

const SPEED = "ns=1;s=packaging-line.speed";
const TEMPERATURE = "ns=1;s=boiler-plc.temperature";
/** What the front answers for a device it cannot reach (opcua-values.ts statusOf, devices/opcua.ts). */
const UNREACHABLE = /^Bad(ServerNotConnected|CommunicationError|NoCommunication|NotConnected)$/;

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

function read(session: ClientSession, nodeId: string): Promise<DataValue> {
  return session.read({ nodeId, attributeId: AttributeIds.Value });
}

const fx = frontFixture(t);
let h: FrontHarness;
t.before(() => {
  h = fx.h;
});
const historian = (): Promise<Connected> => fx.as("hist-1", ["historian"]);

t.test("OPC UA server down: reads and a monitored item go bad; back on the same port: good again, no restart", async (t) => {
  const c = await historian();
  const first = await read(c.session, SPEED);
  t.equal(first.statusCode.name, "Good");
  t.equal(first.value.value, h.line.line.speed());

  const sub = await c.session.createSubscription2({ requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 400, publishingEnabled: true, maxNotificationsPerPublish: 100, priority: 1 });
  const item = await sub.monitor({ nodeId: SPEED, attributeId: AttributeIds.Value }, { samplingInterval: 100, queueSize: 100, discardOldest: true }, TimestampsToReturn.Both);
  const seen: DataValue[] = [];
  item.on("changed", (dv: DataValue) => seen.push(dv));
  await until("a good notification", () => (seen.some((v) => v.statusCode.isGood()) ? true : undefined));
  t.equal(seen.find((v) => v.statusCode.isGood())?.value.value, h.line.line.speed());

  const port = h.line.address()?.port;
  t.ok(port, "the sim listens");
  const mark = seen.length;
  const lastGood = h.line.line.speed();
  await h.line.stop();

  // Reads: a bad status and no value, never the last good one.
  const bad = await until("a bad read", async () => {
    const dv = await read(c.session, SPEED);
    return dv.statusCode.isGood() ? undefined : dv;
  });
  t.match(bad.statusCode.name, UNREACHABLE);
  t.comment(`read while down: ${bad.statusCode.name}`);
  t.equal(bad.value.dataType, DataType.Null, "no value with it");
  for (let i = 0; i < 5; i++) {
    const dv = await read(c.session, SPEED);
    t.match(dv.statusCode.name, UNREACHABLE, `read ${i + 1} while down is bad`);
    t.equal(dv.value.dataType, DataType.Null, "and carries no value");
  }

  // The monitored item: a notification with the bad status.
  const badAt = await until("a bad notification", () => {
    const i = seen.findIndex((v, k) => k >= mark && !v.statusCode.isGood());
    return i >= 0 ? i : undefined;
  });
  const badNote = seen[badAt] as DataValue;
  t.match(badNote.statusCode.name, UNREACHABLE);
  t.comment(`notification while down: ${badNote.statusCode.name}`);
  t.equal(badNote.value.dataType, DataType.Null, "no value with it");

  // The same port, the gateway untouched.
  const down = seen.slice(badAt);
  await h.line.start({ port });
  t.ok(down.every((v) => !v.statusCode.isGood()), "nothing good delivered while the server was down");
  const good = await until("a good read after the restart", async () => {
    const dv = await read(c.session, SPEED);
    return dv.statusCode.isGood() ? dv : undefined;
  });
  t.equal(good.value.value, h.line.line.speed());
  t.equal(good.value.value, lastGood, "the line kept its speed over the restart");
  const again = await until("a good notification after the restart", () => seen.slice(badAt + 1).find((v) => v.statusCode.isGood()));
  t.equal(again.value.value, h.line.line.speed());
  t.equal(again.value.dataType, DataType.Double);

  // The reads while down were allowed and their outcome logged as unavailable.
  const records = await h.records();
  const decisions = new Map(records.filter((r) => r.type === "decision").map((r) => [(r as unknown as { id: string }).id, r as unknown as Record<string, unknown>]));
  const unavailable = records.filter((r) => r.type === "outcome" && r.status === "unavailable").map((r) => decisions.get((r as unknown as { ref: string }).ref));
  t.ok(unavailable.some((d) => d?.["action"] === "read" && (d["target"] as { point?: string }).point === "speed" && d["decision"] === "allow"), "an allowed read of speed with outcome unavailable");
});

t.test("Modbus PLC down: the bridged temperature reads bad; back on the same port: good again", async (t) => {
  const c = await historian();
  const first = await read(c.session, TEMPERATURE);
  t.equal(first.statusCode.name, "Good");
  t.equal(first.value.dataType, DataType.Float);
  const port = h.plc.address()?.port;
  t.ok(port, "the PLC listens");
  await h.plc.stop();

  const bad = await until("a bad read", async () => {
    const dv = await read(c.session, TEMPERATURE);
    return dv.statusCode.isGood() ? undefined : dv;
  });
  t.match(bad.statusCode.name, /^Bad(ServerNotConnected|CommunicationError|NoCommunication|NotConnected|Timeout)$/);
  t.comment(`Modbus read while down: ${bad.statusCode.name}`);
  t.equal(bad.value.dataType, DataType.Null, "no value with it");
  for (let i = 0; i < 3; i++) {
    const dv = await read(c.session, TEMPERATURE);
    t.notOk(dv.statusCode.isGood(), `read ${i + 1} while down is bad (${dv.statusCode.name})`);
    t.equal(dv.value.dataType, DataType.Null, "and carries no value");
  }

  await h.plc.start({ port });
  const good = await until("a good read after the restart", async () => {
    const dv = await read(c.session, TEMPERATURE);
    return dv.statusCode.isGood() ? dv : undefined;
  });
  t.ok(Math.abs((good.value.value as number) - h.plc.boiler.temperature()) < 0.01, "the PLC's temperature");
});
