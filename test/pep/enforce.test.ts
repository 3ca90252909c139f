// The enforcement path against the real decision log, the real policy and real keys:
// every decision is logged before anything is forwarded, outcomes share the decision id,
// and a log that cannot be written fails closed.
import t from "tap";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DecisionLog } from "../../src/audit/writer.js";
import { verifyLog } from "../../src/audit/verify.js";
import { Enforcer } from "../../src/pep/enforce.js";
import type { AuditLog, Forwarded } from "../../src/pep/enforce.js";
import { loadPolicyDir } from "../../src/policy/load.js";
import { compilePolicies } from "../../src/policy/compile.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";
import type { Operation } from "../../src/pdp/operation.js";
import type { Principal } from "../../src/pdp/principal.js";
import { AuditUnavailableError } from "../../src/audit/writer.js";
import { keys, settings } from "../audit/helpers.js";

const policies = fileURLToPath(new URL("../../policies", import.meta.url));
const set = (await loadPolicyDir(policies)).set!;
const mes: Principal = { sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], claims: {}, sessionId: "s-1", tokenId: "j-1", via: "lease" };
const client = { address: "127.0.0.1", port: 50200, protocol: "modbus" as const, transport: "tcp" };
const readTemp: Operation = { asset: "boiler-plc", action: "read", target: { kind: "range", table: "input", address: 0, count: 2 }, source: "127.0.0.1" };
const writeSp = (v: number): Operation => ({ asset: "boiler-plc", action: "write", target: { kind: "range", table: "holding", address: 100, count: 1 }, raw: [v], source: "127.0.0.1" });

function records(dir: string): Array<Record<string, unknown>> {
  return readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort()
    .flatMap((f) => readFileSync(path.join(dir, f), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>));
}

t.test("decide, log, forward, outcome: one straight line", async (t) => {
  const dir = t.testdir();
  const k = await keys();
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  const seen: string[] = [];
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates(), onDecision: (d) => seen.push(d.reason) });

  let forwardedAt = -1;
  const ok = await pep.enforce(mes, [writeSp(50)], client, async () => {
    forwardedAt = log.stats().seq; // the decision is in the chain before the device sees anything
    return { status: "ok", result: "done" };
  });
  t.equal(ok.allowed, true);
  t.equal(ok.forwarded?.result, "done");
  t.equal(forwardedAt, 1, "write-ahead: the decision record was appended before forwarding");

  let called = false;
  const refused = await pep.enforce(mes, [writeSp(95)], client, async () => {
    called = true;
    return { status: "ok" };
  });
  t.equal(refused.allowed, false);
  t.equal(called, false, "a denied write never reaches the device");
  t.equal(refused.refusal?.decision.reason, "value-out-of-range");

  const none = await pep.enforce(null, [readTemp], client, async () => ({ status: "ok" }));
  t.equal(none.refusal?.decision.reason, "no-session");
  const broadcast = await pep.refuse("unsupported-function", mes, readTemp, client);
  t.equal(broadcast.allowed, false);

  // FC23: a read part allowed and a write part denied → refused whole, nothing forwarded.
  const both = await pep.enforce(mes, [readTemp, { ...writeSp(50), target: { kind: "range", table: "coil", address: 0, count: 1 }, raw: [1] }], client, async () => ({ status: "ok" }));
  t.equal(both.allowed, false);
  t.same(both.authorizations.map((a) => a.decision.reason), ["allowed", "denied-by-rule"]);

  const timeout = await pep.enforce(mes, [readTemp], client, async () => ({ status: "timeout" }));
  t.equal(timeout.allowed, true);
  await log.close();

  const recs = records(dir);
  const decisions = recs.filter((r) => r["type"] === "decision");
  t.same(decisions.map((r) => [r["decision"], r["reason"]]), [
    ["allow", "allowed"], ["deny", "value-out-of-range"], ["deny", "no-session"], ["deny", "unsupported-function"],
    ["allow", "allowed"], ["deny", "denied-by-rule"], ["allow", "allowed"],
  ]);
  const first = decisions[0] as Record<string, unknown>;
  t.match(first, { subject: { sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], sessionId: "s-1", jti: "j-1" }, client, asset: "boiler-plc", zone: "boiler-house", action: "write", rule: "mes-setpoint", policyRevision: set.revision });
  t.match(first["values"], [{ point: "setpoint", raw: [50], value: 50 }], "written values, decoded and raw");
  const outcomes = recs.filter((r) => r["type"] === "outcome");
  t.same(outcomes.map((o) => [o["ref"], o["status"]]), [[first["id"], "ok"], [decisions[6]?.["id"], "timeout"]], "outcomes reference their decisions");
  t.notMatch(JSON.stringify(recs.filter((r) => r["type"] !== "checkpoint")), /eyJ/, "no token in any record (only checkpoints carry a JWS)");
  t.same(seen, ["allowed", "value-out-of-range", "no-session", "unsupported-function", "allowed", "denied-by-rule", "allowed"]);
  t.equal((await verifyLog(dir, k.publicKey)).ok, true, "the log verifies");
});

t.test("a request of several operations that is refused takes no rate budget (FC23: read allowed, write denied)", async (t) => {
  const rated = compilePolicies([{ file: "rated.yaml", text: [
    "asset: rated", "protocol: modbus", "endpoint: tcp://127.0.0.1:15020",
    "rules:", "  - id: raw-read", "    allow: [read]", "    subjects: { roles: [mes] }", '    targets: [{ table: holding, address: "500-510" }]', "    rate: 2/min", "",
  ].join("\n") }]).set!;
  const dir = t.testdir();
  const log = await DecisionLog.open(settings(dir), { signingKey: (await keys()).privateKey });
  t.teardown(() => log.close());
  const pep = new Enforcer({ policy: () => rated, log, rates: new TokenBucketRates() });
  const read500: Operation = { asset: "rated", action: "read", target: { kind: "range", table: "holding", address: 500, count: 1 }, source: "127.0.0.1" };
  const write700: Operation = { asset: "rated", action: "write", target: { kind: "range", table: "holding", address: 700, count: 1 }, raw: [9], source: "127.0.0.1" };
  let forwarded = 0;
  const forward = async () => {
    forwarded++;
    return { status: "ok" as const };
  };
  const fc23 = await pep.enforce(mes, [read500, write700], client, forward);
  t.equal(fc23.allowed, false);
  t.same(fc23.authorizations.map((a) => a.decision.reason), ["allowed", "no-matching-rule"], "each operation logged as decided");
  t.same([(await pep.enforce(mes, [read500], client, forward)).allowed, (await pep.enforce(mes, [read500], client, forward)).allowed], [true, true], "the rule's 2/min are both still there");
  const third = await pep.enforce(mes, [read500], client, forward);
  t.equal(third.refusal?.decision.reason, "rate-limited", "and then used up");
  t.equal(forwarded, 2);
  // Allowed whole, a request of several operations takes its budget as before.
  const both = await pep.enforce({ ...mes, sub: "mes-2" }, [read500, read500], client, forward);
  t.equal(both.allowed, true);
  t.equal((await pep.enforce({ ...mes, sub: "mes-2" }, [read500], client, forward)).refusal?.decision.reason, "rate-limited");
});

/** A log that refuses everything, as the real one does when its disk is gone. */
const brokenLog = (onFailure: "deny" | "allow-reads"): AuditLog => ({
  append: () => {
    throw new AuditUnavailableError("the decision log cannot be written: ENOSPC");
  },
  mustAwaitDurable: () => false,
  allowsUnlogged: (action) => onFailure === "allow-reads" && action === "read",
});

t.test("a log that cannot be written fails closed", async (t) => {
  const deny = new Enforcer({ policy: () => set, log: brokenLog("deny"), rates: new TokenBucketRates() });
  const r = await deny.enforce(mes, [readTemp], client, async () => ({ status: "ok" }));
  t.equal(r.allowed, false);
  t.equal(r.refusal?.decision.reason, "audit-unavailable");
  const reads = new Enforcer({ policy: () => set, log: brokenLog("allow-reads"), rates: new TokenBucketRates() });
  t.equal((await reads.enforce(mes, [readTemp], client, async () => ({ status: "ok" }))).allowed, true, "allow-reads lets a read go on");
  const w = await reads.enforce(mes, [writeSp(50)], client, async () => ({ status: "ok" }));
  t.equal(w.refusal?.decision.reason, "audit-unavailable", "but never a write");
});

t.test("strict durability: an allowed write waits for its fsync; a failed fsync denies", async (t) => {
  const dir = t.testdir();
  const k = await keys();
  const log = await DecisionLog.open(settings(dir, { durability: "strict" }), { signingKey: k.privateKey });
  t.teardown(() => log.close());
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates() });
  let durableAtForward = -1;
  await pep.enforce(mes, [writeSp(40)], client, async () => {
    durableAtForward = log.stats().durableSeq;
    return { status: "ok" };
  });
  t.equal(durableAtForward, 1, "the write's decision was on disk before forwarding");

  let rejectDurable!: (e: Error) => void;
  const failing: AuditLog = {
    append: () => ({ id: "x", seq: 1, durable: new Promise<void>((_, rej) => (rejectDurable = rej)) }),
    mustAwaitDurable: () => true,
    allowsUnlogged: () => false,
  };
  const p = new Enforcer({ policy: () => set, log: failing, rates: new TokenBucketRates() }).authorize(mes, writeSp(40), client);
  rejectDurable(new Error("EIO"));
  t.equal((await p).decision.reason, "audit-unavailable");
});

t.test("group commit: the request is forwarded within enforce(), after its record is in the chain", async (t) => {
  const dir = t.testdir();
  const k = await keys();
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  t.teardown(() => log.close());
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates() });
  let seqAtForward = -1;
  let releaseDevice!: () => void;
  const p = pep.enforce(mes, [readTemp], client, () => {
    seqAtForward = log.stats().seq;
    return new Promise<Forwarded<number>>((resolve) => (releaseDevice = () => resolve({ status: "ok", result: 1 })));
  });
  t.equal(seqAtForward, 1, "forwarded before enforce() returned, its decision already chained (write-ahead)");
  releaseDevice();
  const r = await p;
  t.equal(r.forwarded?.result, 1);
  t.equal(log.stats().seq, 2, "and the outcome once the device answered");

  // A forward step that throws: enforce() rejects, as the async function it replaces did.
  await t.rejects(pep.enforce(mes, [readTemp], client, () => {
    throw new Error("front bug");
  }), /front bug/);
  // authorize() and refuse() still answer with promises.
  t.ok(pep.authorize(mes, readTemp, client) instanceof Promise);
  t.ok(pep.refuse("unsupported-function", mes, readTemp, client) instanceof Promise);
});

t.test("a group-commit record whose fsync fails later raises no unhandled rejection", async (t) => {
  let rejectDurable!: (e: Error) => void;
  const durable = new Promise<void>((_, rej) => (rejectDurable = rej));
  let n = 0;
  const later: AuditLog = { append: () => ({ id: `x${++n}`, seq: n, durable }), mustAwaitDurable: () => false, allowsUnlogged: () => false };
  const pep = new Enforcer({ policy: () => set, log: later, rates: new TokenBucketRates() });
  const r = await pep.enforce(mes, [readTemp], client, async () => ({ status: "ok" }));
  t.equal(r.allowed, true);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  rejectDurable(new Error("EIO"));
  await new Promise((resolve) => setTimeout(resolve, 20));
  process.off("unhandledRejection", onUnhandled);
  t.same(unhandled, [], "the log reports it; the enforcer does not crash the process");
});

t.test("onOutcome reports each forwarded request once, with its client, status and both times", async (t) => {
  const dir = t.testdir();
  const k = await keys();
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  const outcomes: Array<{ protocol: string; status: string; gatewayMs: number; deviceMs: number }> = [];
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates(), onOutcome: (c, status, gatewayMs, deviceMs) => outcomes.push({ protocol: c.protocol, status, gatewayMs, deviceMs }) });
  await pep.enforce(mes, [readTemp], client, async () => {
    await new Promise((r) => setTimeout(r, 20));
    return { status: "timeout" };
  });
  await pep.enforce(mes, [writeSp(95)], client, async () => ({ status: "ok" })); // refused: not forwarded
  await pep.enforce(mes, [writeSp(50)], { ...client, protocol: "opcua" }, async () => ({ status: "ok" }));
  t.equal(outcomes.length, 2, "a refused request is not an operation outcome");
  t.match(outcomes[0], { protocol: "modbus", status: "timeout" });
  t.ok((outcomes[0]?.deviceMs ?? 0) >= 15, "the device time covers the forward");
  t.ok((outcomes[0]?.gatewayMs ?? -1) >= 0, "the gateway time is measured");
  t.match(outcomes[1], { protocol: "opcua", status: "ok" });
  await log.close();
});

t.test("a forward step that fails inside the gateway still gets its outcome (gateway-error), and the failure is passed on", async (t) => {
  const dir = t.testdir();
  const k = await keys();
  const log = await DecisionLog.open(settings(dir), { signingKey: k.privateKey });
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates() });
  await t.rejects(pep.enforce(mes, [readTemp], client, () => Promise.reject(new RangeError("a bug in a forward step"))), { message: "a bug in a forward step" });
  await log.close();
  const recs = records(dir).filter((r) => r["type"] === "decision" || r["type"] === "outcome");
  const decision = recs.find((r) => r["type"] === "decision");
  t.match(decision, { decision: "allow" });
  t.match(recs.find((r) => r["type"] === "outcome"), { ref: decision?.["id"], status: "unavailable", exception: "gateway-error" }, "every allow has an outcome");
});
