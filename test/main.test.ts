// startGateway as `ztgate start` runs it: the simulated PLC in-process, plain HTTP when asked,
// and a start that fails half-way stops whatever it had started.
import t from "tap";
import type { Test } from "tap";
import { once } from "node:events";
import { readFileSync, statSync, writeFileSync } from "node:fs";
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

type Gw = Awaited<ReturnType<typeof startGateway>>;

/** A gateway with the HTTP API (plain HTTP) to stop and start again on the same directories; tokens from its dev issuer. */
async function restartable(t: Test, listeners: string) {
  const cfg = config(t, [`modbus: { listeners: ${listeners} }`, "sim: { modbus: { enabled: false }, opcua: { enabled: false } }", "opcua: { front: { enabled: false } }", "http: { port: 0, tls: false }"]);
  const first = await startGateway(cfg, pino({ level: "silent" }));
  const key = await readPrivateKey(join(cfg.keys.dir, KEY_FILES.issuerKey));
  const token = (sub: string, roles: string[]) => issueToken({ key, sub, roles, ttl: 600 });
  const call = (gw: Gw, method: string, path: string, bearer: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${gw.http?.address.port as number}${path}`, { method, headers: { authorization: `Bearer ${bearer}`, ...(body !== undefined && { "content-type": "application/json" }) }, ...(body !== undefined && { body: JSON.stringify(body) }) });
  return { cfg, first, token, call };
}

t.test("a revocation outlives a restart: the revocation list in keys.dir", async (t) => {
  const { cfg, first, token, call } = await restartable(t, "[]");
  const admin = await token("admin-1", ["admin"]);
  const mallory = await token("mallory", ["historian"]);
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

t.test("leases outlive a restart: kept in keys.dir/leases.json, opened again while their token is good", async (t) => {
  const { cfg, first, token, call } = await restartable(t, "[{ name: lease, mode: lease, port: 0 }]");
  const admin = await token("admin-1", ["admin"]);
  const hist = await token("hist-1", ["historian"]);
  const mallory = await token("mallory", ["historian"]);
  const opened = await call(first, "POST", "/v1/sessions", hist, { protocol: "modbus" });
  t.equal(opened.status, 201);
  const lease = (await opened.json()) as { id: string; expiresAt: string };
  t.equal((await call(first, "POST", "/v1/sessions", admin, { protocol: "modbus", source: "::1" })).status, 201, "an admin opens one for ::1");
  const byMallory = await call(first, "POST", "/v1/sessions", admin, { protocol: "modbus", source: "127.0.0.2" });
  t.equal(byMallory.status, 201);
  t.equal((await call(first, "POST", "/v1/sessions", mallory, { protocol: "modbus", source: "127.0.0.3" })).status, 403, "naming another source needs the admin role");
  await first.stop();
  const file = join(cfg.keys.dir, "leases.json");
  const stored = JSON.parse(readFileSync(file, "utf8")) as { v: number; leases: Array<{ id: string; principal: { sub: string; claims: object } }> };
  t.equal(stored.v, 1);
  t.same(stored.leases.map((l) => l.principal.sub).sort(), ["admin-1", "admin-1", "hist-1"]);
  t.notMatch(readFileSync(file, "utf8"), hist, "never the token itself");
  t.equal(statSync(file).mode & 0o777, 0o600, "private, like the keys next to it");

  const second = await startGateway(cfg, pino({ level: "silent" }));
  t.teardown(() => second.stop());
  const listed = (await (await call(second, "GET", "/v1/sessions", admin)).json()) as { sessions: Array<{ id: string; kind: string; source: string; sub: string; expiresAt: string }> };
  t.same(listed.sessions.filter((s) => s.sub === "hist-1").map((s) => [s.id, s.kind, s.source, s.expiresAt]), [[lease.id, "lease", "127.0.0.1", lease.expiresAt]], "the same lease, same id and expiry");
  t.equal(second.sessions.lookupLease("127.0.0.1")?.id, lease.id, "serving its source");
  t.ok(second.sessions.lookupLease("::1"), "and the admin's for ::1");
  const records = readFileSync(join(cfg.log.dir, "00000001.jsonl"), "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(records.find((r) => r["type"] === "session" && r["session"] === lease.id && r["detail"] === "lease restored after a restart"), { event: "opened", subject: { sub: "hist-1" } }, "logged");

  // What a file may still hold after a crash: a lease revoked since, one of an issuer no longer
  // configured, one whose token expired, one that is not a lease. Only good ones come back.
  t.equal((await call(second, "POST", "/v1/sessions/revoke", admin, { sub: "hist-1" })).status, 200);
  await second.stop();
  const [h1, a1, a2] = [stored.leases.find((l) => l.principal.sub === "hist-1"), ...stored.leases.filter((l) => l.principal.sub === "admin-1")] as Array<Record<string, unknown> & { principal: Record<string, unknown> }>;
  writeFileSync(file, JSON.stringify({ v: 1, leases: [h1, { ...a1, principal: { ...a1!.principal, iss: "https://idp.gone.example" } }, { ...a2, source: "127.0.0.9", id: "x-expired", principal: { ...a2!.principal, expiresAt: Date.now() - 1000 } }, { id: 7 }, a2] }));
  const third = await startGateway(cfg, pino({ level: "silent" }));
  t.teardown(() => third.stop());
  t.equal(third.sessions.lookupLease("127.0.0.1"), undefined, "a revoked lease stays ended");
  t.equal(third.sessions.lookupLease("127.0.0.9"), undefined, "an expired one too");
  t.same(third.sessions.list({ kind: "lease" }).map((s) => s.id), [a2!["id"]], "only the good one is back (the other issuer's is not)");
  await third.stop();
  t.same((JSON.parse(readFileSync(file, "utf8")) as { leases: Array<{ id: string }> }).leases.map((l) => l.id), [a2!["id"]], "and the file says what is open");
});
