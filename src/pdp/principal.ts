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
  readonly via: Via;
}
