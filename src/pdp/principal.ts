/** Who is asking (SPEC §3). Built by auth, read by the core. */
export type Via = "bearer" | "lease" | "mtls" | "opcua-user" | "opcua-x509" | "explain";

export interface Principal {
  readonly sub: string;
  readonly iss: string;
  readonly roles: readonly string[];
  readonly claims: Readonly<Record<string, unknown>>;
  readonly sessionId?: string;
  readonly tokenId?: string;
  readonly expiresAt?: number;
  /** When its credential was issued (epoch ms): the token's iat, the certificate's notBefore. A revocation of the subject covers what was issued at or before it. */
  readonly issuedAt?: number;
  readonly via: Via;
}
