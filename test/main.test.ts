// startGateway as `ztgate start` runs it: the simulated PLC in-process, plain HTTP when asked,
// and a start that fails half-way stops whatever it had started.
import t from "tap";
import type { Test } from "tap";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { issueToken } from "../src/auth/issue.js";
import { KEY_FILES, readPrivateKey } from "../src/auth/keys.js";
import { parseConfig } from "../src/config/load.js";
import { startGateway } from "../src/main.js";

const BOILER = readFileSync(fileURLToPath(new URL("../policies/boiler-plc.yaml", import.meta.url)), "utf8");

function config(t: Test, lines: string[]) {
  const dir = t.testdir({ "gateway.yaml": ["policy: { dir: policies, watch: false }", ...lines, ""].join("\n"), policies: { "boiler-plc.yaml": BOILER } });
  const file = join(dir, "gateway.yaml");
  return parseConfig(file, readFileSync(file, "utf8"));
}

function get(port: number, path: string): Promise<{ status: number; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"] }));
    }).on("error", reject);
  });
}

t.test("the simulated PLC runs in-process; the HTTP API over plain HTTP when tls is off", async (t) => {
  const gw = await startGateway(
    config(t, ["modbus: { listeners: [{ name: lease, mode: lease, port: 0 }] }", "sim: { modbus: { port: 0, scanMs: 0 }, opcua: { port: 0, scanMs: 0 } }", "opcua: { front: { port: 0 } }", "http: { port: 0, tls: false }"]),
    pino({ level: "silent" }),
  );
  t.teardown(() => gw.stop());
  const plc = gw.plc?.address();
  t.match(plc, { host: "127.0.0.1", port: Number }, "the simulated PLC listens");
  t.match(gw.opcuaSim?.address(), { host: "127.0.0.1", port: Number }, "the simulated OPC UA server listens");
  t.match(gw.opcua?.address(), { host: "127.0.0.1", port: Number, endpointUrl: /^opc\.tcp:\/\/127\.0\.0\.1:\d+$/ }, "the OPC UA front listens on a free port");
  const boiler = gw.policy.current().assets.get("boiler-plc");
  const setpoint = boiler?.points.get("setpoint");
  // The policy's endpoint is the default PLC port, not this test's: a bad reading, never a rejection.
  t.match(boiler && setpoint && (await gw.points.read(boiler, setpoint)), { quality: /^(good|bad)$/, status: String, timestamp: String }, "points read through the devices");
  t.equal(gw.modbus.length, 1);
  t.equal(gw.http?.tls, false);
  t.same(await get(gw.http?.address.port as number, "/v1/sessions"), { status: 401, type: "application/problem+json; charset=utf-8" });
  const metrics = await (await fetch(`http://127.0.0.1:${gw.http?.address.port as number}/metrics`)).text();
  t.match(metrics, /^ztgate_connections_open\{protocol="modbus"\} 0$/m, "Modbus connections counted");
  t.match(metrics, /^ztgate_connections_open\{protocol="opcua"\} 0$/m, "OPC UA secure channels counted");
  await gw.stop();
  t.equal(gw.plc?.address(), undefined, "stopped with the gateway");
  t.equal(gw.opcuaSim?.address(), undefined);
  t.equal(gw.opcua?.address(), undefined, "the OPC UA front stopped with it");
  t.equal(gw.modbus[0]?.address(), undefined);
});

t.test("a start that fails half-way (a port in use) stops what it had started and says why", async (t) => {
  const busy = net.createServer().listen(0, "127.0.0.1");
  await once(busy, "listening");
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const cfg = config(t, [`modbus: { listeners: [{ name: lease, mode: lease, port: ${port} }] }`, "sim: { modbus: { port: 0 }, opcua: { enabled: false } }", "opcua: { front: { enabled: false } }", "http: { enabled: false }"]);
  await t.rejects(startGateway(cfg, pino({ level: "silent" })), { code: "EADDRINUSE" });
});

t.test("a revocation outlives a restart: the revocation list in keys.dir", async (t) => {
  const cfg = config(t, ["modbus: { listeners: [] }", "sim: { modbus: { enabled: false }, opcua: { enabled: false } }", "opcua: { front: { enabled: false } }", "http: { port: 0, tls: false }"]);
  const first = await startGateway(cfg, pino({ level: "silent" }));
  const key = await readPrivateKey(join(cfg.keys.dir, KEY_FILES.issuerKey));
  const admin = await issueToken({ key, sub: "admin-1", roles: ["admin"], ttl: 600 });
  const mallory = await issueToken({ key, sub: "mallory", roles: ["historian"], ttl: 600 });
  const call = (gw: typeof first, method: string, path: string, token: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${gw.http?.address.port as number}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { "content-type": "application/json" }) }, ...(body !== undefined && { body: JSON.stringify(body) }) });
  t.equal((await call(first, "GET", "/v1/assets", mallory)).status, 200, "mallory's token works");
  const revoked = await call(first, "POST", "/v1/sessions/revoke", admin, { sub: "mallory" });
  t.equal(revoked.status, 200);
  t.match(JSON.parse(readFileSync(join(cfg.keys.dir, "revocations.json"), "utf8")), { v: 1, subs: { mallory: Number } }, "on disk when the API says so");
  await first.stop();

  const second = await startGateway(cfg, pino({ level: "silent" }));
  t.teardown(() => second.stop());
  const after = await call(second, "GET", "/v1/assets", mallory);
  t.equal(after.status, 401, "refused after the restart");
  t.match(await after.json(), { reason: "token-revoked" });
  t.equal((await call(second, "GET", "/v1/assets", admin)).status, 200, "other tokens still work");
});
