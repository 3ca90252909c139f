// The OPC UA front's application instance certificate. OPC UA clients check that the server
// certificate's SAN URI is the server's ApplicationUri, which keys.dir/server.pem (a TLS
// certificate for the loopback names) does not carry, so the front has one of its own, issued
// by the dev CA into the PKI's own/ folder on first start and kept while it still fits: same
// ApplicationUri and host names, signed by the CA in keys.dir, not about to expire. An admin may put another
// certificate there (with its key); it is kept as long as it fits the same way.
import { readFile, stat } from "node:fs/promises";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { join } from "node:path";
import { issueClientCertificate } from "../auth/certs.js";
import { KEY_FILES, privateKeyPem, readCa, writeKeyFile } from "../auth/keys.js";
import { x509 } from "../auth/x509.js";
import { extractFullyQualifiedDomainName, getHostname } from "node-opcua";

/**
 * The names node-opcua expects in the server certificate's DNS SANs (the machine's host name and
 * fully qualified name; it warns with NODE-OPCUA-W26 on every start when one is missing), plus
 * localhost.
 */
async function serverNames(): Promise<string[]> {
  return [...new Set(["localhost", getHostname(), await extractFullyQualifiedDomainName()].filter((n) => n.length > 0))].sort();
}

export const FRONT_CERT = "own/certs/ztgate-opcua-front.pem";
export const FRONT_KEY = "own/private/ztgate-opcua-front.key.pem";

/** Renewed when it has less than this left. */
const RENEW_BEFORE_MS = 7 * 86_400_000;

export interface FrontCertificate {
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  readonly status: "kept" | "created";
}

/** An IP address in one written form (IPv4-mapped IPv6 as IPv4, IPv6 compressed), so that a SAN read back compares equal. */
function ipKey(ip: string): string {
  return ipaddr.isValid(ip) ? ipaddr.process(ip).toString() : ip;
}

async function fits(certFile: string, keyFile: string, keysDir: string, applicationUri: string, names: readonly string[], ips: readonly string[], now: Date): Promise<boolean> {
  try {
    await stat(keyFile);
    const cert = new x509.X509Certificate(await readFile(certFile, "utf8"));
    const ca = new x509.X509Certificate(await readFile(join(keysDir, KEY_FILES.caCert), "utf8"));
    const sans = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
    const has = (type: string, value: string) => sans.some((n) => n.type === type && n.value === value);
    const hasIp = (ip: string) => sans.some((n) => n.type === "ip" && ipKey(n.value) === ipKey(ip));
    return has("url", applicationUri) && names.every((n) => has("dns", n)) && ips.every(hasIp) && cert.notAfter.getTime() - now.getTime() > RENEW_BEFORE_MS && (await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }));
  } catch {
    return false;
  }
}

/**
 * The front's certificate and key under `pkiDir`, issued from the dev CA of `keysDir` when
 * missing or unfit. `advertised`: the host of the endpoint URLs, put in the certificate as a
 * DNS name or, when it is an address, as an IP address.
 */
export async function ensureFrontCertificate(pkiDir: string, keysDir: string, applicationUri: string, now = new Date(), advertised?: string): Promise<FrontCertificate> {
  const certificateFile = join(pkiDir, FRONT_CERT);
  const privateKeyFile = join(pkiDir, FRONT_KEY);
  const host = advertised?.replace(/^\[(.*)\]$/, "$1");
  const ips = host !== undefined && isIP(host) !== 0 ? [host] : [];
  const extra = host !== undefined && ips.length === 0 ? [host.toLowerCase()] : [];
  const names = [...new Set([...(await serverNames()), ...extra])].sort();
  if (await fits(certificateFile, privateKeyFile, keysDir, applicationUri, names, ips, now)) return { certificateFile, privateKeyFile, status: "kept" };
  const issued = await issueClientCertificate(await readCa(keysDir), { cn: "ztgate OPC UA front", opcuaAppUri: applicationUri, dnsNames: names, ipAddresses: ips, days: 825, now });
  await writeKeyFile(privateKeyFile, await privateKeyPem(issued.keys), 0o600);
  // The chain (leaf, then the CA), so clients that do not hold the CA can still build it.
  const caPem = await readFile(join(keysDir, KEY_FILES.caCert), "utf8");
  await writeKeyFile(certificateFile, issued.cert.toString("pem") + "\n" + caPem.trimEnd() + "\n", 0o644);
  return { certificateFile, privateKeyFile, status: "created" };
}
