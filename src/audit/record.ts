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
  /** Answered from the gateway's subscription to the device (an OPC UA read within the client's maxAge): the value's age bound, ms. */
  readonly cacheAgeMs?: number;
  readonly status: OutcomeStatus;
  /** The device's answer when status is device-exception: a Modbus exception code or an OPC UA status name. */
  readonly exception?: number | string;
  /** Time spent at the device, milliseconds. */
  readonly latencyMs: number;
}

/**
 * An outcome record's body as pep/enforce makes it: the writer knows this shape and writes its
 * canonical text field by field (no walk over the object). Keys are set in code-point order.
 */
export class Outcome implements OutcomeBody {
  // Declared, not defined: own properties only as the constructor sets them, in this order.
  declare readonly cacheAgeMs?: number;
  declare readonly exception?: number | string;
  declare readonly latencyMs: number;
  declare readonly ref: string;
  declare readonly status: OutcomeStatus;
  declare readonly type: "outcome";

  constructor(ref: string, status: OutcomeStatus, latencyMs: number, exception?: number | string, cacheAgeMs?: number) {
    if (cacheAgeMs !== undefined) this.cacheAgeMs = cacheAgeMs;
    if (exception !== undefined) this.exception = exception;
    this.latencyMs = latencyMs;
    this.ref = ref;
    this.status = status;
    this.type = "outcome";
  }
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
    // (toISOString throws past a Date's range: nothing is cached then.)
    cachedPrefix = new Date(whole).toISOString().slice(0, 23);
    cachedMs = whole;
  }
  const us = Math.min(999, Math.floor((ms - whole) * 1000));
  return cachedPrefix + (us < 10 ? "00" : us < 100 ? "0" : "") + us + "Z";
}

// The log names the same subject (one per session principal) and the same client (one per
// connection) in record after record: each is built once, frozen, and its canonical text
// remembered, so that canonicalJson() of a record holding it copies the text instead of
// walking the object again. Keyed by identity: a renewed session gets a new principal object.
const knownText = new WeakMap<object, string>();
const subjects = new WeakMap<Principal, SubjectRef>();
const clients = new WeakMap<ClientRef, ClientRef>();

/** `v` (already frozen, nested values too) with its canonical text remembered. */
function remembered<T extends object>(v: T): T {
  knownText.set(v, canonicalJson(v));
  return v;
}

/** The subject of a principal as the log names it: never the token or its other claims. Frozen. */
export function subjectOf(p: Principal): SubjectRef {
  let s = subjects.get(p);
  if (s === undefined) {
    const roles = Object.freeze([...p.roles]);
    s = remembered(ordered<SubjectRef>({ sub: p.sub, iss: p.iss, roles, ...(p.sessionId !== undefined && { sessionId: p.sessionId }), ...(p.tokenId !== undefined && { jti: p.tokenId }) }));
    subjects.set(p, s);
  }
  return s;
}

/** The client as recorded: frozen, one object per ClientRef. */
export function clientOf(c: ClientRef): ClientRef {
  let r = clients.get(c);
  if (r === undefined) {
    r = remembered(ordered<ClientRef>({ protocol: c.protocol, transport: c.transport, ...(c.address !== undefined && { address: c.address }), ...(c.port !== undefined && { port: c.port }) }));
    clients.set(c, r);
  }
  return r;
}

/** `o` frozen, with its keys in code-point order (canonicalJson's fast path). */
function ordered<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = (o as Record<string, unknown>)[k];
  return Object.freeze(out) as T;
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
export function decisionBody(d: Decision, op: Operation, principal: Principal | null, client: ClientRef, target?: TargetRef): DecisionBody {
  // A client that asks the same thing again (a polling historian) is decided the same way, and
  // its records differ only in the envelope (id, seq, time, prev): the body is then the same
  // frozen object as last time, and the log writes it from the text it kept for it.
  const plain = target === undefined && (d.values === undefined || d.values.length === 0);
  if (plain) {
    const hit = repeatedBody(d, op, principal, client);
    if (hit !== undefined) return hit;
  }
  // Keys in code-point order, nested objects too: the writer then writes its canonical text
  // in one pass (orderedJson), with the subject's and the client's texts remembered.
  const body: Omit<DecisionBody, "zone" | "values"> & { values?: readonly WrittenValue[]; zone?: string | null } = {
    action: op.action,
    asset: op.asset,
    client: clientOf(client),
    decision: d.effect,
    mode: d.mode,
    policyRevision: d.policyRevision,
    reason: d.reason,
    rule: d.rule,
    subject: principal ? subjectOf(principal) : null,
    target: target ?? targetOf(op),
    type: "decision",
  };
  if (d.values !== undefined && d.values.length > 0) body.values = jsonSafe(d.values);
  body.zone = d.zone ?? null;
  if (plain) rememberBody(body as DecisionBody, principal, client);
  return body as DecisionBody;
}

/** Bodies remembered per client (per connection: the front's ClientRef), the last few distinct ones. */
const REPEATS_PER_CLIENT = 4;
interface Repeat {
  readonly body: DecisionBody;
  readonly principal: Principal | null;
}
const repeats = new WeakMap<ClientRef, Repeat[]>();

function repeatedBody(d: Decision, op: Operation, principal: Principal | null, client: ClientRef): DecisionBody | undefined {
  const list = repeats.get(client);
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as Repeat;
    const b = r.body;
    if (
      r.principal === principal &&
      b.decision === d.effect &&
      b.rule === d.rule &&
      b.reason === d.reason &&
      b.policyRevision === d.policyRevision &&
      b.mode === d.mode &&
      b.zone === (d.zone ?? null) &&
      b.asset === op.asset &&
      b.action === op.action &&
      sameTarget(b.target, op.target)
    )
      return b;
  }
  return undefined;
}

function sameTarget(r: TargetRef, t: Operation["target"]): boolean {
  if (t.kind === "point") return r.point === t.point && r.node === undefined && r.table === undefined;
  if (t.kind === "node") return r.node === t.node && r.point === undefined;
  return r.address === t.address && r.count === t.count && r.table === t.table && r.point === undefined;
}

function rememberBody(body: DecisionBody, principal: Principal | null, client: ClientRef): void {
  Object.freeze(Object.freeze(body).target);
  let list = repeats.get(client);
  if (list === undefined) repeats.set(client, (list = []));
  if (list.length >= REPEATS_PER_CLIENT) list.shift();
  list.push({ body, principal });
}

const keyText = new Map<string, string>();

/**
 * A string as JSON text, as JSON.stringify writes it: as it is between quotes when it holds
 * nothing to escape (the usual case, checked here without leaving JavaScript), else
 * JSON.stringify's own text.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return '"' + s + '"';
}

/** An object key as JSON text (remembered: records use a few dozen names). */
export function jsonKey(k: string): string {
  let q = keyText.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (keyText.size < 4096) keyText.set(k, q);
  }
  return q;
}

/**
 * The RFC 8785 text of `v` when it can be written as it is, else undefined. JCS serializes
 * strings and numbers exactly as ECMAScript's JSON.stringify does and orders object keys by
 * code point, so a value whose objects already have their keys in that order is written in one
 * pass, keys as they come; a subject or client from subjectOf()/clientOf() is copied as the
 * text remembered for it. Undefined (the caller falls back to the canonicalize library, which
 * sorts) for keys out of order, integer-like keys (which objects list first), a toJSON, a
 * function, a symbol, an undefined array element, or a number JSON cannot carry.
 */
export function orderedJson(v: unknown): string | undefined {
  switch (typeof v) {
    case "string":
      return jsonString(v);
    case "number":
      // Number-to-string is JSON's (and JCS's) text for every finite number.
      return Number.isFinite(v) ? "" + v : undefined;
    case "boolean":
      return v ? "true" : "false";
    case "object": {
      if (v === null) return "null";
      const known = knownText.get(v);
      if (known !== undefined) return known;
      if (Array.isArray(v)) {
        let s = "[";
        for (let i = 0; i < v.length; i++) {
          const x: unknown = v[i];
          if (x === undefined) return undefined;
          const j = orderedJson(x);
          if (j === undefined) return undefined;
          s += i === 0 ? j : "," + j;
        }
        return s + "]";
      }
      if (typeof (v as { toJSON?: unknown }).toJSON === "function") return undefined;
      let s = "{";
      let prev: string | undefined;
      for (const k in v) {
        if (prev !== undefined && !(prev < k)) return undefined;
        prev = k;
        const x = (v as Record<string, unknown>)[k];
        if (x === undefined) continue; // left out, as JSON.stringify and JCS leave it out
        const j = orderedJson(x);
        if (j === undefined) return undefined;
        s += (s.length === 1 ? "" : ",") + jsonKey(k) + ":" + j;
      }
      return s + "}";
    }
    default:
      return undefined;
  }
}

/**
 * RFC 8785 canonical JSON, fast: orderedJson() when the value is already in canonical key
 * order (records built by decisionBody are), else the canonicalize library (jcs).
 * test/audit/record.test.ts checks the two agree; verify always recomputes with the library.
 */
export function canonicalJson(v: unknown): string {
  return orderedJson(v) ?? jcs(v);
}
