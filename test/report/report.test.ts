// The evidence report from a known log: made by the real enforcement path and the real writer,
// with session, policy and gateway-endpoint records; counted, verified, rendered; and a
// tampered copy reported broken.
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { subjectOf } from "../../src/audit/record.js";
import { verifyLog } from "../../src/audit/verify.js";
import { gatewayDecisionLog } from "../../src/fronts/http/decisions.js";
import { buildReport, reportPolicy } from "../../src/report/report.js";
import type { Report } from "../../src/report/report.js";
import { renderHtml, renderMarkdown } from "../../src/report/render.js";
import { rowTotal } from "../../src/report/evidence.js";
import { compiled, ops, policyDir, principal, record } from "../policy/traffic.js";
import type { Step } from "../policy/traffic.js";

const B = "boiler-plc";
const mes = principal("mes-1", ["mes"]);
const hist = principal("hist-1", ["historian"]);
const admin = principal("admin-1", ["admin"]);
const evil = principal("<script>alert(1)</script>\u001b[2J|x", []);

const steps: Step[] = [
  { who: mes, op: ops.write(B, "holding", 100, [50]) }, // allow
  { who: mes, op: ops.write(B, "holding", 100, [95]) }, // denied write: value-out-of-range
  { who: hist, op: ops.read(B, "input", 0, 2) }, // allow
  { who: hist, op: ops.write(B, "holding", 100, [40]) }, // denied write: no-matching-rule
  { who: mes, op: ops.write(B, "coil", 0, [1]) }, // denied write: denied-by-rule
  { who: evil, op: ops.read(B, "input", 0, 2) }, // deny: no-matching-rule
  { refuse: "no-session", who: null, op: ops.read(B, "input", 0, 2) },
  { refuse: "token-expired", who: mes, op: ops.read(B, "input", 0, 2) },
  { who: mes, op: ops.point("packaging-line", "read", "count") }, // allow
];

const root = t.testdir({});
const polDir = policyDir(path.join(root, "policies"));
const set = await compiled(polDir);
const rec = await record(path.join(root, "log"), set, steps, (log, i) => {
  const gw = gatewayDecisionLog({ append: (b) => log.append(b), revision: () => set.revision });
  const client = { address: "10.20.1.9", port: 443, protocol: "http" as const, transport: "https" };
  if (i === 0) {
    log.append({ type: "policy", event: "loaded", revision: set.revision, files: 2 });
    log.append({ type: "session", event: "opened", session: "s-mes-1", subject: subjectOf(mes), client: { address: "10.20.1.5", protocol: "modbus", transport: "tcp" } });
    log.append({ type: "session", event: "opened", session: "s-hist-1", subject: subjectOf(hist), client: { address: "10.20.1.7", protocol: "modbus", transport: "tls" } });
  }
  if (i === 5) {
    gw.record({ effect: "allow", reason: "allowed", rule: "gateway.adminRoles", principal: admin, action: "write", resource: "policy", client });
    log.append({ type: "policy", event: "loaded", revision: "feedfacecafebeef", files: 2 });
    log.append({ type: "policy", event: "rejected", revision: "feedfacecafebeef", errors: ["policies/boiler-plc.yaml:3:1: unknown key"] });
    gw.record({ effect: "deny", reason: "no-matching-rule", rule: null, principal: hist, action: "write", resource: "policy", client });
  }
  if (i === 8) log.append({ type: "session", event: "renewed", session: "s-mes-1", subject: subjectOf(mes) });
  if (i === steps.length) {
    log.append({ type: "session", event: "revoked", session: "s-mes-1", subject: subjectOf(mes), detail: "by admin-1" });
    // The first decision: ids count every record, and a policy and two session records came first.
    log.append({ type: "outcome", ref: "d-4", status: "ok", latencyMs: 1 });
  }
});

async function all(dir: string): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const f of readLog(dir)) if (f.record) out.push(f.record);
  return out;
}

async function report(dir: string): Promise<Report> {
  return buildReport({ records: await all(dir), logDir: dir, integrity: await verifyLog(dir, rec.publicKey), policy: reportPolicy(polDir, set), generatedAt: "2026-03-09T12:00:00.000Z" });
}

const r = await report(rec.dir);
const e = r.evidence;

t.test("counts of the known log", async (t) => {
  t.equal(rec.decided[0]?.id, "d-4");
  t.same(e.decisions, { key: "all", allow: 4, deny: 7, wouldDeny: 0 }, "9 operations and 2 gateway-endpoint decisions");
  t.same(e.records, { decision: 11, outcome: 1, session: 4, policy: 3, checkpoint: e.records.checkpoint });
  t.same(Object.fromEntries([...e.byAsset.values()].map((x) => [x.key, [x.allow, x.deny]])), { [B]: [2, 6], "(gateway endpoints)": [1, 1], "packaging-line": [1, 0] });
  t.same(Object.fromEntries(e.byReason), { allowed: 4, "value-out-of-range": 1, "no-matching-rule": 3, "denied-by-rule": 1, "no-session": 1, "token-expired": 1 });
  t.same(Object.fromEntries(e.preAuth), { "no-session": 1, "token-expired": 1 });
  t.equal(rowTotal(e.bySubject.get("mes-1")!), 5);
  t.equal(rowTotal(e.bySubject.get("(no session)")!), 1);
  t.same([...e.byDay.keys()], ["2026-03-02"]);
});

t.test("denied write attempts, with subject, target, values, reason and rule", async (t) => {
  t.equal(e.deniedWrites.total, 4, "three on the asset and the refused policy reload");
  t.same(e.deniedWrites.list.map((w) => [w.subject, w.asset, w.target, w.values, w.reason, w.rule]), [
    ["mes-1", B, "holding:100", "setpoint=95", "value-out-of-range", "mes-setpoint"],
    ["hist-1", B, "holding:100", "setpoint=40", "no-matching-rule", null],
    ["mes-1", B, "coil:0", "burner_on=true", "denied-by-rule", "no-burner-from-it"],
    ["hist-1", "(gateway)", "policy", "", "no-matching-rule", null],
  ]);
});

t.test("policy revisions: events, who asked for the reload, revisions in use", async (t) => {
  t.same(e.policy.events.map((p) => [p.event, p.revision, p.requestedBy?.sub ?? null, p.errors]), [
    ["loaded", set.revision, null, []],
    ["loaded", "feedfacecafebeef", "admin-1", []],
    ["rejected", "feedfacecafebeef", null, ["policies/boiler-plc.yaml:3:1: unknown key"]],
  ]);
  t.same([...e.policy.revisions.keys()], [set.revision]);
  t.equal(e.policy.revisions.get(set.revision)?.decisions, 11);
});

t.test("sessions", async (t) => {
  t.equal(e.sessions.total, 2);
  t.same(Object.fromEntries(e.sessions.byEvent), { opened: 2, renewed: 1, revoked: 1 });
  const m = e.sessions.list.get("s-mes-1");
  t.match(m, { sub: "mes-1", roles: ["mes"], client: "modbus/tcp 10.20.1.5", renewals: 1, ended: { event: "revoked", detail: "by admin-1" } });
  t.equal(e.sessions.list.get("s-hist-1")?.ended, undefined);
});

t.test("integrity and the control mapping", async (t) => {
  t.equal(r.integrity?.ok, true);
  t.equal(r.integrity?.records, e.records.decision + e.records.outcome + e.records.session + e.records.policy + e.records.checkpoint);
  const ids = r.controls.map((c) => `${c.framework} ${c.id}`);
  for (const sr of ["1.1", "1.2", "2.1", "2.8", "2.9", "2.10", "3.5", "5.1", "5.2", "6.1"]) t.ok(ids.includes(`IEC 62443-3-3 SR ${sr}`), `SR ${sr} mapped`);
  t.ok(ids.some((i) => /^NIST SP 800-171 3\.1\./.test(i)) && ids.some((i) => /^NIST SP 800-171 3\.3\./.test(i)));
  const row = (id: string) => r.controls.find((c) => c.id === id)!;
  t.equal(row("SR 2.1").evidence.startsWith("11 decisions (4 allowed, 7 denied, 0 would-deny in monitor mode)"), true);
  t.equal(row("SR 1.1").evidence, "2 sessions opened, 2 refusals for a missing session or a refused token");
  t.equal(row("SR 1.2").evidence, "2 sessions, 1 over TLS client certificates");
  t.match(row("3.3.8").evidence, /^log integrity verified: \d+ records, \d+ signed checkpoints$/);
  t.equal(row("3.1.7").evidence, "2 decisions on the gateway's endpoints, 1 denied");
  const sections = new Set(["summary", "integrity", "controls", "assets", "decisions", "subjects", "denied-writes", "policy", "sessions", "gateway"]);
  for (const c of r.controls) t.ok(sections.has(c.section), `${c.id} points at a section of the report`);
});

t.test("HTML: self-contained, charts as inline SVG, everything escaped", async (t) => {
  const html = renderHtml(r);
  t.match(html, /^<!doctype html>/);
  t.notMatch(html, /<script/i, "no script at all, and a subject named <script> is escaped");
  t.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;\\u001b\[2J\|x/);
  t.notOk(html.includes("\u001b"), "no raw escape character");
  t.ok((html.match(/<svg /g) ?? []).length >= 3, "bar charts by asset, reason, subject and a day chart");
  t.match(html, /<p class="ok">INTACT: \d+ records/);
  t.match(html, /<td>IEC 62443-3-3<\/td><td>SR 2\.10<\/td>/);
  t.match(html, /<a href="#integrity">integrity<\/a>/);
  t.notMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, "no external resource");
});

t.test("Markdown: tables, cells escaped", async (t) => {
  const md = renderMarkdown(r);
  t.match(md, /^# ztgate evidence report\n/);
  t.match(md, /\| asset \| allowed \| would-deny \(monitor\) \| denied \| total \|\n\| --- \| --- \| --- \| --- \| --- \|\n\| boiler-plc \| 2 \| 0 \| 6 \| 8 \|/);
  t.match(md, /\| \\<script\\>alert\(1\)\\<\/script\\>\\\\u001b\\\[2J\\\|x \| 0 \| 0 \| 1 \| 1 \|/);
  t.notMatch(md, /<svg/);
  t.match(md, /\| NIST SP 800-171 \| 3\.3\.8 \|/);
});

t.test("a tampered log is reported broken, at the record that was changed", async (t) => {
  const copy = path.join(t.testdir({}), "log");
  cpSync(rec.dir, copy, { recursive: true });
  const seg = path.join(copy, "00000001.jsonl");
  const lines = readFileSync(seg, "utf8").split("\n");
  const i = lines.findIndex((l) => l.includes('"reason":"value-out-of-range"'));
  lines[i] = lines[i]!.replace('"decision":"deny"', '"decision":"allow"');
  writeFileSync(seg, lines.join("\n"));
  const broken = await report(copy);
  t.equal(broken.integrity?.ok, false);
  t.equal(broken.integrity?.problem?.seq, i + 1);
  t.match(renderHtml(broken), new RegExp(`<p class="bad">BROKEN: [^<]*00000001\\.jsonl:${i + 1}: hash does not match the record&#39;s content`));
  t.match(renderMarkdown(broken), /\*\*BROKEN: .*hash does not match/);
  t.match(broken.controls.find((c) => c.id === "3.3.8")?.evidence, `LOG INTEGRITY BROKEN at seq ${i + 1}`);
});

t.test("the period: records before --since are not counted (integrity still covers the whole log)", async (t) => {
  const later = await buildReport({ records: await all(rec.dir), logDir: rec.dir, since: "2026-03-02T08:00:05.000000Z", integrity: r.integrity, policy: null, generatedAt: "x" });
  t.same(later.evidence.decisions, { key: "all", allow: 2, deny: 4, wouldDeny: 0 }, "steps 6-9 and the two gateway decisions made at 08:00:05");
  t.equal(later.evidence.first, "2026-03-02T08:00:05.000000Z");
});
