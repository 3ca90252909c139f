// Impact replay: a log made by the real enforcement path under the default policy, replayed
// against edited policies whose effect on that traffic is known exactly.
import path from "node:path";
import t from "tap";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { Replayer, claimRules, formatReplay, rebuild, replay } from "../../src/policy/replay.js";
import type { DecisionRecord } from "../../src/audit/record.js";
import { readYamlFiles } from "../../src/policy/load.js";
import { BOILER, PACKAGING, compiled, edit, ops, policyDir, principal, record } from "./traffic.js";
import type { Step } from "./traffic.js";

const mes = principal("mes-1", ["mes"]);
const hist = principal("hist-1", ["historian"]);
const B = "boiler-plc";
const P = "packaging-line";

const steps: Step[] = [
  { who: mes, op: ops.write(B, "holding", 100, [30]) }, // 1 allowed
  { who: mes, op: ops.write(B, "holding", 100, [50]) }, // 2 allowed
  { who: mes, op: ops.write(B, "holding", 100, [75]) }, // 3 allowed; NEW tightens to 20-60 → deny
  { who: mes, op: ops.write(B, "holding", 100, [90]) }, // 4 value-out-of-range in both
  { who: hist, op: ops.read(B, "input", 0, 2) }, // 5 allowed; NEW moves historian-read to role scada → deny
  { who: hist, op: ops.read(B, "input", 0, 3) }, // 6 same
  { who: hist, op: ops.read(B, "input", 2) }, // 7 same
  { who: hist, op: ops.write(B, "holding", 100, [40]) }, // 8 no-matching-rule; NEW lets historians write 0-50 → allow
  { who: mes, op: ops.read(B, "coil", 0) }, // 9 allowed in both
  { who: mes, op: ops.point(P, "read", "count"), after: 100 }, // 10 allowed; NEW rate 2/min on mes-read
  { who: mes, op: ops.point(P, "read", "count"), after: 100 }, // 11 allowed in both (2nd of 2)
  { who: mes, op: ops.point(P, "read", "count"), after: 61_000 }, // 12 allowed; NEW: rate-limited
  { who: mes, op: ops.point(P, "read", "count") }, // 13 a minute later: allowed in both
  { who: mes, op: ops.point(P, "write", "speed", 100) }, // 14 allowed; NEW: mes-speed needs claim site=north → not replayable
  { refuse: "no-session", who: null, op: ops.read(B, "input", 0, 2) }, // 15 skipped
  { refuse: "token-expired", who: mes, op: ops.read(B, "input", 0, 2) }, // 16 skipped
  { refuse: "unknown-asset", who: mes, op: ops.read("modbus:lease:unit-9", "holding", 0) }, // 17 skipped
];

const NEW_BOILER = edit(
  edit(edit(BOILER, "values: { min: 20, max: 80 }", "values: { min: 20, max: 60 }"), "  - id: historian-read\n    allow: [read, browse]\n    subjects: { roles: [historian] }", "  - id: historian-read\n    allow: [read, browse]\n    subjects: { roles: [scada] }"),
  "  - id: mes-read\n",
  "  - id: historian-setpoint\n    allow: [write]\n    subjects: { roles: [historian] }\n    points: [setpoint]\n    values: { max: 50 }\n\n  - id: mes-read\n",
);
const NEW_PACKAGING = edit(
  edit(PACKAGING, "  - id: mes-read\n    allow: [read, browse]\n    subjects: { roles: [mes] }\n    points: [\"*\"]\n", "  - id: mes-read\n    allow: [read, browse]\n    subjects: { roles: [mes] }\n    points: [\"*\"]\n    rate: 2/min\n"),
  "    subjects: { roles: [mes] }\n    points: [speed]",
  "    subjects: { roles: [mes], claims: { site: north } }\n    points: [speed]",
);

const root = t.testdir({});
const oldDir = policyDir(path.join(root, "old"));
const newDir = policyDir(path.join(root, "new"), { "boiler-plc.yaml": NEW_BOILER, "packaging-line.yaml": NEW_PACKAGING });
const oldSet = await compiled(oldDir);
const newSet = await compiled(newDir);
const rec = await record(path.join(root, "log"), oldSet, steps);
const records: LogRecord[] = [];
for await (const f of readLog(rec.dir)) if (f.record) records.push(f.record);
const decisions = records.filter((r): r is DecisionRecord => r.type === "decision");
const seqOf = (step: number) => (decisions[step - 1] as DecisionRecord).seq;

t.test("the recorded traffic is what the comments say", async (t) => {
  t.same(rec.decided.map((d) => d.reason), [
    "allowed", "allowed", "allowed", "value-out-of-range", "allowed", "allowed", "allowed", "no-matching-rule", "allowed",
    "allowed", "allowed", "allowed", "allowed", "allowed", "no-session", "token-expired", "unknown-asset",
  ]);
  t.equal(decisions.length, steps.length);
});

t.test("a replay against the same policy changes nothing, and agrees with the log", async (t) => {
  const r = replay(records, oldSet, oldSet);
  t.equal(r.changes.total, 0);
  t.equal(r.decisions, 17);
  t.equal(r.replayed, 14);
  t.same(r.skipped, { "no-session": 1, "token-expired": 1, "unknown-asset": 1 });
  t.same(r.fidelity, { checked: 14, differing: 0, examples: [] });
  t.same(formatReplay(r).at(-1), "no decision changes");
});

t.test("a replay against the edited policy reports exactly the known changes", async (t) => {
  const sources = async (dir: string) => (await readYamlFiles(dir)).sources;
  const r = replay(records, oldSet, newSet, { oldClaims: claimRules(await sources(oldDir)), newClaims: claimRules(await sources(newDir)), examples: 2 });
  t.equal(r.replayed, 13, "the claim-dependent write is not replayed");
  t.same(r.claimDependent, { count: 1, rules: [{ asset: P, rule: "mes-speed", count: 1 }] });
  t.equal(r.unchanged, 7, "steps 1, 2, 4, 9, 10, 11, 13");
  t.same(r.changes.byChange, { "allow→deny": 5, "deny→allow": 1 });
  t.equal(r.changes.total, 6);
  const groups = r.changes.groups.map((g) => ({ asset: g.asset, change: g.change, sub: g.subject.sub, old: g.old, new: g.new, count: g.count, seqs: g.examples.map((e) => e.seq) }));
  t.same(groups, [
    { asset: B, change: "allow→deny", sub: "hist-1", old: { rule: "historian-read", reason: "allowed" }, new: { rule: null, reason: "no-matching-rule" }, count: 3, seqs: [seqOf(5), seqOf(6)] },
    { asset: B, change: "allow→deny", sub: "mes-1", old: { rule: "mes-setpoint", reason: "allowed" }, new: { rule: "mes-setpoint", reason: "value-out-of-range" }, count: 1, seqs: [seqOf(3)] },
    { asset: B, change: "deny→allow", sub: "hist-1", old: { rule: null, reason: "no-matching-rule" }, new: { rule: "historian-setpoint", reason: "allowed" }, count: 1, seqs: [seqOf(8)] },
    { asset: P, change: "allow→deny", sub: "mes-1", old: { rule: "mes-read", reason: "allowed" }, new: { rule: "mes-read", reason: "rate-limited" }, count: 1, seqs: [seqOf(12)] },
  ]);
  const ex = r.changes.groups[1]?.examples[0];
  t.match(ex, { action: "write", target: "holding:100", values: "setpoint=75", id: /^d-\d+$/ });
  const text = formatReplay(r);
  t.match(text[0], /: 17 decisions in the log, 13 replayed, 7 unchanged, 6 changed$/);
  t.ok(text.some((l) => /not replayed: 1 decisions a rule with subjects\.claims could have decided .*packaging-line\/mes-speed 1/.test(l)));
  t.ok(text.some((l) => /^ {2}ALLOW→DENY {2}1× {2}subject mes-1 \[mes\] {2}rule mes-setpoint \(allowed\) → mes-setpoint \(value-out-of-range\)$/.test(l)));
});

t.test("without the claim rules, the claim-dependent write replays (with empty claims) as a change", async (t) => {
  const r = replay(records, oldSet, newSet);
  t.equal(r.claimDependent.count, 0);
  t.equal(r.changes.total, 7, "the write the claims rule no longer allows for a principal without claims");
});

t.test("rates are fed in log order: replaying only the later records gives a different answer", async (t) => {
  const r = new Replayer(oldSet, newSet);
  for (const rec of records) if (rec.type !== "decision" || (rec as DecisionRecord).seq >= seqOf(11)) r.add(rec);
  t.notOk(r.report().changes.groups.some((g) => g.new.reason === "rate-limited"), "two reads in a minute are within 2/min");
});

t.test("rebuild: the operation and principal of a record", async (t) => {
  const w = rebuild(decisions[0] as DecisionRecord, [oldSet]);
  t.same(w, {
    op: { asset: B, action: "write", target: { kind: "range", table: "holding", address: 100, count: 1 }, source: "10.20.1.5", raw: [30] },
    principal: { sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], claims: {}, sessionId: "s-mes-1", tokenId: "j-mes-1", via: "explain" },
    at: Date.parse("2026-03-02T08:00:00Z"),
  });
  const speed = rebuild(decisions[13] as DecisionRecord, [oldSet]);
  t.match(speed, { op: { target: { kind: "point", point: "speed" }, value: 100 } });
  t.same(rebuild({ ...(decisions[0] as DecisionRecord), asset: null }, [oldSet]), { skip: "gateway-endpoint" });
  t.same(rebuild({ ...(decisions[0] as DecisionRecord), asset: "elsewhere" }, [oldSet]), { skip: "asset-not-in-either-policy" });
  t.same(rebuild({ ...(decisions[0] as DecisionRecord), target: { point: "(frame)" } }, [oldSet]), { skip: "front-refusal" });
  const fc22 = rebuild({ ...(decisions[0] as DecisionRecord), values: [{ address: 100, point: "setpoint", table: "holding" }] }, [oldSet]);
  t.match(fc22, { op: { raw: null } }, "a value logged without raw words is not known in advance");
  t.same(rebuild({ ...(decisions[0] as DecisionRecord), values: undefined, reason: "partial-point" }, [oldSet]), { skip: "partial-point" });
});
