// The Docker files cannot be run on the test machines; what can be checked without Docker is
// checked here: the container's gateway.yaml goes through the real config loader, differs from
// the embedded default only where it must, and agrees with the Dockerfile and compose.yaml on
// ports and paths.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parse } from "yaml";
import { loadConfig, parseConfig } from "../../src/config/load.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const read = (f: string) => readFileSync(join(ROOT, f), "utf8");

t.test("docker/gateway.yaml loads with the real loader", async (t) => {
  const c = await loadConfig(join(ROOT, "docker", "gateway.yaml"));
  t.same(c.modbus.listeners.map((l) => [l.name, l.mode, l.host, l.port]), [["lease", "lease", "0.0.0.0", 5020], ["mtls", "mtls", "0.0.0.0", 8020]]);
  t.same([c.opcua.front.enabled, c.opcua.front.host, c.opcua.front.port], [true, "0.0.0.0", 4840]);
  t.same([c.http.enabled, c.http.host, c.http.port, c.http.tls], [true, "0.0.0.0", 8443, true]);
  t.equal(c.sim.modbus.enabled, false, "the plant is its own service");
  t.equal(c.sim.opcua.enabled, false);
});

t.test("as /app/gateway.yaml in the image it equals the embedded default except the listener hosts, the OPC UA front's advertised host and the sim", async (t) => {
  // Paths resolve against the file's directory: /app in the image (Dockerfile WORKDIR).
  const docker = parseConfig("/app/gateway.yaml", read("docker/gateway.yaml"));
  const embedded = parseConfig("/app/gateway.yaml", read("gateway.yaml"));
  t.equal(docker.keys.dir, "/app/certs");
  t.equal(docker.policy.dir, "/app/policies");
  t.match(docker.log.dir, /^\/app\/data\//, "the decision log is under the data volume");
  const expected = structuredClone(embedded) as unknown as Record<string, Record<string, unknown>>;
  const e = expected as unknown as { modbus: { listeners: { host: string }[] }; opcua: { front: { host: string; advertisedHost?: string } }; http: { host: string }; sim: { modbus: { enabled: boolean }; opcua: { enabled: boolean } } };
  for (const l of e.modbus.listeners) l.host = "0.0.0.0";
  e.opcua.front.host = "0.0.0.0";
  // Clients reach it by compose's published port on the host's loopback.
  e.opcua.front.advertisedHost = "localhost";
  e.http.host = "0.0.0.0";
  e.sim.modbus.enabled = false;
  e.sim.opcua.enabled = false;
  t.same(docker, expected);
});

t.test("the Dockerfile and compose.yaml agree with it", async (t) => {
  const c = parseConfig("/app/gateway.yaml", read("docker/gateway.yaml"));
  const ports = [...c.modbus.listeners.map((l) => l.port), c.opcua.front.port, c.http.port].sort();
  const dockerfile = read("docker/Dockerfile");
  t.match(dockerfile, /^COPY docker\/gateway\.yaml \.\/gateway\.yaml$/m);
  const expose = /^EXPOSE (.+)$/m.exec(dockerfile)?.[1]?.split(/\s+/).map(Number).sort();
  t.same(expose, ports, "EXPOSE lists every listener");
  t.match(dockerfile, /^USER node$/m, "runs as a non-root user");

  const compose = parse(read("docker/compose.yaml")) as { services: Record<string, { command?: string[]; ports?: string[]; volumes?: string[]; network_mode?: string }> };
  const published = (compose.services["plant"]?.ports ?? []).map((p) => p.split(":"));
  t.ok(published.length > 0);
  for (const p of published) t.equal(p[0], "127.0.0.1", `${p.join(":")} is published on the host's loopback only`);
  t.same(published.map((p) => Number(p[2])).sort(), ports, "every listener is published");
  t.same(compose.services["plant"]?.command, ["sim"]);
  t.same(compose.services["gateway"]?.command, ["start"]);
  t.equal(compose.services["gateway"]?.network_mode, "service:plant");
  t.ok(compose.services["gateway"]?.volumes?.some((v) => v.endsWith(":/app/policies:ro")), "policies mounted read-only");
  t.ok(compose.services["gateway"]?.volumes?.some((v) => v.endsWith(":/app/certs")), "certs mounted");
});
