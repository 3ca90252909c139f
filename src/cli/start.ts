// `ztgate start [--config F]`: runs until SIGINT/SIGTERM, then stops cleanly (exit 0).
import path from "node:path";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { createLogger, startGateway } from "../main.js";
import { displayPath } from "../policy/load.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

export async function startCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { config: { type: "string" } }, "ztgate start [--config F]");
  const file = values.config !== undefined ? path.resolve(values.config) : defaultConfigPath();
  const config = await loadConfig(file);
  const log = createLogger();
  const gw = await startGateway(config, log);
  const set = gw.policy.current();
  io.out(`ztgate is running with ${displayPath(file)}
  policy: ${set.assets.size} assets (${[...set.assets.keys()].join(", ")}), revision ${set.revision}, from ${displayPath(config.policy.dir)}
  edits to the policy files are checked and applied live (also on SIGHUP); a change with errors is rejected whole.
  decision log: ${displayPath(config.log.dir)} (verify with: npx ztgate log verify)
  keys and certificates: ${displayPath(config.keys.dir)}
  In this release the gateway decides, logs and explains; the Modbus, OPC UA and HTTP fronts are not part of it yet.
  Try:  npx ztgate token issue --sub hist-1 --role historian
        npx ztgate policy explain --asset boiler-plc --action read --point temperature --token <that token>
        npx ztgate policy explain --asset boiler-plc --action write --point burner_on --value true --sub mes-1 --role mes
  Stop with Ctrl-C.`);
  // Nothing else holds the event loop open yet (the policy watcher is not persistent), so a
  // timer does until a signal comes; without it Node exits at once with code 13.
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
