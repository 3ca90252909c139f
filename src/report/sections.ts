// The report's content as neutral sections (paragraphs, tables, charts); html.ts and md.ts only
// render them, so both formats always say the same thing.
import type { Bar } from "./svg.js";
import type { Report } from "./report.js";
import type { Row } from "./evidence.js";
import { rowTotal, sortedRows } from "./evidence.js";

export interface Table {
  readonly headers: readonly string[];
  readonly rows: ReadonlyArray<readonly string[]>;
  /** Said under the table when rows were left out. */
  readonly more?: string;
}

export interface Chart {
  readonly kind: "bars" | "columns";
  readonly title: string;
  readonly bars: readonly Bar[];
}

export type Block = { readonly p: string; readonly status?: "ok" | "bad" | "warn" } | { readonly table: Table } | { readonly chart: Chart };

export interface Section {
  readonly id: string;
  readonly title: string;
  readonly blocks: readonly Block[];
}

const TOP = 20;

function outcomeBars(rows: readonly Row[]): Bar[] {
  return rows.map((r) => ({ label: r.key, values: [r.allow, r.wouldDeny, r.deny] }));
}

function rowTable(first: string, rows: readonly Row[], total: number): Table {
  return {
    headers: [first, "allowed", "would-deny (monitor)", "denied", "total"],
    rows: rows.map((r) => [r.key, String(r.allow), String(r.wouldDeny), String(r.deny), String(rowTotal(r))]),
    ...(total > rows.length && { more: `${total - rows.length} more not shown` }),
  };
}

function period(r: Report): string {
  const e = r.evidence;
  const from = e.since ?? e.first ?? "the beginning of the log";
  const to = e.until ?? r.generatedAt;
  return `${from} to ${to}`;
}

export function sections(r: Report): Section[] {
  const e = r.evidence;
  const d = e.decisions;
  const total = rowTotal(d);
  const v = r.integrity;
  const out: Section[] = [];

  const integrity: Block = !v
    ? { p: "Log integrity was NOT checked (no verification key).", status: "warn" }
    : v.ok
      ? { p: `INTACT: ${v.records} records (seq 1..${v.lastSeq}) in ${v.segments} segment${v.segments === 1 ? "" : "s"}, ${v.checkpoints} checkpoint signature${v.checkpoints === 1 ? "" : "s"} verified${v.signedHead ? `, head.jws signs seq ${v.signedHead.seq}` : ""}.`, status: "ok" }
      : { p: `BROKEN: ${v.problem?.file}:${v.problem?.seq}: ${v.problem?.why}. ${v.records} records were checked before the first problem; nothing after it can be relied on.`, status: "bad" };

  out.push({
    id: "summary", title: "Summary",
    blocks: [
      { p: `Decision log ${r.logDir}, period ${period(r)}; records in the period from ${e.first ?? "-"} to ${e.last ?? "-"}. Generated ${r.generatedAt}.` },
      integrity,
      { p: `${total} decisions: ${d.allow} allowed, ${d.deny} denied, ${d.wouldDeny} would-deny (assets in monitor mode). ${e.deniedWrites.total} denied write attempts. ${e.sessions.total} sessions. ${e.policy.events.length} policy events.` },
      ...(r.policy ? [{ p: `Policy in force (${r.policy.dir}): revision ${r.policy.revision}, ${r.policy.assets.length} assets.` }] : []),
    ],
  });

  out.push({
    id: "integrity", title: "Log integrity",
    blocks: [
      integrity,
      { p: "Checked over the whole log (not only the period): the hash chain of every record (sha256 over RFC 8785 canonical JSON), consecutive sequence numbers, the signature of every checkpoint and of head.jws. Records after the last checkpoint are chained but not yet signed." },
      ...(v ? [{ table: { headers: ["segments", "records", "last seq", "signed checkpoints", "records after the last checkpoint"], rows: [[String(v.segments), String(v.records), String(v.lastSeq), String(v.checkpoints), String(v.uncovered)]] } }] : []),
      ...(v?.notes ?? []).map((n) => ({ p: `Note: ${n}` })),
    ],
  });

  out.push({
    id: "controls", title: "What the gateway enforces, mapped to IEC 62443-3-3 and NIST SP 800-171",
    blocks: [
      { p: "Each requirement names what this gateway contributes and the evidence of the period, with the section of this report that holds it. The mapping supports an assessment of the system the gateway is part of; it does not by itself show that the system meets a requirement." },
      { table: { headers: ["framework", "requirement", "title", "the gateway enforces", "evidence in the period", "section"], rows: r.controls.map((c) => [c.framework, c.id, c.title, c.enforced, c.evidence, `#${c.section}`]) } },
    ],
  });

  const assets = sortedRows(e.byAsset);
  out.push({
    id: "assets", title: "Decisions by asset",
    blocks: [
      { chart: { kind: "bars", title: "Decisions by asset", bars: outcomeBars(assets.slice(0, TOP)) } },
      { table: rowTable("asset", assets.slice(0, 100), assets.length) },
      ...(e.zones.size > 0 ? [{ table: rowTable("zone", sortedRows(e.zones), e.zones.size) }] : []),
      ...(r.policy ? [{ table: { headers: ["asset", "zone", "protocol", "mode", "rules", "points", "file"], rows: r.policy.assets.map((a) => [a.id, a.zone ?? "", a.protocol, a.mode, String(a.rules), String(a.points), a.file]) } }] : []),
    ],
  });

  const reasons = [...e.byReason.entries()].sort((a, b) => b[1] - a[1]);
  const days = [...e.byDay.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  out.push({
    id: "decisions", title: "Decisions by reason, action and day",
    blocks: [
      { chart: { kind: "columns", title: "Decisions per day", bars: outcomeBars(days) } },
      { chart: { kind: "bars", title: "Decisions by reason", bars: reasons.map(([k, n]) => ({ label: k, values: k === "allowed" ? [n, 0, 0] : [0, 0, n] })) } },
      { table: { headers: ["reason", "decisions"], rows: reasons.map(([k, n]) => [k, String(n)]) } },
      { table: rowTable("action", sortedRows(e.byAction), e.byAction.size) },
      ...(e.preAuth.size > 0 ? [{ p: `Refused before the policy was asked: ${[...e.preAuth.entries()].map(([k, n]) => `${k} ${n}`).join(", ")}.` }] : []),
      ...(e.outcomes.size > 0 ? [{ p: `Outcomes at the devices of allowed operations: ${[...e.outcomes.entries()].map(([k, n]) => `${k} ${n}`).join(", ")}.` }] : []),
    ],
  });

  const subjects = sortedRows(e.bySubject);
  out.push({
    id: "subjects", title: "Decisions by subject",
    blocks: [
      { chart: { kind: "bars", title: `Decisions by subject (top ${Math.min(TOP, subjects.length)})`, bars: outcomeBars(subjects.slice(0, TOP)) } },
      { table: rowTable("subject", subjects.slice(0, 100), subjects.length) },
    ],
  });

  const dw = e.deniedWrites;
  out.push({
    id: "denied-writes", title: "Denied write attempts",
    blocks: [
      { p: `${dw.total} write attempts were denied in the period.` },
      ...(dw.list.length > 0 ? [{ table: { headers: ["time", "seq", "subject", "asset", "target", "values", "reason", "rule", "client"], rows: dw.list.map((w) => [w.time, String(w.seq), w.subject, w.asset, w.target, w.values, w.reason, w.rule ?? "", w.client]), ...(dw.total > dw.list.length && { more: `${dw.total - dw.list.length} more not shown (ztgate log query --decision deny --action write)` }) } }] : []),
    ],
  });

  const revs = [...e.policy.revisions.entries()].sort((a, b) => (a[1].first < b[1].first ? -1 : 1));
  out.push({
    id: "policy", title: "Policy revisions",
    blocks: [
      { p: "Policy loads and rejected changes as the gateway logged them. A reload requested through POST /v1/policy/reload names who asked; a change of the files themselves (watch, SIGHUP) is logged without a person: the files' history (git) says who edited what." },
      { table: { headers: ["time", "seq", "event", "revision", "files", "requested by", "errors"], rows: e.policy.events.map((p) => [p.time, String(p.seq), p.event, p.revision, p.files !== undefined ? String(p.files) : "", p.requestedBy ? `${p.requestedBy.sub} (seq ${p.requestedBy.seq})` : "", p.errors.join("; ")]) } },
      { table: { headers: ["revision", "first decision", "last decision", "decisions"], rows: revs.map(([k, x]) => [k, x.first, x.last, String(x.decisions)]) } },
    ],
  });

  const sessions = [...e.sessions.list.values()];
  out.push({
    id: "sessions", title: "Sessions",
    blocks: [
      { p: `${e.sessions.total} sessions; events: ${[...e.sessions.byEvent.entries()].map(([k, n]) => `${k} ${n}`).join(", ") || "none"}.` },
      { table: { headers: ["session", "subject", "roles", "client", "opened", "renewals", "ended"], rows: sessions.map((s) => [s.session, s.sub, s.roles.join(", "), s.client, s.opened ?? "", String(s.renewals), s.ended ? `${s.ended.event} ${s.ended.time}${s.ended.detail ? ` (${s.ended.detail})` : ""}` : "open at the end of the period"]), ...(e.sessions.total > sessions.length && { more: `${e.sessions.total - sessions.length} more not shown` }) } },
    ],
  });

  out.push({
    id: "gateway", title: "Use of the gateway's own endpoints",
    blocks: [
      { p: "Admin and audit endpoints (sessions, policy, decisions) are decided by gateway roles; every use and refusal is logged." },
      { table: rowTable("resource", sortedRows(e.gateway), e.gateway.size) },
    ],
  });
  return out;
}
