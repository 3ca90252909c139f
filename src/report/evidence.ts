// What an evidence report says about a period of the decision log: counted from the records
// alone, in one pass (add() each record in log order), so a long log never has to fit in memory.
// Lists (denied writes, sessions, policy events) are capped; their totals are always exact.
import type { DecisionRecord, LogRecord, PolicyBody, SessionBody, Envelope, OutcomeBody } from "../audit/record.js";
import { RECORD_TYPES } from "../audit/record.js";
import type { RecordType } from "../audit/record.js";
import { describeTarget, describeValues, outcomeOf } from "../policy/replay.js";

/** allow / deny / would-deny (monitor mode) counts under one key. */
export interface Row {
  readonly key: string;
  allow: number;
  deny: number;
  wouldDeny: number;
}

export function rowTotal(r: Row): number {
  return r.allow + r.deny + r.wouldDeny;
}

export interface DeniedWrite {
  readonly seq: number;
  readonly id: string;
  readonly time: string;
  readonly subject: string;
  readonly asset: string;
  readonly target: string;
  readonly values: string;
  readonly reason: string;
  readonly rule: string | null;
  readonly client: string;
}

export interface PolicyEvent {
  readonly seq: number;
  readonly time: string;
  readonly event: "loaded" | "rejected";
  readonly revision: string;
  readonly files?: number;
  readonly errors: readonly string[];
  /** The last allowed request on the gateway's `policy` endpoint before it (a reload through the API), if any within a minute. */
  readonly requestedBy?: { readonly sub: string; readonly time: string; readonly seq: number };
}

export interface SessionSummary {
  readonly session: string;
  readonly sub: string;
  readonly roles: readonly string[];
  readonly client: string;
  readonly opened?: string;
  renewals: number;
  ended?: { event: string; time: string; detail?: string };
}

export interface Evidence {
  readonly since?: string;
  readonly until?: string;
  first?: string;
  last?: string;
  readonly records: Record<RecordType, number>;
  readonly decisions: Row;
  readonly byAsset: Map<string, Row>;
  readonly bySubject: Map<string, Row>;
  readonly byAction: Map<string, Row>;
  readonly byDay: Map<string, Row>;
  readonly byReason: Map<string, number>;
  /** Refusals before the policy: no session, refused tokens, a log that could not be written. */
  readonly preAuth: Map<string, number>;
  readonly deniedWrites: { total: number; readonly list: DeniedWrite[] };
  readonly outcomes: Map<string, number>;
  readonly policy: { readonly events: PolicyEvent[]; readonly revisions: Map<string, { first: string; last: string; decisions: number }> };
  readonly sessions: { readonly byEvent: Map<string, number>; readonly list: Map<string, SessionSummary>; total: number };
  /** Decisions about the gateway's own endpoints (asset null), by resource. */
  readonly gateway: Map<string, Row>;
  /** Zones seen on decisions. */
  readonly zones: Map<string, Row>;
}

const PRE_AUTH = new Set(["no-session", "token-invalid", "token-expired", "token-revoked", "audit-unavailable"]);
const LIST_CAP = 500;

function bump(m: Map<string, Row>, key: string, o: "allow" | "deny" | "would-deny"): void {
  let r = m.get(key);
  if (!r) m.set(key, (r = { key, allow: 0, deny: 0, wouldDeny: 0 }));
  if (o === "allow") r.allow++;
  else if (o === "deny") r.deny++;
  else r.wouldDeny++;
}

function count(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

function clientText(c: DecisionRecord["client"] | undefined): string {
  if (!c) return "";
  return `${c.protocol}/${c.transport}${c.address !== undefined ? ` ${c.address}` : ""}`;
}

export class EvidenceCollector {
  readonly evidence: Evidence;
  /** The last allowed request on the `policy` endpoint, to name who asked for a reload. */
  private policyRequest: { sub: string; time: string; seq: number; at: number } | null = null;

  constructor(options: { since?: string; until?: string } = {}) {
    this.evidence = {
      ...(options.since !== undefined && { since: options.since }),
      ...(options.until !== undefined && { until: options.until }),
      records: Object.fromEntries(RECORD_TYPES.map((t) => [t, 0])) as Record<RecordType, number>,
      decisions: { key: "all", allow: 0, deny: 0, wouldDeny: 0 },
      byAsset: new Map(), bySubject: new Map(), byAction: new Map(), byDay: new Map(), byReason: new Map(), preAuth: new Map(),
      deniedWrites: { total: 0, list: [] },
      outcomes: new Map(),
      policy: { events: [], revisions: new Map() },
      sessions: { byEvent: new Map(), list: new Map(), total: 0 },
      gateway: new Map(),
      zones: new Map(),
    };
  }

  add(r: LogRecord): void {
    const e = this.evidence;
    if (typeof r.time !== "string" || (e.since !== undefined && r.time < e.since) || (e.until !== undefined && r.time >= e.until)) return;
    if (!(RECORD_TYPES as readonly string[]).includes(r.type)) return;
    e.first ??= r.time;
    e.last = r.time;
    e.records[r.type]++;
    switch (r.type) {
      case "decision": return this.decision(r as DecisionRecord);
      case "outcome": return count(e.outcomes, (r as Envelope & OutcomeBody).status);
      case "session": return this.session(r as Envelope & SessionBody);
      case "policy": return this.policy(r as Envelope & PolicyBody);
      default: return;
    }
  }

  private decision(r: DecisionRecord): void {
    const e = this.evidence;
    const o = outcomeOf(r);
    bump(new Map([["all", e.decisions]]), "all", o);
    count(e.byReason, r.reason);
    const sub = r.subject?.sub ?? "(no session)";
    if (r.policyRevision) {
      const rev = e.policy.revisions.get(r.policyRevision) ?? { first: r.time, last: r.time, decisions: 0 };
      rev.last = r.time;
      rev.decisions++;
      e.policy.revisions.set(r.policyRevision, rev);
    }
    if (r.asset === null) {
      const resource = r.target?.point ?? "(endpoint)";
      bump(e.gateway, resource, o);
      if (resource === "policy" && o === "allow" && r.action !== "read" && r.subject) this.policyRequest = { sub: r.subject.sub, time: r.time, seq: r.seq, at: Date.parse(r.time) };
    }
    if (PRE_AUTH.has(r.reason)) count(e.preAuth, r.reason);
    bump(e.byAsset, r.asset ?? "(gateway endpoints)", o);
    bump(e.bySubject, sub, o);
    bump(e.byAction, r.action, o);
    bump(e.byDay, r.time.slice(0, 10), o);
    if (r.zone) bump(e.zones, r.zone, o);
    if (r.action === "write" && o === "deny") {
      e.deniedWrites.total++;
      if (e.deniedWrites.list.length < LIST_CAP) {
        e.deniedWrites.list.push({
          seq: r.seq, id: r.id, time: r.time, subject: sub, asset: r.asset ?? "(gateway)", target: describeTarget(r.target),
          values: describeValues(r) ?? "", reason: r.reason, rule: r.rule, client: clientText(r.client),
        });
      }
    }
  }

  private session(r: Envelope & SessionBody): void {
    const s = this.evidence.sessions;
    count(s.byEvent, r.event);
    let x = s.list.get(r.session);
    if (!x) {
      s.total++;
      if (s.list.size >= LIST_CAP) return;
      x = { session: r.session, sub: r.subject?.sub ?? "?", roles: r.subject?.roles ?? [], client: r.client ? clientText(r.client) : "", renewals: 0 };
      s.list.set(r.session, x);
    }
    if (r.event === "opened") (x as { opened?: string }).opened = r.time;
    else if (r.event === "renewed") x.renewals++;
    else x.ended = { event: r.event, time: r.time, ...(r.detail !== undefined && { detail: r.detail }) };
  }

  private policy(r: Envelope & PolicyBody): void {
    const req = this.policyRequest;
    const recent = req && Date.parse(r.time) - req.at <= 60_000 ? req : null;
    this.evidence.policy.events.push({
      seq: r.seq, time: r.time, event: r.event, revision: r.revision, ...(r.files !== undefined && { files: r.files }), errors: r.errors ?? [],
      ...(recent && { requestedBy: { sub: recent.sub, time: recent.time, seq: recent.seq } }),
    });
    if (recent) this.policyRequest = null;
  }
}

/** Rows sorted by total, largest first (ties by key). */
export function sortedRows(m: Map<string, Row>, limit = Infinity): Row[] {
  return [...m.values()].sort((a, b) => rowTotal(b) - rowTotal(a) || (a.key < b.key ? -1 : 1)).slice(0, limit);
}
