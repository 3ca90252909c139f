// The gateway as bench/modbus runs it: the boiler policy pointed at the bench's simulated PLC,
// one lease listener on a free port, the decision log with its defaults (group commit), no
// HTTP API, no OPC UA; a lease for 127.0.0.1 opened on a verified token, as POST /v1/sessions
// opens it (role historian: FC3 reads of the boiler are allowed).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { issueToken } from "../../src/auth/issue.js";
import { KEY_FILES, readPrivateKey } from "../../src/auth/keys.js";
import { parseConfig } from "../../src/config/load.js";
import type { Gateway } from "../../src/main.js";
import { startGateway } from "../../src/main.js";

const BOILER = fileURLToPath(new URL("../../policies/boiler-plc.yaml", import.meta.url));

export interface BenchGateway {
  readonly gw: Gateway;
  /** The lease listener's port. */
  readonly port: number;
}

/** Starts the gateway in `root` (a fresh directory) in front of the PLC at `plcPort`. */
export async function startBenchGateway(root: string, plcPort: number, listener: { maxConnections?: number } = {}): Promise<BenchGateway> {
  await mkdir(path.join(root, "policies"), { recursive: true });
  await writeFile(path.join(root, "policies", "boiler-plc.yaml"), (await readFile(BOILER, "utf8")).replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${plcPort}`));
  const yaml = [
    "policy: { dir: policies, watch: false }",
    "log: { dir: data/decisions }",
    "modbus:",
    `  listeners: [{ name: lease, mode: lease, port: 0${listener.maxConnections !== undefined ? `, maxConnections: ${listener.maxConnections}` : ""} }]`,
    "opcua: { front: { enabled: false } }",
    "sim: { modbus: { enabled: false }, opcua: { enabled: false } }",
    "http: { enabled: false }",
    "",
  ].join("\n");
  const file = path.join(root, "gateway.yaml");
  await writeFile(file, yaml);
  const gw = await startGateway(parseConfig(file, yaml), pino({ level: "silent" }));
  const token = await issueToken({ key: await readPrivateKey(path.join(gw.config.keys.dir, KEY_FILES.issuerKey)), sub: "bench-historian", roles: ["historian"], ttl: 3600 });
  const v = await gw.verifier.verify(token);
  if (!v.ok) throw new Error(`token refused: ${v.detail}`);
  gw.sessions.open(v.principal, { kind: "lease", protocol: "modbus", source: "127.0.0.1" });
  return { gw, port: (gw.modbus[0]?.address() as { port: number }).port };
}
