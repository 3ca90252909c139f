// What has been revoked, shared by the token verifier (which refuses revoked tokens, cached or
// not) and the session registry (which ends the sessions resting on them).
//
// With a file (the gateway uses keys.dir/revocations.json) the list outlives a restart: every
// revocation rewrites it (a temporary file renamed over it, writes one after another), and
// `saved()` says when what was revoked so far is on disk. A file that exists but cannot be read
// or parsed stops the gateway's start (ZT_REVOCATIONS_INVALID): starting without it would
// accept revoked tokens again. Token revocations are dropped from it once their token has
// expired (plus the grace); a token revoked by id while no session rests on it (its expiry
// unknown) and subject revocations are kept for good.
//
//   { "v": 1, "jtis": { "<jti>": <keep until, epoch ms> }, "subs": { "<sub>": <revoked at, epoch ms> } }
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { replaceFileDurably } from "../util/durable-file.js";
import { ZtError } from "../errors.js";

export interface Revoked {
  readonly jti?: string;
  readonly sub?: string;
  readonly at: number;
}

/** Longer than any accepted clockTolerance (the schema caps it at 300 s). */
const GRACE_MS = 300_000;
/** "Keep until" of a token revocation whose token's expiry is not known: never forgotten. */
const FOREVER = Number.MAX_SAFE_INTEGER;

export class RevocationList extends EventEmitter<{ revoked: [Revoked] }> {
  /** jti → when the entry may be forgotten (the token's exp plus the grace). */
  private readonly jtis = new Map<string, number>();
  /** sub → time of revocation: tokens of that sub issued up to then are revoked. */
  private readonly subs = new Map<string, number>();
  private readonly now: () => number;
  private readonly file: string | undefined;
  /** The writes of the file, one after another; the last one's failure, if it failed. */
  private saving: Promise<void> = Promise.resolve();
  private saveError: Error | undefined;

  constructor(opts: { now?: () => number; file?: string } = {}) {
    super();
    this.now = opts.now ?? Date.now;
    this.file = opts.file;
  }

  /** A list kept in `file`: what it holds (none if it does not exist) is in force at once. */
  static async open(file: string, opts: { now?: () => number } = {}): Promise<RevocationList> {
    const list = new RevocationList({ ...opts, file });
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return list;
      throw new ZtError("ZT_REVOCATIONS_INVALID", `revocation list ${file} cannot be read: ${(e as Error).message}`);
    }
    const bad = (why: string) => new ZtError("ZT_REVOCATIONS_INVALID", `revocation list ${file} is not valid: ${why} (revoked tokens would be accepted again without it: repair or remove it on purpose)`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw bad((e as Error).message);
    }
    const d = data as { v?: unknown; jtis?: unknown; subs?: unknown };
    if (typeof d !== "object" || d === null || d.v !== 1) throw bad('expected an object with "v": 1');
    for (const [name, map, into] of [["jtis", d.jtis, list.jtis], ["subs", d.subs, list.subs]] as const) {
      if (typeof map !== "object" || map === null || Array.isArray(map)) throw bad(`"${name}" must be an object`);
      for (const [k, v] of Object.entries(map)) {
        if (typeof v !== "number" || !Number.isFinite(v)) throw bad(`"${name}"."${k}" must be a time in epoch ms, not ${JSON.stringify(v)}`);
        into.set(k, v);
      }
    }
    list.purge(list.now());
    return list;
  }

  /** Revocations in force (tokens not yet expired, subjects). */
  get size(): number {
    return this.jtis.size + this.subs.size;
  }

  /** Resolves once every revocation made so far is in the file (at once without a file); rejects if the last write failed. */
  saved(): Promise<void> {
    return this.saving.then(() => {
      if (this.saveError) throw this.saveError;
    });
  }

  /**
   * Revokes one token. `expiresAt` (epoch ms) bounds how long the entry is kept; unknown (no
   * session rests on the token, so its `exp` was never seen), it is kept for good: a token
   * could live any length of time, and one revoked before its first use must stay refused.
   */
  revokeJti(jti: string, expiresAt?: number): void {
    const at = this.now();
    this.purge(at);
    const until = expiresAt !== undefined ? expiresAt + GRACE_MS : FOREVER;
    this.jtis.set(jti, Math.max(until, this.jtis.get(jti) ?? 0));
    this.save();
    this.emit("revoked", { jti, at });
  }

  /**
   * Revokes every token of `sub` issued so far (its `iat` at or before now, or no `iat`);
   * tokens issued later are accepted, so the subject can be let back in with a new token.
   * Kept for good (in the file, when there is one): these are rare admin actions.
   */
  revokeSub(sub: string): void {
    const at = this.now();
    this.subs.set(sub, at);
    this.save();
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

  /** Queues a write of the whole list (the state at the time the write runs). */
  private save(): void {
    const file = this.file;
    if (file === undefined) return;
    this.saving = this.saving.then(async () => {
      const text = JSON.stringify({ v: 1, jtis: Object.fromEntries(this.jtis), subs: Object.fromEntries(this.subs) }) + "\n";
      try {
        await replaceFileDurably(file, text);
        this.saveError = undefined;
      } catch (e) {
        this.saveError = new ZtError("ZT_REVOCATIONS_INVALID", `revocation list ${file} cannot be written: ${(e as Error).message} (the revocation is in force until the gateway stops)`);
      }
    });
  }
}
