// The simulated PLC over real sockets on 127.0.0.1: every function code checked with a client
// the project did not write (Debian's pymodbus), the process model stepped by hand, and the
// faults the upstream pool's tests rely on (malformed counting, silence, delay, restart).
import t from "tap";
import type { Test } from "tap";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SimulatedPlc, TABLE_SIZE } from "../../src/sim/plc.js";
import { BOILER_POINTS, Boiler, BoilerMode, float32FromWords } from "../../src/sim/boiler.js";
import type { PlcMemory } from "../../src/sim/boiler.js";
import { RawClient, frame, until } from "./raw-client.js";

const PY = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("../fixtures/pymodbus-client.py", import.meta.url));
const run = promisify(execFile);

type PyResult = { bits?: number[]; registers?: number[]; ok?: boolean; exception?: number; error?: string; information?: Record<string, string>; conformity?: number; [k: string]: unknown };

async function pymodbus(port: number, unit: number, ops: object[]): Promise<PyResult[]> {
  const { stdout } = await run(PY, [SCRIPT, "127.0.0.1", String(port), String(unit), JSON.stringify(ops)], { timeout: 30_000 });
  return (JSON.parse(stdout) as { results: PyResult[] }).results;
}

async function startPlc(t: Test, options: ConstructorParameters<typeof SimulatedPlc>[0] = { scanMs: 0 }): Promise<{ plc: SimulatedPlc; port: number }> {
  const plc = new SimulatedPlc(options);
  const port = await plc.start();
  t.teardown(() => plc.stop());
  return { plc, port };
}

t.test("pymodbus: every function code the PLC serves, read back", async (t) => {
  const { plc, port } = await startPlc(t);
  const r = await pymodbus(port, 1, [
    { op: "read_holding_registers", address: 100, count: 2 },
    { op: "read_input_registers", address: 0, count: 3 },
    { op: "read_coils", address: 0, count: 2 },
    { op: "read_discrete_inputs", address: 0, count: 2 },
    { op: "write_coil", address: 10, value: 1 },
    { op: "write_register", address: 200, value: 1234 },
    { op: "write_coils", address: 20, values: [1, 0, 1, 1, 0, 0, 0, 0, 1] },
    { op: "write_registers", address: 300, values: [1, 2, 3] },
    { op: "mask_write_register", address: 200, and_mask: 0xf0f0, or_mask: 0x0005 },
    { op: "readwrite_registers", read_address: 300, read_count: 3, write_address: 301, write_registers: [9] },
    { op: "read_coils", address: 10, count: 1 },
    { op: "read_coils", address: 20, count: 9 },
    { op: "read_holding_registers", address: 200, count: 1 },
    { op: "read_holding_registers", address: 65535, count: 1 },
  ]);
  t.same(r[0], { registers: [70, BoilerMode.Auto] }, "setpoint starts at 70, mode auto");
  const regs = r[1]?.registers as number[];
  t.equal(regs.length, 3);
  t.equal(float32FromWords(regs[0] as number, regs[1] as number), plc.temperature(), "temperature as float32, high word first");
  t.equal(regs[2], plc.memory.input[2], "pressure");
  t.same(r[2], { bits: [1, 0] }, "burner on below the setpoint at start, alarm_reset 0");
  t.same(r[3], { bits: [1, 0] }, "flame follows the burner, no alarm");
  t.same(r[4], { ok: true, address: 10, value: 1 });
  t.same(r[5], { ok: true, address: 200, value: 1234 });
  t.same(r[6], { ok: true, address: 20, count: 9 });
  t.same(r[7], { ok: true, address: 300, count: 3 });
  t.same(r[8], { ok: true, address: 200, and_mask: 0xf0f0, or_mask: 0x0005 });
  t.same(r[9], { registers: [1, 9, 3] }, "FC23 writes before it reads");
  t.same(r[10], { bits: [1] });
  t.same(r[11], { bits: [1, 0, 1, 1, 0, 0, 0, 0, 1] });
  // (1234 AND 0xF0F0) OR (5 AND NOT 0xF0F0) = 0x00D0 | 0x0005
  t.same(r[12], { registers: [0xd5] }, "mask write as the Modbus spec defines it");
  t.same(r[13], { registers: [0] }, "the last address exists");
  t.equal(plc.memory.holding[302], 3);
  t.same(plc.stats().served, { 1: 3, 2: 1, 3: 3, 4: 1, 5: 1, 6: 1, 15: 1, 16: 1, 22: 1, 23: 1 });
  t.equal(plc.stats().malformed, 0);
});

t.test("pymodbus: device identification (FC43/14)", async (t) => {
  const { port } = await startPlc(t);
  const r = await pymodbus(port, 1, [
    { op: "read_device_information", read_code: 1 },
    { op: "read_device_information", read_code: 2 },
    { op: "read_device_information", read_code: 4, object_id: 1 },
    { op: "read_device_information", read_code: 4, object_id: 0x80 },
  ]);
  t.same(r[0], { information: { 0: "ztgate", 1: "SIM-BOILER", 2: "1.0" }, conformity: 0x82, read_code: 1 }, "basic");
  t.same(Object.keys(r[1]?.information ?? {}), ["0", "1", "2", "3", "4", "5"], "regular");
  t.same(r[2]?.information, { 1: "SIM-BOILER" }, "individual access");
  t.same(r[3], { exception: 2 }, "an object the PLC does not have");
});

t.test("an identity object too long for one FC43/14 answer is refused at construction, naming it", async (t) => {
  t.throws(() => new SimulatedPlc({ scanMs: 0, identity: { vendor: "V".repeat(245) } }), { name: "RangeError", message: /identity\.vendor is 245 bytes; an identification object holds at most 244/ });
  const { port } = await startPlc(t, { scanMs: 0, identity: { vendor: "V".repeat(244) } });
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  c.send(frame(1, 1, [0x2b, 0x0e, 0x04, 0x00]));
  const [a] = await c.next(1);
  t.equal(a?.pdu.length, 253, "the longest one fits exactly");
});

t.test("pymodbus: exception 02 past the PLC's memory", async (t) => {
  const { plc, port } = await startPlc(t, { scanMs: 0, tableSize: 1000 });
  const r = await pymodbus(port, 1, [
    { op: "read_holding_registers", address: 999, count: 1 },
    { op: "read_holding_registers", address: 999, count: 2 },
    { op: "read_coils", address: 1000, count: 1 },
    { op: "read_discrete_inputs", address: 990, count: 20 },
    { op: "read_input_registers", address: 5000, count: 1 },
    { op: "write_coil", address: 1000, value: 1 },
    { op: "write_register", address: 1000, value: 1 },
    { op: "write_coils", address: 999, values: [1, 1] },
    { op: "write_registers", address: 999, values: [1, 1] },
    { op: "mask_write_register", address: 4000, and_mask: 0, or_mask: 1 },
    { op: "readwrite_registers", read_address: 0, read_count: 1, write_address: 1000, write_registers: [1] },
    { op: "readwrite_registers", read_address: 1000, read_count: 1, write_address: 0, write_registers: [1] },
  ]);
  t.same(r[0], { registers: [0] });
  for (const x of r.slice(1)) t.same(x, { exception: 2 });
  t.equal(plc.memory.coils[1000], 0, "nothing was written past the memory");
  t.equal(plc.memory.holding[0], 0, "FC23 refused whole: its write did not happen");
  t.equal(plc.stats().exceptions[2], 11);
  t.throws(() => new SimulatedPlc({ tableSize: TABLE_SIZE + 1 }), RangeError);
});

t.test("exception 01 for function codes the PLC does not serve; exception 03 and a count for invalid requests", async (t) => {
  const { plc, port } = await startPlc(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  c.send(
    frame(1, 1, [8, 0, 0, 0x12, 0x34]), // diagnostics: not served
    frame(2, 1, [7]), // read exception status
    frame(3, 1, [43, 13, 1, 0]), // MEI type 13 (CANopen)
    frame(4, 1, [3, 0, 0, 0, 0]), // quantity 0: invalid
    frame(5, 1, [0x83, 0, 0, 0, 1]), // an exception code as a function code
    frame(6, 1, [16, 0, 0, 0, 1, 3, 0, 1, 2]), // byte count does not match
  );
  const answers = await c.next(6);
  t.same(
    answers.map((a) => [a.transactionId, a.unitId, a.pdu.toString("hex")]),
    [
      [1, 1, "8801"],
      [2, 1, "8701"],
      [3, 1, "ab01"],
      [4, 1, "8303"],
      [5, 1, "8301"],
      [6, 1, "9003"],
    ],
  );
  const s = plc.stats();
  t.equal(s.invalidRequests, 3);
  t.equal(s.malformedFrames, 0);
  t.equal(s.malformed, 3, "invalid PDUs are malformed too: a gateway never forwards one");
});

t.test("framing errors are counted and close the connection", async (t) => {
  const { plc, port } = await startPlc(t);
  const reasons: string[] = [];
  plc.on("malformed", (r) => reasons.push(r));
  for (const bad of [frame(1, 1, [3, 0, 0, 0, 1], 1), frame(1, 1, [3, 0, 0, 0, 1], 0, 300), frame(1, 1, [], 0, 1)]) {
    const c = await RawClient.connect(port);
    c.send(bad);
    await c.closed;
  }
  // A valid frame in front of the bad one is still answered.
  const c = await RawClient.connect(port);
  c.send(frame(9, 1, [3, 0, 100, 0, 1]), Buffer.from([0, 1, 0, 7]));
  const [ok] = await c.next(1);
  t.equal(ok?.pdu.toString("hex"), "03020046");
  await c.closed;
  t.equal(plc.stats().malformedFrames, 4);
  t.equal(plc.stats().malformed, 4);
  t.equal(reasons.length, 4);
  t.match(reasons[0], /protocol id is 1/);
  await until(() => plc.stats().connections === 0, "the PLC to let go of closed connections");
});

t.test("frames split anywhere are reassembled", async (t) => {
  const { port } = await startPlc(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  const bytes = Buffer.concat([frame(1, 1, [3, 0, 100, 0, 2]), frame(2, 1, [1, 0, 0, 0, 1])]);
  for (const b of bytes) {
    c.send(Buffer.of(b));
    await new Promise((r) => setImmediate(r));
  }
  const [a, b] = await c.next(2);
  t.equal(a?.pdu.toString("hex"), "030400460001");
  t.equal(b?.pdu.toString("hex"), "010101");
});

t.test("unit ids: its own and 0xFF answered, others ignored", async (t) => {
  const { plc, port } = await startPlc(t);
  await plc.stop();
  const port2 = await plc.start({ port, unitId: 7 });
  t.equal(port2, port);
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  const req = [3, 0, 100, 0, 1];
  c.send(frame(1, 1, req), frame(2, 7, req), frame(3, 0, req), frame(4, 0xff, req));
  const answers = await c.next(2);
  t.same(answers.map((a) => [a.transactionId, a.unitId]), [[2, 7], [4, 0xff]]);
  t.equal(plc.stats().ignored, 2);
  t.equal(c.pending(), 0);
});

t.test("pipelined requests are answered in order, also when delayed", async (t) => {
  const { plc, port } = await startPlc(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  for (let i = 0; i < 20; i++) plc.memory.holding[1000 + i] = 500 + i;
  const batch = (base: number) => Array.from({ length: 20 }, (_, i) => frame(base + i, 1, [3, 0x03, 0xe8 + i, 0, 1]));
  c.send(...batch(100));
  const fast = await c.next(20);
  t.same(fast.map((a) => a.transactionId), Array.from({ length: 20 }, (_, i) => 100 + i));
  t.same(fast.map((a) => a.pdu.readUInt16BE(2)), Array.from({ length: 20 }, (_, i) => 500 + i));

  let seen = 0;
  plc.on("request", () => seen++);
  plc.setDelay(200);
  c.send(...batch(200).slice(0, 10));
  await until(() => seen === 10, "the PLC to read the delayed ones");
  plc.setDelay(0); // later requests must not overtake the delayed ones
  c.send(...batch(200).slice(10));
  const slow = await c.next(20);
  t.same(slow.map((a) => a.transactionId), Array.from({ length: 20 }, (_, i) => 200 + i));
  t.throws(() => plc.setDelay(-1), RangeError);
});

t.test("answers to requests read at once leave in one write; answerWrites each: a write per answer", async (t) => {
  const batch = Array.from({ length: 20 }, (_, i) => frame(300 + i, 1, [3, 0, 100, 0, 2]));
  for (const answerWrites of ["together", "each"] as const) {
    const { plc, port } = await startPlc(t, { scanMs: 0, answerWrites });
    const c = await RawClient.connect(port);
    t.teardown(() => c.close());
    c.send(...batch); // one write of 240 bytes: one read on loopback
    const answers = await c.next(20);
    t.same(answers.map((a) => a.transactionId), Array.from({ length: 20 }, (_, i) => 300 + i), `${answerWrites}: every answer, in order`);
    const writes = plc.stats().answerWrites;
    if (answerWrites === "each") t.equal(writes, 20, "each: one write per answer");
    else t.ok(writes >= 1 && writes < 20, `together: the answers left in ${writes} write(s), not 20`);
  }
});

t.test("silent: requests are read and never answered; answers resume after", async (t) => {
  const { plc, port } = await startPlc(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.close());
  const seen: number[] = [];
  plc.on("request", (r) => seen.push(r.transactionId));
  plc.setSilent(true);
  c.send(frame(1, 1, [3, 0, 100, 0, 1]));
  await until(() => seen.length === 1, "the PLC to read the request");
  // An answer that falls due while silent is dropped too: go silent right after the PLC
  // has put the request in its delay queue (before any timer can fire).
  plc.setSilent(false);
  plc.setDelay(50);
  plc.once("request", () => setImmediate(() => plc.setSilent(true)));
  c.send(frame(2, 1, [3, 0, 100, 0, 1]));
  await until(() => plc.stats().dropped === 2, "the delayed answer to be dropped");
  plc.setSilent(false);
  plc.setDelay(0);
  c.send(frame(3, 1, [3, 0, 100, 0, 1]));
  const [a] = await c.next(1);
  t.equal(a?.transactionId, 3);
  t.equal(c.pending(), 0);
});

t.test("stop and start on the same port keeps the memory; many connections at once", async (t) => {
  const { plc, port } = await startPlc(t);
  const first = await RawClient.connect(port);
  first.send(frame(1, 1, [6, 0, 100, 0, 55]));
  await first.next(1);
  await plc.stop();
  await first.closed;
  t.equal(plc.address(), undefined);
  await plc.stop(); // twice is fine
  t.equal(await plc.start({ port }), port);
  t.same(plc.address(), { host: "127.0.0.1", port });
  await t.rejects(plc.start({ port }), /already listening/);

  const clients = await Promise.all(Array.from({ length: 30 }, () => RawClient.connect(port)));
  t.teardown(() => clients.forEach((c) => c.close()));
  clients.forEach((c, i) => c.send(frame(i, 1, [3, 0, 100, 0, 1])));
  const answers = await Promise.all(clients.map((c) => c.next(1)));
  answers.forEach(([a], i) => {
    t.equal(a?.transactionId, i);
    t.equal(a?.pdu.readUInt16BE(2), 55, "the setpoint written before the restart");
  });
  t.equal(plc.stats().connections, 30);
});

t.test("maxConnections: connections past the bound are closed", async (t) => {
  const { plc, port } = await startPlc(t, { scanMs: 0, maxConnections: 1 });
  const a = await RawClient.connect(port);
  t.teardown(() => a.close());
  await until(() => plc.stats().connections === 1, "the first connection");
  const b = await RawClient.connect(port);
  await b.closed;
  a.send(frame(1, 1, [1, 0, 0, 0, 1]));
  t.equal((await a.next(1))[0]?.transactionId, 1);
});

t.test("the values move on the scan timer", async (t) => {
  const { plc, port } = await startPlc(t, { scanMs: 5 });
  const before = plc.temperature();
  await once(plc, "scan");
  await once(plc, "scan");
  t.not(plc.temperature(), before, "the temperature moved");
  const r = await pymodbus(port, 1, [{ op: "read_input_registers", address: 0, count: 2 }]);
  const [hi, lo] = r[0]?.registers as number[];
  t.ok(float32FromWords(hi as number, lo as number) > before, "and a client sees it rise with the burner on");
});

function memory(): PlcMemory {
  return { coils: new Uint8Array(TABLE_SIZE), discrete: new Uint8Array(TABLE_SIZE), input: new Uint16Array(TABLE_SIZE), holding: new Uint16Array(TABLE_SIZE) };
}

t.test("the boiler: smooth temperature, control with hysteresis, pressure and flame follow", async (t) => {
  const m = memory();
  const b = new Boiler(m);
  const burner = () => m.coils[BOILER_POINTS.burnerOn.address];
  const temps: number[] = [];
  const switches: { at: number; on: number }[] = [];
  let last = burner();
  let flameFollows = true;
  for (let i = 0; i < 600; i++) {
    const before = b.temperature();
    b.step(0.1);
    temps.push(b.temperature());
    // The scan decides on the temperature it starts with.
    if (burner() !== last) switches.push({ at: before, on: (last = burner()) as number });
    flameFollows &&= m.discrete[BOILER_POINTS.flame.address] === burner();
  }
  t.ok(flameFollows, "flame = burner_on at every scan");
  t.ok(switches.length >= 4, "the burner cycles");
  for (const s of switches) {
    if (s.on === 1) t.ok(s.at < 68 && s.at > 67.8, `switched on just below 68 (${s.at.toFixed(2)})`);
    else t.ok(s.at > 72 && s.at < 72.2, `switched off just above 72 (${s.at.toFixed(2)})`);
  }
  let jump = 0;
  for (let i = 1; i < temps.length; i++) jump = Math.max(jump, Math.abs((temps[i] as number) - (temps[i - 1] as number)));
  t.ok(jump > 0 && jump < 0.2, `smooth: at most ${jump.toFixed(3)} °C per 100 ms scan`);
  const settled = temps.slice(200); // 20 s in: the first heat-up from 65 °C is over
  t.ok(Math.min(...settled) > 67.5 && Math.max(...settled) < 72.5, "then stays in the control band");
  const t1 = b.temperature();
  t.equal(m.input[BOILER_POINTS.pressure.address], Math.round(100 + 2.5 * (t1 - 20)), "pressure follows the temperature");

  // Same steps, same values.
  const m2 = memory();
  const b2 = new Boiler(m2);
  for (let i = 0; i < 600; i++) b2.step(0.1);
  t.equal(b2.temperature(), t1);
  t.same(m2.input.subarray(0, 3), m.input.subarray(0, 3));
});

t.test("the boiler: modes, setpoint changes, over-temperature alarm and its reset", async (t) => {
  const m = memory();
  const b = new Boiler(m, { initialTemperature: 50 });
  const steps = (n: number) => {
    for (let i = 0; i < n; i++) b.step(0.5);
  };
  m.holding[BOILER_POINTS.mode.address] = BoilerMode.Off;
  steps(10);
  t.equal(m.coils[0], 0, "off: burner off");
  t.ok(b.temperature() < 50, "and the water cools");

  m.holding[BOILER_POINTS.mode.address] = BoilerMode.Manual;
  m.coils[0] = 1;
  steps(10);
  t.equal(m.coils[0], 1, "manual: the coil stays as written");
  m.coils[0] = 0;
  steps(2);
  t.equal(m.coils[0], 0);

  m.holding[BOILER_POINTS.mode.address] = BoilerMode.Auto;
  m.holding[BOILER_POINTS.setpoint.address] = 120; // more than the burner can reach
  steps(400);
  t.equal(m.discrete[BOILER_POINTS.alarm.address], 1, "over-temperature alarm latched");
  t.equal(m.coils[0], 0, "the alarm keeps the burner off");
  t.ok(b.temperature() < 96, "never far past the limit");
  m.holding[BOILER_POINTS.setpoint.address] = 70;
  steps(100);
  t.ok(b.temperature() < 80);
  t.equal(m.discrete[BOILER_POINTS.alarm.address], 1, "still latched once cool");
  t.equal(m.coils[0], 0);
  m.coils[BOILER_POINTS.alarmReset.address] = 1;
  b.step(0.5);
  t.equal(m.discrete[BOILER_POINTS.alarm.address], 0, "reset");
  t.equal(m.coils[BOILER_POINTS.alarmReset.address], 0, "the PLC clears the reset pulse");
  t.equal(m.coils[0], 1, "auto control again, below the setpoint");

  // A reset while still too hot does not clear the alarm.
  const hm = memory();
  const hot = new Boiler(hm, { initialTemperature: 99 });
  hot.step(0.1);
  hm.coils[1] = 1;
  hot.step(0.1);
  t.equal(hm.discrete[1], 1);
  t.equal(hm.coils[1], 0);
});
