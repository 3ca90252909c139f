// startGateway as `ztgate start` runs it: the simulated PLC in-process, plain HTTP when asked,
// and a start that fails half-way stops whatever it had started.
import t from "tap";
import type { Test } from "tap";
import { once } from "node:events";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPair } from "jose";
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

t.test("leases outlive a restart: kept beside the decision log, opened again when their token verifies again", async (t) => {
  const { cfg, first, token, call } = await restartable(t, "[{ name: lease, mode: lease, port: 0 }]");
  const admin = await token("admin-1", ["admin"]);
  const hist = await token("hist-1", ["historian"]);
  const mes = await token("mes-1", ["mes"]);
  const opened = await call(first, "POST", "/v1/sessions", hist, { protocol: "modbus" });
  t.equal(opened.status, 201);
  const lease = (await opened.json()) as { id: string; expiresAt: string };
  t.equal((await call(first, "POST", "/v1/sessions", admin, { protocol: "modbus", source: "::1" })).status, 201, "an admin opens one for ::1");
  t.equal((await call(first, "POST", "/v1/sessions", mes, { protocol: "modbus", source: "127.0.0.3" })).status, 403, "naming another source needs the admin role");
  const mesLease = (await (await call(first, "POST", "/v1/sessions", admin, { protocol: "modbus", source: "127.0.0.7" })).json()) as { id: string };
  t.equal((await call(first, "DELETE", `/v1/sessions/${mesLease.id}`, admin)).status, 204, "ended by the admin: out of the file before the answer");
  await first.stop();
  const file = `${cfg.log.dir}.leases.json`;
  const stored = JSON.parse(readFileSync(file, "utf8")) as { v: number; leases: Array<{ id: string; source: string; token: string }> };
  t.equal(stored.v, 1);
  t.same(stored.leases.map((l) => l.source).sort(), ["127.0.0.1", "::1"], "the two open leases, not the ended one");
  t.equal(statSync(file).mode & 0o777, 0o600, "private: it holds the leases' tokens");

  const second = await startGateway(cfg, pino({ level: "silent" }));
  t.teardown(() => second.stop());
  const listed = (await (await call(second, "GET", "/v1/sessions", admin)).json()) as { sessions: Array<{ id: string; kind: string; source: string; sub: string; expiresAt: string; roles: string[] }> };
  t.same(listed.sessions.filter((s) => s.sub === "hist-1").map((s) => [s.id, s.kind, s.source, s.expiresAt, s.roles]), [[lease.id, "lease", "127.0.0.1", lease.expiresAt, ["historian"]]], "the same lease, same id, expiry and roles");
  t.equal(second.sessions.lookupLease("127.0.0.1")?.id, lease.id, "serving its source");
  t.ok(second.sessions.lookupLease("::1"), "and the admin's for ::1");
  t.equal(second.sessions.lookupLease("127.0.0.7"), undefined, "the ended one stays ended");
  const records = readFileSync(join(cfg.log.dir, "00000001.jsonl"), "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(records.find((r) => r["type"] === "session" && r["session"] === lease.id && r["detail"] === "lease restored after a restart"), { event: "opened", subject: { sub: "hist-1" } }, "logged");

  // What a file may still hold after a crash: a lease revoked since, tokens that no longer
  // verify (expired, for another audience, signed by a key the gateway does not trust), one
  // that is not a lease. Each token is verified again as a new one would be; only good ones come back.
  t.equal((await call(second, "POST", "/v1/sessions/revoke", admin, { sub: "hist-1" })).status, 200);
  await second.stop();
  const key = await readPrivateKey(join(cfg.keys.dir, KEY_FILES.issuerKey));
  const { privateKey: foreign } = await generateKeyPair("EdDSA");
  const h1 = stored.leases.find((l) => l.source === "127.0.0.1");
  const a1 = stored.leases.find((l) => l.source === "::1");
  const entry = (source: string, tok: string) => ({ id: `x-${source}`, source, protocol: "modbus", openedAt: 1, token: tok });
  writeFileSync(
    file,
    JSON.stringify({
      v: 1,
      leases: [
        h1,
        entry("127.0.0.11", await issueToken({ key, sub: "late", roles: ["historian"], ttl: 600, now: new Date(Date.now() - 3_600_000) })),
        entry("127.0.0.12", await issueToken({ key, sub: "elsewhere", roles: ["historian"], ttl: 600, audience: "another-gateway" })),
        entry("127.0.0.13", await issueToken({ key: foreign, sub: "forged", roles: ["admin"], ttl: 600 })),
        { id: 7 },
        a1,
      ],
    }),
  );
  const third = await startGateway(cfg, pino({ level: "silent" }));
  t.teardown(() => third.stop());
  t.same(third.sessions.list({ kind: "lease" }).map((s) => s.source), ["::1"], "only the good one is back: not the revoked, expired, foreign-audience or forged ones");
  await third.stop();
  t.same((JSON.parse(readFileSync(file, "utf8")) as { leases: Array<{ source: string; forOther?: boolean }> }).leases.map((l) => [l.source, l.forOther]), [["::1", true]], "and the file says what is open (opened by an admin for another address)");

  // The admin lease for ::1 rests on the admin role: without it (adminRoles changed) it does not come back.
  const fourth = await startGateway({ ...cfg, gateway: { ...cfg.gateway, adminRoles: ["superadmin"] } }, pino({ level: "silent" }));
  t.teardown(() => fourth.stop());
  t.same(fourth.sessions.list({ kind: "lease" }), [], "a lease for another address needs the admin role at restore too");
});


t.test("a lease list that cannot be written: the lease is open, the answer says it would not outlive a restart", async (t) => {
  const { cfg, first, token, call } = await restartable(t, "[{ name: lease, mode: lease, port: 0 }]");
  t.teardown(() => first.stop());
  // A directory (with something in it) where the file is: every replace fails from now on.
  const file = `${cfg.log.dir}.leases.json`;
  rmSync(file, { force: true });
  mkdirSync(join(file, "in-the-way"), { recursive: true });
  const hist = await token("hist-1", ["historian"]);
  const r = await call(first, "POST", "/v1/sessions", hist, { protocol: "modbus" });
  t.equal(r.status, 500);
  t.match(await r.json(), { type: "urn:ztgate:error:lease-not-saved", detail: /leases\.json cannot be written: .*would not outlive a restart/ });
  t.ok(first.sessions.lookupLease("127.0.0.1"), "the lease is open all the same");
});
