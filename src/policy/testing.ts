// Policy tests (SPEC §4.6): YAML cases under <policy dir>/tests/, each an operation and the
// decision it must get, run against the compiled policy like `opa test`.
import path from "node:path";
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import { Ajv } from "ajv";
import type { PolicySet } from "../pdp/policy-set.js";
import type { Principal } from "../pdp/principal.js";
import { decide } from "../pdp/evaluate.js";
import type { Decision } from "../pdp/evaluate.js";
import { REASONS } from "../pdp/reasons.js";
import { ACTIONS } from "../pdp/operation.js";
import { TokenBucketRates } from "../pdp/conditions/rate.js";
import { YamlSource } from "../util/yaml-source.js";
import type { Diagnostic } from "../util/yaml-source.js";
import { displayPath, readYamlFiles } from "./load.js";
import { buildOperation, isIpAddress, parseTime } from "./request.js";

const Value = Type.Union([Type.Number(), Type.Boolean(), Type.String()]);
const CaseSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    subject: Type.Object(
      {
        sub: Type.String({ minLength: 1 }),
        iss: Type.Optional(Type.String()),
        roles: Type.Optional(Type.Array(Type.String())),
        claims: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      },
      { additionalProperties: false },
    ),
    asset: Type.String(),
    action: Type.Union(ACTIONS.map((a) => Type.Literal(a)), { "x-expected": `one of ${ACTIONS.join(", ")}` }),
    point: Type.Optional(Type.String()),
    target: Type.Optional(Type.String()),
    value: Type.Optional(Type.Union([Value, Type.Array(Value)], { "x-expected": "a value or a list of values" })),
    at: Type.Optional(Type.String()),
    from: Type.Optional(Type.String()),
    expect: Type.Union([Type.Literal("allow"), Type.Literal("deny")], { "x-expected": "allow or deny" }),
    rule: Type.Optional(Type.Union([Type.String(), Type.Null()], { "x-expected": "a rule id or null" })),
    reason: Type.Optional(Type.Union(Object.keys(REASONS).map((r) => Type.Literal(r)), { "x-expected": "a reason code (see README)" })),
  },
  { additionalProperties: false },
);
const FileSchema = Type.Object({ cases: Type.Array(CaseSchema, { minItems: 1 }) }, { additionalProperties: false });
type TestCase = Static<typeof CaseSchema>;

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(FileSchema);

export interface CaseResult {
  readonly file: string;
  readonly line: number;
  readonly name: string;
  readonly pass: boolean;
  /** What was expected and what came out, when the case failed. */
  readonly detail?: string;
}

export interface TestRun {
  readonly results: readonly CaseResult[];
  /** Errors in the test files themselves (shape, bad targets, bad times). */
  readonly diagnostics: readonly Diagnostic[];
}

function describe(d: { effect: string; reason?: string | undefined; rule?: string | null | undefined }): string {
  return `${d.effect}${d.reason !== undefined ? ` ${d.reason}` : ""}${d.rule !== undefined ? ` (rule ${d.rule ?? "none"})` : ""}`;
}

function check(c: TestCase, d: Decision): string | undefined {
  const got = describe(d);
  const want = describe({ effect: c.expect, reason: c.reason, rule: c.rule });
  const bad = d.effect !== c.expect || (c.reason !== undefined && d.reason !== c.reason) || (c.rule !== undefined && d.rule !== c.rule);
  return bad ? `expected ${want}, got ${got}` : undefined;
}

export async function runPolicyTests(set: PolicySet, dir: string, now: () => number = Date.now): Promise<TestRun> {
  const { sources, diagnostics } = await readYamlFiles(path.join(dir, "tests"));
  const results: CaseResult[] = [];
  for (const src of sources) {
    const parsed = YamlSource.parse(src.file, src.text);
    diagnostics.push(...parsed.diagnostics);
    if (!parsed.source) continue;
    const y = parsed.source;
    const data = y.value();
    const errs = y.validate(validate, data);
    if (errs.length > 0) {
      diagnostics.push(...errs);
      continue;
    }
    (data as Static<typeof FileSchema>).cases.forEach((c, i) => {
      const line = y.position(["cases", i]).line;
      const principal: Principal = { sub: c.subject.sub, iss: c.subject.iss ?? "policy-test", roles: c.subject.roles ?? [], claims: c.subject.claims ?? {}, via: "explain" };
      if (c.from !== undefined && !isIpAddress(c.from)) {
        diagnostics.push(y.diag(["cases", i, "from"], `case "${c.name}": from "${c.from}" is not an IP address (like 10.20.1.5 or fd00::5)`));
        return;
      }
      let op;
      try {
        op = buildOperation(set, { ...c, ...(c.value !== undefined && { value: c.value }) });
      } catch (e) {
        diagnostics.push(y.diag(["cases", i, c.point !== undefined ? "point" : "target"], `case "${c.name}": ${(e as Error).message}`));
        return;
      }
      const at = c.at !== undefined ? parseTime(c.at) : now();
      if (Number.isNaN(at)) {
        diagnostics.push(y.diag(["cases", i, "at"], `case "${c.name}": at "${c.at}" is not an ISO 8601 time (e.g. 2026-03-02T08:00:00+01:00)`));
        return;
      }
      const d = decide(set, op, principal, { now: at, rates: new TokenBucketRates() });
      const detail = check(c, d);
      results.push({ file: src.file, line, name: c.name, pass: detail === undefined, ...(detail !== undefined && { detail }) });
    });
  }
  if (sources.length === 0 && diagnostics.length === 0) {
    diagnostics.push({ file: displayPath(path.join(dir, "tests")), line: 0, col: 0, message: "no policy test files (*.yaml, *.yml) found" });
  }
  return { results, diagnostics };
}
