// The one place that loads @peculiar/x509. It resolves its crypto through tsyringe, which needs
// a Reflect metadata polyfill loaded first, and it must be told to use Node's WebCrypto; every
// other module imports `x509` from here so neither can be forgotten.
import "reflect-metadata";
import { createHash, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { AsnConvert, AsnUtf8StringConverter } from "@peculiar/asn1-schema";
import { fromBER, Utf8String } from "asn1js";

// Node's webcrypto is the WebCrypto API; only the DOM typings x509 is declared against differ.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/**
 * Modbus/TCP Security (MB-TCP-Security v21) role extension: the client's role as one ASN.1
 * UTF8String. The mtls front authorizes by exactly this value.
 */
export const MODBUS_ROLE_OID = "1.3.6.1.4.1.50316.802.1";

/**
 * RSA 2048 with SHA-256 (PKCS#1 v1.5) for every X.509 key: the OPC UA RSA profiles
 * (Basic256Sha256, Aes128_Sha256_RsaOaep) require RSA application certificates, node-opcua's
 * chain check only verifies RSA signatures, and legacy Modbus/TCP Security stacks offer
 * TLS_RSA_* suites. One algorithm keeps the dev CA usable by all three.
 */
export const RSA_ALGORITHM = {
  name: "RSASSA-PKCS1-v1_5",
  hash: "SHA-256",
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;

/** The role extension (not critical: TLS stacks that do not know it must still accept the certificate). */
export function roleExtension(role: string): x509.Extension {
  return new x509.Extension(MODBUS_ROLE_OID, false, AsnConvert.serialize(AsnUtf8StringConverter.toASN(role)));
}

export type RoleResult = { role: string } | { error: "none" | "several" | "malformed"; detail: string };

/**
 * The Modbus role of a certificate (DER or PEM): exactly one role extension holding one
 * non-empty UTF8String, else why not. Never throws: a certificate that does not parse is
 * "malformed".
 */
export function roleFromCertificate(cert: Uint8Array | string): RoleResult {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(typeof cert === "string" ? cert : new Uint8Array(cert));
  } catch (e) {
    return { error: "malformed", detail: `certificate does not parse (${(e as Error).message})` };
  }
  const found = parsed.extensions.filter((e) => e.type === MODBUS_ROLE_OID);
  if (found.length === 0) return { error: "none", detail: `no role extension (${MODBUS_ROLE_OID})` };
  if (found.length > 1) return { error: "several", detail: `${found.length} role extensions; exactly one is allowed` };
  const value = new Uint8Array((found[0] as x509.Extension).value);
  const asn = fromBER(value);
  // A trailing byte or any other type would make the role ambiguous between parsers.
  if (asn.offset !== value.byteLength || !(asn.result instanceof Utf8String)) {
    return { error: "malformed", detail: "the role extension does not hold exactly one UTF8String" };
  }
  const role = asn.result.valueBlock.value;
  if (role === "") return { error: "malformed", detail: "the role extension holds an empty string" };
  return { role };
}

/**
 * The `sub` of a principal authenticated by a client certificate (SPEC §3): the subject's CN,
 * else its first SAN URI; undefined if it has neither or does not parse.
 */
export function certificateSubject(cert: Uint8Array | string): string | undefined {
  try {
    const parsed = new x509.X509Certificate(typeof cert === "string" ? cert : new Uint8Array(cert));
    const cn = parsed.subjectName.getField("CN")[0];
    if (cn !== undefined && cn !== "") return cn;
    return parsed.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.find((n) => n.type === "url")?.value;
  } catch {
    return undefined;
  }
}

/**
 * RFC 8705 certificate thumbprint (`x5t#S256`): base64url of the SHA-256 of the DER
 * certificate, as a TLS front computes it from the peer certificate.
 */
export function certificateThumbprint(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("base64url");
}
