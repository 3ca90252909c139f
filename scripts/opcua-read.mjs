#!/usr/bin/env node
// A minimal OPC UA client for the quick start: reads node values through ztgate's OPC UA front
// the way a historian would (SignAndEncrypt, Basic256Sha256, a UserName token whose password is
// the JWT and whose user name is its `sub`).
//
//   node scripts/opcua-read.mjs --token "$TOKEN" [--url opc.tcp://127.0.0.1:4840] [--keys certs] NODEID…
//
// The client's application certificate is issued on the fly by the dev CA of --keys (as
// `ztgate cert issue --opcua` would) into a temporary PKI folder, deleted on exit; the front's
// certificate is trusted through the same CA. Prints `NODEID = value (status)` per node; exit 0
// when every read is Good, 1 otherwise, 2 on a usage error.
import { mkdtemp, mkdir, copyFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { register } from "tsx/esm/api";

const USAGE = 'usage: node scripts/opcua-read.mjs --token JWT [--url opc.tcp://127.0.0.1:4840] [--keys certs] NODEID… (e.g. "ns=1;s=packaging-line.speed")';

let args;
try {
  args = parseArgs({ options: { token: { type: "string" }, url: { type: "string", default: "opc.tcp://127.0.0.1:4840" }, keys: { type: "string", default: "certs" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
} catch (e) {
  console.error(`opcua-read: ${e.message.split("\n")[0]}\n${USAGE}`);
  process.exit(2);
}
if (args.values.help) {
  console.log(USAGE);
  process.exit(0);
}
const token = args.values.token?.trim();
if (!token || args.positionals.length === 0) {
  console.error(`opcua-read: ${!token ? "--token is required (TOKEN=$(npx ztgate token issue …))" : "give at least one node id"}\n${USAGE}`);
  process.exit(2);
}
let sub;
try {
  sub = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")).sub;
} catch {
  sub = undefined;
}
if (typeof sub !== "string" || sub === "") {
  console.error("opcua-read: --token is not a JWT with a sub claim");
  process.exit(2);
}

// The project's own certificate code, through tsx as bin/ztgate.js runs it.
register();
const { issueClientCertificate } = await import("../src/auth/certs.ts");
const { KEY_FILES, privateKeyPem, readCa, writeKeyFile } = await import("../src/auth/keys.ts");
const { AttributeIds, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, UserTokenType, setErrorLogger, setWarningLogger } = await import("node-opcua");
// node-opcua prints on stdout; its messages go to stderr here, without the notice about
// PKCS#1 v1.5 (CVE-2023-46809), which the OAEP policy used here does not need.
const toStderr = (_context, ...a) => {
  const text = a.map(String).join(" ");
  if (!text.includes("CVE-2023-46809") && !text.includes("NODE-OPCUA-W27")) console.error(text);
};
setWarningLogger(toStderr);
setErrorLogger(toStderr);

const keys = resolve(args.values.keys);
const dir = await mkdtemp(join(tmpdir(), "ztgate-opcua-read-"));
let code = 1;
let client;
let cm;
try {
  const applicationUri = "urn:ztgate:quickstart:opcua-read";
  await mkdir(join(dir, "trusted", "certs"), { recursive: true });
  await mkdir(join(dir, "trusted", "crl"), { recursive: true });
  await copyFile(join(keys, KEY_FILES.caCert), join(dir, "trusted", "certs", "ztgate-dev-ca.pem"));
  await copyFile(join(keys, KEY_FILES.pkiCrl), join(dir, "trusted", "crl", "ztgate-dev-ca.crl.der"));
  const issued = await issueClientCertificate(await readCa(keys), { cn: "opcua-read", opcuaAppUri: applicationUri, days: 30 });
  const certificateFile = join(dir, "own", "certs", "opcua-read.pem");
  const privateKeyFile = join(dir, "own", "private", "opcua-read.key.pem");
  await writeKeyFile(privateKeyFile, await privateKeyPem(issued.keys), 0o600);
  await writeKeyFile(certificateFile, issued.cert.toString("pem") + "\n", 0o644);

  cm = new OPCUACertificateManager({ rootFolder: dir, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
  client = OPCUAClient.create({
    applicationName: "ztgate quick start reader",
    applicationUri,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    clientCertificateManager: cm,
    certificateFile,
    privateKeyFile,
    connectionStrategy: { maxRetry: 0 },
  });
  await client.connect(args.values.url);
  const session = await client.createSession({ type: UserTokenType.UserName, userName: sub, password: token });
  const values = await session.read(args.positionals.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
  code = 0;
  values.forEach((dv, i) => {
    console.log(`${args.positionals[i]} = ${JSON.stringify(dv.value?.value ?? null)} (${dv.statusCode.name})`);
    if (dv.statusCode.name !== "Good") code = 1;
  });
  await session.close();
} catch (e) {
  console.error(`opcua-read: ${args.values.url}: ${e.message.split("\n")[0]}`);
  code = 1;
} finally {
  await client?.disconnect().catch(() => undefined);
  await cm?.dispose().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
process.exit(code);
