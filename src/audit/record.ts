// The decision log's record format, version 1 (SPEC §6). Plain data, one JSON object per line.
// Every record carries an envelope (v, seq, id, time, type, prev, hash) and the fields of its
// type. The chain: hash = sha256hex(prev + JCS(record without hash)), JCS per RFC 8785, so any
// tool can recompute it; the first record of a log has prev = 64 zeros.
//
// What is never in a record: a token, a password, a key. The subject is named by its claims
// (sub, iss, roles) and the ids of its session and token, nothing a client could replay.
import { hash as oneShotHash } from "node:crypto";
import canonicalizeUntyped from "canonicalize";
import type { Decision, WrittenValue } from "../pdp/evaluate.js";
import type { Action, Operation, Table } from "../pdp/operation.js";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";

export const LOG_FORMAT_VERSION = 1;
export const GENESIS_PREV = "0".repeat(64);
export const RECORD_TYPES = ["decision", "outcome", "session", "policy", "checkpoint"] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

/** Who asked: claims and ids only. `jti` is the token's id (Principal.tokenId). */
export interface SubjectRef {
  readonly sub: string;
  readonly iss: string;
  readonly roles: readonly string[];
  readonly sessionId?: string;
  readonly jti?: string;
}

/** Where the request came from. transport: e.g. "tcp", "tls", "https", "opcua-sign-encrypt". */
export interface ClientRef {
  readonly address?: string;
  readonly port?: number;
  readonly protocol: "modbus" | "opcua" | "http";
  readonly transport: string;
}

/** What the request touched: a named point and/or the raw range or node it maps to. */
export interface TargetRef {
  readonly point?: string;
  readonly table?: Table;
  readonly address?: number;
  readonly count?: number;
  readonly node?: string;
}

export interface DecisionBody {
  readonly type: "decision";
  readonly decision: "allow" | "deny";
  readonly reason: Reason;
  readonly rule: string | null;
  readonly policyRevision: string;
  readonly mode: "enforce" | "monitor";
  /** null when the connection has no session (reason no-session, token-invalid, …). */
  readonly subject: SubjectRef | null;
  readonly client: ClientRef;
  readonly asset: string | null;
  readonly zone: string | null;
  readonly action: Action;
  readonly target: TargetRef;
  /** Written values, decoded and raw (writes only). */
  readonly values?: readonly WrittenValue[];
}

export const OUTCOME_STATUSES = ["ok", "device-exception", "timeout", "unavailable"] as const;
export type OutcomeStatus = (typeof OUTCOME_STATUSES)[number];

export interface OutcomeBody {
  readonly type: "outcome";
  /** The `id` of the decision record this is the outcome of. */
  readonly ref: string;
  readonly status: OutcomeStatus;
  /** The device's answer when status is device-exception: a Modbus exception code or an OPC UA status name. */
  readonly exception?: number | string;
  /** Time spent at the device, milliseconds. */
  readonly latencyMs: number;
}

export interface SessionBody {
  readonly type: "session";
  readonly event: "opened" | "renewed" | "replaced" | "revoked" | "expired" | "closed";
  readonly session: string;
  readonly subject: SubjectRef;
  readonly client?: ClientRef;
  readonly detail?: string;
}

export interface PolicyBody {
  readonly type: "policy";
  readonly event: "loaded" | "rejected";
  readonly revision: string;
  readonly files?: number;
  readonly errors?: readonly string[];
}

/** A signed statement that the record `head.seq` has hash `head.hash`; see writer.ts. */
export interface CheckpointBody {
  readonly type: "checkpoint";
  readonly head: { readonly seq: number; readonly hash: string };
  /** Compact JWS (EdDSA) whose payload is JSON {seq, hash} of `head`; null if signing failed. */
  readonly jws: string | null;
  /** RFC 7638 thumbprint of the signing key. */
  readonly kid: string;
}

/** What a caller hands to the log; the log adds the envelope. */
export type RecordBody = DecisionBody | OutcomeBody | SessionBody | PolicyBody;
export type AnyBody = RecordBody | CheckpointBody;

export interface Envelope {
  readonly v: typeof LOG_FORMAT_VERSION;
  readonly seq: number;
  readonly id: string;
  /** ISO 8601 UTC with microseconds: 2026-03-04T10:00:00.123456Z. */
  readonly time: string;
  readonly prev: string;
  readonly hash: string;
}

export type LogRecord = Envelope & AnyBody;
export type DecisionRecord = Envelope & DecisionBody;

const canonicalize = canonicalizeUntyped as unknown as (value: unknown) => string | undefined;

/** RFC 8785 canonical JSON of `value` (throws on NaN/Infinity, which JSON cannot carry). */
export function jcs(value: unknown): string {
  const s = canonicalize(value);
  if (s === undefined) throw new TypeError("not JSON-serializable");
  return s;
}

/** sha256hex(prev + canonical): the chain step. */
export function chainHash(prev: string, canonical: string): string {
  return oneShotHash("sha256", prev + canonical, "hex");
}

/** The hash a parsed record should carry: recomputed from its own fields, `hash` left out. */
export function recomputeHash(record: Readonly<Record<string, unknown>>): string {
  const { hash: _hash, ...rest } = record;
  return chainHash(typeof rest["prev"] === "string" ? rest["prev"] : "", jcs(rest));
}

let cachedMs = NaN;
let cachedPrefix = "";
/** Epoch milliseconds (fractional part = sub-millisecond) → `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function isoMicros(ms: number): string {
  const whole = Math.floor(ms);
  if (whole !== cachedMs) {
    cachedMs = whole;
    cachedPrefix = new Date(whole).toISOString().slice(0, 23);
  }
  const us = Math.min(999, Math.floor((ms - whole) * 1000));
  return cachedPrefix + (us < 10 ? "00" : us < 100 ? "0" : "") + us + "Z";
}

/** The subject of a principal as the log names it: never the token or its other claims. */
export function subjectOf(p: Principal): SubjectRef {
  return {
    iss: p.iss,
    ...(p.tokenId !== undefined && { jti: p.tokenId }),
    roles: [...p.roles],
    ...(p.sessionId !== undefined && { sessionId: p.sessionId }),
    sub: p.sub,
  };
}

/** The operation's target as recorded: the point name, or the raw range, or the node. */
export function targetOf(op: Operation): TargetRef {
  const t = op.target;
  if (t.kind === "point") return { point: t.point };
  if (t.kind === "node") return { node: t.node };
  return { address: t.address, count: t.count, table: t.table };
}

// A float32 write can decode to NaN or ±Infinity; JSON has no such numbers, so the log
// keeps them as the strings "NaN", "Infinity", "-Infinity" rather than refusing the record.
function jsonSafe(values: readonly WrittenValue[]): readonly WrittenValue[] {
  if (values.every((v) => typeof v.value !== "number" || Number.isFinite(v.value))) return values;
  return values.map((v) => (typeof v.value === "number" && !Number.isFinite(v.value) ? { ...v, value: String(v.value) } : v));
}

/** The decision record body for one decided operation: what pep/enforce hands to the log. */
export function decisionBody(d: Decision, op: Operation, principal: Principal | null, client: ClientRef, target: TargetRef = targetOf(op)): DecisionBody {
  // Keys in code-point order, nested objects too: the writer's canonicalJson() can then use
  // JSON.stringify as is (see there).
  const body: Omit<DecisionBody, "zone" | "values"> & { values?: readonly WrittenValue[]; zone?: string | null } = {
    action: op.action,
    asset: op.asset,
    client: sortedClient(client),
    decision: d.effect,
    mode: d.mode,
    policyRevision: d.policyRevision,
    reason: d.reason,
    rule: d.rule,
    subject: principal ? subjectOf(principal) : null,
    target,
    type: "decision",
  };
  if (d.values !== undefined && d.values.length > 0) body.values = jsonSafe(d.values);
  body.zone = d.zone ?? null;
  return body as DecisionBody;
}

function sortedClient(c: ClientRef): ClientRef {
  return {
    ...(c.address !== undefined && { address: c.address }),
    ...(c.port !== undefined && { port: c.port }),
    protocol: c.protocol,
    transport: c.transport,
  };
}

/** Whether every object in `v` already has its keys in code-point order and nothing JSON would drop or JCS would refuse. */
function canonicallyOrdered(v: unknown): boolean {
  if (v === null || typeof v !== "object") return typeof v !== "number" || Number.isFinite(v);
  if (Array.isArray(v)) {
    for (const x of v) if (x === undefined || !canonicallyOrdered(x)) return false;
    return true;
  }
  let prev: string | undefined;
  for (const k in v) {
    if (prev !== undefined && !(prev < k)) return false;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || typeof x === "function" || !canonicallyOrdered(x)) return false;
    prev = k;
  }
  return true;
}

/**
 * RFC 8785 canonical JSON, fast: JCS serializes strings and numbers exactly as ECMAScript's
 * JSON.stringify does and orders object keys by code point, so for a value whose objects are
 * already in that order JSON.stringify's output *is* the JCS text. Anything else goes through
 * the canonicalize library (jcs). test/audit/record.test.ts checks the two agree; verify
 * always recomputes with the library.
 */
export function canonicalJson(v: unknown): string {
  return canonicallyOrdered(v) ? JSON.stringify(v) : jcs(v);
}
