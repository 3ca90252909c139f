// `ztgate policy check | explain | test` and the CLI's usage errors, run in-process through
// main(argv, io) with an io that collects the lines each command writes.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT, generateKeyPair } from "jose";
import t from "tap";
import { parse as parseYaml } from "yaml";
import { main } from "../../src/cli/index.js";
import { displayPath, loadPolicyDir } from "../../src/policy/load.js";

const POLICIES = fileURLToPath(new URL("../../policies", import.meta.url));

interface Run {
  code: number;
  out: string[];
  err: string[];
}

async function run(...argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  // One entry per printed line: a call may write several (a ZtError's message and its diagnostics, JSON).
  const code = await main(argv, { out: (l) => out.push(...l.split("\n")), err: (l) => err.push(...l.split("\n")) });
  return { code, out, err };
}

/** The revision the repository's policies load with. */
async function repoRevision(): Promise<string> {
  const r = await loadPolicyDir(POLICIES);
  if (!r.set) throw new Error("the repository's policies do not load");
  return r.set.revision;
}

const lines = (...ls: string[]) => ls.map((l) => l + "\n").join("");

/**
 * A small Modbus asset whose rules use each condition: a time window (Mon-Fri 06:00-18:00
 * UTC), a source CIDR and a claim.
 */
const PUMP = lines(
  "asset: pump", //                               1
  "protocol: modbus", //                          2
  "endpoint: tcp://127.0.0.1:1502", //            3
  "points:", //                                   4
  "  level: { table: input, address: 0 }", //     5
  "  speed: { table: holding, address: 10 }", //  6
  "rules:", //                                    7
  "  - id: day-shift", //                         8
  "    allow: [read]",
  "    subjects: { roles: [op] }",
  "    points: [level]",
  '    when: { days: mon-fri, hours: "06:00-18:00", tz: UTC }',
  "  - id: from-lan", //                          13
  "    allow: [write]",
  "    subjects: { roles: [op] }",
  "    points: [speed]",
  '    from: ["10.20.0.0/16"]',
  "  - id: north-only", //                        18
  "    allow: [read]",
  "    subjects: { roles: [eng], claims: { site: north } }",
  "    points: [speed]",
);

const explainPump = (dir: string, ...argv: string[]) => run("policy", "explain", "--policies", dir, "--asset", "pump", ...argv);

t.test("policy check", async (t) => {
  t.test("the repository's policies are ok, with their revision", async (t) => {
    const r = await run("policy", "check", POLICIES);
    t.equal(r.code, 0);
    t.same(r.err, []);
    t.equal(r.out.length, 1);
    t.match(r.out[0], /^ok: 2 policy files, boiler-plc \(4 rules, 7 points\), packaging-line \(4 rules, 4 points\); revision [0-9a-f]+$/);
    t.ok(r.out[0]?.endsWith(`; revision ${await repoRevision()}`), "the revision is the loaded set's");
  });

  t.test("without DIR it checks gateway.yaml's policy.dir (the repository's policies)", async (t) => {
    const r = await run("policy", "check");
    t.equal(r.code, 0);
    t.match(r.out[0], `revision ${await repoRevision()}`);
  });

  t.test("every error of every file at once, as file:line:col: message", async (t) => {
    const dir = t.testdir({
      "a.yaml": lines(
        "asset: pump-a",
        "protocol: modbus",
        "endpoint: tcp://127.0.0.1:1502",
        "front: { unit: 1 }",
        "rules:",
        "  - id: r1",
        "    allow: [reed]", //                   7:13
        '    subjects: "*"',
        '    points: ["*"]',
      ),
      "b.yaml": lines(
        "asset: pump-b",
        "protocol: modbus",
        "endpoint: tcp://127.0.0.1:1503",
        "front: { unit: 2 }",
        "colour: red", //                          5:1
        "points:",
        "  level: { table: input, address: 0 }",
        "rules:",
        "  - id: r1",
        "    allow: [read]",
        '    subjects: "*"',
        "    points: [levle]", //                 12:14
      ),
    });
    const a = displayPath(join(dir, "a.yaml"));
    const b = displayPath(join(dir, "b.yaml"));
    const r = await run("policy", "check", dir);
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.same(r.err, [
      `${a}:7:13: rules[0].allow[0]: must be an action: read, write, call, browse, diagnostic or *`,
      `${b}:5:1: unknown key "colour"`,
      `${b}:12:14: rule "r1": unknown point "levle" (asset pump-b has: level)`,
      "3 errors",
    ]);
  });

  t.test("a directory without policy files is an error", async (t) => {
    const dir = t.testdir({ "notes.txt": "not a policy\n" });
    const r = await run("policy", "check", dir);
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.same(r.err, [`${displayPath(dir)}:0:0: no policy files (*.yaml, *.yml) in this directory`, "1 error"]);
  });

  t.test("a missing directory is an error naming it", async (t) => {
    const dir = join(t.testdir({}), "nope");
    const r = await run("policy", "check", dir);
    t.equal(r.code, 1);
    t.equal(r.err.length, 2);
    t.match(r.err[0], `${displayPath(dir)}:0:0: cannot read directory: ENOENT`);
    t.equal(r.err[1], "1 error");
  });
});

t.test("policy explain on the default policies", async (t) => {
  t.test("historian reads the temperature: allowed by historian-read", async (t) => {
    const r = await run("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "temperature", "--sub", "hist-1", "--role", "historian");
    t.equal(r.code, 0);
    t.same(r.err, []);
    t.equal(r.out[0], `ALLOW  reason: allowed  rule: historian-read  policy revision: ${await repoRevision()}`);
    t.equal(r.out[1], "subject: hist-1 roles [historian]");
    t.equal(r.out[2], "rules considered:");
    t.match(r.out.slice(3), [/^ {2}- no-burner-from-it \(deny, /, /^ {2}\* historian-read \(allow, .*: matched: allows read$/, /^ {2}- mes-read /, /^ {2}- mes-setpoint /]);
  });

  t.test("mes writes burner_on: denied by no-burner-from-it", async (t) => {
    const r = await run("policy", "explain", "--policies", POLICIES, "--asset", "boiler-plc", "--action", "write", "--point", "burner_on", "--value", "true", "--sub", "mes-1", "--role", "mes");
    t.equal(r.code, 1);
    t.same(r.err, []);
    t.match(r.out[0], /^DENY {2}reason: denied-by-rule {2}rule: no-burner-from-it {2}policy revision: /);
    t.ok(r.out.includes("value: burner_on = true"), "the written value is shown");
  });

  t.test("--json gives the decision and every rule of the asset considered", async (t) => {
    const r = await run("policy", "explain", "--policies", POLICIES, "--asset", "boiler-plc", "--action", "write", "--point", "burner_on", "--value", "true", "--sub", "mes-1", "--role", "mes", "--json");
    t.equal(r.code, 1);
    const j = JSON.parse(r.out.join("\n")) as Record<string, unknown> & { considered: Array<Record<string, unknown>> };
    t.match(j, { effect: "deny", rule: "no-burner-from-it", reason: "denied-by-rule", policyRevision: await repoRevision() });
    t.same(
      j.considered.map((c) => c["rule"]),
      ["no-burner-from-it", "historian-read", "mes-read", "mes-setpoint"],
    );
    t.match(j.considered[0], { effect: "deny", outcome: "matched", file: displayPath(join(POLICIES, "boiler-plc.yaml")), line: Number });
    t.match(j.considered[3], { rule: "mes-setpoint", effect: "allow", outcome: "target-not-covered" });
  });

  t.test("a raw holding write above the rule's limit is value-out-of-range", async (t) => {
    const r = await run("policy", "explain", "--asset", "boiler-plc", "--action", "write", "--target", "holding:100", "--value", "90", "--sub", "mes-1", "--role", "mes", "--json");
    t.equal(r.code, 1);
    const j = JSON.parse(r.out.join("\n")) as Record<string, unknown>;
    t.match(j, { effect: "deny", reason: "value-out-of-range", rule: "mes-setpoint", values: [{ point: "setpoint", value: 90 }] });
    const ok = await run("policy", "explain", "--asset", "boiler-plc", "--action", "write", "--target", "holding:100", "--value", "60", "--sub", "mes-1", "--role", "mes");
    t.equal(ok.code, 0, "60 is within 20-80");
  });

  t.test("half of a float32 point is a partial-point deny", async (t) => {
    const r = await run("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--target", "input:1", "--sub", "hist-1", "--role", "historian", "--json");
    t.equal(r.code, 1);
    t.match(JSON.parse(r.out.join("\n")), { effect: "deny", reason: "partial-point", rule: null });
  });

  t.test("an asset nobody defined is unknown-asset", async (t) => {
    const r = await run("policy", "explain", "--asset", "paint-shop", "--action", "read", "--point", "speed", "--sub", "mes-1", "--role", "mes");
    t.equal(r.code, 1);
    t.match(r.out[0], /^DENY {2}reason: unknown-asset {2}rule: \(none\)/);
  });

  t.test("--token: roles and sub come from the JWT's claims", async (t) => {
    const { privateKey } = await generateKeyPair("EdDSA");
    const token = await new SignJWT({ roles: ["historian"] })
      .setSubject("hist-7")
      .setIssuer("https://idp.example")
      .setExpirationTime("15m")
      .setProtectedHeader({ alg: "EdDSA" })
      .sign(privateKey);
    const r = await run("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "pressure", "--token", token, "--no-verify");
    t.equal(r.code, 0);
    t.match(r.out[0], /^ALLOW {2}reason: allowed {2}rule: historian-read /);
    t.equal(r.out[1], "subject: hist-7 roles [historian] (claims decoded from the token, signature not verified)");
    const mes = await new SignJWT({ roles: ["mes"] }).setSubject("mes-1").setIssuer("https://idp.example").setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
    const w = await run("policy", "explain", "--asset", "boiler-plc", "--action", "write", "--point", "setpoint", "--value", "50", "--token", mes, "--no-verify");
    t.equal(w.code, 0, "a mes token writes the setpoint");
    const none = await new SignJWT({}).setSubject("nobody").setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
    const d = await run("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "pressure", "--token", none, "--no-verify");
    t.equal(d.code, 1, "a token without roles reads nothing");
    t.equal(d.out[1], "subject: nobody roles [] (claims decoded from the token, signature not verified)");
  });

  t.test("a malformed --token is ZT_TOKEN_MALFORMED, exit 1", async (t) => {
    for (const token of ["not-a-jwt", "a.b.c", "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln"]) {
      const r = await run("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "pressure", "--token", token, "--no-verify");
      t.equal(r.code, 1, token);
      t.same(r.out, [], token);
      t.equal(r.err.length, 1, token);
      t.match(r.err[0], /^ztgate: ZT_TOKEN_MALFORMED: --token: not a JWT \(/, token);
    }
  });
});

t.test("policy explain with conditions", async (t) => {
  const dir = t.testdir({ "pump.yaml": PUMP });
  const file = displayPath(join(dir, "pump.yaml"));

  t.test("--at inside and outside a when window", async (t) => {
    const read = ["--action", "read", "--point", "level", "--sub", "op-1", "--role", "op"];
    const inside = await explainPump(dir, ...read, "--at", "2026-03-02T08:00:00Z"); // a Monday
    t.equal(inside.code, 0);
    t.match(inside.out[0], /^ALLOW {2}reason: allowed {2}rule: day-shift /);
    t.ok(inside.out.includes(`  * day-shift (allow, ${file}:8): matched: allows read`));

    const sunday = await explainPump(dir, ...read, "--at", "2026-03-01T08:00:00Z");
    t.equal(sunday.code, 1);
    t.match(sunday.out[0], /^DENY {2}reason: outside-time-window {2}rule: day-shift /);
    t.ok(sunday.out.includes(`  - day-shift (allow, ${file}:8): outside-time-window: 2026-03-01T08:00:00.000Z is outside mon-fri 06:00-18:00 UTC`));

    // The offset counts: 07:00+01:00 is 06:00 UTC (inside), 20:00+01:00 is 19:00 UTC (outside).
    t.equal((await explainPump(dir, ...read, "--at", "2026-03-02T07:00:00+01:00")).code, 0);
    t.equal((await explainPump(dir, ...read, "--at", "2026-03-02T20:00:00+01:00")).code, 1);
  });

  t.test("--from inside and outside a from CIDR", async (t) => {
    const write = ["--action", "write", "--point", "speed", "--value", "3", "--sub", "op-1", "--role", "op"];
    const lan = await explainPump(dir, ...write, "--from", "10.20.1.5", "--json");
    t.equal(lan.code, 0);
    t.match(JSON.parse(lan.out.join("\n")), { effect: "allow", rule: "from-lan", reason: "allowed" });
    const other = await explainPump(dir, ...write, "--from", "10.21.1.5", "--json");
    t.equal(other.code, 1);
    t.match(JSON.parse(other.out.join("\n")), { effect: "deny", rule: "from-lan", reason: "source-not-allowed" });
    const none = await explainPump(dir, ...write, "--json");
    t.equal(none.code, 1, "no source given does not pass a from condition");
    t.match(JSON.parse(none.out.join("\n")), { reason: "source-not-allowed" });
  });

  t.test("--claim meets a claims condition", async (t) => {
    const read = ["--action", "read", "--point", "speed", "--sub", "eng-1", "--role", "eng"];
    const north = await explainPump(dir, ...read, "--claim", "site=north");
    t.equal(north.code, 0);
    t.match(north.out[0], /rule: north-only /);
    const south = await explainPump(dir, ...read, "--claim", "site=south");
    t.equal(south.code, 1);
    t.match(south.out[0], /^DENY {2}reason: no-matching-rule {2}rule: \(none\)/);
    t.equal((await explainPump(dir, ...read)).code, 1, "no claim, no match");
  });

  t.test("--policies naming a broken directory is ZT_POLICY_INVALID with the positioned errors", async (t) => {
    const bad = t.testdir({ "pump.yaml": PUMP.replace("allow: [write]", "allow: [wrte]") });
    const r = await explainPump(bad, "--action", "read", "--point", "level", "--sub", "op-1", "--role", "op");
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.same(r.err, [
      `ztgate: ZT_POLICY_INVALID: ${displayPath(bad)}: 1 policy error`,
      `${displayPath(join(bad, "pump.yaml"))}:14:13: rules[1].allow[0]: must be an action: read, write, call, browse, diagnostic or *`,
    ]);
  });
});

t.test("usage errors exit 2 with one line on stderr", async (t) => {
  const explain = ["policy", "explain", "--asset", "boiler-plc", "--action", "read"];
  const cases: Array<[string, string[], RegExp]> = [
    ["no command", [], /^ztgate: no command given; try ztgate help$/],
    ["unknown command", ["frobnicate"], /^ztgate: unknown command "frobnicate"; try ztgate help$/],
    ["policy alone", ["policy"], /^ztgate: no policy command given; usage: ztgate policy \(check/],
    ["unknown policy command", ["policy", "lint"], /^ztgate: unknown policy command "lint"; usage: /],
    ["explain without --asset", ["policy", "explain", "--action", "read", "--point", "pressure", "--sub", "s"], /^ztgate: --asset and --action are required; usage: ztgate policy explain /],
    ["explain without --action", ["policy", "explain", "--asset", "boiler-plc", "--point", "pressure", "--sub", "s"], /^ztgate: --asset and --action are required/],
    ["both --point and --target", [...explain, "--point", "pressure", "--target", "input:2", "--sub", "s"], /^ztgate: give exactly one of --point or --target; usage: /],
    ["neither --point nor --target", [...explain, "--sub", "s"], /^ztgate: give exactly one of --point or --target/],
    ["unknown flag", [...explain, "--point", "pressure", "--sub", "s", "--colour", "red"], /^ztgate: Unknown option '--colour'.*; usage: ztgate policy explain /],
    ["flag without its value", [...explain, "--point"], /^ztgate: Option '--point <value>' argument missing; usage: /],
    ["bad --at", [...explain, "--point", "pressure", "--sub", "s", "--at", "yesterday"], /^ztgate: --at "yesterday": not an ISO 8601 time \(e\.g\. /],
    ["--at that Date.parse would guess", [...explain, "--point", "pressure", "--sub", "s", "--at", "1"], /^ztgate: --at "1": not an ISO 8601 time/],
    ["--at on a day that does not exist", [...explain, "--point", "pressure", "--sub", "s", "--at", "2026-02-30T08:00:00Z"], /^ztgate: --at "2026-02-30T08:00:00Z": not an ISO 8601 time/],
    ["bad --target", ["policy", "explain", "--asset", "boiler-plc", "--action", "write", "--target", "coil:abc", "--value", "1", "--sub", "s"], /^ztgate: target "coil:abc": address must be ADDR or FIRST-LAST/],
    ["unknown --target table", [...explain, "--target", "register:1", "--sub", "s"], /^ztgate: target "register:1": must be TABLE:ADDR\[-ADDR\] \(TABLE: coil, discrete, input, holding\) or node:NODEID$/],
    ["--value count mismatch on a range", ["policy", "explain", "--asset", "boiler-plc", "--action", "write", "--target", "holding:100-101", "--value", "50", "--sub", "s", "--role", "mes"], /^ztgate: target holding:100-101 holds 2 point\(s\)\/address\(es\); give that many values \(got 1\)$/],
    ["--value that does not fit the point", ["policy", "explain", "--asset", "boiler-plc", "--action", "write", "--target", "holding:100", "--value", "70000", "--sub", "s"], /^ztgate: value 70000 does not fit point setpoint \(uint16\)$/],
    ["unknown --action", ["policy", "explain", "--asset", "boiler-plc", "--action", "frob", "--point", "pressure", "--sub", "s"], /^ztgate: action "frob": must be one of read, write, call, browse, diagnostic$/],
    ["--from that is not an address", [...explain, "--point", "pressure", "--sub", "s", "--from", "plant-net"], /^ztgate: from "plant-net": not an IP address/],
    ["--from a CIDR rather than an address", [...explain, "--point", "pressure", "--sub", "s", "--from", "10.0.0.0/8"], /^ztgate: from "10\.0\.0\.0\/8": not an IP address/],
    ["neither --token nor --sub", [...explain, "--point", "pressure", "--role", "mes"], /^ztgate: give --token JWT or --sub S \[--role R\]…; usage: /],
    ["both --token and --sub", [...explain, "--point", "pressure", "--sub", "s", "--token", "x.y.z"], /^ztgate: give --token or --sub\/--role, not both$/],
    ["--claim without =", [...explain, "--point", "pressure", "--sub", "s", "--claim", "site"], /^ztgate: --claim "site": must be key=value$/],
    ["policy check with two directories", ["policy", "check", "a", "b"], /^ztgate: unexpected argument "b"; usage: ztgate policy check \[DIR\]$/],
    ["policy test with a flag", ["policy", "test", "--verbose"], /^ztgate: Unknown option '--verbose'.*; usage: ztgate policy test \[DIR\]$/],
    ["start with an extra argument", ["start", "now"], /^ztgate: unexpected argument "now"; usage: ztgate start \[--config F\]$/],
    ["session list without a token", ["session", "list"], /^ztgate: no token: give --token T, --token-file F or set ZTGATE_TOKEN; usage: ztgate session list /],
    ["log without a subcommand", ["log"], /^ztgate: no log command given; usage: ztgate log \(verify/],
  ];
  for (const [name, argv, message] of cases) {
    const r = await run(...argv);
    t.equal(r.code, 2, `${name}: exit 2`);
    t.same(r.out, [], `${name}: nothing on stdout`);
    t.equal(r.err.length, 1, `${name}: one line`);
    t.notMatch(r.err[0], /\n/, `${name}: one line`);
    t.match(r.err[0], message, name);
  }
});

t.test("help prints the usage on stdout, exit 0", async (t) => {
  for (const flag of ["help", "--help", "-h"]) {
    const r = await run(flag);
    t.equal(r.code, 0, flag);
    t.same(r.err, [], flag);
    t.match(r.out.join("\n"), /^usage: ztgate <command>\n[^]*policy explain[^]*policy test \[DIR\]/, flag);
  }
});

t.test("policy test", async (t) => {
  t.test("the repository's cases all pass", async (t) => {
    const files = readdirSync(join(POLICIES, "tests")).filter((f) => /\.ya?ml$/.test(f));
    const count = files.reduce((n, f) => n + (parseYaml(readFileSync(join(POLICIES, "tests", f), "utf8")) as { cases: unknown[] }).cases.length, 0);
    t.ok(count > 0);
    const r = await run("policy", "test", POLICIES);
    t.equal(r.code, 0);
    t.same(r.err, []);
    t.equal(r.out.at(-1), `${count} passed, 0 failed`);
    const results = r.out.slice(0, -1);
    t.equal(results.length, count, "one line per case");
    for (const l of results) t.match(l, /^ok {3}policies\/tests\/[a-z-]+\.yaml:\d+ \S/);
    t.ok(results.includes(`ok   ${displayPath(join(POLICIES, "tests", "boiler-plc.yaml"))}:3 historian reads the temperature (float32, two registers)`));
  });

  t.test("without DIR it runs gateway.yaml's policy.dir", async (t) => {
    const r = await run("policy", "test");
    t.equal(r.code, 0);
    t.match(r.out.at(-1), /^\d+ passed, 0 failed$/);
  });

  t.test("a case that expects the wrong thing fails, naming file:line, expected and got", async (t) => {
    const dir = t.testdir({
      "pump.yaml": PUMP,
      tests: {
        "pump.yaml": lines(
          "cases:",
          "  - name: op reads the level in the day shift", // 2
          "    subject: { sub: op-1, roles: [op] }",
          "    asset: pump",
          "    action: read",
          "    point: level",
          '    at: "2026-03-02T08:00:00Z"',
          "    expect: allow",
          "    rule: day-shift",
          "  - name: op reads the level on a Sunday", //      10
          "    subject: { sub: op-1, roles: [op] }",
          "    asset: pump",
          "    action: read",
          "    point: level",
          '    at: "2026-03-01T08:00:00Z"',
          "    expect: allow",
          "  - name: the right reason but the wrong rule", // 17
          "    subject: { sub: op-1, roles: [op] }",
          "    asset: pump",
          "    action: write",
          "    point: speed",
          "    value: 3",
          "    from: 10.99.0.1",
          "    expect: deny",
          "    reason: source-not-allowed",
          "    rule: day-shift",
        ),
      },
    });
    const file = displayPath(join(dir, "tests", "pump.yaml"));
    const r = await run("policy", "test", dir);
    t.equal(r.code, 1);
    t.same(r.err, []);
    t.same(r.out, [
      `ok   ${file}:2 op reads the level in the day shift`,
      `FAIL ${file}:10 op reads the level on a Sunday`,
      "     expected allow, got deny outside-time-window (rule day-shift)",
      `FAIL ${file}:17 the right reason but the wrong rule`,
      "     expected deny source-not-allowed (rule day-shift), got deny source-not-allowed (rule from-lan)",
      "1 passed, 2 failed",
    ]);
  });

  t.test("errors in test files are positioned, and fail the run", async (t) => {
    const base = ["    subject: { sub: op-1, roles: [op] }", "    asset: pump", "    action: read", "    point: level"];
    const dir = t.testdir({
      "pump.yaml": PUMP,
      tests: {
        "a-unknown-key.yaml": lines("cases:", "  - name: has a typo", ...base, "    expct: allow", "    expect: allow"),
        "b-bad-reason.yaml": lines("cases:", "  - name: bad reason", ...base, "    expect: deny", "    reason: not-allowed"),
        "c-bad-at.yaml": lines(
          "cases:",
          "  - name: good",
          ...base,
          '    at: "2026-03-02T08:00:00Z"',
          "    expect: allow",
          "  - name: bad at", //         9
          ...base,
          '    at: "next monday"', //   14:9
          "    expect: allow",
          "  - name: bad from", //       16
          ...base,
          "    from: plant-net", //      21:11
          "    expect: deny",
          "  - name: bad target", //     23
          "    subject: { sub: op-1, roles: [op] }",
          "    asset: pump",
          "    action: read",
          '    target: "input:x"', //     27:13
          "    expect: deny",
        ),
      },
    });
    const f = (name: string) => displayPath(join(dir, "tests", name));
    const r = await run("policy", "test", dir);
    t.equal(r.code, 1);
    t.same(r.err, [
      `${f("a-unknown-key.yaml")}:7:5: unknown key "expct" in cases[0]`,
      `${f("b-bad-reason.yaml")}:8:13: cases[0].reason: must be a reason code (see README)`,
      `${f("c-bad-at.yaml")}:14:9: case "bad at": at "next monday" is not an ISO 8601 time (e.g. 2026-03-02T08:00:00+01:00)`,
      `${f("c-bad-at.yaml")}:21:11: case "bad from": from "plant-net" is not an IP address (like 10.20.1.5 or fd00::5)`,
      `${f("c-bad-at.yaml")}:27:13: case "bad target": target "input:x": address must be ADDR or FIRST-LAST, 0-based, within 0-65535`,
    ]);
    t.same(r.out, [`ok   ${f("c-bad-at.yaml")}:2 good`, "1 passed, 0 failed, 5 error(s) in test files"]);
  });

  t.test("a policy directory without tests/ fails, naming the directory", async (t) => {
    const dir = t.testdir({ "pump.yaml": PUMP });
    const r = await run("policy", "test", dir);
    t.equal(r.code, 1);
    t.equal(r.err.length, 1);
    t.match(r.err[0], `${displayPath(join(dir, "tests"))}:0:0: cannot read directory: ENOENT`);
    t.same(r.out, ["0 passed, 0 failed, 1 error(s) in test files"]);
  });

  t.test("an empty tests/ directory fails too", async (t) => {
    const dir = t.testdir({ "pump.yaml": PUMP, tests: {} });
    const r = await run("policy", "test", dir);
    t.equal(r.code, 1);
    t.same(r.err, [`${displayPath(join(dir, "tests"))}:0:0: no policy test files (*.yaml, *.yml) found`]);
  });

  t.test("invalid policies are reported before any case runs", async (t) => {
    const dir = t.testdir({ "pump.yaml": PUMP.replace("protocol: modbus", "protocol: modbsu"), tests: { "t.yaml": "cases: []\n" } });
    const r = await run("policy", "test", dir);
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.equal(r.err[0], `ztgate: ZT_POLICY_INVALID: ${displayPath(dir)}: 1 policy error`);
    t.match(r.err[1], `${displayPath(join(dir, "pump.yaml"))}:2:11: protocol: must be modbus or opcua`);
  });
});

// `start` itself runs in test/cli/bin.test.ts (it waits for signals); what fails before it
// runs is safe in-process.
t.test("start fails before it runs", async (t) => {
  t.test("a missing config file is ZT_CONFIG_INVALID naming it", async (t) => {
    const file = join(t.testdir({}), "nope.yaml");
    const r = await run("start", "--config", file);
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.equal(r.err.length, 1);
    t.match(r.err[0], `ztgate: ZT_CONFIG_INVALID: ${file}: cannot read configuration file (ENOENT`);
  });

  t.test("policies that do not validate are ZT_POLICY_INVALID with every error", async (t) => {
    const dir = t.testdir({ "gateway.yaml": "policy:\n  dir: rules\n", rules: { "pump.yaml": PUMP.replace("allow: [write]", "allow: [wrte]") } });
    const r = await run("start", "--config", join(dir, "gateway.yaml"));
    t.equal(r.code, 1);
    t.same(r.out, []);
    t.same(r.err, [
      `ztgate: ZT_POLICY_INVALID: ${displayPath(join(dir, "rules"))}: 1 policy error`,
      `${displayPath(join(dir, "rules", "pump.yaml"))}:14:13: rules[1].allow[0]: must be an action: read, write, call, browse, diagnostic or *`,
    ]);
  });
});

t.test("--token is verified against the issuers of the config unless --no-verify", async (t) => {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true });
  const { exportSPKI } = await import("jose");
  const policies = fileURLToPath(new URL("../../policies", import.meta.url));
  const dir = t.testdir({
    "issuer.pub.pem": await exportSPKI(publicKey),
    "gateway.yaml": `policy: { dir: ${JSON.stringify(policies)} }\nissuers:\n  - { issuer: test-idp, audience: ztgate, publicKey: issuer.pub.pem }\n`,
  });
  const config = join(dir, "gateway.yaml");
  type Key = Parameters<SignJWT["sign"]>[0];
  const sign = (key: Key, claims: Record<string, unknown>, exp: string | number = "15m") =>
    new SignJWT({ roles: ["historian"], ...claims }).setProtectedHeader({ alg: "EdDSA" }).setSubject("hist-9").setIssuer("test-idp").setAudience("ztgate").setIssuedAt().setExpirationTime(exp).sign(key);
  const args = ["policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "pressure", "--config", config, "--token"];

  const good = await run(...args, await sign(privateKey, {}));
  t.equal(good.code, 0, "a token from the configured issuer is verified and allowed");
  t.equal(good.out[1], "subject: hist-9 roles [historian] (token verified)");

  const forger = await generateKeyPair("EdDSA");
  const forged = await run(...args, await sign(forger.privateKey, {}));
  t.equal(forged.code, 1, "a token signed by another key is refused");
  t.match(forged.out[0], /^DENY {2}reason: token-invalid {2}rule: \(none\)/);

  const expired = await run(...args, await sign(privateKey, {}, Math.floor(Date.now() / 1000) - 3600));
  t.equal(expired.code, 1);
  t.match(expired.out[0], /reason: token-expired/);

  const decoded = await run(...args, await sign(forger.privateKey, {}), "--no-verify");
  t.equal(decoded.code, 0, "--no-verify only decodes");
  t.match(decoded.out[1], /signature not verified/);

  const json = await run(...args, await sign(forger.privateKey, {}), "--json");
  t.match(JSON.parse(json.out.join("\n")), { effect: "deny", reason: "token-invalid", rule: null, considered: [] });
});
