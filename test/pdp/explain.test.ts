// explain(): the decision plus, for every rule of the asset, what became of it.
import t from "tap";
import { compilePolicies } from "../../src/policy/compile.js";
import { decide, rateKey } from "../../src/pdp/evaluate.js";
import { explain } from "../../src/pdp/explain.js";
import type { RuleOutcome } from "../../src/pdp/explain.js";
import type { Action, Operation, Scalar, Target } from "../../src/pdp/operation.js";
import type { PolicySet } from "../../src/pdp/policy-set.js";
import type { Principal } from "../../src/pdp/principal.js";
import type { Reason } from "../../src/pdp/reasons.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";

const NOW = Date.parse("2026-03-02T10:00:00Z");

const POLICY = `
asset: plc
protocol: modbus
endpoint: tcp://127.0.0.1:502
points:
  sp:     { table: holding, address: 100, max: 120 }
  mode:   { table: holding, address: 101 }
  burner: { table: coil, address: 0 }
rules:
  - id: reads
    allow: [read]
    subjects: "*"
    points: ["*"]
  - id: ops-only
    allow: [write]
    subjects: { roles: [ops] }
    points: [sp]
  - id: mode-only
    allow: [write]
    subjects: { roles: [mes] }
    points: [mode]
  - id: net
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    from: ["10.0.0.0/8"]
  - id: hours
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    when: { hours: "00:00-01:00" }
  - id: window
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    values: { max: 50 }
  - id: rated
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
    rate: 1/hour
  - id: ok
    allow: [write]
    subjects: { roles: [mes] }
    points: [sp]
  - id: no-burner
    deny: [write]
    subjects: "*"
    points: [burner]
`;
const RULE_IDS = ["reads", "ops-only", "mode-only", "net", "hours", "window", "rated", "ok", "no-burner"];

function compile(): PolicySet {
  const { set, diagnostics } = compilePolicies([{ file: "plc.yaml", text: POLICY }]);
  if (!set || diagnostics.length > 0) throw new Error(diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`).join("\n"));
  return set;
}

function who(p: Partial<Principal> = {}): Principal {
  return { sub: "mes-1", iss: "https://idp.example", roles: ["mes"], claims: {}, via: "explain", ...p };
}

function op(action: Action, target: Target, extra: { raw?: number[] | null; value?: Scalar; source?: string; asset?: string } = {}): Operation {
  const { asset, ...rest } = extra;
  return { asset: asset ?? "plc", action, target, ...rest };
}

/** Uses up the `rated` rule's bucket for a principal. */
function exhausted(set: PolicySet, p: Principal): TokenBucketRates {
  const rates = new TokenBucketRates();
  const asset = set.assets.get("plc");
  const rule = asset?.rules.find((r) => r.id === "rated");
  if (!asset || !rule?.rate) throw new Error("policy not as expected");
  while (rates.peek(rateKey(asset, rule, p), rule.rate, NOW)) rates.take(rateKey(asset, rule, p), rule.rate, NOW);
  return rates;
}

interface Case {
  readonly name: string;
  readonly op: Operation;
  readonly who?: Principal;
  readonly rates?: "fresh" | "exhausted";
  readonly decision: { effect: "allow" | "deny"; rule: string | null; reason: Reason };
  /** Outcome per rule, in file order. */
  readonly outcomes: readonly RuleOutcome[];
}

t.test("considered[] lists every rule of the asset with its outcome", async (t) => {
  const set = compile();
  const sp = { kind: "point", point: "sp" } as const;
  const cases: Case[] = [
    {
      name: "write of the setpoint: each outcome once",
      op: op("write", sp, { value: 60, source: "192.168.0.1" }),
      rates: "exhausted",
      decision: { effect: "allow", rule: "ok", reason: "allowed" },
      outcomes: ["action-not-listed", "subject-mismatch", "target-not-covered", "source-not-allowed", "outside-time-window", "value-out-of-range", "rate-limited", "matched", "target-not-covered"],
    },
    {
      name: "the same write with a fresh bucket: the rated rule matches and is reported",
      op: op("write", sp, { value: 60, source: "192.168.0.1" }),
      rates: "fresh",
      decision: { effect: "allow", rule: "rated", reason: "allowed" },
      outcomes: ["action-not-listed", "subject-mismatch", "target-not-covered", "source-not-allowed", "outside-time-window", "value-out-of-range", "matched", "matched", "target-not-covered"],
    },
    {
      name: "a value over the point's max: every covering allow is out of range",
      op: op("write", sp, { value: 121, source: "10.1.1.1" }),
      decision: { effect: "deny", rule: "net", reason: "value-out-of-range" },
      outcomes: ["action-not-listed", "subject-mismatch", "target-not-covered", "value-out-of-range", "outside-time-window", "value-out-of-range", "value-out-of-range", "value-out-of-range", "target-not-covered"],
    },
    {
      name: "a deny rule that matches",
      op: op("write", { kind: "point", point: "burner" }, { value: true }),
      decision: { effect: "deny", rule: "no-burner", reason: "denied-by-rule" },
      outcomes: ["action-not-listed", "subject-mismatch", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "matched"],
    },
    {
      name: "a read: write rules are not listed for it",
      op: op("read", sp),
      decision: { effect: "allow", rule: "reads", reason: "allowed" },
      outcomes: ["matched", "action-not-listed", "action-not-listed", "action-not-listed", "action-not-listed", "action-not-listed", "action-not-listed", "action-not-listed", "action-not-listed"],
    },
    {
      name: "another subject: every write rule for mes is a subject mismatch",
      op: op("write", sp, { value: 10 }),
      who: who({ sub: "ops-1", roles: ["ops"] }),
      decision: { effect: "allow", rule: "ops-only", reason: "allowed" },
      outcomes: ["action-not-listed", "matched", "subject-mismatch", "subject-mismatch", "subject-mismatch", "subject-mismatch", "subject-mismatch", "subject-mismatch", "target-not-covered"],
    },
    {
      name: "FC16 over two points: rules covering one of them still match",
      op: op("write", { kind: "range", table: "holding", address: 100, count: 2 }, { raw: [60, 1], source: "10.1.1.1" }),
      decision: { effect: "allow", rule: "mode-only", reason: "allowed" },
      outcomes: ["action-not-listed", "subject-mismatch", "matched", "matched", "outside-time-window", "value-out-of-range", "matched", "matched", "target-not-covered"],
    },
    {
      name: "an unknown point: nothing is covered",
      op: op("write", { kind: "point", point: "nope" }, { value: 1 }),
      decision: { effect: "deny", rule: null, reason: "unknown-point" },
      outcomes: ["action-not-listed", "subject-mismatch", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered", "target-not-covered"],
    },
  ];
  for (const c of cases) {
    const p = c.who ?? who();
    const rates = c.rates === "exhausted" ? exhausted(set, p) : new TokenBucketRates();
    const x = explain(set, c.op, p, { now: NOW, rates });
    t.strictSame({ effect: x.effect, rule: x.rule, reason: x.reason }, c.decision, `${c.name}: decision`);
    t.strictSame(x.considered.map((r) => r.rule), RULE_IDS, `${c.name}: every rule, in file order`);
    t.strictSame(x.considered.map((r) => r.outcome), c.outcomes, `${c.name}: outcomes`);
    t.equal(x.policyRevision, set.revision, `${c.name}: policyRevision`);
    const d = decide(set, c.op, p, { now: NOW, rates, dryRun: true });
    const { considered: _considered, ...decision } = x;
    t.strictSame(decision, d, `${c.name}: the decision part is decide()'s`);
  }
});

t.test("considered[] entries name the rule's effect, file, line and a detail", async (t) => {
  const set = compile();
  const lines = POLICY.split("\n");
  const lineOf = (id: string): number => lines.findIndex((l) => l.trim() === `- id: ${id}`) + 1;
  const x = explain(set, op("write", { kind: "point", point: "sp" }, { value: 60, source: "192.168.0.1" }), who({ roles: ["mes", "viewer"] }), { now: NOW, rates: exhausted(set, who({ roles: ["mes", "viewer"] })) });
  const byId = new Map(x.considered.map((c) => [c.rule, c]));
  for (const c of x.considered) {
    t.equal(c.file, "plc.yaml", `${c.rule}: file`);
    t.equal(c.line, lineOf(c.rule), `${c.rule}: line`);
    t.equal(c.effect, c.rule === "no-burner" ? "deny" : "allow", `${c.rule}: effect`);
  }
  const details: Array<[string, RegExp]> = [
    ["reads", /^allows read, not write$/],
    ["ops-only", /roles any of \[ops\].*mes-1 has roles \[mes, viewer\]/],
    ["mode-only", /does not name this point or address/],
    ["net", /192\.168\.0\.1 is not in 10\.0\.0\.0\/8/],
    ["hours", /2026-03-02T10:00:00\.000Z is outside every day 00:00-01:00 UTC/],
    ["window", /value 60 is outside rule max 50, point max 120/],
    ["rated", /rate 1 per 3600 s is used up/],
    ["ok", /^allows write$/],
  ];
  for (const [id, re] of details) t.match(byId.get(id)?.detail, re, `${id}: detail`);
  const fc22 = explain(set, op("write", { kind: "range", table: "holding", address: 100, count: 1 }, { raw: null, source: "10.1.1.1" }), who(), { now: NOW });
  t.match(fc22.considered.find((c) => c.rule === "net")?.detail, /not known in advance/, "an FC22 write's value is not known");
  const partial = explain(set, op("write", { kind: "range", table: "holding", address: 100, count: 2 }, { raw: [1, 1], source: "10.1.1.1" }), who(), { now: NOW });
  t.match(partial.considered.find((c) => c.rule === "ok")?.detail, /covers 1 of 2/, "a rule covering part of a range says so");
});

t.test("explain never consumes rate tokens", async (t) => {
  const set = compile();
  const p = who();
  const rates = new TokenBucketRates();
  const write = op("write", { kind: "point", point: "sp" }, { value: 60, source: "192.168.0.1" });
  const asset = set.assets.get("plc");
  const rated = asset?.rules.find((r) => r.id === "rated");
  if (!asset || !rated?.rate) throw new Error("policy not as expected");
  const steps: Array<{ name: string; run: "explain" | "decide"; rule: string; ratedOutcome: RuleOutcome; tokenLeft: boolean }> = [
    { name: "explain 1", run: "explain", rule: "rated", ratedOutcome: "matched", tokenLeft: true },
    { name: "explain 2", run: "explain", rule: "rated", ratedOutcome: "matched", tokenLeft: true },
    { name: "explain 3", run: "explain", rule: "rated", ratedOutcome: "matched", tokenLeft: true },
    { name: "decide takes the one token", run: "decide", rule: "rated", ratedOutcome: "matched", tokenLeft: false },
    { name: "explain now sees it used up", run: "explain", rule: "ok", ratedOutcome: "rate-limited", tokenLeft: false },
    { name: "decide falls through to the next rule", run: "decide", rule: "ok", ratedOutcome: "rate-limited", tokenLeft: false },
  ];
  for (const s of steps) {
    if (s.run === "explain") {
      const x = explain(set, write, p, { now: NOW, rates, dryRun: false });
      t.equal(x.rule, s.rule, `${s.name}: reported rule`);
      t.equal(x.considered.find((c) => c.rule === "rated")?.outcome, s.ratedOutcome, `${s.name}: the rated rule's outcome`);
    } else {
      t.equal(decide(set, write, p, { now: NOW, rates }).rule, s.rule, `${s.name}: reported rule`);
    }
    t.equal(rates.peek(rateKey(asset, rated, p), rated.rate, NOW), s.tokenLeft, `${s.name}: token left`);
  }
});

t.test("explain on an unknown asset considers nothing", async (t) => {
  const set = compile();
  const x = explain(set, op("read", { kind: "point", point: "sp" }, { asset: "nope" }), who(), { now: NOW });
  t.strictSame(x, { effect: "deny", rule: null, reason: "unknown-asset", policyRevision: set.revision, mode: "enforce", considered: [] });
});
