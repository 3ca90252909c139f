// Certificates from the dev CA and the Modbus/TCP Security role extension read back from them.
import { webcrypto } from "node:crypto";
import t from "tap";
import { createCa, issueClientCertificate, issueServerCertificate } from "../../src/auth/certs.js";
import { certificateSubject, certificateThumbprint, MODBUS_ROLE_OID, roleExtension, roleFromCertificate, x509 } from "../../src/auth/x509.js";
import { AsnConvert, AsnIntegerConverter, AsnPrintableStringConverter, AsnUtf8StringConverter } from "@peculiar/asn1-schema";

const ca = await createCa();
const F = x509.KeyUsageFlags;

/** A client certificate carrying exactly `extensions` besides the usual ones. */
async function withExtensions(extensions: x509.Extension[], subject = "CN=odd"): Promise<Uint8Array> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: ca.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    extensions,
  });
  return new Uint8Array(cert.rawData);
}

t.test("the role extension round-trips through roleFromCertificate", async (t) => {
  const one = await issueClientCertificate(ca, { cn: "mes-tool", role: "mes" });
  const ext = one.cert.getExtension(MODBUS_ROLE_OID);
  t.equal(ext?.critical, false);
  t.same([...new Uint8Array(ext!.value)], [0x0c, 3, ...Buffer.from("mes")], "DER: UTF8String 'mes'");
  t.same(roleFromCertificate(new Uint8Array(one.cert.rawData)), { role: "mes" });
  t.same(roleFromCertificate(one.cert.toString("pem")), { role: "mes" }, "PEM too");
  t.same(roleFromCertificate(new Uint8Array((await issueClientCertificate(ca, { cn: "ü", role: "Schichtführer" })).cert.rawData)), { role: "Schichtführer" }, "UTF-8");

  const none = await issueClientCertificate(ca, { cn: "no-role" });
  t.match(roleFromCertificate(new Uint8Array(none.cert.rawData)), { error: "none", detail: /1\.3\.6\.1\.4\.1\.50316\.802\.1/ });
  t.match(roleFromCertificate(await withExtensions([roleExtension("mes"), roleExtension("historian")])), { error: "several", detail: /2 role extensions/ });
});

t.test("a role extension that is not exactly one non-empty UTF8String is malformed", async (t) => {
  const cases: Array<[string, ArrayBuffer]> = [
    ["PrintableString", AsnConvert.serialize(AsnPrintableStringConverter.toASN("mes"))],
    ["INTEGER", AsnConvert.serialize(AsnIntegerConverter.toASN(7))],
    ["empty UTF8String", AsnConvert.serialize(AsnUtf8StringConverter.toASN(""))],
    ["trailing bytes", new Uint8Array([...new Uint8Array(AsnConvert.serialize(AsnUtf8StringConverter.toASN("mes"))), 0]).buffer],
  ];
  for (const [name, value] of cases) {
    t.match(roleFromCertificate(await withExtensions([new x509.Extension(MODBUS_ROLE_OID, false, value)])), { error: "malformed" }, name);
  }
  t.match(roleFromCertificate(new Uint8Array([1, 2, 3])), { error: "malformed", detail: /does not parse/ });
  t.match(roleFromCertificate("not a certificate"), { error: "malformed" });
});

t.test("an OPC UA client application certificate has the SAN URI and OPC UA's key usages", async (t) => {
  const { cert } = await issueClientCertificate(ca, { cn: "historian", opcuaAppUri: "urn:plant:historian", role: "historian" });
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  t.same(san?.names.toJSON(), [{ type: "url", value: "urn:plant:historian" }]);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  t.equal(ku?.usages, F.digitalSignature | F.nonRepudiation | F.keyEncipherment | F.dataEncipherment);
  t.ok(ku?.critical);
  t.same(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages, [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]);
  t.equal(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  t.equal((cert.publicKey.algorithm as { modulusLength?: number }).modulusLength, 2048, "RSA 2048, as the OPC UA RSA profiles need");
  t.match(cert.signatureAlgorithm, { name: "RSASSA-PKCS1-v1_5", hash: { name: "SHA-256" } });
  t.ok(await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }), "signed by the CA");
  // node-opcua finds the issuer by matching these.
  t.same(
    Buffer.from(cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId!, "hex"),
    Buffer.from(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, "hex"),
  );
});

t.test("the server certificate names the loopback addresses", async (t) => {
  const { cert } = await issueServerCertificate(ca);
  t.same(cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ]);
  t.same(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages, [x509.ExtendedKeyUsage.serverAuth]);
});

t.test("a CN with DN syntax stays one CN", async (t) => {
  const { cert } = await issueClientCertificate(ca, { cn: "alice,O=evil" });
  t.same(cert.subjectName.getField("CN"), ["alice,O=evil"]);
  t.same(cert.subjectName.getField("O"), ["ztgate development"]);
});

t.test("certificateThumbprint is base64url SHA-256 of the DER (RFC 8705 x5t#S256)", async (t) => {
  const { cert } = await issueClientCertificate(ca, { cn: "x" });
  const der = new Uint8Array(cert.rawData);
  t.equal(certificateThumbprint(der), Buffer.from(await cert.getThumbprint("SHA-256")).toString("base64url"));
  t.match(certificateThumbprint(der), /^[A-Za-z0-9_-]{43}$/);
});

t.test("certificateSubject: the CN, else the SAN URI", async (t) => {
  const { cert } = await issueClientCertificate(ca, { cn: "plc-tool", role: "mes" });
  t.equal(certificateSubject(new Uint8Array(cert.rawData)), "plc-tool");
  t.equal(certificateSubject(cert.toString("pem")), "plc-tool");
  const uriOnly = await withExtensions([new x509.SubjectAlternativeNameExtension([{ type: "url", value: "urn:plant:tool" }])], "O=plant");
  t.equal(certificateSubject(uriOnly), "urn:plant:tool");
  t.equal(certificateSubject(await withExtensions([], "O=plant")), undefined);
  t.equal(certificateSubject("junk"), undefined);
});
