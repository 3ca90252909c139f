// `ztgate sim [--config F]`: the simulated plant of the config's `sim:` section on its own (the
// boiler PLC on Modbus TCP, the packaging line OPC UA server), without the gateway: the
// `plant` service of docker/compose.yaml, or a plant for a gateway started elsewhere. Runs
// until SIGINT/SIGTERM, then stops cleanly (exit 0).
import path from "node:path";
import { join } from "node:path";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { displayPath } from "../policy/load.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

export const SIM_USAGE = "ztgate sim [--config F]";

const HELP = `usage: ${SIM_USAGE}
Runs only the simulated plant of the configuration's sim: section, whatever its "enabled"
says (that setting is whether \`ztgate start\` runs the plant in-process; a gateway in another
process or container sets it to false and reaches this one over the network):
  the boiler PLC (Modbus TCP)           sim.modbus.host:port, unit sim.modbus.unitId
  the packaging line (OPC UA server)    opc.tcp://sim.opcua.host:port (PKI: keys.dir/sim-opcua-pki)
Prints where each listens, then runs until Ctrl-C or SIGTERM (exit 0).
  --config F   the configuration (default: gateway.yaml of this repository)`;

export interface SimCommandOptions {
  /** Lets a test (or an embedding) stop the plant; it also stops on SIGINT/SIGTERM. */
  readonly signal?: AbortSignal;
}

export async function simCommand(argv: string[], io: Io, options: SimCommandOptions = {}): Promise<number> {
  const { values } = parse(argv, { config: { type: "string" }, help: { type: "boolean", short: "h" } }, SIM_USAGE);
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  const file = values.config !== undefined ? path.resolve(values.config) : defaultConfigPath();
  const config = await loadConfig(file);
  // Loaded only now: node-opcua prints warnings of its own at load, which must not follow a
  // usage or config error.
  const [{ SimulatedPlc }, { SimulatedOpcuaServer }, { routeOpcuaLogs }, { pino }] = await Promise.all([import("../sim/plc.js"), import("../sim/opcua.js"), import("../util/opcua-logging.js"), import("pino")]);
  // node-opcua's own messages as JSON lines on stderr, beside the lines above on stdout.
  routeOpcuaLogs(pino({ name: "ztgate-sim", level: process.env["ZTGATE_LOG_LEVEL"] ?? "info" }, pino.destination(2)));

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch((e: unknown) => io.err(`ztgate sim: stopping: ${(e as Error).message}`));
  };
  try {
    const m = config.sim.modbus;
    const plc = new SimulatedPlc({ scanMs: m.scanMs });
    const plcPort = await plc.start({ host: m.host, port: m.port, unitId: m.unitId });
    stops.push(() => plc.stop());
    io.out(`simulated boiler PLC (boiler-plc):            tcp://${hostPort(m.host, plcPort)}, unit ${m.unitId}`);

    const u = config.sim.opcua;
    const line = new SimulatedOpcuaServer({ scanMs: u.scanMs, pkiDir: join(config.keys.dir, "sim-opcua-pki") });
    await line.start({ host: u.host, port: u.port });
    stops.push(() => line.stop());
    io.out(`simulated packaging line (packaging-line):    ${line.endpointUrl() ?? "?"}`);
  } catch (e) {
    await stopAll();
    throw e;
  }
  io.out(`with ${displayPath(file)}; stop with Ctrl-C`);

  await new Promise<void>((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      options.signal?.removeEventListener("abort", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
    if (options.signal?.aborted) done();
    options.signal?.addEventListener("abort", done, { once: true });
  });
  await stopAll();
  io.out("simulated plant stopped");
  return 0;
}

function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
