// OpcuaDevice against the simulated packaging line on 127.0.0.1 (one sim for the file, real
// node-opcua sessions): read/write/call, never a rejection, bad status codes while the server
// is down (never a stale good value), back without a new device when it returns on the same
// port, shared monitored items, SignAndEncrypt with a trusted and an untrusted server.
import t from "tap";
import type { Test } from "tap";
import { once } from "node:events";
import net from "node:net";
import { copyFile, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { DataType, StatusCodes, Variant } from "node-opcua";
import type { DataValue } from "node-opcua";
import { OpcuaDevice, badValue, parseOpcuaEndpoint } from "../../src/devices/opcua.js";
import type { OpcuaDeviceOptions } from "../../src/devices/opcua.js";
import type { ConnectionState } from "../../src/devices/modbus.js";
import { LINE_NODES, SimulatedOpcuaServer } from "../../src/sim/opcua.js";

// node-opcua is slow to start on a busy machine; `tap` gives every file 120 s (.taprc), so does a direct run.
t.setTimeout(120_000);
const dir = t.testdir({});
const sim = new SimulatedOpcuaServer({ pkiDir: join(dir, "sim-pki"), scanMs: 50 });
const port = await sim.start();
t.teardown(() => sim.stop());
const ENDPOINT = `opc.tcp://127.0.0.1:${port}`;
const PKI = join(dir, "client-pki");

function device(t: Test, o: Partial<OpcuaDeviceOptions> = {}): OpcuaDevice {
  const d = new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI, backoff: { initialMs: 20, maxMs: 200 }, requestTimeoutMs: 3000, connectTimeoutMs: 10_000, publishingIntervalMs: 50, ...o });
  t.teardown(() => d.stop());
  return d;
}

async function connected(d: OpcuaDevice): Promise<void> {
  await d.start();
  while (d.state() !== "connected") await once(d, "state");
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const speed = (value: number) => new Variant({ dataType: DataType.Double, value });

t.test("endpoints are checked and normalised; options are checked", async (t) => {
  t.same(parseOpcuaEndpoint("opc.tcp://PLC.example:4841"), { url: "opc.tcp://plc.example:4841", host: "plc.example", port: 4841 });
  t.same(parseOpcuaEndpoint("opc.tcp://10.0.0.5/"), { url: "opc.tcp://10.0.0.5:4840", host: "10.0.0.5", port: 4840 });
  t.same(parseOpcuaEndpoint("opc.tcp://[::1]:4840/UA/Server"), { url: "opc.tcp://[::1]:4840/UA/Server", host: "::1", port: 4840 });
  t.throws(() => parseOpcuaEndpoint("tcp://plc:502"), { name: "RangeError", message: 'OPC UA endpoint "tcp://plc:502" is not opc.tcp://host:port' });
  t.throws(() => parseOpcuaEndpoint("opc.tcp://plc:70000"), /port 70000 is not 1..65535/);
  t.throws(() => new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: "" }), /no PKI folder/);
  t.throws(() => new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI, securityMode: "Sign" }), /security mode Sign does not go with security policy None/);
  t.throws(() => new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI, securityPolicy: "Basic256Sha256" }), /does not go with/);
  t.throws(() => new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI, securityPolicy: "Basic128Rsa15" as "None" }), /is not one of/);
  t.throws(() => new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI, requestTimeoutMs: 0 }), /requestTimeoutMs 0 is not an integer >= 1/);
  const d = new OpcuaDevice({ endpoint: ENDPOINT, pkiDir: PKI });
  t.equal(d.protocol, "opcua");
  t.equal(d.endpoint, ENDPOINT);
  t.equal(d.state(), "down");
  t.equal((await d.read(LINE_NODES.speed)).statusCode.name, "BadServerNotConnected", "not started: not connected");
  await d.stop();
});

t.test("read, write, call through one session; requests wait for the connection being made", async (t) => {
  const d = device(t);
  const states: ConnectionState[] = [];
  d.on("state", (s) => states.push(s));
  await d.start();
  const first = await d.read(LINE_NODES.speed);
  t.equal(first.statusCode.name, "Good", "the first read waited for the connection");
  t.equal(typeof first.value.value, "number");
  t.same(states, ["connecting", "connected"]);
  const before = sim.stats();
  t.equal((await d.write(LINE_NODES.speed, speed(80))).name, "Good");
  t.equal(sim.line.speed(), 80);
  t.equal((await d.read(LINE_NODES.speed)).value.value, 80);
  t.equal((await d.write(LINE_NODES.speed, speed(-5))).name, "BadOutOfRange", "the server's refusal passes through");
  t.equal((await d.write(LINE_NODES.count, new Variant({ dataType: DataType.UInt32, value: 1 }))).name, "BadNotWritable");
  const call = await d.call(LINE_NODES.line, LINE_NODES.resetCount, []);
  t.equal(call.statusCode.name, "Good");
  t.same(call.outputArguments, []);
  const after = sim.stats();
  t.equal(after.writes - before.writes, 3);
  t.equal(after.calls - before.calls, 1);
  t.equal(after.sessions, 1, "one session for everything");
  const state = await d.read(LINE_NODES.state);
  t.match(state.value.value, /^(running|starved|blocked|stopped)$/);
  t.equal((await d.read("ns=1;s=Line1.Nope")).statusCode.name, "BadNodeIdUnknown");
  t.equal((await d.read("not a node id")).statusCode.name, "BadNodeIdInvalid", "never rejects");
  t.equal((await d.write("x=;", speed(1))).name, "BadNodeIdInvalid");
  t.equal((await d.call("bad id", LINE_NODES.resetCount, [])).statusCode.name, "BadNodeIdInvalid");
  t.equal((await d.call(LINE_NODES.line, "ns=1;s=Line1.Nope", [])).statusCode.isGood(), false);
  t.equal((await d.write(LINE_NODES.speed, speed(60))).name, "Good");
  t.equal(sim.stats().sessions, 1);
});

t.test("values move", async (t) => {
  const d = device(t);
  await connected(d);
  const a = (await d.read(LINE_NODES.count)).value.value as number;
  let b = a;
  const end = Date.now() + 15_000;
  while (b <= a && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    b = (await d.read(LINE_NODES.count)).value.value as number;
  }
  t.ok(b > a, `count went from ${a} to ${b}`);
});

t.test("a server that does not answer in time: BadTimeout; the connection stays", async (t) => {
  const d = device(t, { requestTimeoutMs: 300 });
  await connected(d);
  sim.setCallDelay(2000);
  t.teardown(() => sim.setCallDelay(0));
  const r = await d.call(LINE_NODES.line, LINE_NODES.resetCount, []);
  t.equal(r.statusCode.name, "BadTimeout");
  t.same(r.outputArguments, []);
  t.equal(d.stats().timeouts, 1);
  sim.setCallDelay(0);
  // A read may itself miss the 300 ms deadline on a stalled machine: a few tries.
  let after = await d.read(LINE_NODES.speed);
  for (let i = 0; i < 20 && after.statusCode.name === "BadTimeout"; i++) after = await d.read(LINE_NODES.speed);
  t.equal(after.statusCode.name, "Good", "still connected");
  t.equal(d.state(), "connected");
  t.equal(d.stats().drops, 0, "the connection never dropped");
});

t.test("monitor: listeners of one node share one upstream item; the last close removes it", async (t) => {
  const d = device(t);
  await connected(d);
  const a: DataValue[] = [];
  const b: DataValue[] = [];
  const ha = d.monitor(LINE_NODES.count, (v) => a.push(v), { samplingIntervalMs: 50 });
  const hb = d.monitor(LINE_NODES.count, (v) => b.push(v));
  const hs = d.monitor(LINE_NODES.speed, () => undefined);
  await until("one item per node upstream", () => sim.monitoredItems(LINE_NODES.count) === 1 && sim.monitoredItems(LINE_NODES.speed) === 1 && d.stats().monitoredItems === 2);
  t.match(d.stats(), { watches: 2, listeners: 3, monitoredItems: 2 });
  t.same(sim.samplingIntervals(LINE_NODES.speed), [250], "the device's default sampling interval");
  const fast = d.monitor(LINE_NODES.speed, () => undefined, { samplingIntervalMs: 100 });
  await until("the item made faster for a listener that asks for it", () => sim.samplingIntervals(LINE_NODES.speed)[0] === 100);
  d.monitor(LINE_NODES.speed, () => undefined, { samplingIntervalMs: 500 }).close();
  fast.close();
  t.same(sim.samplingIntervals(LINE_NODES.speed), [100], "one item still, never slowed down while it lives");
  await until("changes to both listeners", () => a.length >= 3 && b.length >= 3);
  t.ok(a.every((v) => v.statusCode.isGood()) && b.every((v) => v.statusCode.isGood()));
  t.ok(new Set(a.map((v) => v.value.value)).size >= 2, "the count moves (a change per notification)");

  const late: DataValue[] = [];
  const hl = d.monitor(LINE_NODES.count, (v) => late.push(v));
  await until("the current value for a late listener", () => late.length >= 1);
  t.equal(late[0]!.statusCode.name, "Good");
  t.equal(sim.monitoredItems(LINE_NODES.count), 1, "still one item upstream");

  ha.close();
  ha.close();
  hl.close();
  t.match(d.stats(), { watches: 2, listeners: 2 });
  const n = b.length;
  await until("values still flow to the other listener", () => b.length > n + 1);
  hb.close();
  hs.close();
  await until("items removed upstream", () => sim.monitoredItems(LINE_NODES.count) === 0 && sim.monitoredItems(LINE_NODES.speed) === 0);
  t.match(d.stats(), { watches: 0, listeners: 0, monitoredItems: 0 });

  const unknown: DataValue[] = [];
  const hu = d.monitor("ns=1;s=Line1.Nope", (v) => unknown.push(v));
  await until("a bad status for an unknown node", () => unknown.length >= 1);
  t.equal(unknown[0]!.statusCode.name, "BadNodeIdUnknown");
  hu.close();
  const invalid: DataValue[] = [];
  d.monitor("no such id", (v) => invalid.push(v)).close();
  const invalid2: DataValue[] = [];
  d.monitor("no such id", (v) => invalid2.push(v));
  await until("BadNodeIdInvalid", () => invalid2.length === 1);
  t.equal(invalid2[0]!.statusCode.name, "BadNodeIdInvalid");
  t.same(invalid, []);

  let calls = 0;
  const throwing = d.monitor(LINE_NODES.state, () => {
    calls++;
    throw new Error("a listener's bug");
  });
  const other: DataValue[] = [];
  const ho = d.monitor(LINE_NODES.state, (v) => other.push(v));
  await until("values despite a throwing listener", () => calls >= 1 && other.length >= 1);
  throwing.close();
  ho.close();
});

t.test("reads within maxAge: from the subscription once the node is monitored; maxAge 0 and writes go to the server; the interest lapses", async (t) => {
  const d = device(t, { samplingIntervalMs: 50, readCache: { idleMs: 400 } });
  await connected(d);
  t.equal(d.cached(LINE_NODES.speed, 1000), undefined, "nothing held before a read asked for it");
  const first = await d.read(LINE_NODES.speed, 1000);
  t.equal(first.statusCode.name, "Good", "the first read went to the server");
  t.match(d.stats(), { cacheMisses: 1, readInterests: 1 });
  await until("the value held", () => d.cached(LINE_NODES.speed, 1000) !== undefined);
  t.equal(sim.monitoredItems(LINE_NODES.speed), 1, "one monitored item upstream for the read interest");
  const held = d.cached(LINE_NODES.speed, 1000);
  t.equal(held?.value.value.value, sim.line.speed(), "the server's value");
  t.ok(held && held.ageMs >= 100 && held.ageMs <= 1000, `an age bound of at least sampling + publishing interval, within maxAge (${held?.ageMs} ms)`);
  const reads = sim.stats().reads;
  for (let i = 0; i < 20; i++) d.cached(LINE_NODES.speed, 1000);
  t.equal(sim.stats().reads, reads, "held values cost the server nothing");
  t.equal(d.cached(LINE_NODES.speed, 0), undefined, "maxAge 0: always the server");
  t.equal(d.cached(LINE_NODES.speed, 99), undefined, "maxAge below sampling + publishing interval: never held that young");
  t.equal(d.cached("no such id", 1000), undefined);
  t.equal(d.cached(LINE_NODES.count, 1000), undefined, "a node no read asked for");

  const changed = sim.line.speed() === 60 ? 61 : 60;
  t.ok(sim.line.setSpeed(changed));
  await until("a change at the server held", () => d.cached(LINE_NODES.speed, 1000)?.value.value.value === changed);

  const w = d.write(LINE_NODES.speed, speed(changed + 1));
  t.equal(d.cached(LINE_NODES.speed, 1000), undefined, "nothing held is used while a write is in flight");
  t.equal((await w).name, "Good");
  t.equal(d.cached(LINE_NODES.speed, 1000), undefined, "nor right after it");
  await until("the written value held", () => d.cached(LINE_NODES.speed, 1000)?.value.value.value === changed + 1);
  const c = d.call(LINE_NODES.line, LINE_NODES.resetCount, []);
  t.equal(d.cached(LINE_NODES.speed, 1000), undefined, "nor while a call is");
  await c;
  t.ok(d.stats().cacheHits >= 20);

  await until("the read interest dropped once no read used it for idleMs", () => d.stats().readInterests === 0 && sim.monitoredItems(LINE_NODES.speed) === 0);
  t.equal(d.cached(LINE_NODES.speed, 1000), undefined, "nothing held after");

  const off = device(t, { readCache: { idleMs: 0 } });
  await connected(off);
  t.equal((await off.read(LINE_NODES.speed, 1000)).statusCode.name, "Good");
  t.equal(off.cached(LINE_NODES.speed, 1000), undefined);
  t.match(off.stats(), { readInterests: 0, cacheMisses: 0, watches: 0 }, "readCache.idleMs 0: every read goes to the server");
  const few = device(t, { readCache: { maxItems: 1 } });
  await connected(few);
  await few.read(LINE_NODES.speed, 1000);
  await few.read(LINE_NODES.count, 1000);
  await few.read(LINE_NODES.count, 100);
  t.match(few.stats(), { readInterests: 1 }, "at most maxItems nodes monitored for reads");
  await few.stop();
  t.match(few.stats(), { readInterests: 0, watches: 0 }, "stop releases the read interests and their items");
});

t.test("server down: bad status codes, never stale values; back on the same port without a new device", async (t) => {
  const d = device(t, { requestTimeoutMs: 1000, samplingIntervalMs: 50 });
  await connected(d);
  t.equal((await d.read(LINE_NODES.speed, 2000)).statusCode.name, "Good", "a read that accepts a held value");
  await until("speed held from the subscription", () => d.cached(LINE_NODES.speed, 2000) !== undefined);
  const states: ConnectionState[] = [];
  d.on("state", (s) => states.push(s));
  const seen: DataValue[] = [];
  const seen2: DataValue[] = [];
  const h = d.monitor(LINE_NODES.count, (v) => seen.push(v), { samplingIntervalMs: 50 });
  const h2 = d.monitor(LINE_NODES.count, (v) => seen2.push(v));
  t.teardown(() => (h.close(), h2.close()));
  await until("values", () => seen.some((v) => v.statusCode.isGood()) && seen2.some((v) => v.statusCode.isGood()));

  // A call in flight when the connection drops.
  sim.setCallDelay(5000);
  const inFlight = d.call(LINE_NODES.line, LINE_NODES.resetCount, []);
  await new Promise((r) => setTimeout(r, 100));
  await sim.stop();
  sim.setCallDelay(0);
  t.equal((await inFlight).statusCode.name, "BadCommunicationError", "the connection dropped mid-request");

  await until("bad status to every listener", () => seen.at(-1)!.statusCode.isNotGood() && seen2.at(-1)!.statusCode.isNotGood());
  t.equal(d.cached(LINE_NODES.speed, 60_000), undefined, "no held value once the connection is lost, however old a value the reader accepts");
  t.equal(seen.at(-1)!.statusCode.name, "BadCommunicationError");
  t.equal(seen.at(-1)!.value.value, null, "no value with a bad status");
  await until("down", () => d.state() !== "connected");
  for (const r of [await d.read(LINE_NODES.speed), await d.read(LINE_NODES.count)]) {
    t.match(r.statusCode.name, /^(BadServerNotConnected|BadCommunicationError|BadTimeout)$/);
    t.equal(r.value.value, null);
  }
  t.match((await d.write(LINE_NODES.speed, speed(70))).name, /^(BadServerNotConnected|BadTimeout)$/);
  const whileDown: DataValue[] = [];
  const hd = d.monitor(LINE_NODES.state, (v) => whileDown.push(v));
  await until("a bad status for a listener that comes while down", () => whileDown.length >= 1);
  t.equal(whileDown[0]!.statusCode.isNotGood(), true);
  t.ok(states.includes("down"));

  const writes = sim.stats().writes;
  await sim.start({ port });
  await until("reconnected", () => d.state() === "connected");
  const r = await d.read(LINE_NODES.speed);
  t.equal(r.statusCode.name, "Good", "reads succeed again, same device");
  await until("speed held again on the new connection's subscription", () => d.cached(LINE_NODES.speed, 2000)?.value.value.value === sim.line.speed());
  t.equal(sim.stats().writes, writes, "the write refused while down never reached the server");
  const n = seen.length;
  await until("values flow again to every listener", () => seen.length > n && seen.at(-1)!.statusCode.isGood() && seen2.at(-1)!.statusCode.isGood());
  await until("one item per node again", () => sim.monitoredItems(LINE_NODES.count) === 1 && sim.monitoredItems(LINE_NODES.state) === 1);
  await until("the late listener gets values", () => whileDown.at(-1)!.statusCode.isGood());
  hd.close();
  t.ok(d.stats().drops >= 1);
  t.ok(d.stats().connects >= 2);
});

t.test("stop: waiting and in-flight requests and listeners get BadServerNotConnected; no reconnect after", async (t) => {
  const d = device(t);
  await connected(d);
  const seen: DataValue[] = [];
  d.monitor(LINE_NODES.speed, (v) => seen.push(v));
  await until("a value", () => seen.length > 0);
  sim.setCallDelay(5000);
  t.teardown(() => sim.setCallDelay(0));
  const inFlight = d.call(LINE_NODES.line, LINE_NODES.resetCount, []);
  await new Promise((r) => setTimeout(r, 100));
  await d.stop();
  t.equal((await inFlight).statusCode.name, "BadServerNotConnected");
  t.equal(seen.at(-1)!.statusCode.name, "BadServerNotConnected");
  t.equal(d.state(), "down");
  t.equal((await d.read(LINE_NODES.speed)).statusCode.name, "BadServerNotConnected");
  await d.start();
  t.equal(d.state(), "down", "a stopped device does not start again");
  await d.stop();
});

t.test("SignAndEncrypt Basic256Sha256: a trusted server serves; an unknown one is rejected and named", async (t) => {
  const trusted = join(dir, "pki-trusted");
  await mkdir(join(trusted, "trusted", "certs"), { recursive: true });
  await copyFile(sim.certificateFile(), join(trusted, "trusted", "certs", "sim.pem"));
  const d = device(t, { pkiDir: trusted, securityMode: "SignAndEncrypt", securityPolicy: "Basic256Sha256", requestTimeoutMs: 10_000 });
  await d.start();
  const r = await d.read(LINE_NODES.speed);
  t.equal(r.statusCode.name, "Good");
  t.equal((await d.write(LINE_NODES.speed, speed(60))).name, "Good");

  const untrusted = join(dir, "pki-untrusted");
  const u = device(t, { pkiDir: untrusted, securityMode: "SignAndEncrypt", securityPolicy: "Basic256Sha256", backoff: { initialMs: 200, maxMs: 1000 } });
  const errors: string[] = [];
  u.on("state", (s, e) => {
    if (s === "down" && e) errors.push(e);
  });
  await u.start();
  await until("a failed attempt", () => errors.length > 0, 30_000);
  t.match(errors[0], /BadCertificateUntrusted/);
  t.equal((await u.read(LINE_NODES.speed)).statusCode.isGood(), false);
  t.ok((await readdir(join(untrusted, "rejected"))).length >= 1, "the server's certificate waits in rejected/");
  t.equal(u.stats().connects, 0);
});

t.test("a server that accepts and never answers: the attempt times out, requests waiting for it get BadTimeout", async (t) => {
  const sockets = new Set<net.Socket>();
  const mute = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
  });
  mute.listen(0, "127.0.0.1");
  await once(mute, "listening");
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    mute.close();
  });
  const d = device(t, { endpoint: `opc.tcp://127.0.0.1:${(mute.address() as net.AddressInfo).port}`, connectTimeoutMs: 500, requestTimeoutMs: 200, backoff: { initialMs: 5000, maxMs: 5000 } });
  const states: Array<[ConnectionState, string | undefined]> = [];
  d.on("state", (s, e) => states.push([s, e]));
  await d.start();
  t.equal((await d.read(LINE_NODES.speed)).statusCode.name, "BadTimeout", "waited for the connection being made, within its deadline");
  await until("the attempt to fail", () => d.state() === "down");
  t.match(states.at(-1), ["down", /timed out after 500 ms/]);
  t.equal((await d.read(LINE_NODES.speed)).statusCode.name, "BadServerNotConnected", "down: at once");
  t.equal(d.stats().connectFailures, 1);
});

t.test("badValue: a bad status, no value, a server timestamp", async (t) => {
  const v = badValue(StatusCodes.BadCommunicationError);
  t.equal(v.statusCode.name, "BadCommunicationError");
  t.equal(v.value.value, null);
  t.ok(v.serverTimestamp instanceof Date);
});
