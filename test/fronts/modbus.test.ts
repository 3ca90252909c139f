// The Modbus front end to end (SPEC §3, §4.1, §5.1): the gateway as `ztgate start` builds it,
// the simulated PLC behind it, and pymodbus (Debian's python3-pymodbus, a client the project
// did not write) in front of it, on real sockets. Every refusal is checked in the decision log.
import t from "tap";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { float32FromWords } from "../../src/sim/boiler.js";
import { generateRsaKeyPair } from "../../src/auth/certs.js";
import { KEY_FILES, privateKeyPem, readCa } from "../../src/auth/keys.js";
import { certificateThumbprint, roleExtension, x509 } from "../../src/auth/x509.js";
import type { LogRecord } from "../../src/audit/record.js";
import { WireClient, decisions, mbap, startHarness, until } from "./harness.js";
import type { Harness } from "./harness.js";

t.setTimeout(240_000);

const HOLDING_100 = { op: "read_holding_registers", address: 100, count: 2 };

/** The last decision records, as [decision, reason, rule, asset, action]. */
function summary(rs: readonly LogRecord[]): Array<[unknown, unknown, unknown, unknown, unknown]> {
  return decisions(rs).map((d) => [d["decision"], d["reason"], d["rule"], d["asset"], d["action"]]);
}

async function newRecords(h: Harness, since: number): Promise<LogRecord[]> {
  return (await h.records()).slice(since);
}

t.test("lease mode with pymodbus: no lease, historian, mes, limits, burner_on, FC23, float32", async (t) => {
  const h = await startHarness(t);
  const plc = h.plc;

  t.test("no lease: the connection is closed at once and logged as a deny (no-session)", async (t) => {
    const r = await h.pymodbus(h.lease.port, 1, [HOLDING_100]);
    t.match(r.results, [{ error: /./ }], "no answer");
    const d = decisions(await h.records());
    t.match(d.at(-1), { decision: "deny", reason: "no-session", subject: null, asset: "modbus:lease", client: { address: "127.0.0.1", protocol: "modbus", transport: "tcp" } });
    t.equal(h.leaseFront.stats().refused, 1);
    t.equal(plc.stats().served[3] ?? 0, 0, "nothing reached the device");
  });

  t.test("historian: reads allowed, a write refused with exception 01 and a deny record", async (t) => {
    const before = (await h.records()).length;
    await h.leaseFor("hist-1", ["historian"]);
    const r = await h.pymodbus(h.lease.port, 1, [
      HOLDING_100,
      { op: "read_float32", address: 0 },
      { op: "read_input_registers", address: 2, count: 1 },
      { op: "read_coils", address: 0, count: 2 },
      { op: "read_discrete_inputs", address: 0, count: 1 },
      { op: "read_device_information" },
      { op: "write_register", address: 100, value: 50 },
    ]);
    const m = plc.memory;
    t.same(r.results[0], { registers: [m.holding[100], m.holding[101]] }, "setpoint and mode");
    const temp = r.results[1] as { registers: number[]; value: number };
    t.equal(temp.value, float32FromWords(m.input[0] as number, m.input[1] as number), "temperature: a float32 decoded by pymodbus");
    t.equal(temp.value, plc.temperature());
    t.same(r.results[2], { registers: [m.input[2]] }, "pressure");
    t.same(r.results[3], { bits: [m.coils[0], m.coils[1]] });
    t.same(r.results[4], { bits: [m.discrete[0]] });
    t.match(r.results[5], { information: { "0": "ztgate", "1": "SIM-BOILER" } }, "FC43/14: allowed to whoever may read a point");
    t.same(r.results[6], { exception: 1 }, "historian write: exception 01");
    t.equal(m.holding[100], 70, "the device was not written");

    const rs = await newRecords(h, before);
    t.match(rs[0], { type: "session", event: "opened", subject: { sub: "hist-1", roles: ["historian"] } }, "the lease is logged");
    t.same(summary(rs), [
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["allow", "allowed", "historian-read", "boiler-plc", "read"],
      ["deny", "no-matching-rule", null, "boiler-plc", "write"],
    ]);
    const d = decisions(rs);
    t.match(d[1], { target: { table: "input", address: 0, count: 2 }, subject: { sub: "hist-1", sessionId: /./ }, client: { address: "127.0.0.1", transport: "tcp" } });
    t.match(d[5], { target: { point: "temperature" } }, "FC43/14 is logged once, as a read of the first point allowed");
    t.match(d[6], { target: { table: "holding", address: 100, count: 1 }, values: [{ point: "setpoint", raw: [50], value: 50 }] });
    const outcomes = rs.filter((x) => x.type === "outcome") as unknown as Array<Record<string, unknown>>;
    t.equal(outcomes.length, 6, "one outcome per allowed request");
    t.ok(outcomes.every((o) => o["status"] === "ok"));
    t.equal(outcomes[0]?.["ref"], d[0]?.["id"], "under its decision's id");
  });

  t.test("mes: a write within limits is allowed and reads back; outside, burner_on and a bad FC23 are refused", async (t) => {
    const before = (await h.records()).length;
    await h.leaseFor("mes-1", ["mes"]);
    const r = await h.pymodbus(h.lease.port, 1, [
      { op: "write_register", address: 100, value: 55 },
      { op: "read_holding_registers", address: 100, count: 1 },
      { op: "write_register", address: 100, value: 95 },
      { op: "write_coil", address: 0, value: 1 },
      { op: "readwrite_registers", read_address: 100, read_count: 2, write_address: 101, write_registers: [2] },
      { op: "readwrite_registers", read_address: 100, read_count: 2, write_address: 100, write_registers: [60] },
      { op: "write_registers", address: 100, values: [61, 2] },
    ]);
    t.same(r.results, [
      { ok: true },
      { registers: [55] },
      { exception: 1 },
      { exception: 1 },
      { exception: 1 },
      { registers: [60, 1] },
      { exception: 1 },
    ]);
    t.equal(plc.memory.holding[100], 60, "the allowed writes reached the device, the refused ones did not");
    t.equal(plc.memory.holding[101], 1, "mode untouched: FC23 with a refused write part was refused whole");
    const burner = plc.memory.coils[0];
    t.same(summary(await newRecords(h, before)), [
      ["allow", "allowed", "mes-setpoint", "boiler-plc", "write"],
      ["allow", "allowed", "mes-read", "boiler-plc", "read"],
      ["deny", "value-out-of-range", "mes-setpoint", "boiler-plc", "write"],
      ["deny", "denied-by-rule", "no-burner-from-it", "boiler-plc", "write"],
      ["allow", "allowed", "mes-read", "boiler-plc", "read"],
      ["deny", "no-matching-rule", null, "boiler-plc", "write"],
      ["allow", "allowed", "mes-read", "boiler-plc", "read"],
      ["allow", "allowed", "mes-setpoint", "boiler-plc", "write"],
      ["deny", "no-matching-rule", null, "boiler-plc", "write"],
    ]);
    t.equal(plc.memory.coils[0], burner, "burner_on unchanged");
  });

  t.test("float32 points are decoded before their limits are checked", async (t) => {
    const before = (await h.records()).length;
    const r = await h.pymodbus(h.lease.port, 2, [
      { op: "write_float32", address: 200, value: 42.5 },
      { op: "read_float32", table: "holding", address: 200 },
      { op: "write_float32", address: 200, value: 120.25 },
      { op: "write_registers", address: 201, values: [0] },
    ]);
    t.same(r.results.slice(0, 3), [{ ok: true }, { registers: [0x422a, 0], value: 42.5 }, { exception: 1 }]);
    t.same(r.results[3], { exception: 1 }, "half of a float32 is refused");
    t.equal(float32FromWords(plc.memory.holding[200] as number, plc.memory.holding[201] as number), 42.5);
    const d = decisions(await newRecords(h, before));
    t.match(d[0], { decision: "allow", rule: "lab-write", asset: "testbed", values: [{ point: "limit", raw: [0x422a, 0], value: 42.5 }] });
    t.match(d[2], { decision: "deny", reason: "value-out-of-range", rule: "lab-write", values: [{ point: "limit", value: 120.25 }] }, "120.25 is within the point's limits but not the rule's");
    t.match(d[3], { decision: "deny", reason: "partial-point" });
  });

  t.test("unknown unit ids, broadcast, invalid and unsupported requests", async (t) => {
    const before = (await h.records()).length;
    const c = await WireClient.connect(h.lease.port);
    t.teardown(() => c.close());
    c.send(
      mbap(1, 9, [3, 0, 100, 0, 1]), // no asset on unit 9
      mbap(2, 0, [3, 0, 100, 0, 1]), // broadcast
      mbap(3, 1, [3, 0, 100, 0, 200]), // quantity over 125
      mbap(4, 1, [8, 0, 0, 0x12, 0x34]), // diagnostics: no rule names it
      mbap(5, 1, [0x80]), // not a request function code
      mbap(6, 1, [3, 0, 100, 0, 1]), // still served
    );
    const answers = await c.next(6);
    t.same(
      answers.map((a) => [a.tid, a.unit, [...a.pdu]]),
      [
        [1, 9, [0x83, 0x0a]],
        [2, 0, [0x83, 0x01]],
        [3, 1, [0x83, 0x03]],
        [4, 1, [0x88, 0x01]],
        [5, 1, [0x80, 0x01]],
        [6, 1, [3, 2, 0, 60]],
      ],
      "0A for no path, 01 for refusals, 03 for an invalid request, each with its transaction and unit id",
    );
    t.same(summary(await newRecords(h, before)), [
      ["deny", "unknown-asset", null, "modbus:lease:unit-9", "read"],
      ["deny", "unsupported-function", null, "modbus:lease:unit-0", "read"],
      ["deny", "unsupported-function", null, "boiler-plc", "diagnostic"],
      ["deny", "no-matching-rule", null, "boiler-plc", "diagnostic"],
      ["deny", "unsupported-function", null, "boiler-plc", "diagnostic"],
      ["allow", "allowed", "mes-read", "boiler-plc", "read"],
    ]);
    t.equal(plc.stats().malformed, 0, "nothing invalid reached the device");
    t.equal(plc.stats().served[8] ?? 0, 0);
  });

  t.test("a client that half-closes after its requests gets every answer, then the close", async (t) => {
    const c = await WireClient.connect(h.lease.port);
    c.send(mbap(1, 1, [3, 0, 100, 0, 1]), mbap(2, 1, [4, 0, 2, 0, 1]), mbap(3, 2, [3, 0, 200, 0, 2]));
    c.socket.end();
    const answers = await c.next(3);
    t.same(answers.map((a) => a.tid), [1, 2, 3]);
    await c.closed;
  });

  t.test("a framing error closes the connection and is logged", async (t) => {
    const c = await WireClient.connect(h.lease.port);
    c.send(Buffer.from([0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1]));
    await c.closed;
    t.match(decisions(await h.records()).at(-1), { decision: "deny", reason: "unsupported-function", asset: "modbus:lease", target: { point: "(frame)" } });
    t.equal(plc.stats().malformed, 0);
  });
});

t.test("listener settings: deny exception 02, idle timeout, connection bound", async (t) => {
  const h = await startHarness(t, { listener: ["denyException: 2", "idleTimeoutMs: 1500", "maxConnections: 2"] });
  await h.leaseFor("hist-1", ["historian"]);
  const r = await h.pymodbus(h.lease.port, 1, [{ op: "write_register", address: 100, value: 50 }, HOLDING_100]);
  t.same(r.results, [{ exception: 2 }, { registers: [70, 1] }]);

  const a = await WireClient.connect(h.lease.port);
  const b = await WireClient.connect(h.lease.port);
  await until(() => h.leaseFront.stats().open === 2, "two connections");
  const c = await WireClient.connect(h.lease.port);
  await c.closed;
  t.pass("a third connection is closed at once");
  t.equal(h.leaseFront.stats().overLimit, 1);
  a.send(mbap(1, 1, [3, 0, 100, 0, 1]));
  t.same([...(await a.next())[0]!.pdu], [3, 2, 0, 70], "the others are served");
  await Promise.all([a.closed, b.closed]);
  t.equal(h.leaseFront.stats().idleClosed, 2, "quiet connections are closed after idleTimeoutMs");
});

t.test("50 clients at once over one device connection, each with its own answers and transaction ids", async (t) => {
  const h = await startHarness(t);
  for (let i = 0; i < 50; i++) h.plc.memory.holding[300 + i] = 1000 + i;
  await h.leaseFor("hist-1", ["historian"]);
  const clients = await Promise.all(Array.from({ length: 50 }, () => WireClient.connect(h.lease.port)));
  t.teardown(() => clients.forEach((c) => c.close()));
  const rounds = 4;
  const results = await Promise.all(
    clients.map(async (c, i) => {
      // Every client uses the same transaction ids, pipelined: the gateway keeps them apart.
      for (let k = 0; k < rounds; k++) c.send(mbap(k + 1, 2, [3, 0x01, 0x2c + i, 0, 1])); // holding 300 + i on the testbed (unit 2)
      return c.next(rounds);
    }),
  );
  let wrong = 0;
  results.forEach((answers, i) =>
    answers.forEach((a, k) => {
      if (a.tid !== k + 1 || a.unit !== 2 || a.pdu.length !== 4 || a.pdu.readUInt16BE(2) !== 1000 + i) wrong++;
    }),
  );
  t.equal(wrong, 0, "200 answers, each to its own client, in order, with its own transaction id");
  t.equal(h.plc.stats().accepted, 1, "one device connection for all of them");
  t.equal(h.plc.stats().served[3], 50 * rounds);
});

t.test("device down → 0A, silent → 0B, back → served again without a restart", async (t) => {
  const h = await startHarness(t, { upstream: { timeoutMs: 400, connectTimeoutMs: 400 } });
  await h.leaseFor("hist-1", ["historian"]);
  const c = await WireClient.connect(h.lease.port);
  t.teardown(() => c.close());
  const read = async (tid: number) => {
    c.send(mbap(tid, 1, [3, 0, 100, 0, 1]));
    return [...(await c.next())[0]!.pdu];
  };
  t.same(await read(1), [3, 2, 0, 70]);
  const device = () => h.gw.devices.list()[0]?.state;

  h.plc.setSilent(true);
  t.same(await read(2), [0x83, 0x0b], "silent: 0B (gateway target failed to respond)");
  h.plc.setSilent(false);

  await h.plc.stop();
  await until(() => device() === "down", "the device connection to drop");
  t.same(await read(3), [0x83, 0x0a], "down: 0A (gateway path unavailable)");

  await h.plc.start({ port: h.plcPort });
  await until(() => device() === "connected", "the device connection to come back");
  t.same(await read(4), [3, 2, 0, 70], "back: served on the same client connection");

  const statuses = (await h.records()).filter((r) => r.type === "outcome").map((r) => (r as unknown as { status: string }).status);
  t.same(statuses, ["ok", "timeout", "unavailable", "ok"], "each outcome is logged");
});

t.test("continuous verification: a connection ends with its lease (revoked, expired, replaced)", async (t) => {
  const h = await startHarness(t);

  t.test("DELETE /v1/sessions/:id closes the lease's connections, and each close is logged", async (t) => {
    const lease = await h.leaseFor("hist-1", ["historian"]);
    const a = await WireClient.connect(h.lease.port);
    const b = await WireClient.connect(h.lease.port);
    a.send(mbap(1, 1, [3, 0, 100, 0, 1]));
    await a.next();
    await until(() => h.leaseFront.stats().open === 2, "both connections served");
    const r = await h.api("DELETE", `/v1/sessions/${lease.id}`, { token: lease.token });
    t.equal(r.status, 204);
    await Promise.all([a.closed, b.closed]);
    t.pass("both connections closed");
    const rs = await h.records();
    const closes = rs.filter((x) => x.type === "session" && (x as unknown as { session: string }).session === lease.id) as unknown as Array<Record<string, unknown>>;
    t.match(closes.map((x) => x["event"]), ["opened", "closed", "closed", "closed"]);
    t.equal(closes.filter((x) => x["client"] !== undefined).length, 2, "one record per closed connection, naming its client");
    t.match(closes.find((x) => x["client"] !== undefined), { detail: /modbus connection on listener lease closed: the session was closed/, client: { address: "127.0.0.1", protocol: "modbus" } });
  });

  t.test("a lease ends when its token expires; a renewed one keeps its connections", async (t) => {
    // Lifetimes of whole seconds (exp is rounded down): long enough for the renewal to come
    // first on a stalled machine.
    const lease = await h.leaseFor("hist-2", ["historian"], { ttl: 6 });
    const c = await WireClient.connect(h.lease.port);
    const fresh = await h.token("hist-2", ["historian"], { ttl: 9 });
    const renewed = await h.api("POST", `/v1/sessions/${lease.id}/renew`, { token: fresh });
    t.equal(renewed.status, 200);
    c.send(mbap(1, 1, [3, 0, 100, 0, 1]));
    t.same([...(await c.next())[0]!.pdu], [3, 2, 0, 70], "served on after the renewal");
    const other = await h.api("POST", `/v1/sessions/${lease.id}/renew`, { token: await h.token("mes-1", ["mes"]) });
    t.equal(other.status, 403, "a token of another subject does not renew it");
    await c.closed;
    t.pass("closed when the renewed token expired");
    const expired = (await h.records()).filter((x) => x.type === "session" && (x as unknown as { event: string }).event === "expired");
    t.equal(expired.length, 2, "the lease's end and the connection's close");
  });

  t.test("a new lease for the same source replaces the old one and closes its connections", async (t) => {
    await h.leaseFor("hist-3", ["historian"]);
    const c = await WireClient.connect(h.lease.port);
    await until(() => h.leaseFront.stats().open === 1, "connected");
    await h.leaseFor("mes-3", ["mes"]);
    await c.closed;
    t.pass("the connection resting on the replaced lease is closed");
  });
});

/** A client certificate with two role extensions (ztgate cert issue never makes one). */
async function twoRoleCert(h: Harness): Promise<{ cert: string; key: string }> {
  const ca = await readCa(h.keysDir);
  const keys = await generateRsaKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    subject: "CN=two-roles",
    issuer: ca.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]), roleExtension("mes"), roleExtension("historian")],
  });
  const files = { cert: join(h.dir, "two-roles.pem"), key: join(h.dir, "two-roles.key.pem") };
  writeFileSync(files.cert, cert.toString("pem"));
  writeFileSync(files.key, await privateKeyPem(keys));
  return files;
}

t.test("mtls (Modbus/TCP Security) with pymodbus: the certificate's role is honoured; bad certificates are refused and logged", async (t) => {
  const h = await startHarness(t);

  const hist = await h.clientCert({ cn: "hist-tls", role: "historian" });
  const r = await h.pymodbus(h.mtls.port, 1, [HOLDING_100, { op: "write_register", address: 100, value: 50 }], hist);
  t.same(r.results, [{ registers: [70, 1] }, { exception: 1 }]);
  const mes = await h.clientCert({ cn: "mes-tls", role: "mes" });
  t.same((await h.pymodbus(h.mtls.port, 1, [{ op: "write_register", address: 100, value: 50 }], mes)).results, [{ ok: true }], "the mes role may write the setpoint");

  // The session's "closed" record is written when the gateway sees the socket close, which may
  // come after pymodbus has exited.
  await until(async () => (await h.records()).filter((x) => x.type === "session").length >= 4, "both connections' session records");
  const rs = await h.records();
  const d = decisions(rs);
  t.match(d[0], { decision: "allow", subject: { sub: "hist-tls", roles: ["historian"], iss: /CN=ztgate development CA/ }, client: { transport: "tls" } });
  t.match(d[1], { decision: "deny", reason: "no-matching-rule", subject: { sub: "hist-tls" } });
  t.match(d[2], { decision: "allow", rule: "mes-setpoint", subject: { sub: "mes-tls", roles: ["mes"] } });
  const sessions = rs.filter((x) => x.type === "session") as unknown as Array<Record<string, unknown>>;
  t.match(sessions.map((s) => [s["event"], (s["subject"] as { sub: string }).sub]), [["opened", "hist-tls"], ["closed", "hist-tls"], ["opened", "mes-tls"], ["closed", "mes-tls"]], "each connection is a session");

  const refused = async (what: string, tlsFiles: { cert: string; key: string } | "no-cert", reason: string) => {
    const before = (await h.records()).length;
    const res = await h.pymodbus(h.mtls.port, 1, [HOLDING_100], tlsFiles);
    t.match(res.results, [{ error: /./ }], `${what}: no answer`);
    await until(async () => decisions(await newRecords(h, before)).length > 0, `the refusal of ${what} in the log`);
    t.match(decisions(await newRecords(h, before)), [{ decision: "deny", reason, subject: null, asset: "modbus:mtls", client: { transport: "tls" } }], `${what}: ${reason}`);
  };
  await refused("no role", await h.clientCert({ cn: "no-role" }), "token-invalid");
  await refused("two roles", await twoRoleCert(h), "token-invalid");
  await refused("an unknown CA", await h.clientCert({ cn: "stranger", role: "historian" }, "other"), "token-invalid");
  await refused("an expired certificate", await h.clientCert({ cn: "old", role: "historian", now: new Date(Date.now() - 10 * 86_400_000), days: 1 }), "token-expired");
  await refused("no certificate", "no-cert", "no-session");
  t.equal(h.plc.stats().served[3], 1, "only the first read reached the device");
  t.equal(h.mtlsFront.stats().refused, 5);
});

t.test("mtls: the connection is closed when its certificate expires, and that is logged", async (t) => {
  const h = await startHarness(t);
  const files = await h.clientCert({ cn: "short-lived", role: "historian", days: 6 / 86_400 });
  const s = tls.connect({ host: "127.0.0.1", port: h.mtls.port, ca: readFileSync(join(h.keysDir, KEY_FILES.caCert)), cert: readFileSync(files.cert), key: readFileSync(files.key) });
  s.on("error", () => undefined);
  await once(s, "secureConnect");
  s.write(mbap(1, 1, [3, 0, 100, 0, 1]));
  const [answer] = (await once(s, "data")) as [Buffer];
  t.same([...answer.subarray(7)], [3, 2, 0, 70], "served while the certificate is valid");
  await once(s, "close");
  const expired = (await h.records()).filter((x) => x.type === "session" && (x as unknown as { event: string }).event === "expired") as unknown as Array<Record<string, unknown>>;
  t.equal(expired.length, 2, "the session's end and the connection's close");
  t.match(expired.find((x) => x["client"]), { subject: { sub: "short-lived" }, detail: /the token expired/ });
});

t.test("mtls: a revoked certificate (by thumbprint or subject) is refused at every new connection, and that is logged", async (t) => {
  const h = await startHarness(t);
  const connect = async (files: { cert: string; key: string }) => {
    const s = tls.connect({ host: "127.0.0.1", port: h.mtls.port, ca: readFileSync(join(h.keysDir, KEY_FILES.caCert)), cert: readFileSync(files.cert), key: readFileSync(files.key) });
    s.on("error", () => undefined);
    t.teardown(() => s.destroy());
    await once(s, "secureConnect");
    s.write(mbap(1, 1, [3, 0, 100, 0, 1]));
    const got = await Promise.race([once(s, "data").then(([b]) => [...(b as Buffer).subarray(7)]), once(s, "close").then(() => "closed" as const)]);
    return { s, got };
  };
  const refusedAs = async (before: number, what: string) => {
    await until(async () => decisions(await newRecords(h, before)).length > 0, "the refusal in the log");
    t.match(decisions(await newRecords(h, before)), [{ decision: "deny", reason: "token-revoked", subject: null, asset: "modbus:mtls", client: { transport: "tls" } }], what);
  };
  const admin = await h.token("root", ["admin"]);

  // Revoked by its thumbprint (the session's token id): the open connection ends, a new one is refused.
  const eve = await h.clientCert({ cn: "eve-tls", role: "historian" });
  const first = await connect(eve);
  t.same(first.got, [3, 2, 0, 70], "served before the revocation");
  const thumbprint = certificateThumbprint(new Uint8Array(new x509.X509Certificate(readFileSync(eve.cert, "utf8")).rawData));
  const closed = once(first.s, "close");
  t.equal((await h.api("POST", "/v1/sessions/revoke", { token: admin, body: { jti: thumbprint } })).status, 200);
  await closed;
  let before = (await h.records()).length;
  t.equal((await connect(eve)).got, "closed", "a new connection with the revoked certificate is refused");
  await refusedAs(before, "logged: token-revoked");

  // Revoked by subject: every certificate of that subject issued before the revocation.
  const mallory = await h.clientCert({ cn: "mallory-tls", role: "historian" });
  const second = await h.clientCert({ cn: "mallory-tls", role: "historian" });
  t.same((await connect(mallory)).got, [3, 2, 0, 70]);
  t.equal((await h.api("POST", "/v1/sessions/revoke", { token: admin, body: { sub: "mallory-tls" } })).status, 200);
  before = (await h.records()).length;
  t.equal((await connect(second)).got, "closed", "another certificate of the subject, issued before, is refused too");
  await refusedAs(before, "logged: token-revoked (subject)");
  t.equal(h.plc.stats().served[3], 2, "only the reads before the revocations reached the device");
});

t.test("stop drains: a request already taken is answered before the connection closes; new connections are refused", async (t) => {
  const h = await startHarness(t, { upstream: { timeoutMs: 5000 } });
  await h.leaseFor("hist-1", ["historian"]);
  const c = await WireClient.connect(h.lease.port);
  t.teardown(() => c.close());
  h.plc.setDelay(300);
  c.send(mbap(7, 1, [3, 0, 100, 0, 1]));
  await until(() => h.leaseFront.stats().requests >= 1, "the request to be taken");
  const stopping = h.leaseFront.stop();
  const [answer] = await c.next();
  t.same({ tid: answer?.tid, pdu: [...(answer?.pdu ?? [])] }, { tid: 7, pdu: [3, 2, 0, 70] }, "the answer the device gave, not a reset");
  await c.closed;
  t.ok(c.isClosed, "then the connection is closed");
  await stopping;
  await t.rejects(WireClient.connect(h.lease.port), "the listener is closed");
  h.plc.setDelay(0);
});
