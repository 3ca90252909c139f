// Policy compiler: every kind of broken policy file is reported at its line (and column), and
// all errors of a file, and of several files, come out at once.
import { readdirSync, readFileSync } from "node:fs";
import t from "tap";
import type { Test } from "tap";
import { compileFile, compilePolicies } from "../../src/policy/compile.js";
import type { PolicySource } from "../../src/policy/compile.js";
import type { Diagnostic } from "../../src/util/yaml-source.js";

/** A file's text from its lines, so that line N of the YAML is element N-1 of the array. */
function yaml(...lines: string[]): string {
  return lines.join("\n") + "\n";
}

/** Lines 1-3 of most Modbus test files. */
const MODBUS = ["asset: plc", "protocol: modbus", "endpoint: tcp://127.0.0.1:502"];
/** Lines 1-3 of most OPC UA test files. */
const OPCUA = ["asset: line", "protocol: opcua", "endpoint: opc.tcp://127.0.0.1:4840"];

function sorted(ds: readonly Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.message.localeCompare(b.message));
}

/**
 * Expected diagnostics as [where, message substring], in file/line/col order. `where` is
 * "line:col", or "line" when the column is not meaningful, optionally prefixed by "file:".
 * Every diagnostic must be expected and every expectation met (so the count is checked too).
 */
type Want = readonly [where: string, text: string];

function expectDiags(t: Test, ds: readonly Diagnostic[], want: readonly Want[], withFile = false): void {
  const got = sorted(ds).map((d, i): Want => {
    const w = want[i];
    const precise = w !== undefined && /\d+:\d+$/.test(w[0]);
    const where = `${withFile ? d.file + ":" : ""}${d.line}${precise ? `:${d.col}` : ""}`;
    return [where, w !== undefined && d.message.includes(w[1]) ? w[1] : d.message];
  });
  t.same(got, want);
}

function compile(text: string, file = "f.yaml"): { ok: boolean; diagnostics: Diagnostic[] } {
  const r = compileFile({ file, text });
  for (const d of r.diagnostics) if (d.file !== file) throw new Error(`diagnostic for ${d.file}, expected ${file}`);
  return { ok: r.asset !== undefined, diagnostics: r.diagnostics };
}

function expectFile(t: Test, text: string, want: readonly Want[]): void {
  const r = compile(text);
  t.equal(r.ok, false, "a file with errors yields no asset");
  expectDiags(t, r.diagnostics, want);
}

function expectValid(t: Test, text: string): void {
  const r = compile(text);
  t.same(r.diagnostics, []);
  t.equal(r.ok, true);
}

t.test("YAML syntax errors are positioned and stop the file", async (t) => {
  expectFile(t, yaml(...MODBUS, "points:", "  p: { table: coil, address: 0", "rules: []"), [["6:1", "YAML Flow map"]]);
  expectFile(t, yaml(...MODBUS, "rules:", "  - id: r", "    allow: [read]", "     subjects: '*'"), [["7:1", "YAML All mapping items must start at the same column"]]);
  expectFile(t, yaml(...MODBUS, "rules:", "\t- id: r"), [["5:1", "YAML Tabs are not allowed as indentation"]]);
  expectFile(t, yaml("asset: plc", "protocol: modbus", "endpoint: 'tcp://x", "rules: []"), [["5:1", "YAML Missing closing 'quote"]]);
  expectFile(t, yaml(...MODBUS, "rules: []", "---", "asset: other"), [["5:1", "(a file holds one document: remove the extra ---)"]]);
});

t.test("duplicate YAML keys are reported at the second key, every one of them", async (t) => {
  expectFile(t, yaml("asset: plc", "protocol: modbus", "endpoint: tcp://a:502", "endpoint: tcp://b:502", "rules: []"), [["4:1", "YAML Map keys must be unique"]]);
  expectFile(t, yaml(...MODBUS, "points:", "  p: { table: coil, address: 0 }", "  p: { table: coil, address: 1 }", "rules: []", "rules: []"), [
    ["6:3", "YAML Map keys must be unique"],
    ["8:1", "YAML Map keys must be unique"],
  ]);
});

t.test("a document that is not a mapping", async (t) => {
  expectFile(t, yaml("- asset: plc", "- protocol: modbus"), [["1:1", "must be a mapping with keys asset, protocol, endpoint, points and rules; this file is a list"]]);
  expectFile(t, yaml("# a comment first", "boiler-plc"), [["2:1", 'this file is a single value ("boiler-plc")']]);
  expectFile(t, yaml("42"), [["1:1", "this file is a single value (42)"]]);
  expectFile(t, "", [["1:1", "this file is empty"]]);
  expectFile(t, yaml("# only a comment"), [["1", "this file is empty"]]);
});

t.test("unknown keys are reported at the key, at every level", async (t) => {
  const text = yaml(
    ...MODBUS,
    "colour: red", // 4
    "points:",
    "  p: { table: holding, address: 1, colour: 2 }", // 6
    "rules:",
    "  - id: r1",
    "    allow: [write]",
    "    subjects: '*'",
    "    points: [p]",
    "    priority: 1", // 12
    "    when: { days: mon-fri, hour: 06:00-18:00 }", // 13
    "    values: { min: 0, maximum: 10 }", // 14
    "  - id: r2",
    "    allow: [read]",
    "    subjects: { roles: [mes], groups: [ops] }", // 17
    "    targets: [{ table: holding, address: 1, count: 2 }]", // 18
  );
  expectFile(t, text, [
    ["4:1", 'unknown key "colour"'],
    ["6:36", 'unknown key "colour" in points.p'],
    ["12:5", 'unknown key "priority" in rules[0]'],
    ["13:28", 'unknown key "hour" in rules[0].when'],
    ["14:23", 'unknown key "maximum" in rules[0].values'],
    ["17:31", 'unknown key "groups" in rules[1].subjects'],
    ["18:45", 'unknown key "count" in rules[1].targets[0]'],
  ]);
});

t.test("an unknown key does not hide the meaning errors of the same part", async (t) => {
  // The point with an unknown key is still a known point, and the rule is still checked.
  const text = yaml(
    ...MODBUS,
    "points:",
    "  p: { table: input, address: 1, colour: red }", // 5
    "rules:",
    "  - id: r",
    "    allow: [write]",
    "    subjects: '*'",
    "    points: [p]", // 10
    "    priority: 1", // 11
    "    from: [10.0.0.0/33]", // 12
  );
  expectFile(t, text, [
    ["5:34", 'unknown key "colour" in points.p'],
    ["10:14", 'rule "r": allows write on point "p", but input is read-only'],
    ["11:5", 'unknown key "priority" in rules[0]'],
    ["12:12", 'rule "r": from: "10.0.0.0/33": prefix length must be 0-32'],
  ]);
});

t.test("a malformed part hides only its own meaning errors", async (t) => {
  // Point q is malformed: rules naming it are not also told it is unknown. The rule with a
  // malformed target still has its other targets checked.
  const text = yaml(
    ...MODBUS,
    "points:",
    "  p: { table: holding, address: 1 }",
    '  q: { table: holding, address: "2" }', // 6
    "  \"a/b\":", // 7: a point with no body and a name that needs escaping in a JSON pointer
    "rules:",
    "  - id: r",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: [p, q, a/b, nope]", // 12
    "    targets:",
    "      - { table: holding, address: 70000 }", // 14
    "      - { table: holding, address: 1.5 }", // 15
    "      - { table: register, address: 1 }", // 16
  );
  expectFile(t, text, [
    ["6:33", "points.q.address: must be integer"],
    ["7:9", "points.a/b: must be object"],
    ["12:25", 'rule "r": unknown point "nope" (asset plc has: p, q, a/b)'],
    ["14:36", "address 70000 must be an address 0-65535"],
    ["15:36", 'rules[0].targets[1].address: must be an address (100) or a range ("100-199")'],
    ["16:18", "rules[0].targets[2].table: must be one of coil, discrete, input, holding"],
  ]);
});

t.test("a malformed points mapping does not make every rule's points unknown", async (t) => {
  const text = yaml(...MODBUS, "points:", "  - sp", "rules:", "  - id: r", "    allow: [read]", "    subjects: '*'", "    points: [sp]");
  expectFile(t, text, [["5:3", "points: must be object"]]);
});

t.test("missing required keys", async (t) => {
  expectFile(t, yaml("# boiler", "description: nothing else"), [
    ["2:1", 'missing required key "asset"'],
    ["2:1", 'missing required key "endpoint"'],
    ["2:1", 'missing required key "protocol"'],
    ["2:1", 'missing required key "rules"'],
  ]);
  const text = yaml(
    ...MODBUS,
    "rules:",
    "  - allow: [read]", // 5
    "    points: ['*']",
    "  - id: ok",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: ['*']",
    "  - id: no-subjects", // 11
    "    allow: [read]",
    "    points: ['*']",
  );
  expectFile(t, text, [
    ["5:5", 'rules[0]: missing required key "id"'],
    ["5:5", 'rules[0]: missing required key "subjects"'],
    ["11:5", 'rules[2]: missing required key "subjects"'],
  ]);
});

t.test("bad asset id, protocol and mode", async (t) => {
  expectFile(t, yaml("asset: Boiler_PLC", "protocol: bacnet", "endpoint: tcp://x:502", "mode: audit", "rules: []"), [
    ["1:8", "asset: must be lowercase letters, digits and - starting with a letter or digit"],
    ["2:11", "protocol: must be modbus or opcua"],
    ["4:7", "mode: must be enforce or monitor"],
  ]);
  expectFile(t, yaml(...MODBUS, "unit: 0", "front: { unit: 248 }", "rules: []"), [
    ["4:7", "unit: must be >= 1"],
    ["5:16", "front.unit: must be <= 247"],
  ]);
  expectFile(t, yaml(...MODBUS, "rules:", "  - id: -bad", "    allow: [read, fly]", "    subjects: everyone", "    points: ['*']"), [
    ["5:9", "rules[0].id: must be letters, digits, _ . - starting with a letter or digit"],
    ["6:19", "rules[0].allow[1]: must be an action: read, write, call, browse, diagnostic or *"],
    ["7:15", 'rules[0].subjects: must be "*" or { roles, subs, issuers, claims }'],
  ]);
});

t.test("unknown point names in a rule list the known points", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  temperature: { table: input, address: 0, type: float32 }",
    "  setpoint: { table: holding, address: 100 }",
    "rules:",
    "  - id: r",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: [setpoint, temprature]", // 11
  );
  expectFile(t, text, [["11:24", 'rule "r": unknown point "temprature" (asset plc has: temperature, setpoint)']]);
  expectFile(t, yaml(...MODBUS, "rules:", "  - id: r", "    allow: [read]", "    subjects: '*'", "    points:", "      - x"), [
    ["9:9", 'rule "r": unknown point "x" (asset has no points)'],
  ]);
});

t.test("addresses outside 0-65535, in points and raw targets", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  big: { table: holding, address: 70000 }", // 5
    "  neg: { table: coil, address: -1 }", // 6
    "  tail: { table: holding, address: 65535, type: float32 }", // 7
    "  last: { table: input, address: 65535 }", // 8: fine
    "rules:",
    "  - id: raw",
    "    allow: [read]",
    "    subjects: '*'",
    "    targets:",
    "      - { table: holding, address: 70000 }", // 14
    '      - { table: holding, address: "100-70000" }', // 15
    '      - { table: holding, address: "200-100" }', // 16
    '      - { table: holding, address: "abc" }', // 17
    '      - { table: holding, address: "0-65535" }', // 18: fine
  );
  expectFile(t, text, [
    ["5:35", 'point "big": address 70000 is outside 0-65535'],
    ["6:32", 'point "neg": address -1 is outside 0-65535'],
    ["7:36", 'point "tail": a float32 at 65535 spans 2 registers and runs past 65535'],
    ["14:36", 'rule "raw": address 70000 must be an address 0-65535 or a range "first-last" within 0-65535'],
    ["15:36", 'rule "raw": address "100-70000" must be an address 0-65535'],
    ["16:36", 'rule "raw": address range "200-100": first 200 is greater than last 100'],
    ["17:36", 'rule "raw": address "abc" must be an address 0-65535'],
  ]);
});

t.test("duplicate rule ids: the second is reported and names the first's line", async (t) => {
  const rule = (id: string) => [`  - id: ${id}`, "    allow: [read]", "    subjects: '*'", "    points: ['*']"];
  const text = yaml(...MODBUS, "rules:", ...rule("a"), ...rule("b"), ...rule("a"), ...rule("b"), ...rule("a"));
  // rules start at lines 5, 9, 13, 17, 21
  expectFile(t, text, [
    ["13:9", 'duplicate rule id "a" (first defined at line 5)'],
    ["17:9", 'duplicate rule id "b" (first defined at line 9)'],
    ["21:9", 'duplicate rule id "a" (first defined at line 5)'],
  ]);
});

t.test("bad CIDRs in from, each at its own list entry", async (t) => {
  const text = yaml(
    ...MODBUS,
    "rules:",
    "  - id: r",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: ['*']",
    "    from:",
    "      - 10.0.0.0/8", // 10: fine
    "      - 10.0.0.0/33", // 11
    "      - not-an-ip", // 12
    "      - 10.20.1.5/16", // 13
    "      - 2001:db8::1/32", // 14
  );
  expectFile(t, text, [
    ["11:9", 'rule "r": from: "10.0.0.0/33": prefix length must be 0-32 for IPv4'],
    ["12:9", 'rule "r": from: "not-an-ip": not an IPv4 or IPv6 address or CIDR'],
    ["13:9", 'rule "r": from: "10.20.1.5/16": host bits set (did you mean 10.20.0.0/16?)'],
    ["14:9", 'rule "r": from: "2001:db8::1/32": host bits set (did you mean 2001:db8::/32?)'],
  ]);
});

t.test("bad time windows, each at its own field", async (t) => {
  const text = yaml(
    ...MODBUS,
    "rules:",
    "  - id: r",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: ['*']",
    "    when:",
    '      hours: "25:00-06:00"', // 10
    "      days: mon-xyz", // 11
    "      tz: Mars/Olympus", // 12
    "  - id: r2",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: ['*']",
    '    when: { hours: "06:00-06:00", days: [mon, funday] }', // 17
  );
  expectFile(t, text, [
    ["10:14", 'rule "r": when.hours: hours "25:00-06:00": hours must be HH:MM-HH:MM'],
    ["11:13", 'rule "r": when.days: days "mon-xyz": unknown day'],
    ["12:11", 'rule "r": when.tz: tz "Mars/Olympus": unknown time zone'],
    ["17:20", 'rule "r2": when.hours: hours "06:00-06:00": empty window'],
    ["17:41", 'rule "r2": when.days: days ["mon","funday"]: unknown day "funday"'],
  ]);
});

t.test("bad rate", async (t) => {
  const rule = (id: string, rate: string) => [`  - id: ${id}`, "    allow: [read]", "    subjects: '*'", "    points: ['*']", `    rate: ${rate}`];
  const text = yaml(...MODBUS, "rules:", ...rule("a", "fast"), ...rule("b", "0/min"), ...rule("c", "10/fortnight"), ...rule("d", "30/min"));
  expectFile(t, text, [
    ["9:11", 'rule "a": rate: rate "fast": must be LIMIT/UNIT like 30/min'],
    ["14:11", 'rule "b": rate: rate "0/min": limit must be a whole number from 1'],
    ["19:11", 'rule "c": rate: rate "10/fortnight": must be LIMIT/UNIT'],
  ]);
});

t.test("min greater than max, on a point and in a rule's values", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  setpoint: { table: holding, address: 100, min: 120, max: 0 }", // 5
    "  level: { table: holding, address: 101, min: 0, max: 100 }",
    "rules:",
    "  - id: w",
    "    allow: [write]",
    "    subjects: '*'",
    "    points: [level]",
    "    values:",
    "      max: 20",
    "      min: 80", // 14
  );
  expectFile(t, text, [
    ["5:50", 'point "setpoint": min 120 is greater than max 0'],
    ["14:12", 'rule "w": values.min 80 is greater than values.max 20'],
  ]);
});

t.test("writes allowed on read-only tables", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  temperature: { table: input, address: 0, type: float32 }",
    "  flame: { table: discrete, address: 0 }",
    "  setpoint: { table: holding, address: 100 }",
    "  burner: { table: coil, address: 0 }",
    "rules:",
    "  - id: w",
    "    allow: [read, write]",
    "    subjects: '*'",
    "    points: [setpoint, temperature, burner, flame]", // 13
    "    targets:",
    "      - { table: holding, address: 200 }",
    '      - { table: input, address: "0-9" }', // 16
    "      - { table: discrete, address: 5 }", // 17
    "  - id: every-action", // "*" is read-only where it must be: not an error
    "    allow: ['*']",
    "    subjects: '*'",
    "    points: ['*']",
    "  - id: deny-is-fine",
    "    deny: [write]",
    "    subjects: '*'",
    "    points: [temperature]",
    "    targets: [{ table: input, address: 0 }]",
  );
  expectFile(t, text, [
    ["13:24", 'rule "w": allows write on point "temperature", but input is read-only'],
    ["13:45", 'rule "w": allows write on point "flame", but discrete is read-only'],
    ["16:18", 'rule "w": allows write on table input, which is read-only (only coil and holding can be written)'],
    ["17:18", 'rule "w": allows write on table discrete, which is read-only'],
  ]);
});

t.test("point types that do not fit their table", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  a: { table: coil, address: 0, type: float32 }", // 5
    "  b: { table: holding, address: 0, type: bool }", // 6
    "  c: { table: holding, address: 10, type: double }", // 7
    "  d: { table: discrete, address: 0, type: uint16 }", // 8
    "  e: { table: input, address: 20, type: float64 }", // 9: fine
    "  f: { table: holding, address: 30, type: float }", // 10
    "  g: { table: coil, address: 1, min: 0 }", // 11
    "  h: { table: coil, address: 2, type: real }", // 12: not a type at all
    "rules: []",
  );
  expectFile(t, text, [
    ["5:39", 'point "a": type float32 does not fit table coil (coil points are 1-bit, type bool)'],
    ["6:42", 'point "b": type bool does not fit table holding (registers take uint16, int16, uint32, int32, float32 or float64)'],
    ["7:43", 'point "c": type double does not fit table holding'],
    ["8:43", 'point "d": type uint16 does not fit table discrete'],
    ["10:43", 'point "f": type float does not fit table holding'],
    ["11:38", 'point "g": min/max do not apply to 1-bit coil points'],
    ["12:39", "points.h.type: must be a point type (bool, uint16"],
  ]);
});

t.test("overlapping points on the same table", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  flow: { table: holding, address: 0, type: float32 }",
    "  valve: { table: holding, address: 1 }", // 6
    "  total: { table: holding, address: 10, type: float64 }",
    "  lo: { table: holding, address: 13, type: uint32 }", // 8
    "  in0: { table: input, address: 1 }", // another table: fine
    "  c0: { table: coil, address: 0 }",
    "  c0bis: { table: coil, address: 0 }", // 11
    "rules: []",
  );
  expectFile(t, text, [
    ["6:37", 'point "valve" overlaps point "flow" at holding 1'],
    ["8:34", 'point "lo" overlaps point "total" at holding 13'],
    ["11:34", 'point "c0bis" overlaps point "c0" at coil 0'],
  ]);
});

t.test("OPC UA assets", async (t) => {
  const text = yaml(
    ...OPCUA,
    "points:",
    '  speed: { node: "ns=1;s=Speed", type: double }',
    '  tabled: { node: "ns=1;s=A", type: double, table: holding }', // 6
    '  both: { node: "ns=1;s=B", method: "ns=1;s=M" }', // 7
    '  untyped: { node: "ns=1;s=C" }', // 8
    '  modbusy: { node: "ns=1;s=D", type: float32 }', // 9
    '  reset: { method: "ns=1;s=Reset", object: "ns=1;s=Line" }',
    '  bad_method: { method: "ns=1;s=X", type: double }', // 11
    '  same: { node: "ns=1;s=Speed", type: double }', // 12
    "rules:",
    "  - id: raw",
    "    allow: [read]",
    "    subjects: '*'",
    "    targets: [{ table: holding, address: 1 }]", // 17
    "  - id: call-speed",
    "    allow: [call]",
    "    subjects: '*'",
    "    points: [reset, speed]", // 21
    "  - id: write-method",
    "    allow: [write]",
    "    subjects: '*'",
    "    points: [reset]", // 25
    "  - id: nodes-ok",
    "    allow: [read]",
    "    subjects: '*'",
    '    nodes: ["ns=1;s=Line1.*"]',
  );
  expectFile(t, text, [
    ["6:45", 'point "tabled": "table" is for Modbus assets; this asset\'s protocol is opcua'],
    ["7:9", 'point "both": an OPC UA point needs exactly one of "node" (a variable) or "method"'],
    ["8:12", 'point "untyped": missing required key "type" (one of boolean, sbyte'],
    ["9:38", 'point "modbusy": type float32 is not an OPC UA type'],
    ["11:43", 'point "bad_method": a method point has no value type (got double)'],
    ["12:17", 'point "same" names the same node as point "speed"'],
    ["17:15", 'rule "raw": raw Modbus targets on an opcua asset (use nodes)'],
    ["21:21", 'rule "call-speed": allows call on point "speed", which is not a method'],
    ["25:14", 'rule "write-method": allows write on point "reset", but a method is called, not written'],
  ]);
  const modbus = yaml(
    ...MODBUS,
    "points:",
    '  p: { table: holding, address: 0, node: "ns=1;s=P" }', // 5
    "rules:",
    "  - id: n",
    "    allow: [read]",
    "    subjects: '*'",
    '    nodes: ["ns=1;s=*"]', // 10
  );
  expectFile(t, modbus, [
    ["5:36", 'point "p": "node" is for OPC UA assets; this asset\'s protocol is modbus'],
    ["10:13", 'rule "n": nodes on a modbus asset (use points or targets)'],
  ]);
});

t.test("rule effect, targets and conditions that do not go together", async (t) => {
  const text = yaml(
    ...MODBUS,
    "points:",
    "  sp: { table: holding, address: 0 }",
    "rules:",
    "  - id: both", // 7
    "    allow: [read]",
    "    deny: [write]",
    "    subjects: '*'",
    "    points: [sp]",
    "  - id: neither", // 12
    "    subjects: '*'",
    "    points: [sp]",
    "  - id: no-targets", // 15
    "    allow: [read]",
    "    subjects: '*'",
    "  - id: deny-values",
    "    deny: [write]",
    "    subjects: '*'",
    "    points: [sp]",
    "    values: { min: 0 }", // 22
    "  - id: read-values",
    "    allow: [read]",
    "    subjects: '*'",
    "    points: [sp]",
    "    values: { max: 10 }", // 27
    "  - id: deny-rate",
    "    deny: [read]",
    "    subjects: '*'",
    "    points: [sp]",
    "    rate: 10/min", // 32
  );
  expectFile(t, text, [
    ["7:5", 'rule "both": needs exactly one of "allow" or "deny"'],
    ["12:5", 'rule "neither": needs exactly one of "allow" or "deny"'],
    ["15:5", 'rule "no-targets": names no target (give points, targets or nodes)'],
    ["22:5", 'rule "deny-values": values limits go on allow rules'],
    ["27:5", 'rule "read-values": values limits only apply to write, which this rule does not allow'],
    ["32:5", 'rule "deny-rate": rate goes on allow rules'],
  ]);
});

t.test("one file with many different errors: all of them at once", async (t) => {
  const text = yaml(
    "# boiler house", // 1
    "asset: boiler", // 2
    "protocol: modbus", // 3
    "endpoint: tcp://127.0.0.1:502", // 4
    "zone: cell-1", // 5
    "points:", // 6
    "  temp: { table: input, address: 0, type: float32 }", // 7
    "  sp: { table: holding, address: 100, min: 90, max: 10 }", // 8  min > max
    "  burner: { table: coil, address: 0, type: float32 }", // 9  type does not fit
    "rules:", // 10
    "  - id: read", // 11
    "    allow: [read]", // 12
    "    subjects: { roles: [historian] }", // 13
    "    points: [temp, sp, pressure]", // 14 unknown point
    "  - id: write", // 15
    "    allow: [write]", // 16
    "    subjects: { roles: [mes] }", // 17
    "    points: [temp]", // 18 write on input
    "    from: [10.20.0.0/33]", // 19 bad CIDR
    "    when: { hours: 6-22 }", // 20 bad hours
    "    rate: often", // 21 bad rate
    "    color: blue", // 22 unknown key
    "  - id: read", // 23 duplicate id
    "    allow: [read]", // 24
    "    subjects: '*'", // 25
    "    targets: [{ table: holding, address: \"300-200\" }]", // 26 reversed range
  );
  const r = compile(text);
  t.equal(r.ok, false);
  t.same(
    sorted(r.diagnostics).map((d) => `${d.line}:${d.message}`),
    [
      '8:point "sp": min 90 is greater than max 10',
      '9:point "burner": type float32 does not fit table coil (coil points are 1-bit, type bool)',
      '14:rule "read": unknown point "pressure" (asset boiler has: temp, sp, burner)',
      '18:rule "write": allows write on point "temp", but input is read-only',
      '19:rule "write": from: "10.20.0.0/33": prefix length must be 0-32 for IPv4',
      '20:rule "write": when.hours: hours "6-22": hours must be HH:MM-HH:MM with HH 00-24 and MM 00-59',
      '21:rule "write": rate: rate "often": must be LIMIT/UNIT like 30/min, with UNIT one of s, sec, second, min, minute, h, hour, d, day',
      '22:unknown key "color" in rules[1]',
      '23:duplicate rule id "read" (first defined at line 11)',
      '26:rule "read": address range "300-200": first 300 is greater than last 200',
    ],
  );
});

t.test("errors of several files come out at once, each with its file", async (t) => {
  const sources: PolicySource[] = [
    { file: "policies/c.yaml", text: yaml("asset: c", "protocol: modbus", "endpoint: tcp://c:502", "front: { unit: 3 }", "rules: [") },
    { file: "policies/a.yaml", text: yaml("asset: a", "protocol: modbus", "endpoint: tcp://a:502", "front: { unit: 2 }", "rules: []", "extra: 1") },
    {
      file: "policies/b.yaml",
      text: yaml("asset: b", "protocol: modbus", "endpoint: tcp://b:502", "front: { unit: 4 }", "rules:", "  - id: r", "    allow: [read]", "    subjects: '*'", "    points: [x]"),
    },
  ];
  const r = compilePolicies(sources);
  t.equal(r.set, undefined, "no policy set while any file has errors");
  expectDiags(
    t,
    r.diagnostics,
    [
      ["policies/a.yaml:6:1", 'unknown key "extra"'],
      ["policies/b.yaml:9:14", 'rule "r": unknown point "x"'],
      ["policies/c.yaml:6:1", "YAML Flow sequence"],
    ],
    true,
  );
});

t.test("two files defining the same asset id", async (t) => {
  const a = yaml("# first", "asset: plc", "protocol: modbus", "endpoint: tcp://a:502", "front: { unit: 1 }", "rules: []");
  const b = yaml("asset: other", "protocol: modbus", "endpoint: tcp://b:502", "front: { unit: 2 }", "rules: []");
  const c = yaml("", "", "asset: plc", "protocol: opcua", "endpoint: opc.tcp://c:4840", "rules: []");
  const r = compilePolicies([
    { file: "p/b.yaml", text: b },
    { file: "p/c.yaml", text: c },
    { file: "p/a.yaml", text: a },
  ]);
  t.equal(r.set, undefined);
  expectDiags(t, r.diagnostics, [["p/c.yaml:3:8", 'asset "plc" is already defined in p/a.yaml:2 (asset ids must be unique)']], true);

  // Also when the first file has errors of its own: all errors at once.
  const aBroken = yaml("asset: plc", "protocol: modbus", "endpoint: tcp://a:502", "rules: []", "colour: red");
  const r2 = compilePolicies([
    { file: "p/a.yaml", text: aBroken },
    { file: "p/c.yaml", text: c },
  ]);
  expectDiags(
    t,
    r2.diagnostics,
    [
      ["p/a.yaml:5:1", 'unknown key "colour"'],
      ["p/c.yaml:3:8", 'asset "plc" is already defined in p/a.yaml:1'],
    ],
    true,
  );
});

t.test("two Modbus assets with the same front unit", async (t) => {
  const asset = (id: string, ...more: string[]) => yaml(`asset: ${id}`, "protocol: modbus", `endpoint: tcp://${id}:502`, ...more, "rules: []");
  const r = compilePolicies([
    { file: "p/a.yaml", text: asset("a", "front:", "  unit: 5") },
    { file: "p/b.yaml", text: asset("b", "unit: 7", "front: { unit: 5 }") },
    { file: "p/c.yaml", text: asset("c", "unit: 5") }, // front unit defaults to unit
    { file: "p/d.yaml", text: asset("d") }, // front unit defaults to 1
    { file: "p/e.yaml", text: asset("e", "unit: 1") },
    { file: "p/f.yaml", text: yaml("asset: f", "protocol: opcua", "endpoint: opc.tcp://f:4840", "rules: []") }, // no unit
    { file: "p/g.yaml", text: yaml("asset: g", "protocol: opcua", "endpoint: opc.tcp://g:4840", "rules: []") },
  ]);
  t.equal(r.set, undefined);
  expectDiags(
    t,
    r.diagnostics,
    [
      ["p/b.yaml:5:16", 'front unit 5 is already used by asset "a" (p/a.yaml:5)'],
      ["p/c.yaml:4:7", 'front unit 5 (from unit, as front.unit is not set) is already used by asset "a"'],
      ["p/e.yaml:4:7", 'front unit 1 (from unit, as front.unit is not set) is already used by asset "d" (p/d.yaml:1)'],
    ],
    true,
  );
  const defaults = compilePolicies([
    { file: "p/d.yaml", text: asset("d") },
    { file: "p/e.yaml", text: asset("e") },
  ]);
  expectDiags(t, defaults.diagnostics, [["p/e.yaml:1:8", "front unit 1 (the default, as neither front.unit nor unit is set) is already used by asset \"d\""]], true);
});

const POLICY_DIR = new URL("../../policies/", import.meta.url);

function repoPolicies(prefix: string): PolicySource[] {
  return readdirSync(POLICY_DIR)
    .filter((n) => /\.ya?ml$/.test(n))
    .map((n) => ({ file: `${prefix}${n}`, text: readFileSync(new URL(n, POLICY_DIR), "utf8") }));
}

t.test("the repository's policies compile", async (t) => {
  const sources = repoPolicies("policies/");
  t.ok(sources.length >= 2, "policies/ holds the shipped examples");
  const r = compilePolicies(sources);
  t.same(r.diagnostics, []);
  const set = r.set;
  if (!set) throw new Error("no policy set");
  t.same([...set.assets.keys()].sort(), ["boiler-plc", "packaging-line"]);
  t.match(set.revision, /^[0-9a-f]{16}$/);
  t.same(set.files.map((f) => f.file).sort(), sources.map((s) => s.file).sort());

  const boiler = set.assets.get("boiler-plc");
  t.equal(boiler?.protocol, "modbus");
  t.equal(boiler?.frontUnit, 1);
  t.equal(boiler?.points.get("temperature")?.size, 2);
  // Each rule remembers the line of its `- id:` (read from the file, which may gain comments).
  const boilerText = sources.find((s) => s.file.endsWith("boiler-plc.yaml"))?.text ?? "";
  const idLines = boilerText.split("\n").flatMap((l, i) => (/^\s*- id: /.test(l) ? [[l.replace(/^\s*- id: /, "").trim(), i + 1]] : []));
  t.ok(idLines.length >= 4);
  t.same(
    boiler?.rules.map((r) => [r.id, r.line]),
    idLines,
  );
  t.equal(set.assets.get("packaging-line")?.points.get("reset_count")?.type, "method");
});

t.test("the revision is a content hash, independent of where the files sit", async (t) => {
  const revision = (sources: PolicySource[]): string => {
    const r = compilePolicies(sources);
    t.same(r.diagnostics, []);
    return r.set?.revision ?? "";
  };
  const base = revision(repoPolicies("policies/"));
  t.match(base, /^[0-9a-f]{16}$/);
  t.equal(revision(repoPolicies("/etc/ztgate/policies/")), base, "another directory");
  t.equal(revision(repoPolicies("")), base, "no directory");
  t.equal(revision(repoPolicies("C:\\ztgate\\policies\\")), base, "a Windows directory");
  t.equal(revision(repoPolicies("policies/").reverse()), base, "order of the sources");

  const changed = repoPolicies("policies/").map((s, i) => (i === 0 ? { ...s, text: s.text + "# a comment\n" } : s));
  const rev2 = revision(changed);
  t.match(rev2, /^[0-9a-f]{16}$/);
  t.not(rev2, base, "a content change changes the revision");
  t.not(revision(repoPolicies("policies/").slice(1)), base, "a file fewer changes the revision");
});

t.test("small valid files compile", async (t) => {
  expectValid(t, yaml(...MODBUS, "rules: []"));
  expectValid(t, yaml(...OPCUA, "points:", '  s: { node: "ns=1;s=S", type: string }', "rules:", "  - id: r", "    allow: [read]", "    subjects: '*'", '    nodes: ["ns=1;s=*"]'));
  expectValid(
    t,
    yaml(
      ...MODBUS,
      "mode: monitor",
      "points:",
      "  sp: { table: holding, address: 0, type: int32, words: little, min: -5, max: 5 }",
      "rules:",
      "  - id: w",
      "    allow: [read, write]",
      "    subjects: { roles: [mes], claims: { site: [north, south] } }",
      "    points: [sp]",
      '    targets: [{ table: holding, address: "10-19" }]',
      "    values: { min: -1, max: 1 }",
      '    when: { days: [mon, fri-sun], hours: "22:00-06:00", tz: Europe/Berlin }',
      '    from: ["10.20.0.0/16", "2001:db8::/32", "192.168.1.7"]',
      "    rate: 30/min",
    ),
  );
});

t.test("an empty subjects mapping is an error, not a silent wildcard", async (t) => {
  const text = [
    "asset: a",
    "protocol: modbus",
    "endpoint: tcp://127.0.0.1:1502",
    "points:",
    "  p: { table: holding, address: 0 }",
    "rules:",
    "  - id: r",
    "    allow: [read]",
    "    subjects: {}",
    "    points: [p]",
  ].join("\n");
  const r = compilePolicies([{ file: "a.yaml", text }]);
  t.equal(r.set, undefined);
  t.equal(r.diagnostics.length, 1);
  t.match(r.diagnostics[0], { line: 9, message: /subjects \{\} names nobody in particular/ });
});

t.test("a limit of .nan or .inf is no number: refused, not taken as no limit", async (t) => {
  for (const bad of [".nan", ".inf", "-.inf"]) {
    const r = compile(yaml(...MODBUS, "points:", `  sp: { table: holding, address: 1, min: 0, max: ${bad} }`, "rules:", '  - { id: a, allow: [write], subjects: "*", points: [sp] }'));
    t.equal(r.ok, false, `point max ${bad}`);
    const rr = compile(yaml(...MODBUS, "points:", "  sp: { table: holding, address: 1 }", "rules:", `  - { id: a, allow: [write], subjects: "*", points: [sp], values: { min: 20, max: ${bad} } }`));
    t.equal(rr.ok, false, `rule values max ${bad}`);
  }
});

t.test("subjects with only empty selectors name nobody in particular: refused", async (t) => {
  for (const s of ["{ claims: {} }", "{ roles: [] }", "{ claims: {}, subs: [] }"]) {
    const r = compile(yaml(...MODBUS, "points:", "  sp: { table: holding, address: 1 }", "rules:", `  - { id: a, allow: [write], subjects: ${s}, points: [sp] }`));
    t.equal(r.ok, false, s);
  }
  expectValid(t, yaml(...MODBUS, "points:", "  sp: { table: holding, address: 1 }", "rules:", "  - { id: a, allow: [write], subjects: { claims: { site: berlin } }, points: [sp] }"));
});

t.test("a node reused by many aliases is fine; an alias expansion past the limit is a positioned error, not an exception", async (t) => {
  const rules = Array.from({ length: 150 }, (_, i) => `  - { id: r${i}, allow: [read], subjects: *ops, points: [sp] }`);
  expectValid(t, yaml(...MODBUS, "points:", "  sp: { table: holding, address: 1 }", "x-ops: &ops { roles: [ops] }", "rules:", ...rules).replace("x-ops: &ops { roles: [ops] }\n", "").replace("rules:\n  - { id: r0, allow: [read], subjects: *ops", "rules:\n  - { id: r0, allow: [read], subjects: &ops { roles: [ops] }"));
  // The billion laughs: each level aliases the one before ten times.
  const laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 1; i < 8; i++) laughs.push(`${"b".repeat(i)}: &l${i} [${Array.from({ length: 10 }, () => (i === 1 ? "*a" : `*l${i - 1}`)).join(", ")}]`);
  const r = compile(yaml(...MODBUS, ...laughs));
  t.equal(r.ok, false);
  t.match(r.diagnostics, [{ line: 1, message: /alias/i }]);
});

t.test("an allow listing a multi-register point's registers apart covers it", async (t) => {
  const set = compilePolicies([{ file: "f.yaml", text: yaml(...MODBUS, "points:", "  t: { table: holding, address: 10, type: float32 }", "rules:", "  - { id: a, allow: [read], subjects: \"*\", targets: [{ table: holding, address: 10 }, { table: holding, address: 11 }] }") }]).set;
  t.ok(set);
  const { decide } = await import("../../src/pdp/evaluate.js");
  const d = decide(set!, { asset: "plc", action: "read", target: { kind: "range", table: "holding", address: 10, count: 2 } }, { sub: "s", iss: "i", roles: [], claims: {}, via: "bearer" }, { now: 0 });
  t.match(d, { effect: "allow", rule: "a" });
});

t.test("a %YAML 1.1 header is refused: it would read 010 as 8", async (t) => {
  const r = compile(["%YAML 1.1", "---", ...MODBUS, "points:", "  sp: { table: holding, address: 010 }", "rules:", '  - { id: a, allow: [read], subjects: "*", points: [sp] }', ""].join("\n"));
  t.equal(r.ok, false);
  t.match(r.diagnostics, [{ line: 1, message: /YAML 1\.1 is not accepted/ }]);
  expectValid(t, ["%YAML 1.2", "---", ...MODBUS, "points:", "  sp: { table: holding, address: 010 }", "rules:", '  - { id: a, allow: [read], subjects: "*", points: [sp] }', ""].join("\n"));
});
