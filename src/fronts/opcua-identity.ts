// Who is on an OPC UA session (SPEC §3), and where from:
//
//   UserName token   the password is a JWT, verified by the TokenVerifier (via "opcua-user");
//                    the user name must be the token's `sub` (so a token pasted into the wrong
//                    client profile is refused, not silently used under another name).
//   X.509 token      a user certificate the PKI's trusted CAs vouch for (node-opcua checks the
//                    chain, validity and CRL, and the proof of possession); here its contents:
//                    sub = CN (else SAN URI), roles = the Modbus/TCP Security role extension
//                    (exactly one), iss = the issuer DN, tokenId = x5t#S256, expiresAt = notAfter.
//   Anonymous        never offered, and refused if sent anyway.
import { MessageSecurityMode } from "node-opcua";
import type { ClientRef } from "../audit/record.js";
import type { Operation } from "../pdp/operation.js";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";
import { certificateSubject, certificateThumbprint, roleFromCertificate, x509 } from "../auth/x509.js";

/** `issuedAt`: the certificate's notBefore (epoch ms), what a revocation of its subject is compared with. */
export type Identity = { ok: true; principal: Principal; issuedAt: number } | { ok: false; reason: Reason; detail: string };

/** The principal of an X.509 user identity token whose certificate node-opcua has already verified. */
export function principalFromUserCertificate(der: Uint8Array, now = Date.now()): Identity {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(new Uint8Array(der));
  } catch (e) {
    return { ok: false, reason: "token-invalid", detail: `the user certificate does not parse (${(e as Error).message})` };
  }
  if (cert.notAfter.getTime() <= now) return { ok: false, reason: "token-expired", detail: `the user certificate expired at ${cert.notAfter.toISOString()}` };
  const role = roleFromCertificate(der);
  if ("error" in role) return { ok: false, reason: "token-invalid", detail: `the user certificate carries no usable role: ${role.detail}` };
  const sub = certificateSubject(der);
  if (sub === undefined) return { ok: false, reason: "token-invalid", detail: "the user certificate has neither a CN nor a SAN URI to name its subject" };
  const thumbprint = certificateThumbprint(der);
  return {
    ok: true,
    issuedAt: cert.notBefore.getTime(),
    principal: {
      sub,
      iss: cert.issuer,
      roles: [role.role],
      claims: Object.freeze({ "x5t#S256": thumbprint, serialNumber: cert.serialNumber }),
      tokenId: thumbprint,
      expiresAt: cert.notAfter.getTime(),
      issuedAt: cert.notBefore.getTime(),
      via: "opcua-x509",
    },
  };
}

/** What node-opcua's secure channel tells of its peer (the fields the front reads). */
export interface ChannelLike {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly securityMode?: MessageSecurityMode;
  readonly securityPolicy?: string;
}

const MODES: Partial<Record<MessageSecurityMode, string>> = {
  [MessageSecurityMode.None]: "opcua-none",
  [MessageSecurityMode.Sign]: "opcua-sign",
  [MessageSecurityMode.SignAndEncrypt]: "opcua-sign-encrypt",
};

/** The client as decision records name it: address, port, protocol "opcua", transport = security mode. */
export function clientOf(channel: ChannelLike | undefined): ClientRef {
  return {
    address: channel?.remoteAddress ?? "unknown",
    port: channel?.remotePort ?? 0,
    protocol: "opcua",
    transport: (channel?.securityMode !== undefined && MODES[channel.securityMode]) || "opcua",
  };
}

/** The operation a refused session is recorded with: no asset (ids cannot contain ":"), no point. */
export const SESSION_OPERATION: Operation = Object.freeze({ asset: "opcua:front", action: "diagnostic", target: Object.freeze({ kind: "point", point: "(session)" }) });
