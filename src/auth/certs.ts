// Certificates of the development PKI, built with @peculiar/x509 (no hand-written DER): the
// CA, the gateway's TLS server certificate, client certificates for Modbus/TCP Security and
// OPC UA user identities, OPC UA client application certificates, and the CA's (empty) CRL.
// No file I/O here: keys.ts decides what is written where.
import { webcrypto } from "node:crypto";
import { RSA_ALGORITHM, roleExtension, x509 } from "./x509.js";

type CryptoKey = webcrypto.CryptoKey;

const DAY_MS = 86_400_000;
/** Who the dev PKI is, in every subject; "dev" so nobody mistakes it for a production CA. */
const ORG = "ztgate development";

export interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

/** The CA that signs everything else: its certificate and private key. */
export interface Ca {
  readonly cert: x509.X509Certificate;
  readonly key: CryptoKey;
}

export interface Issued {
  readonly cert: x509.X509Certificate;
  readonly keys: KeyPair;
}

/** A new RSA key pair (see RSA_ALGORITHM for why RSA); extractable so it can be written as PEM. */
export async function generateRsaKeyPair(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(RSA_ALGORITHM, true, ["sign", "verify"])) as KeyPair;
}

function validity(now: Date, days: number): { notBefore: Date; notAfter: Date } {
  // Back-dated a little so a client whose clock is slightly behind still accepts it.
  return { notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

function name(cn: string): x509.JsonName {
  // The JSON form, not a "CN=…" string, so a name with commas or "=" cannot inject attributes.
  return [{ CN: [cn] }, { O: [ORG] }];
}

/** The dev CA: self-signed, may sign end-entity certificates only (pathLen 0). */
export async function createCa(opts: { now?: Date; days?: number } = {}): Promise<Ca> {
  const keys = await generateRsaKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: name("ztgate development CA"),
    ...validity(opts.now ?? new Date(), opts.days ?? 3650),
    keys,
    signingAlgorithm: RSA_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // node-opcua finds a certificate's issuer by matching these two identifiers.
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, key: keys.privateKey };
}

interface LeafOptions {
  cn: string;
  usages: x509.KeyUsageFlags;
  eku: string[];
  san?: x509.JsonGeneralName[];
  extra?: x509.Extension[];
  now?: Date;
  days: number;
}

async function issueLeaf(ca: Ca, o: LeafOptions): Promise<Issued> {
  const keys = await generateRsaKeyPair();
  const extensions = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(o.usages, true),
    new x509.ExtendedKeyUsageExtension(o.eku, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ...(o.san && o.san.length > 0 ? [new x509.SubjectAlternativeNameExtension(o.san, false)] : []),
    ...(o.extra ?? []),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    subject: name(o.cn),
    issuer: ca.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: RSA_ALGORITHM,
    ...validity(o.now ?? new Date(), o.days),
    extensions,
  });
  return { cert, keys };
}

/** The gateway's TLS server certificate (HTTP API, Modbus/TCP Security) for the loopback names. */
export function issueServerCertificate(ca: Ca, opts: { now?: Date; days?: number } = {}): Promise<Issued> {
  return issueLeaf(ca, {
    cn: "ztgate gateway",
    usages: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    eku: [x509.ExtendedKeyUsage.serverAuth],
    san: [
      { type: "dns", value: "localhost" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "::1" },
    ],
    days: opts.days ?? 825,
    ...(opts.now ? { now: opts.now } : {}),
  });
}

export interface ClientCertificateOptions {
  cn: string;
  /** Modbus/TCP Security role (also read for OPC UA X.509 user identities). */
  role?: string;
  /** Make an OPC UA client application instance certificate with this application URI. */
  opcuaAppUri?: string;
  /** Host names (DNS SANs) of an OPC UA server's application certificate (with `opcuaAppUri`). */
  dnsNames?: readonly string[];
  /** IP addresses (IP SANs) of an OPC UA server's application certificate (with `opcuaAppUri`). */
  ipAddresses?: readonly string[];
  days?: number;
  now?: Date;
}

/**
 * A client certificate from the CA. Plain: TLS client authentication (Modbus/TCP Security,
 * OPC UA X.509 user token). With `opcuaAppUri`: an OPC UA application instance certificate
 * (OPC 10000-6 §6.2.2: the application URI as SAN URI; digitalSignature, nonRepudiation,
 * keyEncipherment, dataEncipherment; clientAuth, and serverAuth as node-opcua's own certificates carry).
 */
export function issueClientCertificate(ca: Ca, o: ClientCertificateOptions): Promise<Issued> {
  const opcua = o.opcuaAppUri !== undefined;
  const F = x509.KeyUsageFlags;
  return issueLeaf(ca, {
    cn: o.cn,
    usages: opcua ? F.digitalSignature | F.nonRepudiation | F.keyEncipherment | F.dataEncipherment : F.digitalSignature | F.keyEncipherment,
    eku: opcua ? [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth] : [x509.ExtendedKeyUsage.clientAuth],
    san: opcua
      ? [{ type: "url", value: o.opcuaAppUri as string }, ...(o.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })), ...(o.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value }))]
      : [],
    extra: o.role !== undefined ? [roleExtension(o.role)] : [],
    days: o.days ?? 365,
    ...(o.now ? { now: o.now } : {}),
  });
}

/**
 * An empty CRL of the CA. node-opcua refuses a CA-issued certificate whose issuer has no CRL
 * (BadCertificateRevocationUnknown), so the OPC UA PKI gets one.
 */
export async function createEmptyCrl(ca: Ca, opts: { now?: Date } = {}): Promise<x509.X509Crl> {
  return x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate: opts.now ?? new Date(),
    nextUpdate: ca.cert.notAfter,
    signingKey: ca.key,
    signingAlgorithm: RSA_ALGORITHM,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca.cert)],
    entries: [],
  });
}
