// The device registry against real policy sets (compiled from policy text) and simulated
// PLCs on 127.0.0.1: bindings per asset, shared endpoints, re-sync on reload keeping what is
// unchanged, OPC UA assets on an OpcuaDevice against the simulated OPC UA server (or left to
// the connector factory given).
import t from "tap";
import type { Test } from "tap";
import { EventEmitter, once } from "node:events";
import { join } from "node:path";
import { DeviceRegistry } from "../../src/devices/registry.js";
import type { DeviceConnector, DeviceInfo, SyncResult } from "../../src/devices/registry.js";
import { ModbusDevice } from "../../src/devices/modbus.js";
import type { ConnectionState } from "../../src/devices/modbus.js";
import type { PolicySet } from "../../src/pdp/policy-set.js";
import { compilePolicies } from "../../src/policy/compile.js";
import { SimulatedPlc } from "../../src/sim/plc.js";
import { LINE_NODES, SimulatedOpcuaServer } from "../../src/sim/opcua.js";
import { OpcuaDevice } from "../../src/devices/opcua.js";
import { encodeRequest } from "../../src/wire/pdu.js";

const READ_SETPOINT = encodeRequest({ kind: "read-holding-registers", fc: 3, address: 100, quantity: 1 });

interface AssetSpec {
  id: string;
  endpoint: string;
  protocol?: "modbus" | "opcua";
  unit?: number;
  frontUnit?: number;
}

function policySet(assets: AssetSpec[]): PolicySet {
  const r = compilePolicies(
    assets.map((a) => ({
      file: `${a.id}.yaml`,
      text: [
        `asset: ${a.id}`,
        `protocol: ${a.protocol ?? "modbus"}`,
        `endpoint: "${a.endpoint}"`,
        ...((a.protocol ?? "modbus") === "modbus" ? [`unit: ${a.unit ?? 1}`, `front: { unit: ${a.frontUnit ?? a.unit ?? 1} }`] : []),
        "rules: []",
        "",
      ].join("\n"),
    })),
  );
  if (!r.set) throw new Error(`test policy does not compile: ${JSON.stringify(r.diagnostics)}`);
  return r.set;
}

async function plcs(t: Test, n: number): Promise<{ plc: SimulatedPlc; port: number; endpoint: string }[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const plc = new SimulatedPlc({ scanMs: 0 });
      const port = await plc.start();
      t.teardown(() => plc.stop());
      return { plc, port, endpoint: `tcp://127.0.0.1:${port}` };
    }),
  );
}

function registry(t: Test, options: ConstructorParameters<typeof DeviceRegistry>[0] = {}): DeviceRegistry {
  const r = new DeviceRegistry({ modbus: { backoff: { initialMs: 5, maxMs: 40 }, timeoutMs: 30_000 }, ...options });
  t.teardown(() => r.stop());
  return r;
}

t.test("bindings: asset → device and unit; shared endpoints share one device; fronts see only their protocol", async (t) => {
  const [a, b] = await plcs(t, 2);
  const reg = registry(t);
  const result = await reg.sync(
    policySet([
      { id: "boiler", endpoint: a!.endpoint },
      { id: "boiler-b", endpoint: `tcp://127.0.0.1:${a!.port}/`, unit: 1, frontUnit: 2 },
      { id: "chiller", endpoint: b!.endpoint, unit: 3, frontUnit: 3 },
      { id: "line", endpoint: "opc.tcp://127.0.0.1:14840", protocol: "opcua" },
    ]),
  );
  t.same([...result.started].sort(), [`modbus ${a!.endpoint}`, `modbus ${b!.endpoint}`].sort());
  t.same(result.unsupported, ["line"]);
  t.same(result.errors, []);
  const boiler = reg.modbus("boiler");
  t.ok(boiler);
  t.equal(boiler?.unit, 1);
  t.equal(reg.modbus("boiler-b")?.device, boiler?.device, "same endpoint, one device (one connection bound)");
  t.equal(reg.modbus("chiller")?.unit, 3);
  t.equal(reg.modbus("line"), undefined, "an OPC UA asset has no Modbus device");
  t.equal(reg.connector("line"), undefined);
  t.equal(reg.modbus("nope"), undefined);

  const r = await boiler!.device.request(boiler!.unit, READ_SETPOINT);
  t.same(r, { kind: "ok", pdu: Buffer.of(3, 2, 0, 70) });
  t.equal(a!.plc.stats().accepted, 1);
  const list = reg.list().sort((x, y) => x.endpoint.localeCompare(y.endpoint));
  t.equal(list.length, 2);
  t.same(list.find((d) => d.endpoint === a!.endpoint)?.assets, ["boiler", "boiler-b"]);
});

t.test("re-sync on reload: unchanged kept (connections survive), new started, removed stopped", async (t) => {
  const [a, b, c] = await plcs(t, 3);
  const reg = registry(t);
  await reg.sync(policySet([{ id: "boiler", endpoint: a!.endpoint }, { id: "chiller", endpoint: b!.endpoint, frontUnit: 2 }]));
  const boiler = reg.modbus("boiler")!.device;
  const chiller = reg.modbus("chiller")!.device;
  t.equal((await boiler.request(1, READ_SETPOINT)).kind, "ok");
  t.equal((await chiller.request(1, READ_SETPOINT)).kind, "ok");

  const r = await reg.sync(policySet([{ id: "boiler", endpoint: a!.endpoint }, { id: "pump", endpoint: c!.endpoint, frontUnit: 3 }]));
  t.same(r.kept, [`modbus ${a!.endpoint}`]);
  t.same(r.started, [`modbus ${c!.endpoint}`]);
  t.same(r.stopped, [`modbus ${b!.endpoint}`]);
  t.equal(reg.modbus("boiler")!.device, boiler, "the same device object");
  t.equal((await boiler.request(1, READ_SETPOINT)).kind, "ok");
  t.equal(a!.plc.stats().accepted, 1, "its connection was not reopened");
  t.equal(reg.modbus("chiller"), undefined);
  t.same(await chiller.request(1, READ_SETPOINT), { kind: "unavailable", reason: "stopped" }, "a removed device serves no more");
  t.equal((await reg.modbus("pump")!.device.request(1, READ_SETPOINT)).kind, "ok");

  // An asset that moves to another endpoint gets that endpoint's device.
  await reg.sync(policySet([{ id: "boiler", endpoint: c!.endpoint }]));
  t.not(reg.modbus("boiler")!.device, boiler);
  t.same(reg.list().map((d) => d.endpoint), [c!.endpoint]);
});

t.test("an unusable endpoint is reported per asset and has no device", async (t) => {
  const [a] = await plcs(t, 1);
  const reg = registry(t);
  const r = await reg.sync(policySet([{ id: "good", endpoint: a!.endpoint }, { id: "bad", endpoint: "http://plc:502", frontUnit: 2 }]));
  t.same(r.errors, [{ asset: "bad", endpoint: "http://plc:502", message: 'Modbus endpoint "http://plc:502" is not tcp://host:port' }]);
  t.equal(reg.modbus("bad"), undefined);
  t.ok(reg.modbus("good"));
});

t.test("follow: syncs now and on every reload; state changes are reported", async (t) => {
  const [a, b] = await plcs(t, 2);
  const reg = registry(t);
  const source = Object.assign(new EventEmitter(), {
    set: policySet([{ id: "boiler", endpoint: a!.endpoint }]),
    current(): PolicySet {
      return this.set;
    },
  });
  const states: DeviceInfo[] = [];
  reg.on("state", (d) => states.push(d));
  const { ready, unfollow } = reg.follow(source);
  t.same((await ready).started, [`modbus ${a!.endpoint}`]);
  const device = reg.modbus("boiler")!.device;
  while (device.state() !== "connected") await once(device, "state");
  t.match(states.at(-1), { endpoint: a!.endpoint, state: "connected", assets: ["boiler"] });

  source.set = policySet([{ id: "boiler", endpoint: a!.endpoint }, { id: "chiller", endpoint: b!.endpoint, frontUnit: 2 }]);
  const synced = once(reg, "synced") as Promise<[SyncResult]>;
  source.emit("reloaded");
  const [r] = await synced;
  t.same(r.started, [`modbus ${b!.endpoint}`]);
  t.ok(reg.modbus("chiller"));

  unfollow();
  t.equal(source.listenerCount("reloaded"), 0);
});

t.test("extension point: a connector factory for another protocol", async (t) => {
  class FakeOpcua implements DeviceConnector {
    readonly protocol = "opcua" as const;
    running = false;
    constructor(readonly endpoint: string) {}
    async start() {
      this.running = true;
    }
    async stop() {
      this.running = false;
    }
    state(): ConnectionState {
      return this.running ? "connected" : "down";
    }
  }
  const made: FakeOpcua[] = [];
  const reg = registry(t, { connectors: { opcua: (e) => (made.push(new FakeOpcua(e)), made.at(-1) as FakeOpcua) } });
  const r = await reg.sync(policySet([{ id: "line", endpoint: "opc.tcp://127.0.0.1:14840", protocol: "opcua" }]));
  t.same(r.unsupported, []);
  t.same(r.started, ["opcua opc.tcp://127.0.0.1:14840"]);
  t.equal(reg.modbus("line"), undefined, "a Modbus front never reaches it");
  t.equal(reg.connector("line")?.state(), "connected");
  t.same(reg.list(), [{ protocol: "opcua", endpoint: "opc.tcp://127.0.0.1:14840", state: "connected", assets: ["line"] }]);
  await reg.stop();
  t.equal(made.some((c) => c.running), false, "stopped with the registry");
  t.equal(reg.connector("line"), undefined);
  const after = await reg.sync(policySet([{ id: "line", endpoint: "opc.tcp://127.0.0.1:14840", protocol: "opcua" }]));
  t.same(after.started, [], "a stopped registry starts nothing");
});

t.test("stop: every device stopped, lookups find nothing", async (t) => {
  const [a] = await plcs(t, 1);
  const reg = registry(t);
  await reg.sync(policySet([{ id: "boiler", endpoint: a!.endpoint }]));
  const device = reg.modbus("boiler")!.device;
  t.ok(device instanceof ModbusDevice);
  await reg.stop();
  t.equal(reg.modbus("boiler"), undefined);
  t.equal(device.state(), "down");
  t.same(reg.list(), []);
});

t.test("OPC UA assets: one OpcuaDevice per endpoint (with opcua options), an opcua() lookup, states re-emitted", async (t) => {
  t.setTimeout(120_000);
  const dir = t.testdir({});
  const sim = new SimulatedOpcuaServer({ pkiDir: join(dir, "sim-pki"), scanMs: 0 });
  const port = await sim.start();
  t.teardown(() => sim.stop());
  const [a] = await plcs(t, 1);
  const endpoint = `opc.tcp://127.0.0.1:${port}`;
  const reg = registry(t, { opcua: { pkiDir: join(dir, "upstream-pki"), requestTimeoutMs: 10_000, connectTimeoutMs: 10_000, backoff: { initialMs: 20, maxMs: 200 } } });
  const states: DeviceInfo[] = [];
  reg.on("state", (d) => states.push(d));
  const r = await reg.sync(
    policySet([
      { id: "line", endpoint: `opc.tcp://127.0.0.1:${port}/`, protocol: "opcua" },
      { id: "line-b", endpoint: `OPC.TCP://127.0.0.1:${port}`, protocol: "opcua" },
      { id: "boiler", endpoint: a!.endpoint },
      { id: "bad", endpoint: "tcp://127.0.0.1:4840", protocol: "opcua" },
    ]),
  );
  t.same(r.unsupported, []);
  t.same([...r.started].sort(), [`modbus ${a!.endpoint}`, `opcua ${endpoint}`].sort());
  t.same(r.errors, [{ asset: "bad", endpoint: "tcp://127.0.0.1:4840", message: 'OPC UA endpoint "tcp://127.0.0.1:4840" is not opc.tcp://host:port' }]);
  const line = reg.opcua("line");
  t.ok(line instanceof OpcuaDevice);
  t.equal(reg.opcua("line-b"), line, "one device per endpoint");
  t.equal(reg.connector("line"), line);
  t.equal(reg.modbus("line"), undefined, "a Modbus front never reaches it");
  t.equal(reg.opcua("boiler"), undefined, "an OPC UA front never reaches a Modbus device");
  t.equal(reg.opcua("bad"), undefined);
  t.equal((await line!.read(LINE_NODES.speed)).statusCode.name, "Good");
  t.equal(sim.stats().sessions, 1);
  t.match(states.find((d) => d.protocol === "opcua" && d.state === "connected"), { endpoint, assets: ["line", "line-b"] });

  const kept = await reg.sync(policySet([{ id: "line", endpoint, protocol: "opcua" }]));
  t.same(kept.kept, [`opcua ${endpoint}`]);
  t.equal(reg.opcua("line"), line, "kept across a reload: its session survives");
  t.equal(sim.stats().sessions, 1);
  await reg.stop();
  t.equal(line!.state(), "down");
  t.equal(reg.opcua("line"), undefined);
});

t.test("OPC UA assets without opcua options (no PKI folder): unsupported, no connector", async (t) => {
  const reg = registry(t);
  const r = await reg.sync(policySet([{ id: "line", endpoint: "opc.tcp://127.0.0.1:14840", protocol: "opcua" }]));
  t.same(r.unsupported, ["line"]);
  t.same(r.started, []);
  t.equal(reg.opcua("line"), undefined);
});
