// DevicePoints (PointIO) through the device registry against the simulated plant on
// 127.0.0.1: the boiler PLC's points (repository policy) and a test bed of wider registers
// read with FC1–4 and decoded, written with FC5/6/16 and read back; device exceptions,
// timeouts and a stopped PLC as bad readings and non-ok outcomes; the packaging line's
// points through an OpcuaDevice; the value conversions both ways.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DataType, DataValue, StatusCodes, Variant, VariantArrayType } from "node-opcua";
import { DeviceRegistry } from "../../src/devices/registry.js";
import { DevicePoints } from "../../src/devices/points.js";
import { outcomeOf, readingOf, scalarOf, variantOf } from "../../src/devices/opcua-points.js";
import type { PolicySet } from "../../src/pdp/policy-set.js";
import { compilePolicies } from "../../src/policy/compile.js";
import { SimulatedPlc } from "../../src/sim/plc.js";
import { SimulatedOpcuaServer } from "../../src/sim/opcua.js";
import { float32FromWords } from "../../src/sim/boiler.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BOILER = readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8");
const LINE = readFileSync(join(ROOT, "policies", "packaging-line.yaml"), "utf8");
const TESTBED = (port: number) => `
asset: testbed
protocol: modbus
endpoint: tcp://127.0.0.1:${port}
unit: 1
front: { unit: 2 }
points:
  flow:     { table: holding, address: 200, type: float32, words: little }
  total:    { table: holding, address: 210, type: uint32 }
  offset:   { table: holding, address: 220, type: int16 }
  energy:   { table: holding, address: 230, type: float64 }
  far:      { table: holding, address: 5000, type: uint16 }
  far_coil: { table: coil, address: 5000 }
rules: []
`;

// node-opcua is slow to start on a busy machine; `tap` gives every file 120 s (.taprc), so does a direct run.
t.setTimeout(120_000);
const dir = t.testdir({});
// Table size 1000: addresses past it answer exception 02, as on a PLC with less memory.
const plc = new SimulatedPlc({ scanMs: 0, tableSize: 1000 });
const plcPort = await plc.start();
t.teardown(() => plc.stop());
const line = new SimulatedOpcuaServer({ pkiDir: join(dir, "sim-pki"), scanMs: 0 });
const linePort = await line.start();
t.teardown(() => line.stop());

function policySet(): PolicySet {
  const r = compilePolicies([
    { file: "boiler-plc.yaml", text: BOILER.replaceAll("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${plcPort}`) },
    { file: "testbed.yaml", text: TESTBED(plcPort) },
    { file: "packaging-line.yaml", text: LINE.replaceAll("opc.tcp://127.0.0.1:14840", `opc.tcp://127.0.0.1:${linePort}`) },
  ]);
  if (!r.set) throw new Error(`test policy does not compile: ${JSON.stringify(r.diagnostics)}`);
  return r.set;
}

const set = policySet();
const devices = new DeviceRegistry({
  modbus: { timeoutMs: 500, connectTimeoutMs: 500, backoff: { initialMs: 10, maxMs: 50 } },
  opcua: { pkiDir: join(dir, "upstream-pki"), requestTimeoutMs: 5000, connectTimeoutMs: 10_000, backoff: { initialMs: 20, maxMs: 200 } },
});
t.teardown(() => devices.stop());
const synced = await devices.sync(set);
if (synced.errors.length > 0 || synced.unsupported.length > 0) throw new Error(`sync: ${JSON.stringify(synced)}`);
const NOW = new Date("2026-03-01T12:00:00.000Z");
const points = new DevicePoints(devices, { now: () => NOW });
const asset = (id: string) => set.assets.get(id)!;
const point = (a: string, p: string) => asset(a).points.get(p)!;
const read = (a: string, p: string) => points.read(asset(a), point(a, p));
const write = (a: string, p: string, v: number | boolean | string) => points.write(asset(a), point(a, p), v);

t.test("boiler: float32 temperature decoded, uint16s, bits; the Modbus reading's clock", async (t) => {
  const temp = await read("boiler-plc", "temperature");
  t.same(temp, { value: plc.temperature(), quality: "good", status: "Good", timestamp: NOW.toISOString() });
  t.equal(Math.round(temp.value as number), 65, "the boiler starts at 65 °C");
  plc.step(10);
  t.equal((await read("boiler-plc", "temperature")).value, plc.temperature(), "follows the process");
  t.match(await read("boiler-plc", "pressure"), { value: plc.memory.input[2], quality: "good" });
  t.match(await read("boiler-plc", "setpoint"), { value: 70, quality: "good" });
  t.match(await read("boiler-plc", "burner_on"), { value: plc.memory.coils[0] === 1, quality: "good" });
  t.match(await read("boiler-plc", "flame"), { value: plc.memory.discrete[0] === 1, quality: "good" });
});

t.test("writes: FC6 one register, FC5 a coil, FC16 wider values, in the point's word order; read back", async (t) => {
  const served = () => plc.stats().served;
  const before = served();
  t.same(await write("boiler-plc", "setpoint", 75), { status: "ok" });
  t.equal(plc.memory.holding[100], 75);
  t.match(await read("boiler-plc", "setpoint"), { value: 75, quality: "good" });
  t.same(await write("boiler-plc", "alarm_reset", true), { status: "ok" });
  t.equal(plc.memory.coils[1], 1);
  t.same(await write("boiler-plc", "alarm_reset", 0), { status: "ok" });
  t.equal(plc.memory.coils[1], 0);
  t.same(await write("testbed", "flow", 12.5), { status: "ok" });
  t.equal(float32FromWords(plc.memory.holding[201]!, plc.memory.holding[200]!), 12.5, "low word first");
  t.match(await read("testbed", "flow"), { value: 12.5, quality: "good" });
  t.same(await write("testbed", "total", 0x12345678), { status: "ok" });
  t.same([plc.memory.holding[210], plc.memory.holding[211]], [0x1234, 0x5678], "high word first");
  t.match(await read("testbed", "total"), { value: 0x12345678 });
  t.same(await write("testbed", "offset", -2), { status: "ok" });
  t.match(await read("testbed", "offset"), { value: -2 });
  t.same(await write("testbed", "energy", Math.PI), { status: "ok" });
  t.match(await read("testbed", "energy"), { value: Math.PI });
  const after = served();
  t.equal((after[6] ?? 0) - (before[6] ?? 0), 2, "FC6 for the one-register writes");
  t.equal((after[5] ?? 0) - (before[5] ?? 0), 2, "FC5 for the coil");
  t.equal((after[16] ?? 0) - (before[16] ?? 0), 3, "FC16 for the wider ones");
  t.same(await write("boiler-plc", "setpoint", 70), { status: "ok" });
});

t.test("device exceptions: a bad reading with the code, device-exception with it", async (t) => {
  t.same(await read("testbed", "far"), { value: null, quality: "bad", status: "exception-02", timestamp: NOW.toISOString() });
  t.same(await read("testbed", "far_coil"), { value: null, quality: "bad", status: "exception-02", timestamp: NOW.toISOString() });
  t.same(await write("testbed", "far", 1), { status: "device-exception", exception: 2 });
  t.same(await write("testbed", "far_coil", true), { status: "device-exception", exception: 2 });
});

t.test("a silent device: timeout; a stopped one: unavailable; back when it returns", async (t) => {
  const dropped = plc.stats().dropped;
  plc.setSilent(true);
  t.match(await read("boiler-plc", "temperature"), { value: null, quality: "bad", status: "timeout" });
  t.same(await write("boiler-plc", "setpoint", 71), { status: "timeout" });
  // Both requests must have reached the PLC before it answers again (else the late write lands).
  for (const end = Date.now() + 10_000; plc.stats().dropped < dropped + 2 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  plc.setSilent(false);
  await plc.stop();
  const down = await read("boiler-plc", "temperature");
  t.match(down, { value: null, quality: "bad", status: /^(unavailable|timeout)$/ }, "never a stale value");
  t.match(await write("boiler-plc", "setpoint", 72), { status: /^(unavailable|timeout)$/ });
  await plc.start({ port: plcPort });
  const end = Date.now() + 10_000;
  let r = await read("boiler-plc", "setpoint");
  while (r.quality !== "good" && Date.now() < end) {
    await new Promise((res) => setTimeout(res, 20));
    r = await read("boiler-plc", "setpoint");
  }
  t.match(r, { quality: "good", status: "Good" }, "reads again after the PLC is back");
  t.equal(plc.memory.holding[100], 70, "the writes that failed never reached the PLC");
});

t.test("packaging line: OPC UA points through the OpcuaDevice", async (t) => {
  t.ok(devices.opcua("packaging-line"), "the registry has its OPC UA device");
  const speed = await read("packaging-line", "speed");
  t.match(speed, { value: 60, quality: "good", status: "Good", timestamp: String });
  t.not(speed.timestamp, NOW.toISOString(), "the device's source timestamp");
  t.match(await read("packaging-line", "count"), { value: Number, quality: "good" });
  t.match(await read("packaging-line", "state"), { value: /^(running|starved|blocked|stopped)$/, quality: "good" });
  t.same(await read("packaging-line", "reset_count"), { value: null, quality: "bad", status: "BadNotReadable", timestamp: NOW.toISOString() }, "a method has no value");
  const writes = line.stats().writes;
  t.same(await write("packaging-line", "speed", 80), { status: "ok" });
  t.equal(line.line.speed(), 80);
  t.match(await read("packaging-line", "speed"), { value: 80 });
  t.same(await write("packaging-line", "speed", 500), { status: "device-exception", exception: "BadOutOfRange" });
  t.equal(line.stats().writes - writes, 2);
  t.same(await write("packaging-line", "speed", 60), { status: "ok" });
  t.same(await write("packaging-line", "speed", 60.5), { status: "ok" }, "a double takes fractions");
  t.same(await write("packaging-line", "speed", 60), { status: "ok" });

  // A read that accepts an older value: from the subscription once the node is monitored.
  const first = await points.read(asset("packaging-line"), point("packaging-line", "count"), 5000);
  t.match(first, { quality: "good" });
  t.equal(first.cacheAgeMs, undefined, "the first read went to the server");
  const deadline = Date.now() + 20_000;
  let held = await points.read(asset("packaging-line"), point("packaging-line", "count"), 5000);
  while (held.cacheAgeMs === undefined && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
    held = await points.read(asset("packaging-line"), point("packaging-line", "count"), 5000);
  }
  t.match(held, { value: line.line.count(), quality: "good", status: "Good", cacheAgeMs: Number }, "then from the subscription, with its age bound");
  t.ok((held.cacheAgeMs as number) <= 5000);
  t.equal((await read("packaging-line", "count")).cacheAgeMs, undefined, "maxAge 0: from the server");
  t.equal((await points.read(asset("boiler-plc"), point("boiler-plc", "temperature"), 5000)).cacheAgeMs, undefined, "a Modbus point is always read");

  await line.stop();
  const down = await read("packaging-line", "speed");
  t.match(down, { value: null, quality: "bad", status: /^(BadServerNotConnected|BadCommunicationError|BadTimeout)$/ }, "never a stale value");
  t.match(await write("packaging-line", "speed", 70), { status: /^(unavailable|timeout)$/ });
  await line.start({ port: linePort });
  const end = Date.now() + 20_000;
  let r = await read("packaging-line", "speed");
  while (r.quality !== "good" && Date.now() < end) {
    await new Promise((res) => setTimeout(res, 50));
    r = await read("packaging-line", "speed");
  }
  t.match(r, { value: 60, quality: "good" }, "back without a new device");
});

t.test("caller bugs reject: a point of another asset, an unwritable point, a value that does not fit", async (t) => {
  await t.rejects(points.read(asset("testbed"), point("boiler-plc", "setpoint")), { name: "RangeError", message: 'point "setpoint" is not a point of asset "testbed"' });
  await t.rejects(write("boiler-plc", "temperature", 1), { name: "TypeError", message: /cannot be written \(input is read-only\)/ });
  await t.rejects(write("packaging-line", "reset_count", 1), { name: "TypeError", message: /a method is called/ });
  await t.rejects(write("boiler-plc", "setpoint", 70000), { name: "RangeError", message: 'value 70000 does not fit point "setpoint" of asset "boiler-plc" (uint16)' });
  await t.rejects(write("boiler-plc", "setpoint", "hot"), RangeError);
  await t.rejects(write("boiler-plc", "alarm_reset", 2), RangeError);
  await t.rejects(write("packaging-line", "speed", "fast"), { name: "RangeError", message: /\(double\)/ });
  t.equal(line.line.speed(), 60);
});

t.test("no device for the asset: bad readings, unavailable writes", async (t) => {
  const empty = new DevicePoints(new DeviceRegistry(), { now: () => NOW });
  t.same(await empty.read(asset("boiler-plc"), point("boiler-plc", "setpoint")), { value: null, quality: "bad", status: "unavailable", timestamp: NOW.toISOString() });
  t.same(await empty.write(asset("boiler-plc"), point("boiler-plc", "setpoint"), 70), { status: "unavailable" });
  t.same(await empty.read(asset("packaging-line"), point("packaging-line", "speed")), { value: null, quality: "bad", status: "BadServerNotConnected", timestamp: NOW.toISOString() });
  t.same(await empty.write(asset("packaging-line"), point("packaging-line", "speed"), 70), { status: "unavailable" });
});

t.test("variantOf: each OPC UA type, and what does not fit", async (t) => {
  const cases: Array<[string, number | boolean | string, DataType | undefined, unknown?]> = [
    ["boolean", true, DataType.Boolean, true],
    ["boolean", 1, DataType.Boolean, true],
    ["boolean", 2, undefined],
    ["sbyte", -128, DataType.SByte, -128],
    ["sbyte", 128, undefined],
    ["byte", 255, DataType.Byte, 255],
    ["byte", -1, undefined],
    ["int16", -32768, DataType.Int16, -32768],
    ["uint16", 65536, undefined],
    ["int32", -2147483648, DataType.Int32, -2147483648],
    ["uint32", 4294967295, DataType.UInt32, 4294967295],
    ["uint32", 1.5, undefined],
    ["int64", -5, DataType.Int64],
    ["uint64", 2 ** 40, DataType.UInt64],
    ["uint64", -1, undefined],
    ["float", 1.5, DataType.Float, 1.5],
    ["float", 1e39, undefined],
    ["double", 1e300, DataType.Double, 1e300],
    ["double", "1", undefined],
    ["string", "x", DataType.String, "x"],
    ["string", 1, undefined],
    ["datetime", "2026-01-02T03:04:05.000Z", DataType.DateTime],
    ["datetime", "not a date", undefined],
    ["uint16", true, undefined],
    ["float32", 1, undefined],
  ];
  for (const [type, value, dataType, expected] of cases) {
    const v = variantOf(type, value);
    t.equal(v?.dataType, dataType, `${type} ${String(value)}`);
    if (v && expected !== undefined) t.equal(v.value, expected);
    if (v && (type === "int64" || type === "uint64" || type === "datetime")) t.equal(scalarOf(v), value, `${type} round trip`);
  }
});

t.test("scalarOf, readingOf, outcomeOf", async (t) => {
  t.equal(scalarOf(new Variant({ dataType: DataType.Double, value: 1.25 })), 1.25);
  t.equal(scalarOf(new Variant({ dataType: DataType.Boolean, value: false })), false);
  t.equal(scalarOf(new Variant({ dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [0x7fffffff, 0xffffffff] })), "9223372036854775807", "past 2^53: a string");
  t.equal(scalarOf(new Variant({ dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [0xffffffff, 0xfffffffe] })), -2);
  t.equal(scalarOf(new Variant({ dataType: DataType.LocalizedText, value: { text: "hi" } })), "hi");
  t.equal(scalarOf(new Variant({ dataType: DataType.Null })), null);
  t.equal(scalarOf(undefined), null);
  t.equal(scalarOf(new Variant({ dataType: DataType.Double, arrayType: 1, value: [1, 2] })), null, "arrays are not scalars");
  const at = new Date("2026-02-03T04:05:06.000Z");
  t.same(readingOf(new DataValue({ value: { dataType: DataType.Double, value: 3 }, statusCode: StatusCodes.Good, sourceTimestamp: at })), { value: 3, quality: "good", status: "Good", timestamp: at.toISOString() });
  t.same(readingOf(new DataValue({ value: { dataType: DataType.Double, value: 3 }, statusCode: StatusCodes.UncertainLastUsableValue, serverTimestamp: at })), { value: null, quality: "bad", status: "UncertainLastUsableValue", timestamp: at.toISOString() }, "only Good carries a value");
  t.same(readingOf(new DataValue({ statusCode: StatusCodes.BadCommunicationError }), () => at), { value: null, quality: "bad", status: "BadCommunicationError", timestamp: at.toISOString() });
  t.same(outcomeOf(StatusCodes.Good), { status: "ok" });
  t.same(outcomeOf(StatusCodes.BadTimeout), { status: "timeout" });
  t.same(outcomeOf(StatusCodes.BadServerNotConnected), { status: "unavailable" });
  t.same(outcomeOf(StatusCodes.BadCommunicationError), { status: "unavailable" });
  t.same(outcomeOf(StatusCodes.BadUserAccessDenied), { status: "device-exception", exception: "BadUserAccessDenied" });
});
