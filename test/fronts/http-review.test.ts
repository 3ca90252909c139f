// The HTTP API against the whole gateway (harness.ts: startGateway, a real simulated PLC, real
// tokens, the decision log on disk), for what a review found reachable:
// - a write held for approval is refused, not forwarded, once its requester is revoked or expires;
// - JSON bodies are taken as typed (no `null` → 0, no `"1e3"` → 1000, no scalar → array);
// - a caller without a token learns nothing of a point's type from a 400;
// - bad raw targets, out-of-range OPC UA values and time bounds are 400s, not 500s;
// - text/plain bodies and other charsets are 415; unknown query and body keys are 400.
import t from "tap";
import type { Test } from "tap";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LogRecord } from "../../src/audit/record.js";
import { pointValue } from "../../src/fronts/http/points.js";
import type { Point } from "../../src/pdp/policy-set.js";
import { APPROVALS_BED, WireClient, mbap, startHarness } from "./harness.js";
import type { Harness } from "./harness.js";

type Rec = LogRecord & Record<string, unknown>;

/** The whole gateway with the approvals bed loaded. */
async function gateway(t: Test): Promise<Harness> {
  const h = await startHarness(t, { policies: {} });
  writeFileSync(join(h.dir, "policies", "approvals-bed.yaml"), APPROVALS_BED(h.plcPort));
  t.match(await h.gw.policy.reload("manual"), { ok: true });
  return h;
}

t.test("a held write is refused once its requester is revoked, or their token expires", async (t) => {
  const h = await gateway(t);
  const lead = await h.token("lead-1", ["shift-lead"]);
  const admin = await h.token("adm-1", ["admin"]);
  const fc6 = () => h.plc.stats().served[6] ?? 0;

  // Revoked while the write waits: refused at the revocation, no approver can pass it.
  const mes = await h.token("mes-1", ["mes"]);
  const put = await h.api("PUT", "/v1/assets/approvals-bed/points/valve", { token: mes, body: { value: 42 } });
  t.equal(put.status, 202, "held for approval");
  const id = (put.body as { approval: { id: string } }).approval.id;
  const before = fc6();
  t.equal((await h.api("POST", "/v1/sessions/revoke", { token: admin, body: { sub: "mes-1" } })).status, 200);
  const listed = await h.api("GET", "/v1/approvals", { token: lead });
  t.same((listed.body as { approvals: unknown[] }).approvals, [], "no longer pending");
  const late = await h.api("POST", `/v1/approvals/${id}`, { token: lead, body: { approve: true } });
  t.equal(late.status, 404, "nothing left to approve");
  await new Promise((r) => setTimeout(r, 200));
  t.equal(fc6(), before, "the write never reached the device");
  const records = (await h.records()) as Rec[];
  const refused = records.find((r) => r.type === "decision" && r.decision === "deny" && (r["approval"] as { id?: string } | undefined)?.id === id);
  t.match(refused, { reason: "token-revoked", asset: "approvals-bed", subject: { sub: "mes-1" } }, "the write's deny names the revocation");

  // Expired while it waits: refused when the token expires (a 2 s token).
  const brief = await h.token("mes-2", ["mes"], { ttl: 2 });
  const put2 = await h.api("PUT", "/v1/assets/approvals-bed/points/valve", { token: brief, body: { value: 43 } });
  t.equal(put2.status, 202);
  const id2 = (put2.body as { approval: { id: string } }).approval.id;
  await new Promise((r) => setTimeout(r, 2300));
  const expired = await h.api("POST", `/v1/approvals/${id2}`, { token: lead, body: { approve: true } });
  t.equal(expired.status, 404, "refused when the token expired");
  t.equal(fc6(), before, "the expired requester's write never reached the device");
  const refused2 = ((await h.records()) as Rec[]).find((r) => r.type === "decision" && r.decision === "deny" && (r["approval"] as { id?: string } | undefined)?.id === id2);
  t.match(refused2, { reason: "token-expired", subject: { sub: "mes-2" } });

  // Still valid: approved and forwarded (the check does not refuse a good requester).
  const mes3 = await h.token("mes-3", ["mes"]);
  const put3 = await h.api("PUT", "/v1/assets/approvals-bed/points/valve", { token: mes3, body: { value: 44 } });
  const id3 = (put3.body as { approval: { id: string } }).approval.id;
  const ok = await h.api("POST", `/v1/approvals/${id3}`, { token: lead, body: { approve: true } });
  t.match(ok, { status: 200, body: { verdict: "approved" } });
  for (let i = 0; i < 50 && fc6() === before; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(fc6(), before + 1, "forwarded once approved");
});

t.test("bodies are taken as typed; bad targets, values and time bounds are 400s; media types and unknown keys", async (t) => {
  const h = await gateway(t);
  const mes = await h.token("mes-1", ["mes"]);
  const auditor = await h.token("aud-1", ["auditor"]);
  const admin = await h.token("adm-1", ["admin"]);
  const fc6 = () => h.plc.stats().served[6] ?? 0;
  const before = fc6();

  for (const values of [[null], ["1e3"], [true], "60"]) {
    const r = await h.api("POST", "/v1/assets/approvals-bed/write", { token: mes, body: { target: "holding:230", values } });
    t.match(r, { status: 400, body: { type: "urn:ztgate:error:validation" } }, `values ${JSON.stringify(values)} refused by the schema`);
  }
  t.equal(fc6(), before, "none of them reached the device");
  t.match(await h.api("POST", "/v1/approvals/x", { token: admin, body: { approve: 1 } }), { status: 400 }, "approve: 1 is not true");

  for (const target of ["holding:200-100", "holding:99999"]) {
    t.match(await h.api("POST", "/v1/assets/boiler-plc/read", { token: mes, body: { target } }), { status: 400, body: { type: "urn:ztgate:error:bad-request" } }, `read ${target}`);
    t.match(await h.api("POST", "/v1/assets/boiler-plc/write", { token: mes, body: { target, values: [1] } }), { status: 400 }, `write ${target}`);
  }

  // Without a token, a bad value or target is a 401 (logged), not a 400 that describes the point.
  t.match(await h.api("PUT", "/v1/assets/boiler-plc/points/setpoint", { body: { value: "abc" } }), { status: 401 });
  t.match(await h.api("POST", "/v1/assets/boiler-plc/write", { body: { target: "holding:65535", values: [1, 2] } }), { status: 401 });
  t.match(await h.api("POST", "/v1/assets/boiler-plc/read", { body: { target: "holding:99999" } }), { status: 401 });

  for (const q of ["since=99999999999d", "until=999999999999999999999s", "since=2026-02-30"]) {
    t.match(await h.api("GET", `/v1/decisions?${q}`, { token: auditor }), { status: 400 }, q);
    t.match(await h.api("GET", `/v1/decisions/summary?${q}`, { token: auditor }), { status: 400 }, `summary ${q}`);
  }

  t.match(await h.api("POST", "/v1/sessions", { token: mes, rawBody: "protocol=modbus", headers: { "content-type": "text/plain" } }), { status: 415, body: { type: "urn:ztgate:error:ctp-invalid-media-type" } });
  t.match(await h.api("POST", "/v1/sessions", { token: mes, rawBody: '{"protocol":"modbus"}', headers: { "content-type": "application/json; charset=utf-16" } }), { status: 415 });
  t.match(await h.api("POST", "/v1/sessions", { token: mes, rawBody: '{"protocol":"modbus"}', headers: { "content-type": "application/json; charset=UTF-8" } }), { status: 201 }, "UTF-8 named explicitly is fine");

  for (const path of ["/v1/assets?x=1", "/v1/policy?x=1", "/v1/approvals?foo=1"]) t.match(await h.api("GET", path, { token: admin }), { status: 400 }, path);
  t.match(await h.api("POST", "/v1/policy/reload", { token: admin, body: { anything: 1 } }), { status: 400 });
  t.match(await h.api("POST", "/v1/policy/reload", { token: admin }), { status: 200 }, "no body is fine");
  const lease = await h.api("POST", "/v1/sessions", { token: mes, body: { protocol: "modbus" } });
  const leaseId = (lease.body as { id: string }).id;
  t.match(await h.api("POST", `/v1/sessions/${leaseId}/renew`, { token: mes, body: { junk: 1 } }), { status: 400 });
  t.match(await h.api("POST", `/v1/sessions/${leaseId}/renew`, { token: mes }), { status: 200 });

  // A float32 point's limits are checked on the value the device gets: 100.000001 is 100 as a float32 (rule max 100).
  t.match(await h.api("PUT", "/v1/assets/testbed/points/limit", { token: mes, body: { value: 100.000001 } }), { status: 200, body: { value: 100 } });
  t.match(await h.api("PUT", "/v1/assets/testbed/points/limit", { token: mes, body: { value: 100.00001 } }), { status: 403 }, "100.00001 is above 100 as a float32 too");

  // HEAD on the live stream is no route (it would hold a feed subscription open until the token expires).
  t.equal((await h.api("HEAD", "/v1/decisions/stream", { token: auditor })).status, 404);

  // Listing everyone's pending approvals is a logged use of a gateway role.
  t.equal((await h.api("GET", "/v1/approvals", { token: auditor })).status, 200);
  const uses = ((await h.records()) as Rec[]).filter((r) => r.type === "decision" && r["rule"] === "gateway.auditorRoles" && (r.subject as { sub?: string } | null)?.sub === "aud-1");
  t.ok(uses.some((r) => r["action"] === "read" && (r["target"] as { point?: string }).point === "approvals"), "logged");
});

t.test("OPC UA point values past their type's range are refused before any decision", async (t) => {
  const point = (type: string): Point => ({ name: "p", type, size: 1, words: "big", node: "ns=1;s=P", writable: true, line: 1 }) as unknown as Point;
  for (const [type, value] of [["byte", 300], ["sbyte", -129], ["uint32", -1], ["int64", 2 ** 60], ["uint64", -1], ["float", 1e39]] as const) {
    t.match(pointValue(point(type), value), { ok: false }, `${type} ${value}`);
  }
  for (const [type, value] of [["byte", 255], ["int64", Number.MAX_SAFE_INTEGER], ["float", 3.4e38], ["double", 1e300]] as const) {
    t.same(pointValue(point(type), value), { ok: true, value }, `${type} ${value}`);
  }
});

t.test("a held Modbus write follows its lease: kept when the lease is renewed past its first token, refused when the lease is deleted", async (t) => {
  const h = await gateway(t);
  const lead = await h.token("lead-1", ["shift-lead"]);
  const pending = async () => (((await h.api("GET", "/v1/approvals", { token: lead })).body as { approvals: Array<{ id: string; requester: { sub: string } }> }).approvals);
  const fc6 = () => h.plc.stats().served[6] ?? 0;

  // Renewed: the write outlives the lease's first (3 s) token.
  const renewed = await h.leaseFor("mes-L", ["mes"], { ttl: 3 });
  const c = await WireClient.connect(h.lease.port);
  t.teardown(() => c.close());
  c.send(mbap(1, 3, [6, 0, 220, 0, 42]));
  await c.next();
  t.equal((await pending()).length, 1, "held");
  t.equal((await h.api("POST", `/v1/sessions/${renewed.id}/renew`, { token: await h.token("mes-L", ["mes"], { ttl: 600 }) })).status, 200, "lease renewed");
  await new Promise((r) => setTimeout(r, 3500));
  t.equal((await pending()).length, 1, "still pending after the first token's expiry");

  // Deleted: the write is refused (another lease for the same address replaces the first).
  const deleted = await h.leaseFor("mes-M", ["mes"], { ttl: 600 }); // (the first lease's connection closes with it)
  const c2 = await WireClient.connect(h.lease.port);
  t.teardown(() => c2.close());
  c2.send(mbap(2, 3, [6, 0, 220, 0, 77]));
  await c2.next();
  const held = (await pending()).find((a) => a.requester.sub === "mes-M");
  t.ok(held, "held");
  t.equal((await h.api("DELETE", `/v1/sessions/${deleted.id}`, { token: deleted.token })).status, 204);
  const before = fc6();
  t.match(await h.api("POST", `/v1/approvals/${held?.id ?? ""}`, { token: lead, body: { approve: true } }), { status: 404 }, "nothing left to approve");
  await new Promise((r) => setTimeout(r, 300));
  t.equal(fc6(), before, "the deleted lease's write never reached the device");
  const refused = ((await h.records()) as Rec[]).find((r) => r.type === "decision" && r.decision === "deny" && (r["approval"] as { id?: string } | undefined)?.id === held?.id);
  t.match(refused, { reason: "token-revoked", subject: { sub: "mes-M" } });
});
