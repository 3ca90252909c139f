// `ztgate start [--config F]`: runs until SIGINT/SIGTERM, then stops cleanly (exit 0).
import path from "node:path";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { displayPath } from "../policy/load.js";
import type { GatewayConfig } from "../config/schema.js";
import type { Gateway } from "../main.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

export async function startCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { config: { type: "string" } }, "ztgate start [--config F]");
  // (`ztgate start --help` is answered by help.ts before this runs.)
  const file = values.config !== undefined ? path.resolve(values.config) : defaultConfigPath();
  const config = await loadConfig(file);
  // Loaded only now, after the config is known to be valid (main.ts loads node-opcua in turn
  // only for the parts that need it: util/opcua-load.ts).
  const { createLogger, startGateway } = await import("../main.js");
  const log = createLogger();
  // The signal handlers come first: Ctrl-C while the parts start still stops them cleanly
  // (once started) instead of killing the process half-way.
  let signalled!: () => void;
  const stopRequested = new Promise<void>((resolve) => (signalled = resolve));
  const done = () => {
    process.off("SIGINT", done);
    process.off("SIGTERM", done);
    signalled();
  };
  process.on("SIGINT", done);
  process.on("SIGTERM", done);
  let gw: Gateway;
  try {
    gw = await startGateway(config, log);
  } catch (e) {
    done();
    throw e;
  }
  // stdout carries the JSON logs (pino, SPEC §7); the guide for people goes to stderr.
  io.err(guide(file, config, gw));
  // With no listener configured nothing else holds the event loop open (the policy watcher is
  // not persistent), so a timer does until a signal comes; without it Node exits with code 13.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await stopRequested;
  clearInterval(keepAlive);
  await gw.stop();
  log.info("stopped");
  return 0;
}

/** Where a client on this machine reaches a listener bound to `host` (wildcards mean here). */
function reach(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * What `npm start` prints once every part is up (on stderr: stdout carries the JSON logs):
 * what runs where, then commands that work verbatim from the repository root with the
 * addresses bound. Lines starting with `  $ ` are those commands, run by
 * test/e2e/quickstart.test.ts and shown in the README's quick start.
 */
export function guide(file: string, config: GatewayConfig, gw: Gateway): string {
  const set = gw.policy.current();
  const ca = displayPath(path.join(config.keys.dir, "ca.pem"));
  const lines = [
    `ztgate is running with ${displayPath(file)}`,
    `  policy: ${set.assets.size} assets (${[...set.assets.keys()].join(", ")}), revision ${set.revision}, from ${displayPath(config.policy.dir)}`,
    "  edits to the policy files are checked and applied live (also on SIGHUP); a change with errors is rejected whole.",
    `  decision log: ${displayPath(config.log.dir)}`,
    `  keys and certificates: ${displayPath(config.keys.dir)}`,
  ];
  const plc = gw.plc?.address();
  if (plc) lines.push(`  simulated boiler PLC (boiler-plc): ${plc.host}:${plc.port}, unit ${config.sim.modbus.unitId}`);
  const line = gw.opcuaSim?.endpointUrl();
  if (line) lines.push(`  simulated packaging line (packaging-line): ${line}`);
  for (const f of gw.modbus) {
    const a = f.address();
    if (a) lines.push(`  Modbus front "${f.name}" (${f.mode === "lease" ? "plain TCP, a lease per source address" : "Modbus/TCP Security: TLS with a client certificate carrying the role"}): ${a.host}:${a.port}`);
  }
  const ua = gw.opcua?.address();
  if (ua) lines.push(`  OPC UA front: ${ua.endpointUrl}`);
  const http = gw.http;
  const base = http ? `${http.tls ? "https" : "http"}://${reach(http.address.host)}:${http.address.port}` : undefined;
  if (base) lines.push(`  HTTP API: ${base}${http?.tls ? ` (dev CA: ${ca})` : ""}`, `  review page: ${base}/ui/`);

  // The commands: only those whose parts run, each one line, with the addresses bound.
  const curl = `curl -sS -w '\\n' ${http?.tls ? `--cacert ${ca} ` : ""}`;
  const lease = gw.modbus.find((f) => f.mode === "lease")?.address();
  const unit = set.assets.get("boiler-plc")?.frontUnit ?? 1;
  const cmds: string[] = ["", "Try it from the repository root, in another terminal (bash or zsh):", "  $ TOKEN=$(npx ztgate token issue --sub hist-1 --role historian)", "    a 15-minute token for subject hist-1 with role historian"];
  if (base && lease) {
    const py = (call: string) => `  $ /usr/bin/python3 -c "from pymodbus.client import ModbusTcpClient as C; c = C('${reach(lease.host)}', port=${lease.port}); c.connect(); print(${call})"`;
    cmds.push(
      `  $ ${curl}-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{"protocol":"modbus"}' ${base}/v1/sessions`,
      "    a lease: plain Modbus TCP from this address is served until the token expires",
      py(`c.read_holding_registers(100, count=2, slave=${unit}).registers`),
      "    setpoint and mode, holding registers 100-101 (0-based; mbpoll and many HMIs call them 101-102, or 40101-40102)",
      py(`c.write_register(100, 50, slave=${unit})`),
      "    refused with exception 01 (IllegalFunction): a historian may not write",
    );
  }
  if (base) cmds.push(`  $ ${curl}-H "Authorization: Bearer $TOKEN" ${base}/v1/assets/boiler-plc/points/temperature`, "    the same read over the HTTP API: value, quality, timestamp and the decision's id");
  if (ua) {
    const url = `opc.tcp://${reach(ua.host)}:${ua.port}`;
    cmds.push(`  $ node scripts/opcua-read.mjs --token "$TOKEN" --url ${url} --keys ${displayPath(config.keys.dir)} "ns=1;s=packaging-line.speed" "ns=1;s=boiler-plc.temperature"`, "    read over OPC UA (SignAndEncrypt; the user name is the token's sub, the password the token)");
  }
  cmds.push(
    "  $ npx ztgate log query --subject hist-1",
    "    every decision about hist-1: the reads allowed, the write refused",
    "  $ npx ztgate log query --decision deny",
    "    the refused write (and any other deny), with its reason and rule",
    "  $ npx ztgate log verify",
    "    the decision log's hash chain and signed checkpoints are intact",
  );
  if (base) cmds.push(`  The review page ${base}/ui/ (trust ${ca} in the browser) asks for a token with the auditor role:`, "  $ npx ztgate token issue --sub auditor-1 --role auditor");
  cmds.push("Stop with Ctrl-C. Connections are closed, the decision log is flushed and checkpointed.");
  return [...lines, ...cmds].join("\n");
}
