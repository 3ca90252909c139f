// A gateway with Modbus assets only never loads node-opcua (~2 s, ~50 MB, and an RSA key
// generation of its own at load); the first policy with an OPC UA asset loads it, and that
// asset gets its device connection without a restart. Checked in this process's module cache:
// nothing this test file imports statically reaches node-opcua.
import t from "tap";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { parseConfig } from "../src/config/load.js";
import { startGateway } from "../src/main.js";

const policy = (name: string) => readFileSync(fileURLToPath(new URL(`../policies/${name}`, import.meta.url)), "utf8");
const cache = createRequire(import.meta.url).cache;
const opcuaLoaded = () => Object.keys(cache).some((k) => k.includes(`${"node_modules"}/node-opcua`));

t.test("node-opcua is loaded only once an OPC UA asset appears", async (t) => {
  t.notOk(opcuaLoaded(), "not loaded by importing the gateway");
  const dir = t.testdir({
    "gateway.yaml": ["policy: { dir: policies, watch: false }", "modbus: { listeners: [{ name: lease, mode: lease, port: 0 }] }", "sim: { modbus: { port: 0, scanMs: 0 }, opcua: { enabled: false } }", "opcua: { front: { enabled: false } }", "http: { enabled: false }", ""].join("\n"),
    policies: { "boiler-plc.yaml": policy("boiler-plc.yaml") },
  });
  const file = join(dir, "gateway.yaml");
  const gw = await startGateway(parseConfig(file, readFileSync(file, "utf8")), pino({ level: process.env["LZ_LOG"] ?? "silent" }, pino.destination(2)));
  t.teardown(() => gw.stop());
  t.ok(gw.devices.modbus("boiler-plc"), "the Modbus asset has its device");
  t.equal(gw.opcua, undefined);
  t.notOk(opcuaLoaded(), "a gateway with Modbus assets only has not loaded node-opcua");

  // A reload that adds an OPC UA asset (its server is not running: the device is made, not connected).
  writeFileSync(join(dir, "policies", "packaging-line.yaml"), policy("packaging-line.yaml").replace("endpoint: opc.tcp://127.0.0.1:14840", "endpoint: opc.tcp://127.0.0.1:9"));
  const synced = once(gw.devices, "synced");
  t.match(await gw.policy.reload("api"), { ok: true, changed: true });
  const [result] = (await synced) as [{ started: string[]; errors: unknown[]; unsupported: string[] }];
  t.same(result.errors, [], "no asset left without a device");
  t.same(result.unsupported, []);
  t.same(result.started, ["opcua opc.tcp://127.0.0.1:9"], "the OPC UA device was made");
  t.ok(gw.devices.opcua("packaging-line"), "the OPC UA asset has its device");
  t.ok(opcuaLoaded(), "node-opcua is loaded now");
  t.ok(gw.devices.modbus("boiler-plc"), "the Modbus asset kept its device");
  await gw.stop();
});
