// opcua.front.advertisedHost: the host in the endpoint URLs the front hands out on GetEndpoints
// (what clients reach the gateway by, e.g. behind Docker's port publishing or a DNS name),
// put in the front's certificate as a DNS name, while the front listens where `host` says.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { OPCUAClient } from "node-opcua";
import { x509 } from "../../src/auth/x509.js";
import { FRONT_CERT } from "../../src/fronts/opcua-certs.js";
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

t.test("left out: the listen host", async (t) => {
  const h = await startFrontHarness(t);
  t.match(h.address.endpointUrl, /^opc\.tcp:\/\/127\.0\.0\.1:\d+$/);
  t.same([...new Set(await endpointsOf(h.address.endpointUrl))], [h.address.endpointUrl]);
});
