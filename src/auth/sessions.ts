// Sessions and leases (SPEC §3): who is connected on which token, until when. A session ends
// when its token expires or is revoked; whoever rests on it (a Modbus connection, an OPC UA
// session, a lease's connections) learns it from the session's end callback, without polling.
// Expiry uses one timer, armed for the next session to expire and re-armed on every change.
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import ipaddr from "ipaddr.js";
import { ZtError } from "../errors.js";
import type { Principal } from "../pdp/principal.js";
import type { StoredLease } from "./lease-store.js";
import type { RevocationList } from "./revocation.js";

/** Where the registry keeps its leases (LeaseStore). */
export interface LeaseKeeper {
  save(current: () => readonly StoredLease[]): void;
  saved(): Promise<void>;
}

/** `lease`: plain Modbus connections from one source address; `session`: one authenticated connection or OPC UA session. */
export type SessionKind = "session" | "lease";

/** Why a session ended; the decision log records it. */
export type EndWhy = "expired" | "revoked-id" | "revoked-sub" | "revoked-jti" | "replaced" | "closed";

/** What the decision log needs of a session, as plain data. */
export interface SessionInfo {
  readonly id: string;
  readonly kind: SessionKind;
  readonly protocol: string;
  readonly source?: string;
  readonly sub: string;
  readonly iss: string;
  readonly roles: readonly string[];
  readonly jti?: string;
  readonly via: Principal["via"];
  readonly openedAt: number;
  readonly expiresAt?: number;
}

export interface SessionOpened {
  readonly type: "opened";
  readonly session: SessionInfo;
  readonly at: number;
  /** The lease this one replaced (same source). */
  readonly replaces?: string;
  /** A lease kept across a restart (LeaseStore), opened again at start. */
  readonly restored?: true;
}

export interface SessionRenewed {
  readonly type: "renewed";
  readonly session: SessionInfo;
  readonly at: number;
  readonly previousJti?: string;
}

export interface SessionEnded {
  readonly type: "ended";
  readonly session: SessionInfo;
  readonly at: number;
  readonly why: EndWhy;
  /** The decision reason for operations still arriving on it. */
  readonly reason: "token-expired" | "token-revoked";
  readonly detail: string;
  /** Who revoked or closed it (the admin's or owner's sub), when known. */
  readonly by?: string;
  readonly replacedBy?: string;
}

export type SessionEvent = SessionOpened | SessionRenewed | SessionEnded;

export interface Session {
  readonly id: string;
  readonly kind: SessionKind;
  readonly protocol: string;
  /** Normalized client address (leases: the source they serve). */
  readonly source?: string;
  readonly openedAt: number;
  /** The current principal (`sessionId` set); replaced by renew, so read it per operation. */
  readonly principal: Principal;
  readonly expiresAt?: number;
  /** Set once the session has ended. */
  readonly ended?: SessionEnded;
  /** Calls `listener` once when the session ends (at once if it already has); returns an unsubscribe. */
  onEnd(listener: (e: SessionEnded) => void): () => void;
  info(): SessionInfo;
}

export type RenewResult = { ok: true; session: Session } | { ok: false; error: "unknown-session" | "sub-mismatch"; detail: string };

export interface SessionRegistryOptions {
  revocations?: RevocationList;
  now?: () => number;
  newId?: () => string;
  /** Where an exception thrown by a listener goes (it never stops other sessions from ending). */
  onListenerError?: (err: unknown) => void;
}

/** A client address as the registry keys it: IPv4-mapped IPv6 as IPv4, IPv6 compressed; undefined if not an address. */
export function normalizeAddress(text: string): string | undefined {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text) && !(text.includes(":") && ipaddr.IPv6.isValid(text))) return undefined;
  return ipaddr.process(text).toString();
}

/** setTimeout's longest delay; a later expiry re-arms when this fires. */
const MAX_DELAY = 2 ** 31 - 1;

class SessionImpl implements Session {
  ended?: SessionEnded;
  private listeners = new Set<(e: SessionEnded) => void>();

  constructor(
    readonly id: string,
    readonly kind: SessionKind,
    readonly protocol: string,
    readonly source: string | undefined,
    readonly openedAt: number,
    public principal: Principal,
    private readonly report: (err: unknown) => void,
  ) {}

  get expiresAt(): number | undefined {
    return this.principal.expiresAt;
  }

  onEnd(listener: (e: SessionEnded) => void): () => void {
    if (this.ended) {
      this.call(listener, this.ended);
      return () => undefined;
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  info(): SessionInfo {
    const p = this.principal;
    return {
      id: this.id,
      kind: this.kind,
      protocol: this.protocol,
      ...(this.source !== undefined ? { source: this.source } : {}),
      sub: p.sub,
      iss: p.iss,
      roles: p.roles,
      ...(p.tokenId !== undefined ? { jti: p.tokenId } : {}),
      via: p.via,
      openedAt: this.openedAt,
      ...(p.expiresAt !== undefined ? { expiresAt: p.expiresAt } : {}),
    };
  }

  end(e: SessionEnded): void {
    this.ended = e;
    const listeners = [...this.listeners];
    this.listeners.clear();
    for (const l of listeners) this.call(l, e);
  }

  private call(l: (e: SessionEnded) => void, e: SessionEnded): void {
    try {
      l(e);
    } catch (err) {
      this.report(err);
    }
  }
}

const DETAIL: Record<EndWhy, string> = {
  expired: "the token expired",
  "revoked-id": "the session was revoked",
  "revoked-sub": "every session of the subject was revoked",
  "revoked-jti": "the token was revoked",
  replaced: "a new lease for the same source replaced it",
  closed: "the session was closed",
};

export class SessionRegistry extends EventEmitter<{ opened: [SessionOpened]; renewed: [SessionRenewed]; ended: [SessionEnded] }> {
  private readonly sessions = new Map<string, SessionImpl>();
  private readonly leases = new Map<string, SessionImpl>();
  /** Lease id → the bearer token it rests on (kept only for the lease file; never shown). */
  private readonly tokens = new Map<string, string>();
  /** Leases an admin opened for another address than the caller's (kept with that mark). */
  private readonly forOther = new Set<string>();
  private store?: LeaseKeeper;
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly revocations?: RevocationList;
  private readonly revocationWatchers = new Set<() => void>();
  private readonly report: (err: unknown) => void;
  private timer?: NodeJS.Timeout;
  private timerDue = Infinity;

  constructor(opts: SessionRegistryOptions = {}) {
    super();
    this.now = opts.now ?? Date.now;
    this.newId = opts.newId ?? randomUUID;
    if (opts.revocations) {
      this.revocations = opts.revocations;
      // One listener on the list, however many watchers (no MaxListeners warning at 11 streams).
      opts.revocations.on("revoked", () => {
        for (const l of [...this.revocationWatchers]) l();
      });
    }
    this.report = opts.onListenerError ?? ((err) => process.emitWarning(`session listener threw: ${(err as Error)?.stack ?? String(err)}`));
  }

  /**
   * Opens a session on a verified principal. A lease needs `source`, and replaces the lease
   * that source had (both events are emitted: the old one's end, then this one's opening).
   */
  open(principal: Principal, opts: { kind: SessionKind; protocol: string; source?: string; token?: string; forOther?: boolean }): Session {
    let source: string | undefined;
    if (opts.source !== undefined) {
      source = normalizeAddress(opts.source);
      if (source === undefined) throw new ZtError("ZT_SESSION_INVALID", `source "${opts.source}": not an IP address`);
    }
    if (opts.kind === "lease" && source === undefined) throw new ZtError("ZT_SESSION_INVALID", "a lease needs a source address");
    const id = this.newId();
    const at = this.now();
    const p: Principal = { ...principal, sessionId: id, via: opts.kind === "lease" ? "lease" : principal.via };
    const s = new SessionImpl(id, opts.kind, opts.protocol, source, at, p, this.report);

    const old = opts.kind === "lease" ? this.leases.get(source as string) : undefined;
    if (old) this.endOne(old, "replaced", {}, id);
    this.sessions.set(id, s);
    if (opts.kind === "lease") {
      this.leases.set(source as string, s);
      if (opts.token !== undefined) this.tokens.set(id, opts.token);
      if (opts.forOther === true) this.forOther.add(id);
    }
    this.notify({ type: "opened", session: s.info(), at, ...(old ? { replaces: old.id } : {}) });
    this.arm();
    this.keep(s);
    return s;
  }

  /**
   * Opens again a lease kept across a restart, with its id, source and principal as they were
   * (the caller has checked that its token is still good). Undefined, nothing opened, when its
   * source or id is taken or it has expired.
   */
  restore(lease: StoredLease, principal: Principal): Session | undefined {
    const source = normalizeAddress(lease.source);
    if (source === undefined || this.leases.has(source) || this.sessions.has(lease.id)) return undefined;
    const at = this.now();
    if (principal.expiresAt !== undefined && principal.expiresAt <= at) return undefined;
    const p: Principal = { ...principal, sessionId: lease.id, via: "lease" };
    const s = new SessionImpl(lease.id, "lease", lease.protocol, source, lease.openedAt, p, this.report);
    this.sessions.set(s.id, s);
    this.leases.set(source, s);
    this.tokens.set(s.id, lease.token);
    if (lease.forOther === true) this.forOther.add(s.id);
    this.notify({ type: "opened", session: s.info(), at, restored: true });
    this.arm();
    return s;
  }

  /**
   * Keeps the leases in `store` from now on: written on every open, renewal and end of a lease
   * (a lease opened without its token is not kept: it could not be verified again).
   */
  persist(store: LeaseKeeper): void {
    this.store = store;
    store.save(() => this.kept());
  }

  /** Resolves once the lease changes made so far are on disk; rejects when that write failed. */
  leasesSaved(): Promise<void> {
    return this.store?.saved() ?? Promise.resolve();
  }

  private kept(): StoredLease[] {
    const out: StoredLease[] = [];
    for (const s of this.leases.values()) {
      const token = this.tokens.get(s.id);
      if (token !== undefined) out.push({ id: s.id, source: s.source as string, protocol: s.protocol, openedAt: s.openedAt, token, ...(this.forOther.has(s.id) && { forOther: true as const }) });
    }
    return out;
  }

  private keep(s: SessionImpl): void {
    if (s.kind === "lease") this.store?.save(() => this.kept());
  }

  /** Moves a session onto a fresh token of the same subject, keeping whatever rests on it. */
  renew(id: string, principal: Principal, token?: string): RenewResult {
    const s = this.sessions.get(id);
    if (!s) return { ok: false, error: "unknown-session", detail: `no open session ${id}` };
    if (principal.sub !== s.principal.sub || principal.iss !== s.principal.iss) {
      return { ok: false, error: "sub-mismatch", detail: `session ${id} belongs to ${s.principal.sub} (${s.principal.iss}), not ${principal.sub} (${principal.iss})` };
    }
    const previousJti = s.principal.tokenId;
    s.principal = { ...principal, sessionId: id, via: s.principal.via };
    if (token !== undefined) this.tokens.set(id, token);
    else this.tokens.delete(id); // the old token no longer speaks for it
    this.notify({ type: "renewed", session: s.info(), at: this.now(), ...(previousJti !== undefined ? { previousJti } : {}) });
    this.arm();
    this.keep(s);
    return { ok: true, session: s };
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /**
   * Why a credential that opens sessions without a token (a client or user certificate) is
   * revoked, or undefined: its id (`principal.tokenId`, the certificate's thumbprint) revoked,
   * or its subject revoked at or after `issuedAt` (epoch ms; the certificate's notBefore).
   * Tokens are checked by the verifier; certificates are checked here, at every connection.
   */
  revokedCredential(principal: Principal, issuedAt: number | undefined): string | undefined {
    return this.revocations?.check({ jti: principal.tokenId, sub: principal.sub, iat: issuedAt === undefined ? undefined : issuedAt / 1000 });
  }

  /**
   * Calls `listener` after every revocation by subject or token (not by session id); returns
   * the unsubscribe. For holders of a verified token that rest on no session (the live
   * decision stream), which then verify their token again.
   */
  onRevocation(listener: () => void): () => void {
    if (!this.revocations) return () => undefined;
    const watcher = () => listener(); // its own identity: the same listener may watch twice
    this.revocationWatchers.add(watcher);
    return () => this.revocationWatchers.delete(watcher);
  }

  /** Whether lease `id` was opened for another address than its opener's (renewing or restoring it needs an admin role). */
  openedForOther(id: string): boolean {
    return this.forOther.has(id);
  }

  /** The lease serving connections from `sourceAddress` (any textual form of the address). */
  lookupLease(sourceAddress: string): Session | undefined {
    const source = normalizeAddress(sourceAddress);
    return source === undefined ? undefined : this.leases.get(source);
  }

  /** Open sessions, oldest first. */
  list(filter: { sub?: string; kind?: SessionKind } = {}): Session[] {
    return [...this.sessions.values()].filter((s) => (filter.sub === undefined || s.principal.sub === filter.sub) && (filter.kind === undefined || s.kind === filter.kind));
  }

  /** A normal end (the client closed its OPC UA session, the owner deleted its lease). */
  close(id: string, by?: string): Session | undefined {
    const s = this.sessions.get(id);
    if (s) this.endOne(s, "closed", { by });
    this.arm();
    return s;
  }

  /** Ends one session; its token stays valid for other uses. */
  revokeById(id: string, by?: string): Session | undefined {
    const s = this.sessions.get(id);
    if (s) this.endOne(s, "revoked-id", { by });
    this.arm();
    return s;
  }

  /** Ends every session of `sub` and revokes every token of it issued so far. */
  revokeBySub(sub: string, by?: string): Session[] {
    this.revocations?.revokeSub(sub);
    return this.endAll((s) => s.principal.sub === sub, "revoked-sub", by);
  }

  /** Resolves once the revocations made so far are on disk (see RevocationList.saved). */
  revocationsSaved(): Promise<void> {
    return this.revocations?.saved() ?? Promise.resolve();
  }

  /** Revokes one token and ends every session resting on it. */
  revokeByJti(jti: string, by?: string): Session[] {
    const on = this.list().filter((s) => s.principal.tokenId === jti);
    this.revocations?.revokeJti(jti, on[0]?.expiresAt);
    return this.endAll((s) => s.principal.tokenId === jti, "revoked-jti", by);
  }

  /** Ends every session whose token has expired; the timer calls it, tests may too. */
  expireDue(): Session[] {
    const now = this.now();
    return this.endAll((s) => s.expiresAt !== undefined && s.expiresAt <= now, "expired");
  }

  /** Stops the expiry timer (sessions stay; nothing ends by time until the next change re-arms it). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
  }

  private endAll(match: (s: SessionImpl) => boolean, why: EndWhy, by?: string): Session[] {
    const ended = [...this.sessions.values()].filter(match);
    for (const s of ended) this.endOne(s, why, { by });
    this.arm();
    return ended;
  }

  private endOne(s: SessionImpl, why: EndWhy, o: { by?: string | undefined }, replacedBy?: string): void {
    this.sessions.delete(s.id);
    if (s.source !== undefined && this.leases.get(s.source) === s) this.leases.delete(s.source);
    this.tokens.delete(s.id);
    this.forOther.delete(s.id);
    const e: SessionEnded = {
      type: "ended",
      session: s.info(),
      at: this.now(),
      why,
      reason: why === "expired" ? "token-expired" : "token-revoked",
      detail: replacedBy !== undefined ? `${DETAIL[why]} (${replacedBy})` : DETAIL[why],
      ...(o.by !== undefined ? { by: o.by } : {}),
      ...(replacedBy !== undefined ? { replacedBy } : {}),
    };
    s.end(e);
    this.notify(e);
    this.keep(s);
  }

  /** Emits an event; a listener that throws is reported, never allowed to stop the caller. */
  private notify(e: SessionEvent): void {
    try {
      if (e.type === "opened") this.emit("opened", e);
      else if (e.type === "renewed") this.emit("renewed", e);
      else this.emit("ended", e);
    } catch (err) {
      this.report(err);
    }
  }

  /** One timer, for the next session to expire. */
  private arm(): void {
    let next = Infinity;
    for (const s of this.sessions.values()) if (s.expiresAt !== undefined && s.expiresAt < next) next = s.expiresAt;
    if (next === this.timerDue) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = next;
    if (next === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerDue = Infinity;
      this.expireDue(); // re-arms for the next one
    }, Math.min(Math.max(0, next - this.now()), MAX_DELAY));
    this.timer.unref();
  }
}
