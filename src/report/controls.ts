// What the gateway enforces, mapped to IEC 62443-3-3 system requirements and NIST SP 800-171
// (rev. 2) requirements, each pointing at the section of the report that holds the evidence.
// The mapping supports an assessment; it is not a certification: it says what this gateway
// contributes to a requirement, and what the log shows of it in the period.
import type { Evidence } from "./evidence.js";
import type { ReportPolicy } from "./report.js";
import type { VerifyResult } from "../audit/verify.js";

export interface ControlRow {
  readonly framework: "IEC 62443-3-3" | "NIST SP 800-171";
  readonly id: string;
  readonly title: string;
  /** What the gateway does towards it. */
  readonly enforced: string;
  /** What the log shows in the period, with the report section (anchor) holding it. */
  readonly evidence: string;
  readonly section: string;
}

interface Input {
  readonly evidence: Evidence;
  readonly integrity: VerifyResult | null;
  readonly policy: ReportPolicy | null;
}

const n = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
const sum = (m: Map<string, number>, keys: readonly string[]) => keys.reduce((a, k) => a + n(m, k), 0);
const TOKEN_REFUSALS = ["no-session", "token-invalid", "token-expired", "token-revoked"];
const INPUT_REFUSALS = ["unknown-point", "partial-point", "unsupported-function", "value-out-of-range"];

function integrityText(v: VerifyResult | null): string {
  if (!v) return "log integrity not checked";
  return v.ok ? `log integrity verified: ${v.records} records, ${v.checkpoints} signed checkpoints` : `LOG INTEGRITY BROKEN at seq ${v.problem?.seq}`;
}

export function controls({ evidence: e, integrity, policy }: Input): ControlRow[] {
  const d = e.decisions;
  const decisions = d.allow + d.deny + d.wouldDeny;
  const opened = n(e.sessions.byEvent, "opened");
  const tokenRefusals = sum(e.preAuth, TOKEN_REFUSALS);
  const mtls = [...e.sessions.list.values()].filter((s) => / tls|\/tls/.test(` ${s.client}`)).length;
  const denies = d.deny;
  const monitored = policy ? policy.assets.filter((a) => a.mode === "monitor").map((a) => a.id) : [];
  const admin = [...e.gateway.values()].reduce((a, r) => a + r.allow + r.deny, 0);
  const adminDenied = [...e.gateway.values()].reduce((a, r) => a + r.deny, 0);
  const auditUnavailable = n(e.byReason, "audit-unavailable");
  const inputRefusals = sum(e.byReason, INPUT_REFUSALS);
  const zones = e.zones.size;
  const policyText = policy ? `policy revision ${policy.revision} in force for ${policy.assets.length} assets${monitored.length ? ` (monitor mode, not enforcing: ${monitored.join(", ")})` : ""}` : "policy directory not read";

  return [
    { framework: "IEC 62443-3-3", id: "SR 1.1", title: "Human user identification and authentication", section: "sessions",
      enforced: "every session rests on a verified signed token (JWT: issuer, audience, expiry, algorithm allow-list) or a client certificate from the configured CA; anonymous access is refused; sessions end within 1 s of token expiry or revocation",
      evidence: `${opened} sessions opened, ${tokenRefusals} refusals for a missing session or a refused token` },
    { framework: "IEC 62443-3-3", id: "SR 1.2", title: "Software process and device identification and authentication", section: "sessions",
      enforced: "client software authenticates with its own token or with Modbus/TCP Security (mutual TLS, role in the certificate); OPC UA clients with application certificates",
      evidence: `${e.sessions.total} sessions, ${mtls} over TLS client certificates` },
    { framework: "IEC 62443-3-3", id: "SR 2.1", title: "Authorization enforcement", section: "decisions",
      enforced: "every read, write, call and browse is decided per principal, asset, point and value against the asset's policy (deny by default, deny overrides); admin and audit endpoints by gateway roles",
      evidence: `${decisions} decisions (${d.allow} allowed, ${d.deny} denied, ${d.wouldDeny} would-deny in monitor mode); ${policyText}` },
    { framework: "IEC 62443-3-3", id: "SR 2.8", title: "Auditable events", section: "decisions",
      enforced: "every decision, device outcome, session event and policy load or rejection is a record of the decision log, written before the operation is forwarded",
      evidence: `${e.records.decision} decision, ${e.records.outcome} outcome, ${e.records.session} session, ${e.records.policy} policy records` },
    { framework: "IEC 62443-3-3", id: "SR 2.9", title: "Audit storage capacity", section: "integrity",
      enforced: "segments rotate by size and age; when the log cannot be written the gateway fails closed rather than lose records",
      evidence: integrity ? `${integrity.segments} segments, ${integrity.records} records` : "log not verified" },
    { framework: "IEC 62443-3-3", id: "SR 2.10", title: "Response to audit processing failures", section: "decisions",
      enforced: "operations are denied with reason audit-unavailable while the log cannot be written; /readyz fails and a metric shows it",
      evidence: `${auditUnavailable} decisions refused with audit-unavailable in the period` },
    { framework: "IEC 62443-3-3", id: "SR 3.5", title: "Input validation", section: "decisions",
      enforced: "Modbus frames are parsed and checked by the gateway (framing, quantities, byte counts) before anything reaches a device; written values are decoded and checked against point and rule limits",
      evidence: `${inputRefusals} refusals for unknown or partial points, unsupported functions or out-of-range values` },
    { framework: "IEC 62443-3-3", id: "SR 5.1", title: "Network segmentation", section: "assets",
      enforced: "the gateway is the conduit between IT clients and OT devices; clients reach devices only through it, asset by asset",
      evidence: `${e.byAsset.size} assets reached through the gateway, in ${zones} zones` },
    { framework: "IEC 62443-3-3", id: "SR 5.2", title: "Zone boundary protection", section: "assets",
      enforced: "deny by default at the zone boundary: only operations a policy rule allows cross it",
      evidence: `${denies} operations denied at the boundary` },
    { framework: "IEC 62443-3-3", id: "SR 6.1", title: "Audit log accessibility", section: "integrity",
      enforced: "the log is readable by authorized people and tools: ztgate log query/tail/verify, GET /v1/decisions for the auditor role, syslog export, this report",
      evidence: `${integrityText(integrity)}; ${admin} decisions on the gateway's own endpoints` },
    { framework: "NIST SP 800-171", id: "3.1.1", title: "Limit system access to authorized users, processes and devices", section: "sessions",
      enforced: "no session without a verified token or certificate; connections without one are closed and logged",
      evidence: `${opened} sessions opened, ${tokenRefusals} refusals` },
    { framework: "NIST SP 800-171", id: "3.1.2", title: "Limit access to the types of transactions and functions authorized users may execute", section: "decisions",
      enforced: "rules name actions (read, write, call, browse, diagnostic), points and value ranges per role",
      evidence: `${e.byAction.size} actions seen; ${e.deniedWrites.total} denied write attempts` },
    { framework: "NIST SP 800-171", id: "3.1.5", title: "Employ the principle of least privilege", section: "decisions",
      enforced: "allow rules per role and point with value limits; ztgate policy suggest proposes rules as wide as observed traffic; ztgate policy diff shows a change's impact before it is made",
      evidence: `${d.deny} denies, ${d.wouldDeny} would-denies` },
    { framework: "NIST SP 800-171", id: "3.1.7", title: "Prevent non-privileged users from executing privileged functions; audit their execution", section: "gateway",
      enforced: "policy reloads, session administration and log access need gateway roles (adminRoles, auditorRoles); each use and refusal is logged",
      evidence: `${admin} decisions on the gateway's endpoints, ${adminDenied} denied` },
    { framework: "NIST SP 800-171", id: "3.1.12", title: "Monitor and control remote access sessions", section: "sessions",
      enforced: "sessions and leases are listed, revocable, end with their token, and every event is logged",
      evidence: [...e.sessions.byEvent.entries()].map(([k, v]) => `${v} ${k}`).join(", ") || "no session events" },
    { framework: "NIST SP 800-171", id: "3.3.1", title: "Create and retain audit logs", section: "integrity",
      enforced: "an append-only, hash-chained decision log with signed checkpoints",
      evidence: `${e.records.decision + e.records.outcome + e.records.session + e.records.policy} records in the period` },
    { framework: "NIST SP 800-171", id: "3.3.2", title: "Ensure actions can be traced to individual users", section: "subjects",
      enforced: "every decision names its subject (sub, issuer, roles, session and token id) and client address",
      evidence: `${e.bySubject.size} distinct subjects` },
    { framework: "NIST SP 800-171", id: "3.3.4", title: "Alert in the event of an audit logging process failure", section: "decisions",
      enforced: "audit-unavailable denials, /readyz failing, a log write failure metric",
      evidence: `${auditUnavailable} audit-unavailable decisions` },
    { framework: "NIST SP 800-171", id: "3.3.5", title: "Correlate audit record review, analysis and reporting", section: "decisions",
      enforced: "one log for every protocol; query by asset, subject, rule, reason; review page; SIEM export",
      evidence: `${e.byAsset.size} assets, ${e.bySubject.size} subjects, ${e.byReason.size} reasons in one log` },
    { framework: "NIST SP 800-171", id: "3.3.8", title: "Protect audit information from unauthorized access, modification and deletion", section: "integrity",
      enforced: "hash chain (RFC 8785 canonical JSON), signed checkpoints and head; ztgate log verify names the first altered record",
      evidence: integrityText(integrity) },
    { framework: "NIST SP 800-171", id: "3.3.9", title: "Limit management of audit logging functionality to a subset of privileged users", section: "gateway",
      enforced: "the log API and review page need the auditor role; the signing key is 0600 on the gateway host",
      evidence: `${[...e.gateway.entries()].filter(([k]) => k === "decisions").reduce((a, [, r]) => a + r.allow + r.deny, 0)} decisions on the log endpoints` },
  ];
}
