// `ztgate start [--config F]`: runs until SIGINT/SIGTERM, then stops cleanly (exit 0).
import path from "node:path";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { createLogger, startGateway } from "../main.js";
import { displayPath } from "../policy/load.js";
import type { GatewayConfig } from "../config/schema.js";
import type { Gateway } from "../main.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

export async function startCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { config: { type: "string" } }, "ztgate start [--config F]");
  const file = values.config !== undefined ? path.resolve(values.config) : defaultConfigPath();
  const config = await loadConfig(file);
  const log = createLogger();
  const gw = await startGateway(config, log);
  io.out(banner(file, config, gw));
  // With no listener configured nothing else holds the event loop open (the policy watcher is
  // not persistent), so a timer does until a signal comes; without it Node exits with code 13.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await new Promise<void>((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
  clearInterval(keepAlive);
  await gw.stop();
  log.info("stopped");
  return 0;
}

/** What `npm start` prints: what runs where, and the first requests to try (README quick start). */
function banner(file: string, config: GatewayConfig, gw: Gateway): string {
  const set = gw.policy.current();
  const lines = [
    `ztgate is running with ${displayPath(file)}`,
    `  policy: ${set.assets.size} assets (${[...set.assets.keys()].join(", ")}), revision ${set.revision}, from ${displayPath(config.policy.dir)}`,
    "  edits to the policy files are checked and applied live (also on SIGHUP); a change with errors is rejected whole.",
    `  decision log: ${displayPath(config.log.dir)} (verify with: npx ztgate log verify)`,
    `  keys and certificates: ${displayPath(config.keys.dir)}`,
  ];
  const plc = gw.plc?.address();
  if (plc) lines.push(`  simulated boiler PLC: ${plc.host}:${plc.port}, unit ${config.sim.modbus.unitId}`);
  for (const f of gw.modbus) {
    const a = f.address();
    if (a) lines.push(`  Modbus front "${f.name}" (${f.mode === "lease" ? "plain TCP, a lease per source address" : "Modbus/TCP Security: TLS with a client certificate carrying the role"}): ${a.host}:${a.port}`);
  }
  const http = gw.http;
  const base = http ? `${http.tls ? "https" : "http"}://${http.address.host}:${http.address.port}` : undefined;
  if (base) lines.push(`  HTTP API: ${base}${http?.tls ? ` (dev CA: ${displayPath(path.join(config.keys.dir, "ca.pem"))})` : ""}`);
  const lease = gw.modbus.find((f) => f.mode === "lease")?.address();
  const mtls = gw.modbus.find((f) => f.mode === "mtls")?.address();
  lines.push("  Try:  npx ztgate token issue --sub hist-1 --role historian");
  if (base && lease) {
    const cacert = http?.tls ? `--cacert ${displayPath(path.join(config.keys.dir, "ca.pem"))} ` : "";
    lines.push(
      `        curl ${cacert}-H "Authorization: Bearer <that token>" -H "Content-Type: application/json" \\`,
      `             -d '{"protocol":"modbus"}' ${base}/v1/sessions     # a lease for this address`,
      `        mbpoll -m tcp -a 1 -p ${lease.port} -t 4 -r 101 -c 2 -1 ${lease.host}   # holding 100-101 (mbpoll counts from 1)`,
      `        python3 -c "from pymodbus.client import ModbusTcpClient as C; c=C('${lease.host}', port=${lease.port}); c.connect(); print(c.read_holding_registers(100, count=2, slave=1).registers)"`,
      "        Addresses are 0-based protocol addresses: holding 100 is what mbpoll and many HMIs call 40101.",
      "        A write of burner_on (coil 0) is refused with exception 01, and every decision is in the log.",
    );
  }
  if (mtls) lines.push(`        npx ztgate cert issue --cn hist-1 --role historian   # a client certificate for the mtls front on ${mtls.host}:${mtls.port}`);
  lines.push(
    "        npx ztgate policy explain --asset boiler-plc --action write --point burner_on --value true --sub mes-1 --role mes",
    "  Stop with Ctrl-C.",
  );
  return lines.join("\n");
}
