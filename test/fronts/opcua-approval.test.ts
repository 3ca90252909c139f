// An OPC UA write held for approval (issue 8): the client's Write waits while the write is
// pending, and completes Good once a shift lead approves it; the PLC sees the value only then.
// A rejected one comes back BadUserAccessDenied and never reaches the PLC.
import t from "tap";
import { AttributeIds, DataType, StatusCodes, Variant } from "node-opcua";
import { BOILER, startFrontHarness } from "../support/opcua-front.js";
import { clientPki, jwtIdentity, openSession } from "../support/opcua-client.js";
import type { Principal } from "../../src/pdp/principal.js";

const SETPOINT = "ns=1;s=boiler-plc.setpoint";
const lead: Principal = { sub: "lead-1", iss: "ztgate-dev", roles: ["shift-lead"], claims: {}, via: "bearer" };
const approver = { address: "127.0.0.1", port: 1, protocol: "http" as const, transport: "https" };

async function until<T>(what: string, f: () => T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test("an OPC UA write waits for approval, then succeeds; a rejected one is denied", async (t) => {
  const h = await startFrontHarness(t);
  await h.rewritePolicy("boiler-plc.yaml", BOILER.replace("    values: { min: 20, max: 80 }", "    values: { min: 20, max: 80 }\n    approval: { roles: [shift-lead], timeout: 60s }"));
  const pki = await clientPki(h.dir, h.keysDir);
  const c = await openSession(h.address.endpointUrl, jwtIdentity("mes-1", await h.token("mes-1", ["mes"])), { pki });
  t.teardown(() => c.close());
  const write = (v: number) => c.session.write({ nodeId: SETPOINT, attributeId: AttributeIds.Value, value: { value: new Variant({ dataType: DataType.UInt16, value: v }) } });

  const before = h.plc.memory.holding[100];
  const pending = write(55);
  let settled = false;
  void pending.then(() => (settled = true), () => (settled = true));
  const held = await until("the write to be held", () => h.approvals.list().find((a) => a.requester.sub === "mes-1"));
  t.match(held, { asset: "boiler-plc", rule: "mes-setpoint", values: [{ point: "setpoint", value: 55 }] });
  t.equal(settled, false, "the client's Write has no answer while the approval is pending");
  t.equal(h.plc.memory.holding[100], before, "not written while pending");
  t.match(h.approvals.decide(held.id, lead, true, approver), { status: "decided", verdict: "approved" });
  t.equal((await pending).value, StatusCodes.Good.value);
  t.equal(h.plc.memory.holding[100], 55, "written once approved");

  const second = write(60);
  const again = await until("the second write to be held", () => h.approvals.list().find((a) => a.requester.sub === "mes-1"));
  t.match(h.approvals.decide(again.id, lead, false, approver), { status: "decided", verdict: "rejected" });
  t.equal((await second).value, StatusCodes.BadUserAccessDenied.value);
  t.equal(h.plc.memory.holding[100], 55, "the rejected value never reached the PLC");

  const recs = await h.decisions();
  t.same(recs.filter((r) => r["action"] === "write").map((r) => [r["decision"], r["reason"], (r["subject"] as { sub: string }).sub]), [
    ["allow", "allowed", "mes-1"],
    ["allow", "allowed", "lead-1"],
    ["allow", "allowed", "mes-1"],
    ["allow", "allowed", "lead-1"],
    ["deny", "approval-rejected", "mes-1"],
  ]);
});
