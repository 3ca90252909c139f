// Signed checkpoints: a compact JWS (EdDSA, the gateway's key) whose payload is {seq, hash} of
// one record of the chain. The same JWS goes into the chain as a `checkpoint` record and into
// the small `head.jws` file, replaced atomically at each checkpoint; see verify.ts for what
// each of them makes detectable.
import { KeyObject, createPrivateKey, createPublicKey } from "node:crypto";
import type { webcrypto } from "node:crypto";
import { open, readFile, rename } from "node:fs/promises";
import path from "node:path";
import { CompactSign, calculateJwkThumbprint, compactVerify, exportJWK } from "jose";
import { ZtError } from "../errors.js";
import { HEAD_FILE, syncDir } from "./segments.js";

export interface SignedHead {
  readonly seq: number;
  readonly hash: string;
}

/** Key material as jose and node:crypto hand it out. */
export type SigningKeyInput = KeyObject | webcrypto.CryptoKey;

function keyError(message: string): ZtError {
  return new ZtError("ZT_LOG_KEY_INVALID", message);
}

function asKeyObject(key: SigningKeyInput): KeyObject {
  return key instanceof KeyObject ? key : KeyObject.from(key);
}

/** The private key as a KeyObject, checked to be Ed25519, and its RFC 7638 thumbprint. */
export async function prepareSigningKey(key: SigningKeyInput): Promise<{ key: KeyObject; kid: string }> {
  const k = asKeyObject(key);
  if (k.type !== "private" || k.asymmetricKeyType !== "ed25519") {
    throw keyError(`checkpoint signing key must be an Ed25519 private key (got ${k.type} ${k.asymmetricKeyType ?? "secret"})`);
  }
  return { key: k, kid: await keyId(createPublicKey(k)) };
}

export async function keyId(publicKey: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(publicKey));
}

export async function signHead(key: KeyObject, kid: string, head: SignedHead): Promise<string> {
  const payload = new TextEncoder().encode(JSON.stringify({ seq: head.seq, hash: head.hash }));
  return new CompactSign(payload).setProtectedHeader({ alg: "EdDSA", kid }).sign(key);
}

/** The {seq, hash} a JWS signs, or a reason it does not verify with `publicKey`. */
export async function openHead(jws: string, publicKey: KeyObject): Promise<SignedHead | { error: string }> {
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(jws, publicKey, { algorithms: ["EdDSA", "Ed25519"] }));
  } catch (err) {
    return { error: `signature does not verify with the given key (${(err as Error).message})` };
  }
  try {
    const p = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    if (Number.isSafeInteger(p["seq"]) && typeof p["hash"] === "string") return { seq: p["seq"] as number, hash: p["hash"] };
  } catch {
    // falls through to the error below
  }
  return { error: "signed payload is not {seq, hash}" };
}

/** Replaces head.jws atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeHeadFile(dir: string, jws: string): Promise<void> {
  const file = path.join(dir, HEAD_FILE);
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, "w", 0o640);
  try {
    await fh.write(jws + "\n");
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await syncDir(dir);
}

/** The JWS in head.jws, or null when there is none. */
export async function readHeadFile(dir: string): Promise<string | null> {
  try {
    return (await readFile(path.join(dir, HEAD_FILE), "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new ZtError("ZT_LOG_UNREADABLE", `${path.join(dir, HEAD_FILE)}: ${(err as Error).message}`);
  }
}

async function readPem(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw keyError(`${file}: cannot read key (${(err as Error).message})`);
  }
}

/** The gateway's checkpoint signing key from a PKCS#8 PEM file. */
export async function readSigningKey(file: string): Promise<KeyObject> {
  const pem = await readPem(file);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw keyError(`${file}: not a private key PEM (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw keyError(`${file}: an Ed25519 key is needed, this is ${key.asymmetricKeyType}`);
  return key;
}

/** A public key to check checkpoints with: from a public key PEM, or derived from the private one. */
export async function readVerifyKey(file: string): Promise<KeyObject> {
  const pem = await readPem(file);
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw keyError(`${file}: not a public or private key PEM (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw keyError(`${file}: an Ed25519 key is needed, this is ${key.asymmetricKeyType}`);
  return key;
}
