// A rule's `approval` block (issue 8): compiled onto the rule, reported at the right line when
// malformed, part of the policy revision, and carried by the decision of a matching write (only).
import t from "tap";
import { compileFile, compilePolicies } from "../../src/policy/compile.js";
import { decide } from "../../src/pdp/evaluate.js";
import type { Principal } from "../../src/pdp/principal.js";

function yaml(...lines: string[]): string {
  return lines.join("\n") + "\n";
}

const HEAD = ["asset: plc", "protocol: modbus", "endpoint: tcp://127.0.0.1:502", "points:", "  sp: { table: holding, address: 100 }", "  temp: { table: input, address: 0 }", "rules:"];
// HEAD is lines 1-7; rules start at line 8.
const rule = (...lines: string[]) => yaml(...HEAD, "  - id: r", ...lines);

t.test("a well-formed approval compiles onto the rule", async (t) => {
  const r = compileFile({ file: "plc.yaml", text: rule("    allow: [read, write]", "    subjects: { roles: [mes] }", "    points: [sp]", "    approval: { roles: [shift-lead, shift-lead], timeout: 90s }") });
  t.same(r.diagnostics, []);
  t.same(r.asset?.rules[0]?.approval, { roles: ["shift-lead"], timeoutMs: 90_000 });
});

t.test("malformed approval blocks: every error at its line", async (t) => {
  const cases: Array<[string, string[], number, string]> = [
    ["empty roles", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval: { roles: [], timeout: 60s }"], 12, "approval.roles"],
    ["timeout too long", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval:", "      roles: [lead]", "      timeout: 2h"], 14, "outside 1s..1h"],
    ["timeout too short", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval: { roles: [lead], timeout: 500ms }"], 12, "outside 1s..1h"],
    ["not a duration", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval:", "      roles: [lead]", "      timeout: soon"], 14, "must be a duration"],
    ["on a deny rule", ["    deny: [write]", "    subjects: '*'", "    points: [sp]", "    approval: { roles: [lead], timeout: 60s }"], 12, "approval goes on allow rules"],
    ["on a read-only allow", ["    allow: [read]", "    subjects: '*'", "    points: [temp]", "    approval: { roles: [lead], timeout: 60s }"], 12, "does not allow"],
    ["unknown key", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval:", "      roles: [lead]", "      timeout: 60s", "      quorum: 2"], 15, "quorum"],
    ["missing roles", ["    allow: [write]", "    subjects: '*'", "    points: [sp]", "    approval: { timeout: 60s }"], 12, "roles"],
  ];
  for (const [name, lines, line, text] of cases) {
    const r = compileFile({ file: "plc.yaml", text: rule(...lines) });
    t.equal(r.diagnostics.length, 1, `${name}: one error (${r.diagnostics.map((d) => `${d.line}: ${d.message}`).join(" | ")})`);
    t.equal(r.diagnostics[0]?.line, line, `${name}: at line ${line}`);
    t.match(r.diagnostics[0]?.message ?? "", text, name);
  }
});

t.test("the revision changes with the approval; only writes of the rule carry it", async (t) => {
  const text = (timeout: string) => rule("    allow: [read, write]", "    subjects: { roles: [mes] }", "    points: [sp]", `    approval: { roles: [lead], timeout: ${timeout} }`);
  const a = compilePolicies([{ file: "plc.yaml", text: text("60s") }]).set;
  const b = compilePolicies([{ file: "plc.yaml", text: text("61s") }]).set;
  t.ok(a && b);
  t.not(a?.revision, b?.revision);
  const mes: Principal = { sub: "m", iss: "i", roles: ["mes"], claims: {}, via: "bearer" };
  const w = decide(a!, { asset: "plc", action: "write", target: { kind: "range", table: "holding", address: 100, count: 1 }, raw: [3] }, mes, { now: 0 });
  t.match(w, { effect: "allow", reason: "allowed", rule: "r", approval: { roles: ["lead"], timeoutMs: 60_000 } });
  const r = decide(a!, { asset: "plc", action: "read", target: { kind: "range", table: "holding", address: 100, count: 1 } }, mes, { now: 0 });
  t.equal(r.effect, "allow");
  t.equal(r.approval, undefined, "a read of the same rule is not held");
  const plain = compilePolicies([{ file: "plc.yaml", text: rule("    allow: [write]", "    subjects: { roles: [mes] }", "    points: [sp]") }]).set;
  const p = decide(plain!, { asset: "plc", action: "write", target: { kind: "range", table: "holding", address: 100, count: 1 }, raw: [3] }, mes, { now: 0 });
  t.equal(p.approval, undefined);
  t.notOk("approval" in p, "no approval key at all without one (the common path is unchanged)");
});
