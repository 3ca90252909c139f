// The development keys under `keys.dir` (certs/): what `ztgate keys init` writes and how the
// rest of the gateway reads it back. Private keys are written 0600 through a temporary file
// and a rename, so a key is never readable by others, not even for a moment, and never half-written.
import { generateKeyPair as generateKeyPairCb, webcrypto } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { importPKCS8, importSPKI } from "jose";
import type { CryptoKey as JoseKey } from "jose";
import { ZtError } from "../errors.js";
import { createCa, createEmptyCrl, issueServerCertificate } from "./certs.js";
import type { Ca, KeyPair } from "./certs.js";
import { RSA_ALGORITHM, x509 } from "./x509.js";

const generateKeyPair = promisify(generateKeyPairCb);

/** File names under keys.dir. */
export const KEY_FILES = {
  caCert: "ca.pem",
  caKey: "ca.key.pem",
  serverCert: "server.pem",
  serverKey: "server.key.pem",
  issuerKey: "issuer.key.pem",
  issuerPublicKey: "issuer.pub.pem",
  signingKey: "gateway-signing.key.pem",
  signingPublicKey: "gateway-signing.pub.pem",
  pkiCa: "pki/trusted/certs/ztgate-dev-ca.pem",
  // DER: every node-opcua version reads it (older ones read CRL files as raw DER only).
  pkiCrl: "pki/trusted/crl/ztgate-dev-ca.crl.der",
} as const;

/** node-opcua's PKI layout (OPCUACertificateManager): created empty except for the CA and its CRL. */
export const PKI_FOLDERS = ["own/certs", "own/private", "trusted/certs", "trusted/crl", "rejected", "issuers/certs", "issuers/crl"].map((f) => `pki/${f}`);

/** The `iss` of tokens signed with issuer.key.pem (the default issuer of gateway.yaml). */
export const DEV_ISSUER = "ztgate-dev";
export const DEV_AUDIENCE = "ztgate";

export type FileStatus = "created" | "kept" | "replaced";

export interface InitResult {
  readonly dir: string;
  /** Every file keys init is responsible for, relative to dir, in the order handled. */
  readonly files: ReadonlyArray<{ file: string; status: FileStatus }>;
}

const exists = (file: string) => stat(file).then(() => true, () => false);

function keysError(file: string, what: string, e?: unknown): ZtError {
  const why = e === undefined ? "" : ` (${e instanceof Error ? e.message : String(e)})`;
  return new ZtError("ZT_KEYS_INVALID", `${file}: ${what}${why}`);
}

/** Writes `data` to `file` atomically with `mode` (0600 for private keys). */
export async function writeKeyFile(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(tmp, data, { mode, flag: "wx" });
    await chmod(tmp, mode); // the umask may have removed bits we asked for (never added any)
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw keysError(file, "cannot write", e);
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    throw keysError(file, 'cannot read (run "ztgate keys init" to create the development keys)', e);
  }
}

function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return webcrypto.subtle.exportKey("pkcs8", key).then((der) => x509.PemConverter.encode(der, "PRIVATE KEY"));
}

/** The dev CA (certificate and signing key) from dir. */
export async function readCa(dir: string): Promise<Ca> {
  const certFile = join(dir, KEY_FILES.caCert);
  const keyFile = join(dir, KEY_FILES.caKey);
  const [certPem, keyPem] = [await readText(certFile), await readText(keyFile)];
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    throw keysError(certFile, "not a PEM certificate", e);
  }
  try {
    const der = x509.PemConverter.decodeFirst(keyPem);
    return { cert, key: await webcrypto.subtle.importKey("pkcs8", der, RSA_ALGORITHM, false, ["sign"]) };
  } catch (e) {
    throw keysError(keyFile, "not a PKCS#8 RSA private key", e);
  }
}

/** A PKCS#8 PEM private key for jose, e.g. the token issuer's (EdDSA) or the checkpoint signer's. */
export async function readPrivateKey(file: string, alg = "EdDSA"): Promise<JoseKey> {
  const pem = await readText(file);
  try {
    return await importPKCS8(pem, alg);
  } catch (e) {
    throw keysError(file, `not a PKCS#8 private key for ${alg}`, e);
  }
}

/** An SPKI PEM public key for jose. */
export async function readPublicKey(file: string, alg = "EdDSA"): Promise<JoseKey> {
  const pem = await readText(file);
  try {
    return await importSPKI(pem, alg);
  } catch (e) {
    throw keysError(file, `not an SPKI public key for ${alg}`, e);
  }
}

/** Which files of a group exist: all, none, or some (the name of the first missing one). */
async function groupState(dir: string, files: string[]): Promise<"all" | "none" | { missing: string; present: string }> {
  const here = await Promise.all(files.map((f) => exists(join(dir, f))));
  if (here.every(Boolean)) return "all";
  if (!here.some(Boolean)) return "none";
  return { missing: files[here.indexOf(false)] as string, present: files[here.indexOf(true)] as string };
}

/**
 * Creates what is missing under `dir`: the dev CA, the server certificate, the token issuer
 * key pair (Ed25519), the checkpoint signing key pair (Ed25519) and the OPC UA PKI folders.
 * Existing files are kept unless `force`; a certificate signed by a CA that was just created
 * is replaced too. A half-present pair (a certificate without its key) is an error, never
 * silently overwritten.
 */
export async function initKeys(dir: string, opts: { force?: boolean; now?: Date } = {}): Promise<InitResult> {
  const files: Array<{ file: string; status: FileStatus }> = [];
  const now = opts.now ?? new Date();
  const force = opts.force === true;
  await mkdir(dir, { recursive: true }).catch((e: unknown) => {
    throw keysError(dir, "cannot create the directory", e);
  });

  const write = async (file: string, data: string | Uint8Array, mode: number) => {
    const status: FileStatus = (await exists(join(dir, file))) ? "replaced" : "created";
    await writeKeyFile(join(dir, file), data, mode);
    files.push({ file, status });
  };
  const keep = (...names: string[]) => names.forEach((file) => files.push({ file, status: "kept" }));
  /** Whether a pair must be (re)created: forced, a dependency changed, or absent. */
  const mustCreate = async (names: string[], dependencyChanged = false) => {
    const state = await groupState(dir, names);
    if (force || dependencyChanged || state === "none") return true;
    if (state === "all") return false;
    throw keysError(join(dir, state.missing), `missing while ${state.present} exists; restore it, or run "ztgate keys init --force" to recreate every key`);
  };

  let ca: Ca | undefined;
  const caNew = await mustCreate([KEY_FILES.caCert, KEY_FILES.caKey]);
  if (caNew) {
    ca = await createCa({ now });
    await write(KEY_FILES.caKey, await pkcs8Pem(ca.key), 0o600);
    await write(KEY_FILES.caCert, ca.cert.toString("pem") + "\n", 0o644);
  } else keep(KEY_FILES.caCert, KEY_FILES.caKey);
  const theCa = async () => (ca ??= await readCa(dir));

  if (await mustCreate([KEY_FILES.serverCert, KEY_FILES.serverKey], caNew)) {
    const server = await issueServerCertificate(await theCa(), { now });
    await write(KEY_FILES.serverKey, await pkcs8Pem(server.keys.privateKey), 0o600);
    await write(KEY_FILES.serverCert, server.cert.toString("pem") + "\n", 0o644);
  } else keep(KEY_FILES.serverCert, KEY_FILES.serverKey);

  for (const [key, pub] of [
    [KEY_FILES.issuerKey, KEY_FILES.issuerPublicKey],
    [KEY_FILES.signingKey, KEY_FILES.signingPublicKey],
  ] as const) {
    if (await mustCreate([key, pub])) {
      const pair = await generateKeyPair("ed25519", {
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      });
      await write(key, pair.privateKey, 0o600);
      await write(pub, pair.publicKey, 0o644);
    } else keep(key, pub);
  }

  for (const folder of PKI_FOLDERS) await mkdir(join(dir, folder), { recursive: true });
  // The OPC UA front trusts client certificates issued by the CA in trusted/, checked against its CRL.
  if (caNew || !(await exists(join(dir, KEY_FILES.pkiCa)))) await write(KEY_FILES.pkiCa, (await theCa()).cert.toString("pem") + "\n", 0o644);
  else keep(KEY_FILES.pkiCa);
  if (caNew || !(await exists(join(dir, KEY_FILES.pkiCrl)))) await write(KEY_FILES.pkiCrl, new Uint8Array((await createEmptyCrl(await theCa(), { now })).rawData), 0o644);
  else keep(KEY_FILES.pkiCrl);

  return { dir, files };
}

/** PEM of a private key that was generated here (for client certificates). */
export function privateKeyPem(keys: KeyPair): Promise<string> {
  return pkcs8Pem(keys.privateKey);
}
