// opcua.front.advertisedHost: the host in the endpoint URLs the front hands out on GetEndpoints
// (what clients reach the gateway by, e.g. behind Docker's port publishing or a DNS name),
// put in the front's certificate as a DNS name (an address as an IP address), while the front
// listens where `host` says.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { OPCUAClient } from "node-opcua";
import { x509 } from "../../src/auth/x509.js";
import { initKeys } from "../../src/auth/keys.js";
import { FRONT_CERT, ensureFrontCertificate } from "../../src/fronts/opcua-certs.js";
import { startFrontHarness } from "../support/opcua-front.js";

t.setTimeout(120_000);

async function endpointsOf(url: string): Promise<string[]> {
  const client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
  await client.connect(url);
  try {
    return (await client.getEndpoints()).map((e) => e.endpointUrl ?? "");
  } finally {
    await client.disconnect();
  }
}

const sansOf = (file: string, type: string) =>
  new x509.X509Certificate(readFileSync(file, "utf8")).getExtension(x509.SubjectAlternativeNameExtension)?.names.items.filter((n) => n.type === type).map((n) => n.value) ?? [];

t.test("a name: in every endpoint URL and in the certificate; the listener stays on 127.0.0.1", async (t) => {
  const h = await startFrontHarness(t, { front: ["advertisedHost: gateway.plant.example"] });
  t.equal(h.address.host, "127.0.0.1", "listens where host says");
  t.match(h.address.endpointUrl, /^opc\.tcp:\/\/gateway\.plant\.example:\d+$/, "the address it reports is the advertised one");
  const port = h.address.port;
  const urls = await endpointsOf(`opc.tcp://127.0.0.1:${port}`);
  t.ok(urls.length > 0);
  t.same([...new Set(urls)], [`opc.tcp://gateway.plant.example:${port}`], "GetEndpoints advertises the name");
  const cert = new x509.X509Certificate(readFileSync(join(h.front.pki(), FRONT_CERT), "utf8"));
  const dns = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.filter((n) => n.type === "dns").map((n) => n.value) ?? [];
  t.ok(dns.includes("gateway.plant.example"), `the certificate names it (${dns.join(", ")})`);
  t.ok(dns.includes("localhost"), "and still the machine's names");
});

t.test("an IPv6 address: in brackets in every endpoint URL", async (t) => {
  const h = await startFrontHarness(t, { front: ['advertisedHost: "[::1]"'] });
  t.match(h.address.endpointUrl, /^opc\.tcp:\/\/\[::1\]:\d+$/);
  t.same([...new Set(await endpointsOf(`opc.tcp://127.0.0.1:${h.address.port}`))], [`opc.tcp://[::1]:${h.address.port}`]);
  t.same(sansOf(join(h.front.pki(), FRONT_CERT), "ip").length, 1, "and in the certificate as an address");
});

t.test("left out: the listen host, an address, in the URLs and as the certificate's IP address", async (t) => {
  const h = await startFrontHarness(t);
  t.match(h.address.endpointUrl, /^opc\.tcp:\/\/127\.0\.0\.1:\d+$/);
  t.same([...new Set(await endpointsOf(h.address.endpointUrl))], [h.address.endpointUrl]);
  t.same(sansOf(join(h.front.pki(), FRONT_CERT), "ip"), ["127.0.0.1"], "an IP SAN, so clients that check the host against the certificate accept it");
});

t.test("the certificate follows the advertised address: kept while it names it, made again when it does not", async (t) => {
  const dir = t.testdir({ keys: {}, pki: {} });
  await initKeys(join(dir, "keys"));
  const pki = join(dir, "pki");
  const uri = "urn:ztgate:test-front";
  const first = await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "[::1]");
  t.equal(first.status, "created");
  t.same(sansOf(first.certificateFile, "ip").length, 1);
  t.notOk(sansOf(first.certificateFile, "dns").includes("[::1]") || sansOf(first.certificateFile, "dns").includes("::1"), "an address is not a DNS name");
  t.equal((await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "[0:0:0:0:0:0:0:1]")).status, "kept", "the same address written another way");
  t.equal((await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "127.0.0.1")).status, "created", "another address");
  t.same(sansOf(first.certificateFile, "ip"), ["127.0.0.1"]);
  t.equal((await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "127.0.0.1")).status, "kept");
  t.equal((await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "[::ffff:127.0.0.1]")).status, "kept", "an IPv4-mapped IPv6 address is that IPv4 address");
  t.equal((await ensureFrontCertificate(pki, join(dir, "keys"), uri, new Date(), "gateway.plant.example")).status, "created", "a name");
  t.ok(sansOf(first.certificateFile, "dns").includes("gateway.plant.example"));
});
