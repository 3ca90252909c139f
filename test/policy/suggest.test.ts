// Learning: a monitor period recorded by the real enforcement path; the suggested policy, once
// compiled and enforced, allows exactly the observed traffic and refuses its neighbours.
import path from "node:path";
import { writeFileSync } from "node:fs";
import t from "tap";
import { parseDocument } from "yaml";
import { readLog } from "../../src/audit/query.js";
import type { DecisionRecord, LogRecord } from "../../src/audit/record.js";
import { decide } from "../../src/pdp/evaluate.js";
import type { Operation } from "../../src/pdp/operation.js";
import type { Principal } from "../../src/pdp/principal.js";
import { readYamlFiles } from "../../src/policy/load.js";
import { rebuild, replay } from "../../src/policy/replay.js";
import { suggest } from "../../src/policy/suggest.js";
import { BOILER, PACKAGING, compiled, edit, ops, policyDir, principal, record } from "./traffic.js";
import type { Step } from "./traffic.js";

const B = "boiler-plc";
const hist = principal("hist-1", ["historian"]);
const hist2 = principal("hist-2", ["historian"]);
const mes = principal("mes-1", ["mes"]);
const ops1 = principal("ops-1", ["mes", "operator"]);
const robot = principal("robot-7", []);

// The asset under observation: monitor mode, its deny rule, and an over-broad allow to be replaced.
const MONITORED = edit(
  edit(BOILER, "mode: enforce", "mode: monitor"),
  "  - id: historian-read\n",
  "  - id: everyone-reads\n    allow: [read]\n    subjects: \"*\"\n    points: [\"*\"]\n\n  - id: historian-read\n",
);

const steps: Step[] = [
  { who: hist, op: ops.read(B, "input", 0, 2) }, // temperature
  { who: hist2, op: ops.read(B, "input", 0, 3) }, // temperature + pressure
  { who: hist, op: ops.read(B, "holding", 200, 4) }, // unnamed 200-203
  { who: hist, op: ops.read(B, "holding", 204) }, // unnamed 204: adjacent, merged
  { who: mes, op: ops.write(B, "holding", 100, [30]) }, // setpoint (allowed by mes-setpoint)
  { who: mes, op: ops.write(B, "holding", 100, [55]) },
  { who: mes, op: ops.write(B, "holding", 100, [85]) }, // would-deny (value-out-of-range): learned too
  { who: mes, op: ops.write(B, "holding", 300, [7, 9]) }, // unnamed 300-301
  { who: mes, op: ops.write(B, "holding", 302, [8]) }, // unnamed 302, adjacent
  { who: mes, op: ops.read(B, "holding", 100, 2) }, // setpoint + mode
  { who: ops1, op: ops.write(B, "coil", 1, [1]) }, // alarm_reset, a subject with two roles
  { who: robot, op: ops.read(B, "discrete", 0) }, // flame, a subject with no roles
  // not learned:
  { who: mes, op: ops.write(B, "coil", 0, [1]) }, // denied-by-rule (burner_on)
  { who: hist, op: ops.read(B, "input", 1) }, // partial-point
  { refuse: "no-session", who: null, op: ops.read(B, "input", 0, 2) },
  { who: mes, op: ops.read("packaging-line" as string, "holding", 0), client: undefined }, // another asset (unsupported-function there)
];

const root = t.testdir({});
const curDir = policyDir(path.join(root, "current"), { "boiler-plc.yaml": MONITORED, "packaging-line.yaml": PACKAGING });
const curSet = await compiled(curDir);
const rec = await record(path.join(root, "log"), curSet, steps);
const records: LogRecord[] = [];
for await (const f of readLog(rec.dir)) if (f.record) records.push(f.record);
const { sources } = await readYamlFiles(curDir);
const s = suggest(records, sources, curSet, { asset: B, from: "data/decisions", generatedAt: "2026-03-09T12:00:00Z" });

// The suggestion, written next to the other file and switched to enforce.
const sugDir = policyDir(path.join(root, "suggested"), { "boiler-plc.yaml": edit(s.text, "\nmode: monitor\n", "\nmode: enforce\n"), "packaging-line.yaml": PACKAGING });
const sugSet = await compiled(sugDir);
const decide1 = (who: Principal, op: Operation) => decide(sugSet, op, who, { now: Date.parse("2026-03-03T08:00:00Z") });

t.test("the monitor period was recorded as would-denies and allows", async (t) => {
  t.same(rec.decided.slice(0, 12).map((d) => d.effect), Array(12).fill("allow"), "monitor mode lets everything policy-related through");
  t.equal(rec.decided[6]?.reason, "value-out-of-range");
  t.equal(rec.decided[12]?.reason, "denied-by-rule");
});

t.test("what was learned and what was not", async (t) => {
  t.same(s.diagnostics, [], "policy check accepts the suggestion");
  t.equal(s.learned, 12);
  t.same(s.skipped, { "denied-by-rule": 1, "partial-point": 1, "no-session": 1 });
  const doc = parseDocument(s.text);
  const rules = (doc.toJS() as { rules: Array<Record<string, unknown>> }).rules;
  t.same(rules, [
    { id: "no-burner-from-it", description: "The burner is switched by the PLC's own logic, never from IT.", deny: ["write"], subjects: "*", points: ["burner_on"] },
    { id: "historian-read", allow: ["read"], subjects: { roles: ["historian"] }, points: ["temperature", "pressure"], targets: [{ table: "holding", address: "200-204" }] },
    { id: "mes-read", allow: ["read"], subjects: { roles: ["mes"] }, points: ["setpoint", "mode"] },
    { id: "mes-write-setpoint", allow: ["write"], subjects: { roles: ["mes"] }, points: ["setpoint"], values: { min: 30, max: 85 } },
    { id: "mes-write-alarm_reset", allow: ["write"], subjects: { roles: ["mes"] }, points: ["alarm_reset"], values: { min: 1, max: 1 } },
    { id: "mes-write-holding-300-302", allow: ["write"], subjects: { roles: ["mes"] }, targets: [{ table: "holding", address: "300-302" }], values: { min: 7, max: 9 } },
    { id: "operator-write-alarm_reset", allow: ["write"], subjects: { roles: ["operator"] }, points: ["alarm_reset"], values: { min: 1, max: 1 } },
    { id: "sub-robot-7-read", allow: ["read"], subjects: { subs: ["robot-7"], issuers: ["ztgate-dev"] }, points: ["flame"] },
  ]);
  const doc2 = parseDocument(s.text).toJS() as Record<string, unknown>;
  for (const k of ["asset", "description", "zone", "protocol", "endpoint", "unit", "front", "mode", "points"]) {
    t.same(doc2[k], (parseDocument(MONITORED).toJS() as Record<string, unknown>)[k], `header key ${k} kept`);
  }
  t.notMatch(s.text, /everyone-reads/, "the current allow rules are replaced");
});

t.test("comments say what each rule is based on", async (t) => {
  t.match(s.text, /# rules suggested by ztgate policy suggest from 12 decisions in data\/decisions \(2026-03-09T12:00:00Z\)\./);
  t.match(s.text, /mode: monitor; set mode: enforce once/);
  t.match(s.text, /# kept from the current policy: deny rules/);
  t.match(s.text, /# learned: role historian read: 4 decisions \(2 allowed, 2 would-deny \(monitor\)\); first 2026-03-02T08:00:00\.000000Z; last 2026-03-02T08:00:03\.000000Z; subjects hist-1, hist-2\n\s+# per target: temperature 2, pressure 1, holding 200-204 2\n\s+- id: historian-read/);
  t.match(s.text, /# learned: role mes wrote setpoint: 3 decisions \(2 allowed, 1 would-deny \(monitor\)\); first 2026-03-02T08:00:04\.000000Z; last 2026-03-02T08:00:06\.000000Z; subjects mes-1; values seen 30\.\.85\n/);
  t.match(s.text, /# learned: subject robot-7 \(issuer ztgate-dev, no roles\) read: 1 decision /);
});

t.test("enforced, the suggestion allows every observed operation it learned from", async (t) => {
  const learned = records.filter((r): r is DecisionRecord => r.type === "decision" && r.asset === B && r.subject !== null && !["denied-by-rule", "partial-point"].includes(r.reason));
  t.equal(learned.length, 12);
  for (const r of learned) {
    const b = rebuild(r, [sugSet]);
    if ("skip" in b) throw new Error(`seq ${r.seq} not rebuilt: ${b.skip}`);
    const d = decide(sugSet, b.op, b.principal, { now: Date.parse(r.time) });
    t.equal(`${d.effect} ${d.reason}`, "allow allowed", `seq ${r.seq} ${r.action} ${JSON.stringify(r.target)}`);
  }
  const rep = replay(records, curSet, sugSet);
  const refused = Object.entries(rep.changes.byChange).filter(([k]) => /→(would-)?deny$/.test(k));
  t.same(refused, [["would-deny→deny", 1]], "the replay agrees: of all the traffic, only the burner write (denied by rule) is refused");
  t.same(rep.changes.groups.filter((g) => g.change === "would-deny→deny").map((g) => [g.new.rule, g.examples[0]?.target]), [["no-burner-from-it", "coil:0"]]);
  t.equal(rep.changes.byChange["would-deny→allow"], 6, "what the current rules did not allow now is");
});

t.test("enforced, the suggestion refuses what was not observed", async (t) => {
  const cases: Array<[string, Principal, Operation]> = [
    ["the address after the learned range", hist, ops.read(B, "holding", 205)],
    ["the address before it", hist, ops.read(B, "holding", 199)],
    ["a range running past it", hist, ops.read(B, "holding", 203, 3)],
    ["a point the role never read", hist, ops.read(B, "holding", 100)],
    ["a setpoint above the observed maximum", mes, ops.write(B, "holding", 100, [86])],
    ["a setpoint below the observed minimum", mes, ops.write(B, "holding", 100, [29])],
    ["the raw address after the learned write range", mes, ops.write(B, "holding", 303, [8])],
    ["a raw write value above the observed ones", mes, ops.write(B, "holding", 301, [10])],
    ["a coil value never written", ops1, ops.write(B, "coil", 1, [0])],
    ["an action the role never used", hist, ops.write(B, "holding", 100, [40])],
    ["a role never seen", principal("scada-1", ["scada"]), ops.read(B, "input", 0, 2)],
    ["a subject without roles other than the one seen", principal("robot-8", []), ops.read(B, "discrete", 0)],
    ["the burner, still denied by rule", mes, ops.write(B, "coil", 0, [1])],
  ];
  for (const [name, who, op] of cases) t.equal(decide1(who, op).effect, "deny", name);
  t.equal(decide1(mes, ops.write(B, "holding", 100, [85])).effect, "allow", "the observed maximum itself is allowed");
});

t.test("--since leaves out earlier decisions; an unknown asset is an error", async (t) => {
  const later = suggest(records, sources, curSet, { asset: B, since: "2026-03-02T08:00:10.000000Z" });
  t.equal(later.learned, 2, "the coil write of ops-1 and robot-7's read");
  t.same(later.diagnostics, []);
  t.throws(() => suggest(records, sources, curSet, { asset: "nowhere" }), /asset "nowhere" is not defined in the policy directory \(it has: boiler-plc, packaging-line\)/);
  const none = suggest([], sources, curSet, { asset: B });
  t.equal(none.learned, 0);
  writeFileSync(path.join(root, "none.yaml"), none.text);
  t.same(none.diagnostics, [], "an empty suggestion (deny rules only) still validates");
});
