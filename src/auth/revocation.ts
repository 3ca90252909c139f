// What has been revoked, shared by the token verifier (which refuses revoked tokens, cached or
// not) and the session registry (which ends the sessions resting on them). In memory: a
// restart forgets revocations, so revoked tokens must also be short-lived.
import { EventEmitter } from "node:events";

export interface Revoked {
  readonly jti?: string;
  readonly sub?: string;
  readonly at: number;
}

/** Longer than any accepted clockTolerance (the schema caps it at 300 s). */
const GRACE_MS = 300_000;

export class RevocationList extends EventEmitter<{ revoked: [Revoked] }> {
  /** jti → when the entry may be forgotten (the token's exp plus the grace). */
  private readonly jtis = new Map<string, number>();
  /** sub → time of revocation: tokens of that sub issued up to then are revoked. */
  private readonly subs = new Map<string, number>();
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    super();
    this.now = opts.now ?? Date.now;
  }

  /**
   * Revokes one token. `expiresAt` (epoch ms) bounds how long the entry is kept; unknown,
   * it is kept for a day.
   */
  revokeJti(jti: string, expiresAt?: number): void {
    const at = this.now();
    this.purge(at);
    const until = (expiresAt ?? at + 86_400_000) + GRACE_MS;
    this.jtis.set(jti, Math.max(until, this.jtis.get(jti) ?? 0));
    this.emit("revoked", { jti, at });
  }

  /**
   * Revokes every token of `sub` issued so far (its `iat` at or before now, or no `iat`);
   * tokens issued later are accepted, so the subject can be let back in with a new token.
   * Kept until restart: these are rare admin actions.
   */
  revokeSub(sub: string): void {
    const at = this.now();
    this.subs.set(sub, at);
    this.emit("revoked", { sub, at });
  }

  /** Why a token with these claims is revoked, or undefined. `iat` is in seconds, as in a JWT. */
  check(t: { jti?: string | undefined; sub: string; iat?: number | undefined }): string | undefined {
    if (t.jti !== undefined) {
      const until = this.jtis.get(t.jti);
      if (until !== undefined) {
        if (until > this.now()) return `token ${t.jti} was revoked`;
        this.jtis.delete(t.jti);
      }
    }
    const subAt = this.subs.get(t.sub);
    if (subAt !== undefined && (t.iat === undefined || t.iat * 1000 <= subAt)) {
      return `tokens of ${t.sub} issued before ${new Date(subAt).toISOString()} were revoked`;
    }
    return undefined;
  }

  private purge(now: number): void {
    for (const [jti, until] of this.jtis) if (until <= now) this.jtis.delete(jti);
  }
}
