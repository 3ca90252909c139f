// Who is on a Modbus/TCP Security (mtls) connection (SPEC §3): the principal a verified client
// certificate stands for, or why it stands for nobody. The TLS layer has already checked the
// chain and the validity period; here the certificate's contents are read.
//
//   sub        the subject's CN, else its first SAN URI
//   roles      exactly one: the UTF8String of extension 1.3.6.1.4.1.50316.802.1
//   iss        the issuer's distinguished name (which CA vouched for it)
//   tokenId    the certificate's x5t#S256 thumbprint, so `revokeByJti` can cut one certificate off
//   expiresAt  notAfter: the session ends, and its connections with it, when the certificate expires
import type { PeerCertificate } from "node:tls";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";
import { certificateSubject, certificateThumbprint, roleFromCertificate } from "../auth/x509.js";

/** `issuedAt`: the certificate's notBefore (epoch ms), what a revocation of its subject is compared with. */
export type CertificateIdentity = { ok: true; principal: Principal; issuedAt: number | undefined } | { ok: false; reason: Reason; detail: string };

/** OpenSSL verification errors that mean "not valid at this time" rather than "not ours". */
const EXPIRED = new Set(["CERT_HAS_EXPIRED"]);

/** "CN=ztgate development CA, O=ztgate development" from Node's parsed name. */
function distinguishedName(name: PeerCertificate["issuer"] | undefined): string {
  if (!name) return "";
  return Object.entries(name)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : String(v)}`)
    .join(", ");
}

/**
 * The principal of a TLS peer. `authorizationError` is the TLS layer's verdict on the chain
 * (undefined when it verified); `peer` is what getPeerCertificate() gave (an empty object when
 * the client sent none).
 */
export function identityFromCertificate(peer: PeerCertificate | undefined, authorizationError: Error | string | null | undefined): CertificateIdentity {
  if (!peer || !peer.raw || peer.raw.length === 0) return { ok: false, reason: "no-session", detail: "the client presented no certificate" };
  if (authorizationError) {
    const code = typeof authorizationError === "string" ? authorizationError : ((authorizationError as { code?: string }).code ?? authorizationError.message);
    return {
      ok: false,
      reason: EXPIRED.has(code) ? "token-expired" : "token-invalid",
      detail: `the client certificate does not verify against the gateway's CA (${code})`,
    };
  }
  const role = roleFromCertificate(peer.raw);
  if ("error" in role) return { ok: false, reason: "token-invalid", detail: `the client certificate carries no usable role: ${role.detail}` };
  const sub = certificateSubject(peer.raw);
  if (sub === undefined) return { ok: false, reason: "token-invalid", detail: "the client certificate has neither a CN nor a SAN URI to name its subject" };
  const notAfter = Date.parse(peer.valid_to);
  const notBefore = Date.parse(peer.valid_from);
  const thumbprint = certificateThumbprint(peer.raw);
  return {
    ok: true,
    issuedAt: Number.isFinite(notBefore) ? notBefore : undefined,
    principal: {
      sub,
      iss: distinguishedName(peer.issuer),
      roles: [role.role],
      claims: Object.freeze({ "x5t#S256": thumbprint, serialNumber: peer.serialNumber }),
      tokenId: thumbprint,
      ...(Number.isFinite(notAfter) && { expiresAt: notAfter }),
      ...(Number.isFinite(notBefore) && { issuedAt: notBefore }),
      via: "mtls",
    },
  };
}
