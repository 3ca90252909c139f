// Development tokens: what `ztgate token issue` signs with the dev issuer key (EdDSA). A real
// deployment gets its tokens from its identity provider; this exists so the gateway can be
// tried and tested without one.
import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import type { CryptoKey as JoseKey } from "jose";
import { DEV_AUDIENCE, DEV_ISSUER } from "./keys.js";

/** Claims a caller may not set through `claims`: the token's own frame. */
export const RESERVED_CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cnf"] as const;

export interface IssueTokenOptions {
  /** The issuer's private key (readPrivateKey of issuer.key.pem). */
  key: JoseKey;
  sub: string;
  roles?: readonly string[];
  /** Lifetime in seconds. */
  ttl: number;
  claims?: Readonly<Record<string, unknown>>;
  audience?: string;
  issuer?: string;
  /** RFC 8705: bind the token to the client certificate with this x5t#S256. */
  certThumbprint?: string;
  now?: Date;
  jti?: string;
}

export async function issueToken(o: IssueTokenOptions): Promise<string> {
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return new SignJWT({
    ...o.claims,
    roles: [...(o.roles ?? [])],
    ...(o.certThumbprint !== undefined ? { cnf: { "x5t#S256": o.certThumbprint } } : {}),
  })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .setIssuer(o.issuer ?? DEV_ISSUER)
    .setAudience(o.audience ?? DEV_AUDIENCE)
    .setSubject(o.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + o.ttl)
    .setJti(o.jti ?? randomUUID())
    .sign(o.key);
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** "90s", "15m", "8h", "1d" in seconds; undefined for anything else (including 0). */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,7})([smhd])$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
  return n > 0 ? n : undefined;
}
