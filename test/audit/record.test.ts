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
