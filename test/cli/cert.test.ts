// `ztgate cert issue`: role certificates, OPC UA application certificates, and its errors.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { initKeys } from "../../src/auth/keys.js";
import { roleFromCertificate, x509 } from "../../src/auth/x509.js";
import { main } from "../../src/cli/index.js";

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(...l.split("\n")), err: (l) => err.push(...l.split("\n")) });
  return { code, out, err };
}

const certs = join(t.testdir({}), "certs");
await initKeys(certs);

t.test("--role: a client certificate whose role extension reads back", async (t) => {
  const r = await run("cert", "issue", "--cn", "mes-tool", "--role", "mes", "--dir", certs);
  t.equal(r.code, 0);
  t.same(r.err, []);
  t.match(r.out, [/^certificate \S+clients\/mes-tool\.pem$/, /^key +\S+clients\/mes-tool\.key\.pem \(mode 0600\)$/, /^x5t#S256 +[\w-]{43}$/, /^subject +CN=mes-tool, O=ztgate development; role mes; valid until /]);
  t.equal((await stat(join(certs, "clients", "mes-tool.key.pem"))).mode & 0o777, 0o600);
  const pem = await readFile(join(certs, "clients", "mes-tool.pem"), "utf8");
  t.same(roleFromCertificate(pem), { role: "mes" });
  const ca = new x509.X509Certificate(await readFile(join(certs, "ca.pem"), "utf8"));
  t.ok(await new x509.X509Certificate(pem).verify({ publicKey: ca.publicKey, signatureOnly: true }), "issued by the dev CA");
});

t.test("--opcua --app-uri: an OPC UA application certificate with the SAN URI", async (t) => {
  const out = join(t.testdir({}), "out");
  const r = await run("cert", "issue", "--cn", "historian", "--opcua", "--app-uri", "urn:plant:historian", "--out", out, "--days", "30", "--dir", certs);
  t.equal(r.code, 0);
  const cert = new x509.X509Certificate(await readFile(join(out, "historian.pem"), "utf8"));
  t.same(cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [{ type: "url", value: "urn:plant:historian" }]);
  t.match(roleFromCertificate(new Uint8Array(cert.rawData)), { error: "none" });
  t.ok(cert.notAfter.getTime() - cert.notBefore.getTime() < 31 * 86_400_000, "--days 30");
});

t.test("an existing certificate is kept unless --force", async (t) => {
  t.equal((await run("cert", "issue", "--cn", "twice", "--dir", certs)).code, 0);
  const again = await run("cert", "issue", "--cn", "twice", "--dir", certs);
  t.equal(again.code, 1);
  t.match(again.err[0], /^ztgate: ZT_KEYS_INVALID: \S+twice\.pem: exists; use --force/);
  t.equal((await run("cert", "issue", "--cn", "twice", "--dir", certs, "--force")).code, 0);
});

t.test("errors: usage (exit 2) and no CA (exit 1)", async (t) => {
  for (const [argv, message] of [
    [["cert"], /^ztgate: no cert command given/],
    [["cert", "issue"], /^ztgate: --cn is required/],
    [["cert", "issue", "--cn", "x", "--role", "a", "--role", "b"], /^ztgate: give at most one --role/],
    [["cert", "issue", "--cn", "x", "--role", ""], /^ztgate: --role must not be empty/],
    [["cert", "issue", "--cn", "x", "--opcua"], /^ztgate: --opcua needs --app-uri/],
    [["cert", "issue", "--cn", "x", "--app-uri", "urn:a:b"], /^ztgate: --app-uri is for --opcua/],
    [["cert", "issue", "--cn", "x", "--opcua", "--app-uri", "not a uri"], /^ztgate: --app-uri "not a uri": must be a URI/],
    [["cert", "issue", "--cn", "x", "--days", "0"], /^ztgate: --days "0"/],
    [["cert", "issue", "--cn", "x", "--days", "1.5"], /^ztgate: --days "1\.5"/],
  ] as const) {
    const r = await run(...argv, ...(argv.length > 1 ? ["--dir", certs] : []));
    t.equal(r.code, 2, argv.join(" "));
    t.equal(r.err.length, 1);
    t.match(r.err[0], message);
  }
  const noCa = await run("cert", "issue", "--cn", "x", "--dir", join(certs, "..", "empty"));
  t.equal(noCa.code, 1);
  t.match(noCa.err[0], /^ztgate: ZT_KEYS_INVALID: \S+ca\.pem: cannot read/);
});
