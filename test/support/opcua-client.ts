// OPC UA clients for the tests, the way a historian or an MES would be set up: node-opcua's
// OPCUAClient over SignAndEncrypt (Basic256Sha256 unless told), with an application
// certificate issued by the dev CA (what `ztgate cert issue --opcua` makes) in its own PKI
// folder, the dev CA trusted for the server's certificate. `untrusted: true` gives a client
// with a certificate from a CA nobody trusts.
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, UserTokenType } from "node-opcua";
import type { ClientSession, UserIdentityInfo } from "node-opcua";
import { createCa, issueClientCertificate } from "../../src/auth/certs.js";
import type { ClientCertificateOptions } from "../../src/auth/certs.js";
import { KEY_FILES, privateKeyPem, readCa, writeKeyFile } from "../../src/auth/keys.js";

export interface ClientPki {
  readonly dir: string;
  readonly applicationUri: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

let clients = 0;

/** A client PKI folder under `base`: an application certificate from the dev CA of `keysDir` (unless untrusted) and the dev CA trusted. */
export async function clientPki(base: string, keysDir: string, o: { untrusted?: boolean; name?: string } = {}): Promise<ClientPki> {
  const name = o.name ?? `client-${++clients}`;
  const dir = join(base, `pki-${name}`);
  const applicationUri = `urn:ztgate:test:${name}`;
  await mkdir(join(dir, "trusted", "certs"), { recursive: true });
  await mkdir(join(dir, "trusted", "crl"), { recursive: true });
  await copyFile(join(keysDir, KEY_FILES.caCert), join(dir, "trusted", "certs", "ztgate-dev-ca.pem"));
  await copyFile(join(keysDir, KEY_FILES.pkiCrl), join(dir, "trusted", "crl", "ztgate-dev-ca.crl.der"));
  // Untrusted: issued by a CA of its own that the gateway has never seen.
  const issued = await issueClientCertificate(o.untrusted ? await createCa() : await readCa(keysDir), { cn: name, opcuaAppUri: applicationUri });
  const certificateFile = join(dir, "own", "certs", `${name}.pem`);
  const privateKeyFile = join(dir, "own", "private", `${name}.key.pem`);
  await writeKeyFile(privateKeyFile, await privateKeyPem(issued.keys), 0o600);
  await writeKeyFile(certificateFile, issued.cert.toString("pem") + "\n", 0o644);
  return { dir, applicationUri, certificateFile, privateKeyFile };
}

/** An X.509 user certificate (PEM) and key from the dev CA, for an X509 identity token. */
export async function userCertificate(keysDir: string, o: ClientCertificateOptions): Promise<{ certificateData: Buffer; privateKey: string }> {
  const issued = await issueClientCertificate(await readCa(keysDir), o);
  return { certificateData: Buffer.from(issued.cert.rawData), privateKey: await privateKeyPem(issued.keys) };
}

export interface Connected {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  close(): Promise<void>;
}

export interface ConnectOptions {
  readonly pki: ClientPki;
  readonly mode?: MessageSecurityMode;
  readonly policy?: SecurityPolicy;
}

/** The identity of a UserName token carrying a JWT. */
export function jwtIdentity(sub: string, token: string): UserIdentityInfo {
  return { type: UserTokenType.UserName, userName: sub, password: token };
}

/** A client connected over SignAndEncrypt (no reconnection: a test sees a refusal at once). */
export async function connectClient(endpointUrl: string, o: ConnectOptions): Promise<OPCUAClient> {
  const clientCertificateManager = new OPCUACertificateManager({ rootFolder: o.pki.dir, automaticallyAcceptUnknownCertificate: false });
  const client = OPCUAClient.create({
    applicationName: "ztgate test client",
    applicationUri: o.pki.applicationUri,
    securityMode: o.mode ?? MessageSecurityMode.SignAndEncrypt,
    securityPolicy: o.policy ?? SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    clientCertificateManager,
    certificateFile: o.pki.certificateFile,
    privateKeyFile: o.pki.privateKeyFile,
    connectionStrategy: { maxRetry: 0, initialDelay: 50, maxDelay: 100 },
    requestedSessionTimeout: 60_000,
  });
  try {
    await client.connect(endpointUrl);
  } catch (e) {
    await client.disconnect().catch(() => undefined);
    await clientCertificateManager.dispose().catch(() => undefined);
    throw e;
  }
  client.once("close", () => void clientCertificateManager.dispose().catch(() => undefined));
  return client;
}

/** Connects and activates a session with `identity`. */
export async function openSession(endpointUrl: string, identity: UserIdentityInfo | undefined, o: ConnectOptions): Promise<Connected> {
  const client = await connectClient(endpointUrl, o);
  let session: ClientSession;
  try {
    session = await client.createSession(identity);
  } catch (e) {
    await client.disconnect().catch(() => undefined);
    throw e;
  }
  return {
    client,
    session,
    close: async () => {
      await session.close().catch(() => undefined);
      await client.disconnect().catch(() => undefined);
    },
  };
}
