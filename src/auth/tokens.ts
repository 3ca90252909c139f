// Token verification (SPEC §3): jose's jwtVerify against the configured issuers, with the
// checks jose leaves to its caller made explicit — `exp` required, an algorithm allow-list,
// an issuer chosen by the token's own `iss`, a size limit before any parsing, roles from a
// claim path, RFC 8705 certificate binding and revocation. `verify` never throws: every bad
// token, however malformed, comes back as a refusal with a reason and a detail.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, importSPKI, jwtVerify } from "jose";
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import { LRUCache } from "lru-cache";
import type { IssuerSettings } from "../config/schema.js";
import { ZtError } from "../errors.js";
import type { Principal, Via } from "../pdp/principal.js";
import type { RevocationList } from "./revocation.js";

export type TokenFailure = "token-invalid" | "token-expired" | "token-revoked";

export type VerifyResult = { ok: true; principal: Principal } | { ok: false; reason: TokenFailure; detail: string };

export interface VerifyOptions {
  /** How the caller authenticated the token's bearer; default "bearer". */
  via?: Via;
  /** RFC 8705 `x5t#S256` of the TLS client certificate the token arrived on, if any (see certificateThumbprint). */
  certThumbprint?: string;
}

export interface TokenVerifierOptions {
  /** The clock (jose's `currentDate`); tests pass a fixed one. */
  currentDate?: () => Date;
  /** Longest token accepted, checked before anything is decoded. Default 8 KiB. */
  maxTokenBytes?: number;
  /** Verified tokens kept (LRU). Default 10,000; 0 disables the cache. */
  cacheMax?: number;
  revocations?: RevocationList;
}

interface Issuer {
  readonly settings: IssuerSettings;
  readonly key: JWTVerifyGetKey;
}

/** What a verified token leaves in the cache; the principal minus what depends on the caller. */
interface Verified {
  readonly principal: Omit<Principal, "via">;
  readonly exp: number;
  readonly iat?: number;
  readonly boundTo?: string;
}

const X5T = "x5t#S256";

export class TokenVerifier {
  private readonly byIss: ReadonlyMap<string, Issuer>;
  private readonly now: () => Date;
  private readonly maxBytes: number;
  private readonly cache?: LRUCache<string, Verified>;
  private readonly revocations?: RevocationList;

  private constructor(issuers: Issuer[], opts: TokenVerifierOptions) {
    this.byIss = new Map(issuers.map((i) => [i.settings.issuer, i]));
    this.now = opts.currentDate ?? (() => new Date());
    this.maxBytes = opts.maxTokenBytes ?? 8192;
    if (opts.revocations) this.revocations = opts.revocations;
    const max = opts.cacheMax ?? 10_000;
    if (max > 0) {
      // The cache's clock is ours, so an entry's ttl (the token's exp) is measured in the same
      // time; ttlResolution 0 makes it read that clock on every check instead of a cached one.
      this.cache = new LRUCache<string, Verified>({ max, ttlAutopurge: false, ttlResolution: 0, perf: { now: () => this.now().getTime() } });
      opts.revocations?.on("revoked", this.forget);
    }
  }

  /** Stops listening to the revocation list (a verifier replaced on reload must not linger). */
  close(): void {
    this.revocations?.off("revoked", this.forget);
    this.cache?.clear();
  }

  /**
   * Builds a verifier from `issuers:` of gateway.yaml (key file paths absolute, as loadConfig
   * gives them). Key files are read now: a missing or bad one is a ZT_KEYS_INVALID error at
   * start, not a refused token later.
   */
  static async fromConfig(issuers: ReadonlyArray<IssuerSettings>, opts: TokenVerifierOptions = {}): Promise<TokenVerifier> {
    return new TokenVerifier(await Promise.all(issuers.map(async (s) => ({ settings: s, key: await keySource(s) }))), opts);
  }

  async verify(token: unknown, opts: VerifyOptions = {}): Promise<VerifyResult> {
    try {
      return await this.verifyUnsafe(token, opts);
    } catch (e) {
      // Nothing below is expected to throw; if something does, the token is still refused.
      return invalid(`verification failed (${(e as Error).message})`);
    }
  }

  private async verifyUnsafe(token: unknown, opts: VerifyOptions): Promise<VerifyResult> {
    if (typeof token !== "string" || token === "") return invalid("no token");
    if (token.length > this.maxBytes) return invalid(`token is ${token.length} bytes, more than the ${this.maxBytes} accepted`);

    const cacheKey = this.cache ? createHash("sha256").update(token).digest("base64url") : "";
    let v = this.cache?.get(cacheKey);
    // The ttl already keeps expired entries out; this makes "never beyond exp" independent of it.
    if (v !== undefined && v.exp * 1000 <= this.now().getTime()) {
      this.cache?.delete(cacheKey);
      v = undefined;
    }
    let fresh = false;
    if (v === undefined) {
      const r = await this.verifySignedToken(token);
      if (!r.ok) return r;
      v = r.verified;
      fresh = true;
    }

    const revoked = this.revocations?.check({ jti: v.principal.tokenId, sub: v.principal.sub, iat: v.iat });
    if (revoked !== undefined) {
      this.cache?.delete(cacheKey);
      return { ok: false, reason: "token-revoked", detail: revoked };
    }
    const ttl = v.exp * 1000 - this.now().getTime();
    if (fresh && ttl > 0) this.cache?.set(cacheKey, v, { ttl });
    if (v.boundTo !== undefined && v.boundTo !== opts.certThumbprint) {
      return invalid(
        opts.certThumbprint === undefined
          ? "token is bound to a client certificate (cnf x5t#S256) but the connection presented none"
          : "token is bound to a different client certificate (cnf x5t#S256 does not match)",
      );
    }
    return { ok: true, principal: { ...v.principal, via: opts.via ?? "bearer" } };
  }

  private async verifySignedToken(token: string): Promise<{ ok: true; verified: Verified } | { ok: false; reason: TokenFailure; detail: string }> {
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch (e) {
      return invalid(`malformed token (${(e as Error).message})`);
    }
    // Only picks which issuer's keys to try; jwtVerify checks iss again after the signature.
    const issuer = typeof unverified.iss === "string" ? this.byIss.get(unverified.iss) : undefined;
    if (issuer === undefined) return invalid(`unknown issuer ${JSON.stringify(unverified.iss ?? null)}`);
    const s = issuer.settings;

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, issuer.key, {
        issuer: s.issuer,
        audience: s.audience,
        algorithms: [...s.algorithms],
        requiredClaims: ["iss", "sub", "aud", "exp"],
        clockTolerance: s.clockTolerance,
        currentDate: this.now(),
      }));
    } catch (e) {
      return joseFailure(e, token);
    }

    if (typeof payload.sub !== "string" || payload.sub === "") return invalid('"sub" claim must be a non-empty string');
    const roles = rolesAt(payload, s.rolesClaim);
    if (roles === undefined) return invalid(`"${s.rolesClaim}" claim must be a string or a list of strings`);
    const cnf = payload["cnf"];
    let boundTo: string | undefined;
    if (cnf !== undefined) {
      const x5t = isRecord(cnf) ? cnf[X5T] : undefined;
      // Another confirmation method (a DPoP key, say) is one we cannot check: accepting the
      // token as a plain bearer token would drop the binding its issuer asked for.
      if (typeof x5t !== "string" || Object.keys(cnf as object).length !== 1) return invalid(`unsupported "cnf" claim (only ${X5T} is supported)`);
      boundTo = x5t;
    }
    const exp = payload.exp as number;
    const principal: Omit<Principal, "via"> = {
      sub: payload.sub,
      iss: s.issuer,
      roles,
      claims: Object.freeze({ ...payload }),
      ...(typeof payload.jti === "string" ? { tokenId: payload.jti } : {}),
      expiresAt: exp * 1000,
      ...(typeof payload.iat === "number" ? { issuedAt: payload.iat * 1000 } : {}),
    };
    return { ok: true, verified: { principal, exp, ...(payload.iat !== undefined ? { iat: payload.iat } : {}), ...(boundTo !== undefined ? { boundTo } : {}) } };
  }

  /** Drops cached tokens that a revocation covers (the revocation check would refuse them anyway). */
  private readonly forget = (r: { jti?: string; sub?: string }): void => {
    if (!this.cache) return;
    for (const [k, v] of this.cache.entries()) {
      if ((r.jti !== undefined && v.principal.tokenId === r.jti) || (r.sub !== undefined && v.principal.sub === r.sub)) this.cache.delete(k);
    }
  };

  /** Number of cached verified tokens (for metrics and tests). */
  get cached(): number {
    return this.cache?.size ?? 0;
  }
}

function invalid(detail: string): { ok: false; reason: "token-invalid"; detail: string } {
  return { ok: false, reason: "token-invalid", detail };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The roles at a dotted claim path: missing is no roles, a string is one role, anything else is an error. */
export function rolesAt(payload: Record<string, unknown>, path: string): string[] | undefined {
  let v: unknown = payload;
  for (const part of path.split(".")) {
    v = isRecord(v) && Object.hasOwn(v, part) ? v[part] : undefined;
  }
  if (v === undefined) return [];
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((r) => typeof r === "string")) return [...(v as string[])];
  return undefined;
}

/** jose's error codes, in words, with the reason each maps to. */
function joseFailure(e: unknown, token: string): { ok: false; reason: TokenFailure; detail: string } {
  const err = e as { code?: string; message?: string; claim?: string };
  const msg = err.message ?? String(e);
  switch (err.code) {
    case "ERR_JWT_EXPIRED":
      return { ok: false, reason: "token-expired", detail: err.claim === "iat" ? "token is too old (iat)" : "token has expired (exp)" };
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return invalid(err.claim === "nbf" ? "token is not yet valid (nbf)" : msg);
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return invalid(`algorithm ${JSON.stringify(headerAlg(token))} is not allowed for this issuer`);
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return invalid("signature verification failed");
    case "ERR_JWKS_NO_MATCHING_KEY":
      return invalid("no key of the issuer matches the token's kid and algorithm");
    case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
      return invalid("several keys of the issuer match the token and none verifies it");
    case "ERR_JWKS_TIMEOUT":
      return invalid("the issuer's key set could not be fetched in time");
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return invalid(`malformed token (${msg})`);
    default:
      return invalid(`token rejected (${msg})`);
  }
}

function headerAlg(token: string): unknown {
  try {
    return decodeProtectedHeader(token).alg;
  } catch {
    return undefined;
  }
}

/** The key getter for one issuer: a JWKS file, a JWKS URL or a PEM public key. */
async function keySource(s: IssuerSettings): Promise<JWTVerifyGetKey> {
  if (s.jwksUrl !== undefined) {
    // jose caches the set (10 min), refetches on an unknown kid at most every 30 s, times out at 5 s.
    const remote = createRemoteJWKSet(new URL(s.jwksUrl));
    const url = s.jwksUrl;
    return async (header, token) => {
      try {
        return await remote(header, token);
      } catch (e) {
        // jose's own errors say what was wrong with the token; anything else is the fetch.
        if (typeof (e as { code?: unknown }).code === "string" && (e as { code: string }).code.startsWith("ERR_J")) throw e;
        throw new Error(`the issuer's key set ${url} could not be fetched: ${(e as Error).message}`, { cause: e });
      }
    };
  }
  if (s.jwks !== undefined) {
    const file = s.jwks;
    try {
      return createLocalJWKSet(JSON.parse(await readFile(file, "utf8")));
    } catch (e) {
      throw new ZtError("ZT_KEYS_INVALID", `${file}: issuer ${s.issuer}: not a readable JWKS (${(e as Error).message})`);
    }
  }
  const file = s.publicKey as string;
  let pem: string;
  try {
    pem = await readFile(file, "utf8");
  } catch (e) {
    throw new ZtError("ZT_KEYS_INVALID", `${file}: issuer ${s.issuer}: cannot read the public key (${(e as Error).message}); "ztgate keys init" creates the development one`);
  }
  // A PEM key carries no algorithm: import it for the token's alg (already on the allow-list)
  // and let a key that does not fit that alg fail the token. Imported once per alg.
  const imported = new Map<string, Promise<CryptoKeyLike>>();
  const getKey = (header: { alg?: string }) => {
    const alg = header.alg ?? "";
    let k = imported.get(alg);
    if (k === undefined) {
      k = importSPKI(pem, alg);
      imported.set(alg, k);
    }
    return k;
  };
  // Fail at start on a file that is no public key at all.
  const probe = await Promise.any(s.algorithms.map((alg) => getKey({ alg }))).catch(() => undefined);
  if (probe === undefined) throw new ZtError("ZT_KEYS_INVALID", `${file}: issuer ${s.issuer}: not an SPKI public key for any of ${s.algorithms.join(", ")}`);
  return getKey;
}

type CryptoKeyLike = Awaited<ReturnType<typeof importSPKI>>;
