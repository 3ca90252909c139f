// Request → operations (SPEC §4.1): one table of what each function code asks the policy
// for, then the same requests decided by the pdp against the shipped boiler-plc policy.
import t from "tap";
import { readFile } from "node:fs/promises";
import { compilePolicies } from "../../src/policy/compile.js";
import { decide } from "../../src/pdp/evaluate.js";
import type { Operation } from "../../src/pdp/operation.js";
import type { Principal } from "../../src/pdp/principal.js";
import { parseRequest } from "../../src/wire/pdu.js";
import type { ModbusRequest } from "../../src/wire/pdu.js";
import { DIAGNOSTIC_TARGET, toOperations } from "../../src/wire/operations.js";
import type { OperationsResult } from "../../src/wire/operations.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function req(wire: string): ModbusRequest {
  const r = parseRequest(hex(wire));
  if (!r.ok) throw new Error(`test request ${wire}: ${r.reason}`);
  return r.request;
}

const A = "boiler-plc";
const range = (table: "coil" | "discrete" | "input" | "holding", address: number, count: number) => ({ kind: "range", table, address, count }) as const;
const ops = (...operations: Operation[]): OperationsResult => ({ kind: "operations", operations });

/** [name, request PDU, expected result (unit 1, no source)] */
const CASES: Array<[string, string, OperationsResult]> = [
  ["FC1 → read coils", "01 0000 0010", ops({ asset: A, action: "read", target: range("coil", 0, 16) })],
  ["FC2 → read discrete inputs", "02 0005 0001", ops({ asset: A, action: "read", target: range("discrete", 5, 1) })],
  ["FC3 → read holding registers", "03 0064 0002", ops({ asset: A, action: "read", target: range("holding", 100, 2) })],
  ["FC4 → read input registers", "04 0000 0003", ops({ asset: A, action: "read", target: range("input", 0, 3) })],
  ["FC5 ON → write coil, raw [1]", "05 0001 ff00", ops({ asset: A, action: "write", target: range("coil", 1, 1), raw: [1] })],
  ["FC5 OFF → write coil, raw [0]", "05 0001 0000", ops({ asset: A, action: "write", target: range("coil", 1, 1), raw: [0] })],
  ["FC6 → write holding, raw [value]", "06 0064 0032", ops({ asset: A, action: "write", target: range("holding", 100, 1), raw: [50] })],
  ["FC15 → write coils, raw bits", "0f 0000 0003 01 05", ops({ asset: A, action: "write", target: range("coil", 0, 3), raw: [1, 0, 1] })],
  ["FC16 → write holding, raw words", "10 0064 0002 04 0032 0001", ops({ asset: A, action: "write", target: range("holding", 100, 2), raw: [50, 1] })],
  ["FC22 → write holding 1 register, raw null, its masks", "16 0064 00f2 0025", ops({ asset: A, action: "write", target: range("holding", 100, 1), raw: null, mask: { and: 0xf2, or: 0x25 } })],
  [
    "FC23 → read of its read range AND write of its write range",
    "17 0000 0004 0064 0002 04 0032 0001",
    ops({ asset: A, action: "read", target: range("holding", 0, 4) }, { asset: A, action: "write", target: range("holding", 100, 2), raw: [50, 1] }),
  ],
  ["FC43/14 → the device-id marker", "2b 0e 01 00", { kind: "device-id", asset: A }],
  ["FC8 → diagnostic", "08 0000 a537", ops({ asset: A, action: "diagnostic", target: DIAGNOSTIC_TARGET })],
  ["FC17 (any other code) → diagnostic", "11", ops({ asset: A, action: "diagnostic", target: DIAGNOSTIC_TARGET })],
  ["FC43/13 (another MEI type) → diagnostic", "2b 0d 00", ops({ asset: A, action: "diagnostic", target: DIAGNOSTIC_TARGET })],
];

t.test("each function code's operations", async (t) => {
  for (const [name, wire, expected] of CASES) t.strictSame(toOperations(A, 1, req(wire)), expected, name);
  t.strictSame(DIAGNOSTIC_TARGET, { kind: "range", table: "holding", address: 0, count: 1 }, "the diagnostic placeholder is holding 0");
});

t.test("the client's source address is carried on every operation", async (t) => {
  const r = toOperations(A, 1, req("17 0000 0001 0064 0001 02 0032"), "10.20.1.5");
  t.strictSame(r.kind === "operations" && r.operations.map((o) => o.source), ["10.20.1.5", "10.20.1.5"]);
  t.strictSame(toOperations(A, 1, req("2b 0e 01 00"), "::1"), { kind: "device-id", asset: A, source: "::1" });
  const plain = toOperations(A, 1, req("03 0000 0001"));
  t.strictSame(plain.kind === "operations" && Object.keys(plain.operations[0] ?? {}), ["asset", "action", "target"], "no source key without a source");
});

t.test("unit id 0 (broadcast) is refused, whatever the function code", async (t) => {
  for (const [name, wire] of CASES) {
    t.strictSame(toOperations(A, 0, req(wire), "10.0.0.1"), { kind: "refuse", cause: "broadcast", reason: "unsupported-function" }, name);
  }
  t.equal(toOperations(A, 255, req("03 0000 0001")).kind, "operations", "unit 255 is an ordinary unit");
});

t.test("decided by the pdp against the shipped boiler-plc policy", async (t) => {
  const file = "policies/boiler-plc.yaml";
  const { set, diagnostics } = compilePolicies([{ file, text: await readFile(file, "utf8") }]);
  t.strictSame(diagnostics, []);
  if (!set) return;
  const who = (role: string): Principal => ({ sub: role, iss: "https://idp.example", roles: [role], claims: {}, via: "lease" });
  const verdicts = (role: string, wire: string) => {
    const r = toOperations(A, 1, req(wire), "127.0.0.1");
    if (r.kind !== "operations") return r.kind;
    return r.operations.map((op) => {
      const d = decide(set, op, who(role), { now: Date.parse("2026-03-02T10:00:00Z") });
      return `${d.effect}:${d.reason}`;
    });
  };
  const cases: Array<[string, string, string, string[] | string]> = [
    ["historian reads setpoint and mode (FC3)", "historian", "03 0064 0002", ["allow:allowed"]],
    ["historian reads the temperature float32 whole (FC4)", "historian", "04 0000 0002", ["allow:allowed"]],
    ["historian reads half the temperature (FC4)", "historian", "04 0001 0001", ["deny:partial-point"]],
    ["historian reads burner_on and alarm_reset (FC1)", "historian", "01 0000 0002", ["allow:allowed"]],
    ["historian writes the setpoint (FC6)", "historian", "06 0064 0032", ["deny:no-matching-rule"]],
    ["mes writes setpoint 50 (FC6)", "mes", "06 0064 0032", ["allow:allowed"]],
    ["mes writes setpoint 90 (FC6)", "mes", "06 0064 005a", ["deny:value-out-of-range"]],
    ["mes writes setpoint 50 (FC16)", "mes", "10 0064 0001 02 0032", ["allow:allowed"]],
    ["mes writes setpoint and mode (FC16)", "mes", "10 0064 0002 04 0032 0001", ["deny:no-matching-rule"]],
    ["mes switches burner_on (FC5)", "mes", "05 0000 ff00", ["deny:denied-by-rule"]],
    ["mes switches burner_on (FC15)", "mes", "0f 0000 0001 01 01", ["deny:denied-by-rule"]],
    ["mes mask-writes the setpoint, whose value is unknown (FC22)", "mes", "16 0064 00f2 0025", ["deny:value-out-of-range"]],
    ["mes reads setpoint, writes setpoint 50 (FC23)", "mes", "17 0064 0001 0064 0001 02 0032", ["allow:allowed", "allow:allowed"]],
    ["mes reads setpoint, writes mode (FC23): the write part refuses the whole", "mes", "17 0064 0001 0065 0001 02 0001", ["allow:allowed", "deny:no-matching-rule"]],
    ["mes diagnostics (FC8)", "mes", "08 0000 a537", ["deny:no-matching-rule"]],
    ["historian device identification (FC43/14)", "historian", "2b 0e 01 00", "device-id"],
  ];
  for (const [name, role, wire, expected] of cases) t.strictSame(verdicts(role, wire), expected, name);

  // What a mask write writes is in its decision: the register and both masks (SPEC §6 values).
  const fc22 = toOperations(A, 1, req("16 0064 00f2 0025"), "127.0.0.1");
  if (fc22.kind !== "operations") return t.fail("FC22 maps to an operation");
  const d = decide(set, fc22.operations[0] as Operation, who("mes"), { now: Date.parse("2026-03-02T10:00:00Z") });
  t.strictSame(d.values, [{ address: 100, mask: { and: 0xf2, or: 0x25 }, point: "setpoint", table: "holding" }], "FC22's values: where, and its masks");
  t.same(Object.keys(d.values?.[0] ?? {}), ["address", "mask", "point", "table"], "keys in code-point order, as the log writes them");
});
