// Per-write approval end to end (issue 8): the whole gateway (startGateway) with the simulated
// PLC behind it, real JWTs over HTTPS and a real Modbus client on the lease listener. A write
// that a rule holds for approval reaches the PLC only once a second principal with an approver
// role approves it; rejection, timeout, self-approval and a missing role keep it away; every
// step is in the decision log, which still verifies.
import t from "tap";
import { createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { verifyLog } from "../../src/audit/verify.js";
import { readSigningKey } from "../../src/audit/checkpoint.js";
import type { LogRecord } from "../../src/audit/record.js";
import { APPROVALS_BED as BED, decisions, mbap, startHarness, until, WireClient } from "../fronts/harness.js";
import type { Harness } from "../fronts/harness.js";


interface Pending { id: string; ref: string; requester: { sub: string }; asset: string; values: Array<{ point?: string; value?: unknown }>; roles: string[]; expiresAt: string }

let h: Harness;
t.before(async () => {
  // The harness's PLC port is only known once it starts: the bed's endpoint is filled in after.
  h = await startHarness(t, { policies: {} });
  writeFileSync(join(h.dir, "policies", "approvals-bed.yaml"), BED(h.plcPort));
  const r = await h.gw.policy.reload("manual");
  if (!r.ok) throw new Error(r.errors.join("\n"));
});

const approvalOf = (r: Record<string, unknown>) => r["approval"] as Record<string, unknown> | undefined;
const find = async (pred: (r: Record<string, unknown>) => boolean): Promise<Array<Record<string, unknown>>> => decisions(await h.records()).filter(pred);

t.test("granted: held until a shift lead approves, then written; both identities logged", async (t) => {
  const mes = await h.token("mes-1", ["mes", "shift-lead"]);
  const lead = await h.token("lead-1", ["shift-lead"]);
  const nobody = await h.token("op-2", ["historian"]);
  const served = h.plc.stats().served[6] ?? 0;

  const put = await h.api("PUT", "/v1/assets/approvals-bed/points/valve", { token: mes, body: { value: 42 } });
  t.equal(put.status, 202, put.text);
  const held = (put.body as { approval: { id: string; status: string }; decisionId: string }).approval;
  t.equal(held.status, "pending");
  t.equal(put.headers["location"], `/v1/approvals/${held.id}`);
  t.equal(h.plc.memory.holding[220], 0, "not written while pending");

  const listed = await h.api("GET", "/v1/approvals", { token: lead });
  t.equal(listed.status, 200);
  const mine = (listed.body as { approvals: Pending[] }).approvals.find((a) => a.id === held.id);
  t.match(mine, { requester: { sub: "mes-1" }, asset: "approvals-bed", roles: ["shift-lead"], values: [{ point: "valve", value: 42 }] });
  const hidden = await h.api("GET", "/v1/approvals", { token: nobody });
  t.same((hidden.body as { approvals: Pending[] }).approvals, [], "a principal without an approver role sees none");

  const self = await h.api("POST", `/v1/approvals/${held.id}`, { token: mes, body: { approve: true } });
  t.equal(self.status, 403, "the requester cannot approve its own write, even holding the role");
  t.match(self.body, { reason: "self-approval" });
  const noRole = await h.api("POST", `/v1/approvals/${held.id}`, { token: nobody, body: { approve: true } });
  t.equal(noRole.status, 403);
  t.match(noRole.body, { reason: "no-matching-rule" });
  t.equal(h.plc.memory.holding[220], 0, "still not written");
  t.equal(h.plc.stats().served[6] ?? 0, served, "the PLC has seen no write");

  const ok = await h.api("POST", `/v1/approvals/${held.id}`, { token: lead, body: { approve: true, comment: "checked with the operator" } });
  t.equal(ok.status, 200, ok.text);
  t.match(ok.body, { id: held.id, verdict: "approved" });
  await until(() => h.plc.memory.holding[220] === 42, "the approved write to reach the PLC");
  const again = await h.api("POST", `/v1/approvals/${held.id}`, { token: lead, body: { approve: true } });
  t.equal(again.status, 404, "decided once");

  const recs = await h.records();
  const write = decisions(recs).find((r) => approvalOf(r)?.["id"] === held.id && r["asset"] === "approvals-bed") as Record<string, unknown>;
  t.match(write, { decision: "allow", reason: "allowed", rule: "valve-write", subject: { sub: "mes-1" }, approval: { status: "pending", roles: ["shift-lead"] } });
  const steps = decisions(recs).filter((r) => approvalOf(r)?.["ref"] === write["id"]);
  t.same(steps.map((r) => [r["decision"], r["reason"], (r["subject"] as { sub: string }).sub]), [
    ["deny", "self-approval", "mes-1"],
    ["deny", "no-matching-rule", "op-2"],
    ["allow", "allowed", "lead-1"],
  ]);
  t.match(steps[2], { asset: null, target: { point: "approvals" }, approval: { requester: { sub: "mes-1" }, verdict: "approved", comment: "checked with the operator", asset: "approvals-bed" } });
  const outcome = recs.find((r) => r.type === "outcome" && (r as unknown as { ref: string }).ref === write["id"]);
  t.match(outcome, { status: "ok" }, "the outcome is recorded under the write's decision");
  t.ok((outcome?.seq ?? 0) > ((steps[2] as { seq?: number }).seq ?? Infinity), "forwarded only after the approval was logged");
});

t.test("rejected over Modbus (ack): exception 05 at once, never written, logged", async (t) => {
  await h.leaseFor("mes-2", ["mes"]);
  const lead = await h.token("lead-1", ["shift-lead"]);
  const before = h.plc.memory.holding[220];
  const served = h.plc.stats().served[6] ?? 0;
  const c = await WireClient.connect(h.lease.port);
  t.teardown(() => c.close());
  c.send(mbap(7, 3, [0x06, 0x00, 220, 0x00, 0x07]));
  const [answer] = await c.next();
  t.same([...(answer?.pdu ?? [])], [0x86, 0x05], "exception 05 (acknowledge): held for approval");
  t.equal(answer?.tid, 7);

  const pending = await until(async () => {
    const l = await h.api("GET", "/v1/approvals", { token: lead });
    return (l.body as { approvals: Pending[] }).approvals.some((a) => a.requester.sub === "mes-2");
  }, "the Modbus write to be listed").then(async () => ((await h.api("GET", "/v1/approvals", { token: lead })).body as { approvals: Pending[] }).approvals.find((a) => a.requester.sub === "mes-2") as Pending);
  t.match(pending.values, [{ point: "valve", value: 7 }]);
  const no = await h.api("POST", `/v1/approvals/${pending.id}`, { token: lead, body: { approve: false, comment: "not during the batch" } });
  t.equal(no.status, 200);
  t.match(no.body, { verdict: "rejected" });

  const refused = await until(async () => (await find((r) => r["reason"] === "approval-rejected" && approvalOf(r)?.["id"] === pending.id)).length === 1, "the rejection to be logged").then(() => find((r) => r["reason"] === "approval-rejected" && approvalOf(r)?.["id"] === pending.id));
  t.match(refused[0], { decision: "deny", asset: "approvals-bed", subject: { sub: "mes-2" }, approval: { approver: { sub: "lead-1" }, ref: pending.ref } });
  // The connection is still usable, and a read shows the value unchanged.
  c.send(mbap(8, 3, [0x03, 0x00, 220, 0x00, 0x01]));
  const [read] = await c.next();
  t.same([...(read?.pdu ?? [])], [0x03, 0x02, ((before ?? 0) >> 8) & 0xff, (before ?? 0) & 0xff]);
  t.equal(h.plc.stats().served[6] ?? 0, served, "the rejected write never reached the PLC");
});

t.test("timed out: refused and logged; a late approval finds nothing", async (t) => {
  const mes = await h.token("mes-3", ["mes"]);
  const lead = await h.token("lead-1", ["shift-lead"]);
  const put = await h.api("PUT", "/v1/assets/approvals-bed/points/quick", { token: mes, body: { value: 5 } });
  t.equal(put.status, 202, put.text);
  const id = (put.body as { approval: { id: string } }).approval.id;
  await until(async () => (await find((r) => r["reason"] === "approval-timeout" && approvalOf(r)?.["id"] === id)).length === 1, "the timeout to be logged");
  const late = await h.api("POST", `/v1/approvals/${id}`, { token: lead, body: { approve: true } });
  t.equal(late.status, 404);
  t.equal(h.plc.memory.holding[221], 0, "never written");
  const [timeout] = await find((r) => r["reason"] === "approval-timeout" && approvalOf(r)?.["id"] === id);
  t.match(timeout, { decision: "deny", rule: "quick-write", subject: { sub: "mes-3" }, asset: "approvals-bed" });
});

t.test("Modbus listener with approval: wait answers once the write is approved", async (t) => {
  const w = await startHarness(t, { listener: ["approval: wait"] });
  writeFileSync(join(w.dir, "policies", "approvals-bed.yaml"), BED(w.plcPort));
  const r = await w.gw.policy.reload("manual");
  t.ok(r.ok);
  await w.leaseFor("mes-4", ["mes"]);
  const lead = await w.token("lead-1", ["shift-lead"]);
  const c = await WireClient.connect(w.lease.port);
  t.teardown(() => c.close());
  let answered = false;
  const answer = c.next().then((f) => ((answered = true), f));
  c.send(mbap(9, 3, [0x06, 0x00, 220, 0x00, 0x09]));
  const listed = async () => ((await w.api("GET", "/v1/approvals", { token: lead })).body as { approvals: Pending[] }).approvals;
  await until(async () => (await listed()).length === 1, "the write to be held");
  t.equal(answered, false, "no answer while pending");
  t.equal(w.plc.memory.holding[220], 0);
  const id = ((await listed())[0] as Pending).id;
  t.equal((await w.api("POST", `/v1/approvals/${id}`, { token: lead, body: { approve: true } })).status, 200);
  const [frame] = await answer;
  t.same([...(frame?.pdu ?? [])], [0x06, 0x00, 220, 0x00, 0x09], "the device's echo, once approved");
  t.equal(frame?.tid, 9);
  t.equal(w.plc.memory.holding[220], 9);
});

t.test("the log with every approval step still verifies", async (t) => {
  await h.gw.log.flush();
  const r = await verifyLog(h.gw.config.log.dir, createPublicKey(await readSigningKey(h.gw.config.log.keyFile)));
  t.equal(r.ok, true, JSON.stringify(r).slice(0, 500));
  const all: LogRecord[] = await h.records();
  t.ok(all.some((x) => (x as unknown as { approval?: unknown }).approval !== undefined));
});
