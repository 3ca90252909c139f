// The record format: the hash is exactly what SPEC §6 says, computed independently here with
// node:crypto and the JCS library; times carry microseconds; a record never holds a token.
import { createHash } from "node:crypto";
import canonicalizeUntyped from "canonicalize";
import t from "tap";
import { GENESIS_PREV, chainHash, decisionBody, isoMicros, jcs, recomputeHash, subjectOf, targetOf } from "../../src/audit/record.js";
import type { Decision } from "../../src/pdp/evaluate.js";
import type { Principal } from "../../src/pdp/principal.js";

const canonicalize = canonicalizeUntyped as unknown as (v: unknown) => string;

t.test("hash = sha256hex(prev + JCS(record without hash))", async (t) => {
  const record = { v: 1, seq: 1, id: "a", time: "2026-03-04T10:00:00.000001Z", type: "policy", event: "loaded", revision: "r", prev: GENESIS_PREV };
  const expected = createHash("sha256").update(GENESIS_PREV + canonicalize(record)).digest("hex");
  t.equal(chainHash(GENESIS_PREV, jcs(record)), expected);
  t.equal(recomputeHash({ ...record, hash: "whatever" }), expected);
  // Key order and spacing do not matter: JCS sorts and strips.
  t.equal(recomputeHash(JSON.parse(`{"type":"policy", "prev":"${GENESIS_PREV}", "v":1,"seq":1,"id":"a","time":"2026-03-04T10:00:00.000001Z","event":"loaded","revision":"r"}`) as Record<string, unknown>), expected);
  t.throws(() => jcs(NaN), "NaN is not JSON");
});

t.test("isoMicros: UTC, six fraction digits, sub-millisecond from the fraction", async (t) => {
  const ms = Date.parse("2026-03-04T10:00:00.123Z");
  t.equal(isoMicros(ms), "2026-03-04T10:00:00.123000Z");
  t.equal(isoMicros(ms + 0.456), "2026-03-04T10:00:00.123456Z");
  t.equal(isoMicros(ms + 0.0071), "2026-03-04T10:00:00.123007Z");
  t.equal(isoMicros(ms + 0.9995), "2026-03-04T10:00:00.123999Z", "truncates, never rounds into the next millisecond");
  t.ok(isoMicros(ms + 1) > isoMicros(ms + 0.999), "times sort as strings");
});

t.test("decisionBody: subject by claims and ids only, target and values as decided", async (t) => {
  const principal: Principal = { sub: "mes-1", iss: "idp", roles: ["mes"], claims: { site: "north", token: "eyJ.secret.sig" }, sessionId: "s1", tokenId: "j1", expiresAt: 1, via: "bearer" };
  const d: Decision = { effect: "allow", rule: "mes-setpoint", reason: "allowed", policyRevision: "rev", mode: "enforce", zone: "cell-1", values: [{ point: "temperature", raw: [0x7fc0, 0], value: NaN }, { point: "setpoint", raw: [50], value: 50 }] };
  const body = decisionBody(d, { asset: "boiler-plc", action: "write", target: { kind: "range", table: "holding", address: 100, count: 1 }, raw: [50] }, principal, { address: "10.0.0.1", port: 5000, protocol: "modbus", transport: "tcp" });
  t.same(body, {
    type: "decision",
    decision: "allow",
    reason: "allowed",
    rule: "mes-setpoint",
    policyRevision: "rev",
    mode: "enforce",
    subject: { sub: "mes-1", iss: "idp", roles: ["mes"], sessionId: "s1", jti: "j1" },
    client: { address: "10.0.0.1", port: 5000, protocol: "modbus", transport: "tcp" },
    asset: "boiler-plc",
    zone: "cell-1",
    action: "write",
    target: { table: "holding", address: 100, count: 1 },
    values: [{ point: "temperature", raw: [0x7fc0, 0], value: "NaN" }, { point: "setpoint", raw: [50], value: 50 }],
  });
  t.notMatch(JSON.stringify(body), /secret|claims|site/, "no claims beyond the named ones, never a token");
  t.doesNotThrow(() => jcs(body), "a NaN write is still a loggable record");

  const denied = decisionBody({ effect: "deny", rule: null, reason: "no-session", policyRevision: "rev", mode: "enforce" }, { asset: "boiler-plc", action: "read", target: { kind: "point", point: "pressure" } }, null, { protocol: "modbus", transport: "tcp" });
  t.equal(denied.subject, null);
  t.equal(denied.zone, null);
  t.notOk("values" in denied);
  t.same(subjectOf({ sub: "a", iss: "b", roles: [], claims: {}, via: "mtls" }), { sub: "a", iss: "b", roles: [] });
  t.same(targetOf({ asset: "x", action: "read", target: { kind: "node", node: "ns=2;s=Speed" } }), { node: "ns=2;s=Speed" });
  t.same(targetOf({ asset: "x", action: "read", target: { kind: "point", point: "speed" } }), { point: "speed" });
});

t.test("decisionBody: a client asking the same again gets the same frozen body; anything decided or asked differently, a new one", async (t) => {
  const principal: Principal = { sub: "hist-1", iss: "idp", roles: ["historian"], claims: {}, sessionId: "s1", via: "lease" };
  const other: Principal = { ...principal, sessionId: "s2" };
  const client = { address: "127.0.0.1", port: 5000, protocol: "modbus" as const, transport: "tcp" };
  const d: Decision = { effect: "allow", rule: "historian-read", reason: "allowed", policyRevision: "rev", mode: "enforce", zone: "boiler-house" };
  const read = (address = 100, count = 2) => ({ asset: "boiler-plc", action: "read" as const, target: { kind: "range" as const, table: "holding" as const, address, count } });
  const first = decisionBody(d, read(), principal, client);
  t.ok(Object.isFrozen(first) && Object.isFrozen(first.target), "frozen: the log may keep its text");
  t.equal(decisionBody({ ...d }, read(), principal, client), first, "the same request decided the same way: the same body");
  t.same(first, { action: "read", asset: "boiler-plc", client, decision: "allow", mode: "enforce", policyRevision: "rev", reason: "allowed", rule: "historian-read", subject: { iss: "idp", roles: ["historian"], sessionId: "s1", sub: "hist-1" }, target: { address: 100, count: 2, table: "holding" }, type: "decision", zone: "boiler-house" });
  const differs: Array<[string, ReturnType<typeof decisionBody>]> = [
    ["another address", decisionBody(d, read(101), principal, client)],
    ["another count", decisionBody(d, read(100, 1), principal, client)],
    ["another table", decisionBody(d, { ...read(), target: { kind: "range", table: "input", address: 100, count: 2 } }, principal, client)],
    ["a point", decisionBody(d, { ...read(), target: { kind: "point", point: "setpoint" } }, principal, client)],
    ["a node", decisionBody(d, { ...read(), target: { kind: "node", node: "ns=1;s=x" } }, principal, client)],
    ["another action", decisionBody(d, { ...read(), action: "browse" }, principal, client)],
    ["another asset", decisionBody(d, { ...read(), asset: "other" }, principal, client)],
    ["a deny", decisionBody({ ...d, effect: "deny", reason: "outside-time-window" }, read(), principal, client)],
    ["another rule", decisionBody({ ...d, rule: "other" }, read(), principal, client)],
    ["another policy revision", decisionBody({ ...d, policyRevision: "rev2" }, read(), principal, client)],
    ["monitor mode", decisionBody({ ...d, mode: "monitor" }, read(), principal, client)],
    ["no zone", decisionBody({ effect: d.effect, rule: d.rule, reason: d.reason, policyRevision: d.policyRevision, mode: d.mode }, read(), principal, client)],
    ["another principal", decisionBody(d, read(), other, client)],
    ["another client", decisionBody(d, read(), principal, { ...client })],
  ];
  for (const [what, b] of differs) t.not(b, first, what);
  // A few distinct requests per client are remembered (a historian polling several ranges).
  const point = () => decisionBody(d, { ...read(), target: { kind: "point", point: "setpoint" } }, principal, client);
  const node = () => decisionBody(d, { ...read(), target: { kind: "node", node: "ns=1;s=x" } }, principal, client);
  const p1 = point();
  const n1 = node();
  t.equal(point(), p1, "a point asked again");
  t.equal(node(), n1, "a node asked again");
  for (let i = 0; i < 4; i++) decisionBody(d, read(200 + i), principal, client);
  const p2 = point();
  t.not(p2, p1, "forgotten after four other requests of the client");
  t.same(p2, p1, "and made again the same");
  t.same(differs[1]![1].target, { address: 100, count: 1, table: "holding" });
  t.equal(differs[11]![1].zone, null);
  // Writes carry their values: never the same body.
  const w: Decision = { ...d, values: [{ point: "setpoint", raw: [50], value: 50 }] };
  const write = { ...read(100, 1), action: "write" as const, raw: [50] };
  const w1 = decisionBody(w, write, principal, client);
  t.not(decisionBody(w, write, principal, client), w1, "a write is a new body each time");
  t.notOk(Object.isFrozen(w1));
  // An explicit target (a front describing what it refused) is not remembered either.
  const explicit = decisionBody(d, read(), principal, client, { point: "setpoint" });
  t.not(decisionBody(d, read(), principal, client, { point: "setpoint" }), explicit);
  t.same(explicit.target, { point: "setpoint" });
});

t.test("canonicalJson is the JCS text, on its fast path and off it", async (t) => {
  const { canonicalJson } = await import("../../src/audit/record.js");
  const { loadPolicyDir } = await import("../../src/policy/load.js");
  const { decide } = await import("../../src/pdp/evaluate.js");
  const set = (await loadPolicyDir(new URL("../../policies", import.meta.url).pathname)).set!;
  const who: Principal = { sub: "mes-1", iss: "ztgate-dev", roles: ["mes", "historian"], claims: {}, sessionId: "s", tokenId: "j", via: "lease" };
  let fast = 0;
  let n = 0;
  // Real decisions through the real core: reads, writes of every type, denials.
  const ops = [
    { asset: "boiler-plc", action: "read" as const, target: { kind: "range" as const, table: "input" as const, address: 0, count: 3 } },
    { asset: "boiler-plc", action: "write" as const, target: { kind: "range" as const, table: "holding" as const, address: 100, count: 2 }, raw: [50, 1] },
    { asset: "boiler-plc", action: "write" as const, target: { kind: "point" as const, point: "burner_on" }, value: true },
    { asset: "packaging-line", action: "write" as const, target: { kind: "point" as const, point: "speed" }, value: 99.5 },
    { asset: "packaging-line", action: "write" as const, target: { kind: "point" as const, point: "speed" }, value: Number.NaN },
  ];
  for (const op of ops) {
    for (const client of [{ address: "127.0.0.1", port: 1, protocol: "modbus" as const, transport: "tcp" }, { transport: "tls", protocol: "opcua" as const, port: 2, address: "::1" }]) {
      const body = decisionBody(decide(set, op, who, { now: 0 }), op, who, client);
      const rec = { ...body, v: 1, seq: ++n, id: `id-${n}`, time: "2026-01-01T00:00:00.000000Z", prev: GENESIS_PREV };
      t.equal(canonicalJson(rec), jcs(rec), `${op.action} ${JSON.stringify(op.target)}`);
      if (canonicalJson(body) === JSON.stringify(body)) fast++;
    }
  }
  t.equal(fast, n, "decision bodies are built in canonical order (the fast path is taken)");
  // Off the fast path: unordered keys, nested and in arrays, unicode keys, numbers.
  const odd = [{ b: 1, a: { d: [{ z: 1, y: 2 }], c: "é" } }, { "é": 1, e: 2, "10": 3, "9": 4 }, { a: 1e21, b: -0, c: 0.1 + 0.2 }, [3, { b: null, a: true }]];
  for (const v of odd) t.equal(canonicalJson(v), jcs(v), JSON.stringify(v));
  t.throws(() => canonicalJson({ a: Number.POSITIVE_INFINITY }), "non-finite numbers are refused as JCS refuses them");
});

t.test("jsonString and orderedJson write what JSON.stringify and JCS write", async (t) => {
  const { jsonString, orderedJson } = await import("../../src/audit/record.js");
  for (const s of ["", "plain", 'a "quote"', "back\\slash", "tab\tnew\nline\u0001", "é ☃ 🔥", "lone \ud800 surrogate", "\udfff", "\u007f\u2028"]) t.equal(jsonString(s), JSON.stringify(s), `string of ${s.length} code units`);
  for (const v of [0, -0, 1.5, 1e21, 2 ** 53, -1e-7, true, false, null, "x", [1, "a", null], { a: 1, b: [{ c: "é" }] }]) t.equal(orderedJson(v), jcs(v), `${typeof v} ${JSON.stringify(v)}`);
  t.equal(orderedJson({ b: 1, a: 2 }), undefined, "keys out of order: left to the library");
  t.equal(orderedJson({ 10: 1, 9: 2 }), undefined, "integer-like keys (listed first by the engine) out of order");
  t.equal(orderedJson([1, undefined]), undefined);
  t.equal(orderedJson(new Date(0)), undefined, "toJSON: left to the library");
  t.equal(orderedJson(Number.NaN), undefined);
  t.equal(orderedJson({ a: undefined, b: 1 }), '{"b":1}', "an undefined field is left out, as JSON and JCS leave it out");
});

t.test("subjectOf and clientOf: one frozen object per principal and per client, its text remembered", async (t) => {
  const { clientOf, orderedJson } = await import("../../src/audit/record.js");
  const p: Principal = { sub: "mes-1", iss: "idp", roles: ["mes", "historian"], claims: {}, sessionId: "s1", tokenId: "j1", via: "lease" };
  const s = subjectOf(p);
  t.equal(subjectOf(p), s, "the same object for the same principal");
  t.ok(Object.isFrozen(s) && Object.isFrozen(s.roles));
  t.same(Object.keys(s), ["iss", "jti", "roles", "sessionId", "sub"], "keys in code-point order");
  t.equal(orderedJson(s), jcs(s));
  const renewed: Principal = { ...p, tokenId: "j2" };
  t.equal(subjectOf(renewed).jti, "j2", "a renewed session's new principal is named anew");
  const c = { port: 502, address: "10.0.0.1", transport: "tcp", protocol: "modbus" as const };
  t.equal(clientOf(c), clientOf(c));
  t.same(Object.keys(clientOf(c)), ["address", "port", "protocol", "transport"]);
  t.equal(orderedJson({ client: clientOf(c), subject: s }), jcs({ client: c, subject: s }));
});
