// initKeys on a real directory: the files, their modes, idempotency, --force, half-present
// pairs; and the certificates in use: a real TLS handshake with a client certificate on 127.0.0.1.
import { once } from "node:events";
import { readFile, rm, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { connect, createServer } from "node:tls";
import type { TLSSocket } from "node:tls";
import t from "tap";
import { issueClientCertificate } from "../../src/auth/certs.js";
import { initKeys, KEY_FILES, PKI_FOLDERS, privateKeyPem, readCa, readPrivateKey, readPublicKey } from "../../src/auth/keys.js";
import { certificateThumbprint, roleFromCertificate, x509 } from "../../src/auth/x509.js";

const PRIVATE = [KEY_FILES.caKey, KEY_FILES.serverKey, KEY_FILES.issuerKey, KEY_FILES.signingKey];
const PUBLIC = [KEY_FILES.caCert, KEY_FILES.serverCert, KEY_FILES.issuerPublicKey, KEY_FILES.signingPublicKey, KEY_FILES.pkiCa, KEY_FILES.pkiCrl];

const mode = async (f: string) => (await stat(f)).mode & 0o777;
const contents = async (dir: string) => Object.fromEntries(await Promise.all([...PRIVATE, ...PUBLIC].map(async (f) => [f, await readFile(join(dir, f), "utf8")])));

t.test("creates every file; private keys are 0600; a second run keeps them all", async (t) => {
  const dir = join(t.testdir({}), "certs");
  const first = await initKeys(dir);
  t.same(first.files.map((f) => f.status), Array(first.files.length).fill("created"));
  t.same(first.files.map((f) => f.file).sort(), [...PRIVATE, ...PUBLIC].sort());
  for (const f of PRIVATE) t.equal(await mode(join(dir, f)), 0o600, `${f} is 0600`);
  for (const f of PUBLIC) t.equal(await mode(join(dir, f)), 0o644, `${f} is 0644`);
  for (const f of PKI_FOLDERS) t.ok((await stat(join(dir, f))).isDirectory(), `${f}/`);

  const before = await contents(dir);
  const second = await initKeys(dir);
  t.same(second.files.map((f) => f.status), Array(second.files.length).fill("kept"));
  t.same(await contents(dir), before, "nothing changed");
});

t.test("--force recreates everything; the server certificate follows a new CA", async (t) => {
  const dir = t.testdir({});
  await initKeys(dir);
  const before = await contents(dir);
  const forced = await initKeys(dir, { force: true });
  t.ok(forced.files.every((f) => f.status === "replaced"));
  for (const f of [...PRIVATE, ...PUBLIC]) t.not((await contents(dir))[f], before[f], `${f} is new`);
  for (const f of PRIVATE) t.equal(await mode(join(dir, f)), 0o600, `${f} is still 0600`);

  // Without --force, a missing CA is created and the existing server certificate re-issued under it.
  await rm(join(dir, KEY_FILES.caCert));
  await rm(join(dir, KEY_FILES.caKey));
  const r = await initKeys(dir);
  t.match(Object.fromEntries(r.files.map((f) => [f.file, f.status])), {
    [KEY_FILES.caCert]: "created",
    [KEY_FILES.serverCert]: "replaced",
    [KEY_FILES.issuerKey]: "kept",
    [KEY_FILES.pkiCa]: "replaced",
  });
  const ca = await readCa(dir);
  const server = new x509.X509Certificate(await readFile(join(dir, KEY_FILES.serverCert), "utf8"));
  t.ok(await server.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }), "the server certificate is signed by the new CA");
});

t.test("a half-present pair is an error naming the missing file, and nothing is overwritten", async (t) => {
  const dir = t.testdir({});
  await initKeys(dir);
  const key = await readFile(join(dir, KEY_FILES.serverKey), "utf8");
  await rm(join(dir, KEY_FILES.serverCert));
  await t.rejects(initKeys(dir), { code: "ZT_KEYS_INVALID", message: /server\.pem: missing while server\.key\.pem exists; .*--force/ });
  t.equal(await readFile(join(dir, KEY_FILES.serverKey), "utf8"), key);
  await rm(join(dir, KEY_FILES.serverKey));
  const r = await initKeys(dir);
  t.match(r.files.find((f) => f.file === KEY_FILES.serverCert), { status: "created" });
  await t.rejects(initKeys(join(dir, KEY_FILES.caCert, "sub")), { code: "ZT_KEYS_INVALID", message: /cannot create the directory/ });
});

t.test("the keys read back: CA, issuer and signing keys", async (t) => {
  const dir = t.testdir({});
  await initKeys(dir);
  const ca = await readCa(dir);
  t.match(ca.cert.subject, /CN=ztgate development CA/);
  t.ok(ca.cert.getExtension(x509.BasicConstraintsExtension)?.ca, "a CA");
  t.match(await readPrivateKey(join(dir, KEY_FILES.issuerKey)), { type: "private", algorithm: { name: "Ed25519" } });
  t.match(await readPublicKey(join(dir, KEY_FILES.signingPublicKey)), { type: "public" });
  const crl = new x509.X509Crl(await readFile(join(dir, KEY_FILES.pkiCrl)));
  t.ok(await crl.verify({ publicKey: ca.cert.publicKey }), "the CRL is signed by the CA");
  t.same(crl.entries, [], "and empty");
  await t.rejects(readCa(join(dir, "nowhere")), { code: "ZT_KEYS_INVALID", message: /ca\.pem: cannot read .*keys init/ });
  await t.rejects(readPrivateKey(join(dir, KEY_FILES.caCert)), { code: "ZT_KEYS_INVALID", message: /not a PKCS#8 private key for EdDSA/ });
  await t.rejects(readPublicKey(join(dir, KEY_FILES.caKey)), { code: "ZT_KEYS_INVALID", message: /not an SPKI public key/ });
});

t.test("TLS on 127.0.0.1: the server certificate and a role certificate from the CA work for mTLS", async (t) => {
  const dir = t.testdir({});
  await initKeys(dir);
  const caPem = await readFile(join(dir, KEY_FILES.caCert), "utf8");
  const client = await issueClientCertificate(await readCa(dir), { cn: "mes-tool", role: "mes" });

  const server = createServer({
    cert: await readFile(join(dir, KEY_FILES.serverCert), "utf8"),
    key: await readFile(join(dir, KEY_FILES.serverKey), "utf8"),
    ca: caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  });
  const peers: Array<{ role: unknown; thumbprint: string }> = [];
  server.on("secureConnection", (s: TLSSocket) => {
    const raw = s.getPeerCertificate().raw;
    peers.push({ role: roleFromCertificate(raw), thumbprint: certificateThumbprint(raw) });
    s.end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.teardown(() => server.close());

  const socket = connect({
    host: "127.0.0.1",
    port: (server.address() as AddressInfo).port,
    ca: caPem,
    cert: client.cert.toString("pem"),
    key: await privateKeyPem(client.keys),
  });
  await once(socket, "secureConnect");
  t.ok(socket.authorized, `the client trusts the server certificate for 127.0.0.1 (${String(socket.authorizationError ?? "")})`);
  await once(socket, "end");
  socket.destroy();
  t.same(peers, [{ role: { role: "mes" }, thumbprint: certificateThumbprint(new Uint8Array(client.cert.rawData)) }]);
});
