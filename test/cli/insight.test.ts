// `ztgate policy diff`, `ztgate policy suggest` and `ztgate report` as a user runs them: real
// processes (bin/ztgate.js), real exit codes, on a log the real writer made.
import { spawn } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { childEnv } from "../support/child-env.js";
import { BOILER, PACKAGING, ROOT, compiled, edit, ops, policyDir, principal, record } from "../policy/traffic.js";

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ztgate(...args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "bin", "ztgate.js"), ...args], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

// Each process spends a few seconds starting (tsx compiles the CLI); on a busy machine this
// file needs more than the default per-file timeout.
t.setTimeout(300_000);

const B = "boiler-plc";
const mes = principal("mes-1", ["mes"]);
const hist = principal("hist-1", ["historian"]);
const root = t.testdir({});
const oldDir = policyDir(path.join(root, "old"));
const newDir = policyDir(path.join(root, "new"), { "boiler-plc.yaml": edit(BOILER, "values: { min: 20, max: 80 }", "values: { min: 20, max: 60 }"), "packaging-line.yaml": PACKAGING });
const monDir = policyDir(path.join(root, "monitored"), { "boiler-plc.yaml": edit(BOILER, "mode: enforce", "mode: monitor"), "packaging-line.yaml": PACKAGING });
const monSet = await compiled(monDir);
const rec = await record(path.join(root, "log"), monSet, [
  { who: mes, op: ops.write(B, "holding", 100, [50]) },
  { who: mes, op: ops.write(B, "holding", 100, [70]) }, // NEW refuses this one
  { who: mes, op: ops.write(B, "holding", 100, [75]) }, // and this one
  { who: hist, op: ops.read(B, "input", 0, 3) },
  { who: hist, op: ops.read(B, "holding", 200, 2) }, // would-deny in monitor mode
]);
const pub = path.join(root, "signing.pub.pem");
writeFileSync(pub, rec.publicKey.export({ type: "spki", format: "pem" }));
const tampered = path.join(root, "tampered");
cpSync(rec.dir, tampered, { recursive: true });
{
  const seg = path.join(tampered, "00000001.jsonl");
  writeFileSync(seg, readFileSync(seg, "utf8").replace('"raw":[70]', '"raw":[7]'));
}

t.test("policy diff: exit 1 with the changes, 0 without, --json for CI", async (t) => {
  const [json, text, same] = await Promise.all([
    ztgate("policy", "diff", oldDir, newDir, "--replay", rec.dir, "--json"),
    ztgate("policy", "diff", oldDir, newDir, "--replay", rec.dir),
    ztgate("policy", "diff", oldDir, oldDir, "--replay", rec.dir),
  ]);
  t.equal(json.code, 1, json.stderr);
  const r = JSON.parse(json.stdout) as { changes: { total: number; byChange: Record<string, number>; groups: Array<{ asset: string; count: number; new: { reason: string } }> } };
  t.same(r.changes.byChange, { "allow→deny": 2 });
  t.match(r.changes.groups, [{ asset: B, count: 2, new: { reason: "value-out-of-range" } }]);
  t.equal(text.code, 1);
  t.match(text.stdout, /ALLOW→DENY {2}2× {2}subject mes-1 \[mes\] {2}rule mes-setpoint \(allowed\) → mes-setpoint \(value-out-of-range\)/);
  t.equal(same.code, 0, same.stderr);
  t.match(same.stdout, /no decision changes\n$/);
});

t.test("policy diff: usage errors exit 2 with one line; --help; a missing log is an error", async (t) => {
  const [noReplay, oneDir, help, nowhere] = await Promise.all([
    ztgate("policy", "diff", oldDir, newDir),
    ztgate("policy", "diff", oldDir, "--replay", rec.dir),
    ztgate("policy", "diff", "--help"),
    ztgate("policy", "diff", oldDir, newDir, "--replay", path.join(root, "nowhere")),
  ]);
  t.equal(noReplay.code, 2);
  t.match(noReplay.stderr, /^ztgate: --replay LOG_DIR is required .*; usage: ztgate policy diff OLD_DIR NEW_DIR --replay LOG_DIR/);
  t.equal(noReplay.stderr.trim().split("\n").length, 1);
  t.equal(oneDir.code, 2);
  t.equal(help.code, 0);
  t.match(help.stdout, /^usage: ztgate policy diff OLD_DIR NEW_DIR --replay LOG_DIR/);
  t.match(help.stdout, /exit: 0 no decision changes, 1 changes/);
  t.equal(nowhere.code, 1);
  t.match(nowhere.stderr, /ZT_LOG_UNREADABLE: decision log directory .*nowhere: does not exist/);
});

t.test("policy suggest: writes a file that policy check accepts", async (t) => {
  const outDir = policyDir(path.join(root, "suggested"), { "packaging-line.yaml": PACKAGING });
  const out = path.join(outDir, "boiler-plc.yaml");
  const r = await ztgate("policy", "suggest", "--from", rec.dir, "--asset", B, "--policies", monDir, "--out", out);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^wrote .*boiler-plc\.yaml: 2 rules learned from 5 decisions\n$/);
  const text = readFileSync(out, "utf8");
  t.match(text, /values: \{ min: 50, max: 75 \}/);
  t.match(text, /address: 200-201/);
  const check = await ztgate("policy", "check", outDir);
  t.equal(check.code, 0, check.stderr);
  const printed = await ztgate("policy", "suggest", "--from", rec.dir, "--asset", B, "--policies", monDir);
  t.equal(printed.code, 0);
  const stamp = (x: string) => x.replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)\./, " (TIME).");
  t.equal(stamp(printed.stdout), stamp(text), "without --out the same file is printed");
  t.match(printed.stderr, /2 rules learned from 5 decisions/);
});

t.test("policy suggest: usage errors, nothing to learn, --help", async (t) => {
  const [noAsset, unknown, none, help] = await Promise.all([
    ztgate("policy", "suggest", "--from", rec.dir, "--policies", monDir),
    ztgate("policy", "suggest", "--from", rec.dir, "--asset", "nowhere", "--policies", monDir),
    ztgate("policy", "suggest", "--from", rec.dir, "--asset", "packaging-line", "--policies", monDir),
    ztgate("policy", "suggest", "-h"),
  ]);
  t.equal(noAsset.code, 2);
  t.match(noAsset.stderr, /^ztgate: --from LOG_DIR and --asset A are required; usage: /);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /--asset "nowhere": not defined in .* \(assets: boiler-plc, packaging-line\)/);
  t.equal(none.code, 1);
  t.match(none.stderr, /^ztgate: no decisions of asset "packaging-line" to learn from in /);
  t.equal(none.stdout, "");
  t.equal(help.code, 0);
  t.match(help.stdout, /^usage: ztgate policy suggest --from LOG_DIR --asset A/);
});

t.test("report: html and md; a tampered log is reported and exits 1; usage errors exit 2", async (t) => {
  const html = path.join(root, "report.html");
  const since = ["--since", "2026-03-01T00:00:00Z"];
  const [a, md, broken, badFormat, help] = await Promise.all([
    ztgate("report", "--log", rec.dir, "--policies", monDir, "--key", pub, ...since, "--out", html),
    ztgate("report", "--log", rec.dir, "--policies", monDir, "--key", pub, ...since, "--format", "md"),
    ztgate("report", "--log", tampered, "--policies", monDir, "--key", pub, ...since, "--out", path.join(root, "broken.md")),
    ztgate("report", "--format", "pdf"),
    ztgate("report", "--help"),
  ]);
  t.equal(a.code, 0, a.stderr);
  t.match(a.stdout, /^wrote .*report\.html \(html\): 5 decisions since 2026-03-01T00:00:00\.000000Z; log intact\n$/);
  const page = readFileSync(html, "utf8");
  t.match(page, /<svg /);
  t.match(page, /INTACT: /);
  t.match(page, /monitor mode, not enforcing: boiler-plc/);
  t.equal(md.code, 0, md.stderr);
  t.match(md.stdout, /^# ztgate evidence report\n/);
  t.match(md.stdout, /\| boiler-plc \| 4 \| 1 \| 0 \| 5 \|/, "in monitor mode: 4 allowed, 1 would-deny");
  t.equal(broken.code, 1);
  t.match(broken.stdout, /log BROKEN/);
  t.match(broken.stderr, /^ztgate: the decision log is broken: .*00000001\.jsonl:\d+: hash does not match/);
  t.match(readFileSync(path.join(root, "broken.md"), "utf8"), /\*\*BROKEN: /);
  t.equal(badFormat.code, 2);
  t.equal(badFormat.stderr, `ztgate: --format "pdf": must be one of html, md; usage: ztgate report [--log DIR] [--policies DIR] [--since 30d] [--until T] [--format html|md] [--out FILE] [--key PEM] [--config F]\n`);
  t.equal(help.code, 0);
  t.match(help.stdout, /IEC 62443-3-3/);
});

t.test("ztgate help lists the new commands", async (t) => {
  const r = await ztgate("help");
  t.match(r.stdout, /policy diff OLD NEW --replay LOG/);
  t.match(r.stdout, /policy suggest --from LOG --asset A/);
  t.match(r.stdout, /\n {2}report /);
});
