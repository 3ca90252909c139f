// The upstream pool over real sockets on 127.0.0.1: against the simulated PLC (sharing,
// remapping, down, silent, back, queue bound) and against a scripted device that answers
// wrongly on purpose (malformed answers, unmatched ids, dropped connections).
import t from "tap";
import type { Test } from "tap";
import { once } from "node:events";
import { ModbusDevice, gatewayException, parseEndpoint } from "../../src/devices/modbus.js";
import type { ConnectionState, DeviceResult, ModbusDeviceOptions } from "../../src/devices/modbus.js";
import { SimulatedPlc } from "../../src/sim/plc.js";
import type { PlcRequestEvent } from "../../src/sim/plc.js";
import { encodeRequest } from "../../src/wire/pdu.js";
import { FakeDevice } from "./fake-device.js";
import type { FakeHandler } from "./fake-device.js";
import { until } from "../sim/raw-client.js";

const readHolding = (address: number, quantity = 1) => encodeRequest({ kind: "read-holding-registers", fc: 3, address, quantity });
const writeRegister = (address: number, value: number) => encodeRequest({ kind: "write-single-register", fc: 6, address, value });

async function startPlc(t: Test): Promise<{ plc: SimulatedPlc; port: number }> {
  const plc = new SimulatedPlc({ scanMs: 0 });
  const port = await plc.start();
  t.teardown(() => plc.stop());
  return { plc, port };
}

/** A generous default deadline: only tests about timeouts (against a silent or slow device) get short ones. */
async function startDevice(t: Test, port: number, options: Partial<ModbusDeviceOptions> = {}): Promise<ModbusDevice> {
  const d = new ModbusDevice({ endpoint: `tcp://127.0.0.1:${port}`, backoff: { initialMs: 5, maxMs: 40 }, timeoutMs: 30_000, ...options });
  t.teardown(() => d.stop());
  await d.start();
  return d;
}

async function reach(d: ModbusDevice, state: ConnectionState): Promise<void> {
  while (d.state() !== state) await once(d, "state");
}

function value(r: DeviceResult): number | undefined {
  return r.kind === "ok" ? r.pdu.readUInt16BE(2) : undefined;
}

/** A port nothing listens on (a PLC that was there and went away). */
async function freePort(): Promise<number> {
  const plc = new SimulatedPlc({ scanMs: 0 });
  const port = await plc.start();
  await plc.stop();
  return port;
}

t.test("50 concurrent requests over one connection, each with its own answer and the device's own transaction ids", async (t) => {
  const { plc, port } = await startPlc(t);
  for (let i = 0; i < 50; i++) plc.memory.holding[i] = 1000 + i;
  const seen: PlcRequestEvent[] = [];
  plc.on("request", (r) => seen.push(r));
  const d = await startDevice(t, port);
  t.equal(d.state(), "connecting", "requests may come before the connection is up: they wait in the queue");

  // As if 50 clients had all used transaction id 1: the pool's ids are its own.
  for (let round = 0; round < 2; round++) {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => d.request(1, readHolding(i))));
    t.same(results.map(value), Array.from({ length: 50 }, (_, i) => 1000 + i), `round ${round}: every request got its own answer`);
  }
  t.equal(plc.stats().accepted, 1, "one device connection for all of them");
  t.equal(new Set(seen.map((r) => r.transactionId)).size, 100, "the device saw 100 distinct transaction ids");
  t.ok(seen.every((r) => r.unitId === 1));
  const s = d.stats();
  t.match(s, { state: "connected", connected: 1, sent: 100, answered: 100, inFlight: 0, queued: 0, unmatched: 0, timeouts: 0 });
  t.equal(plc.stats().malformed, 0);
});

t.test("requests asked in one event-loop turn, from any caller, leave in one socket write", async (t) => {
  const { plc, port } = await startPlc(t);
  for (let i = 0; i < 20; i++) plc.memory.holding[i] = 500 + i;
  const d = await startDevice(t, port);
  await reach(d, "connected");
  const before = d.stats().writes;
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => d.request(1, readHolding(i))));
  t.same(results.map(value), Array.from({ length: 20 }, (_, i) => 500 + i), "each got its own answer");
  t.equal(d.stats().writes - before, 1, "20 requests of one turn: one write");
  for (let i = 0; i < 3; i++) t.equal(value(await d.request(1, readHolding(i))), 500 + i);
  t.equal(d.stats().writes - before, 4, "one request per turn: one write each");
  t.match(d.stats(), { sent: 23, answered: 23 });
});

t.test("transaction ids wrap past 65535 without colliding", async (t) => {
  const { plc, port } = await startPlc(t);
  let wrapped = false;
  let last = -1;
  plc.on("request", (r) => {
    if (r.transactionId < last) wrapped = true;
    last = r.transactionId;
  });
  const d = await startDevice(t, port, { maxInFlight: 64 });
  await reach(d, "connected"); // while connecting, everything waits in the queue
  plc.memory.holding[7] = 77;
  let bad = 0;
  // 280 at a time: 64 in flight and the rest within the default queue bound of 256.
  for (let batch = 0; batch < 250; batch++) {
    const rs = await Promise.all(Array.from({ length: 280 }, () => d.request(1, readHolding(7))));
    bad += rs.filter((r) => value(r) !== 77).length;
  }
  t.ok(wrapped, "the ids wrapped");
  t.equal(bad, 0, "70,000 requests, every one answered right");
  t.equal(d.stats().unmatched, 0);
});

t.test("writes and exceptions from the device pass through", async (t) => {
  const { plc, port } = await startPlc(t);
  const d = await startDevice(t, port);
  const w = await d.request(1, writeRegister(100, 64));
  t.same(w, { kind: "ok", pdu: writeRegister(100, 64) }, "a write's echo");
  t.equal(plc.memory.holding[100], 64);
  t.same(await d.request(1, encodeRequest({ kind: "diagnostics", fc: 8, subFunction: 0, data: Buffer.of(1, 2) })), { kind: "exception", code: 1 });
  t.same(await d.request(1, readHolding(100), { request: { kind: "read-holding-registers", fc: 3, address: 100, quantity: 1 } }), { kind: "ok", pdu: Buffer.of(3, 2, 0, 64) }, "a caller's parsed request saves a parse");
});

t.test("device down: unavailable, at once while it stays down", async (t) => {
  const port = await freePort();
  const d = await startDevice(t, port);
  const states: ConnectionState[] = [];
  d.on("state", (s) => states.push(s));
  const early = d.request(1, readHolding(0));
  t.same(await early, { kind: "unavailable", reason: "down" }, "queued while connecting, failed when the attempt failed");
  t.equal(d.state(), "down");
  t.same(await d.request(1, readHolding(0)), { kind: "unavailable", reason: "down" });
  t.ok(d.stats().connectFailures >= 1);
  t.same(states.slice(0, 1), ["down"]);
  t.equal(gatewayException({ kind: "unavailable", reason: "down" }), 0x0a, "the front answers 0A");
});

t.test("device silent: timeout; a late answer is dropped and counted; the connection serves on", async (t) => {
  const { plc, port } = await startPlc(t);
  const d = await startDevice(t, port);
  await reach(d, "connected");
  plc.setSilent(true);
  const r = await d.request(1, readHolding(100), { timeoutMs: 60 });
  t.same(r, { kind: "timeout" });
  t.equal(gatewayException({ kind: "timeout" }), 0x0b, "the front answers 0B");
  const queuedToo = await Promise.all(Array.from({ length: 40 }, () => d.request(1, readHolding(100), { timeoutMs: 30 })));
  t.ok(queuedToo.every((x) => x.kind === "timeout"), "in flight and queued alike");
  t.match(d.stats(), { timeouts: 41, inFlight: 0, queued: 0, state: "connected" });

  plc.setSilent(false);
  plc.setDelay(150);
  t.same(await d.request(1, readHolding(100), { timeoutMs: 20 }), { kind: "timeout" });
  await until(() => d.stats().unmatched === 1, "the late answer");
  plc.setDelay(0);
  t.equal(value(await d.request(1, readHolding(100))), 70, "served again on the same connection");
  t.equal(plc.stats().accepted, 1);
});

t.test("device back: served again without a restart", async (t) => {
  const { plc, port } = await startPlc(t);
  const d = await startDevice(t, port);
  t.equal(value(await d.request(1, readHolding(100))), 70);
  const states: ConnectionState[] = [];
  d.on("state", (s) => states.push(s));
  await plc.stop();
  await reach(d, "down");
  t.same(await d.request(1, readHolding(100)), { kind: "unavailable", reason: "down" });
  plc.memory.holding[100] = 71;
  await plc.start({ port });
  await reach(d, "connected");
  t.equal(value(await d.request(1, readHolding(100))), 71);
  t.same(states.slice(-1), ["connected"]);
  t.ok(states.includes("down"));
  t.ok(d.stats().drops >= 1);

  // Flapping: again and again.
  for (let i = 0; i < 3; i++) {
    await plc.stop();
    await reach(d, "down");
    await plc.start({ port });
    await reach(d, "connected");
    t.equal(value(await d.request(1, readHolding(100))), 71, `back after outage ${i + 2}`);
  }
});

t.test("queue bound: overflow is unavailable", async (t) => {
  const { plc, port } = await startPlc(t);
  const d = await startDevice(t, port, { maxInFlight: 1, maxQueue: 3 });
  await reach(d, "connected");
  plc.setSilent(true);
  const held = Array.from({ length: 4 }, () => d.request(1, readHolding(0), { timeoutMs: 200 }));
  t.match(d.stats(), { inFlight: 1, queued: 3 });
  t.same(await d.request(1, readHolding(0)), { kind: "unavailable", reason: "queue-full" });
  t.equal(d.stats().queueFull, 1);
  t.ok((await Promise.all(held)).every((r) => r.kind === "timeout"));
  plc.setSilent(false);
  t.equal((await d.request(1, readHolding(0))).kind, "ok", "room again once they are gone");
});

t.test("maxConnections: requests spread over the device's connections", async (t) => {
  const { plc, port } = await startPlc(t);
  for (let i = 0; i < 40; i++) plc.memory.holding[i] = i * 3;
  const d = await startDevice(t, port, { maxConnections: 2, maxInFlight: 4 });
  await until(() => d.stats().connected === 2, "two connections");
  const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => d.request(1, readHolding(i))));
  t.same(rs.map(value), Array.from({ length: 40 }, (_, i) => i * 3));
  t.equal(plc.stats().accepted, 2);
});

t.test("a device's malformed answers are never passed on as good", async (t) => {
  // The register address of each read picks what the device does wrong.
  const handler: FakeHandler = (f, reply) => {
    const fc = f.pdu[0] as number;
    const address = f.pdu.readUInt16BE(1);
    if (fc === 6) return reply.answer([6, 0, address, 0, 99]); // echo of another value
    switch (address) {
      case 1: return reply.answer([3, 2, 0, 1]); // byte count 2 for 2 registers
      case 2: return reply.answer([3, 2, 0, 1], { unitId: 9 }); // another unit
      case 3: return reply.answer([0x83, 4]); // device exception: passes through
      case 4: reply.answer([3, 2, 0, 4]); return reply.answer([3, 2, 0, 4]); // twice
      case 5: reply.answer([3, 2, 0, 5], { transactionId: (f.transactionId + 1000) & 0xffff }); return reply.answer([3, 2, 0, 5]); // an id not in flight first
      case 6: return reply.answer([4, 2, 0, 6]); // another function code
      case 7: return reply.answer([0x83, 4, 0]); // exception of 3 bytes
      case 8: return f.conn === 0 ? reply.answer([3, 2, 0, 8], { protocolId: 1 }) : reply.answer([3, 2, 0, 8]); // broken MBAP, then fine
      default: return reply.answer([3, 2, 0, address]);
    }
  };
  const fake = new FakeDevice(handler);
  const port = await fake.start();
  t.teardown(() => fake.stop());
  const d = await startDevice(t, port, { backoff: { initialMs: 1, maxMs: 10 } });
  await reach(d, "connected");

  const r1 = await d.request(1, readHolding(1, 2));
  t.match(r1, { kind: "malformed", reason: /byte count 2, the request needs 4/ });
  t.equal(gatewayException(r1 as Exclude<DeviceResult, { kind: "ok" }>), 0x0b, "answered 0B: no usable answer");
  t.match(await d.request(1, readHolding(2)), { kind: "malformed", reason: /unit 9/ });
  t.same(await d.request(1, readHolding(3)), { kind: "exception", code: 4 });
  t.equal(gatewayException({ kind: "exception", code: 4 }), 4, "device exceptions pass through");
  t.equal(value(await d.request(1, readHolding(4))), 4);
  t.equal(value(await d.request(1, readHolding(5))), 5);
  t.match(await d.request(1, readHolding(6)), { kind: "malformed", reason: /function code 4/ });
  t.match(await d.request(1, readHolding(7)), { kind: "malformed", reason: /exception response is 3 bytes/ });
  t.match(await d.request(1, writeRegister(0, 5)), { kind: "malformed", reason: /not the echo/ });
  await until(() => d.stats().unmatched === 2, "the duplicate and the stray answer");
  t.match(d.stats(), { malformedAnswers: 5, unmatched: 2, malformedFrames: 0 });

  // Broken framing closes the connection; the read is asked again on the next one.
  t.equal(value(await d.request(1, readHolding(8))), 8);
  t.match(d.stats(), { malformedFrames: 1, retries: 1, drops: 1 });
  t.equal(fake.connections(), 2);
});

t.test("a dropped connection: reads asked again once, writes never", async (t) => {
  // Address 8: the first connection closes on it (a moment after, so that it counts as a
  // connection that was up). Address 9: every connection does. FC6: always closes.
  const closeLater = (close: () => void) => setTimeout(close, 5);
  const fake = new FakeDevice((f, reply) => {
    const address = f.pdu.readUInt16BE(1);
    if (f.pdu[0] === 6 || address === 9 || (address === 8 && f.conn === 0)) return closeLater(reply.close);
    reply.answer([3, 2, 0, address]);
  });
  const port = await fake.start();
  t.teardown(() => fake.stop());
  const d = await startDevice(t, port, { backoff: { initialMs: 1, maxMs: 10 } });
  await reach(d, "connected");

  t.equal(value(await d.request(1, readHolding(8))), 8, "read retried on the new connection");
  t.equal(fake.frames.filter((f) => f.pdu.readUInt16BE(1) === 8).length, 2);
  t.equal(d.stats().retries, 1);
  await reach(d, "connected");

  t.same(await d.request(1, writeRegister(3, 1)), { kind: "unavailable", reason: "connection-lost" });
  t.equal(fake.frames.filter((f) => f.pdu[0] === 6).length, 1, "the write reached the device once");
  await reach(d, "connected");

  t.same(await d.request(1, readHolding(9)), { kind: "unavailable", reason: "connection-lost" }, "a read is asked again only once");
  t.equal(fake.frames.filter((f) => f.pdu.readUInt16BE(1) === 9).length, 2);
  await reach(d, "connected");

  t.same(await d.request(1, readHolding(9), { retry: false }), { kind: "unavailable", reason: "connection-lost" });
  t.equal(fake.frames.filter((f) => f.pdu.readUInt16BE(1) === 9).length, 3, "retry: false");
});

t.test("lifecycle and caller bugs", async (t) => {
  const { plc, port } = await startPlc(t);
  const d = new ModbusDevice({ endpoint: `tcp://127.0.0.1:${port}` });
  t.teardown(() => d.stop());
  t.same(await d.request(1, readHolding(0)), { kind: "unavailable", reason: "not-started" });
  await d.stop(); // before start: nothing to do
  await d.start();
  await d.start(); // twice: one connection
  await reach(d, "connected");
  await t.rejects(d.request(1, Buffer.of(3, 0, 0, 0, 0)), RangeError, "a request parseRequest refuses is never sent");
  await t.rejects(d.request(256, readHolding(0)), RangeError);
  await t.rejects(d.request(-1, readHolding(0)), RangeError);

  plc.setSilent(true);
  const pending = [d.request(1, readHolding(0)), d.request(1, readHolding(0))];
  await until(() => plc.stats().dropped === 2, "the device to read them");
  await d.stop();
  t.same(await Promise.all(pending), [
    { kind: "unavailable", reason: "stopped" },
    { kind: "unavailable", reason: "stopped" },
  ]);
  t.equal(d.state(), "down");
  plc.setSilent(false);
  await d.start();
  t.equal(value(await d.request(1, readHolding(100))), 70, "started again");
  t.equal(plc.stats().accepted, 2);
});

t.test("options are checked", async (t) => {
  t.throws(() => new ModbusDevice({ endpoint: "tcp://h:1", maxConnections: 0 }), /maxConnections 0/);
  t.throws(() => new ModbusDevice({ endpoint: "tcp://h:1", timeoutMs: 1.5 }), /timeoutMs/);
  t.throws(() => new ModbusDevice({ endpoint: "udp://h:1" }), /not tcp:\/\/host:port/);
  t.equal(new ModbusDevice({ endpoint: "tcp://[::1]:1502" }).endpoint, "tcp://[::1]:1502");
  t.equal(new ModbusDevice({ endpoint: "tcp://plc.example/" }).endpoint, "tcp://plc.example:502");
});

t.test("parseEndpoint", async (t) => {
  const ok: [string, { host: string; port: number }][] = [
    ["tcp://127.0.0.1:15020", { host: "127.0.0.1", port: 15020 }],
    ["tcp://plc-1.plant.local", { host: "plc-1.plant.local", port: 502 }],
    ["tcp://[fe80::1]:502", { host: "fe80::1", port: 502 }],
  ];
  for (const [e, want] of ok) t.same(parseEndpoint(e), want, e);
  for (const e of ["127.0.0.1:502", "tcp://", "tcp://h:0", "tcp://h:70000", "tcp://h:x", "opc.tcp://h:4840", "tcp://a b:1", "tcp://h:1/path"]) {
    t.throws(() => parseEndpoint(e), RangeError, e);
  }
});
