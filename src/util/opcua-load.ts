// node-opcua is loaded only by a gateway that needs it (an OPC UA front, the simulated OPC UA
// server, or an OPC UA asset in the policy): loading it takes ~2 s and ~50 MB, and starts a
// 4096-bit RSA key generation of its own (a check for CVE-2023-46809) that a Modbus-only
// gateway has no use for. Every module of the gateway that imports node-opcua is reached
// through here, so that node-opcua's own messages go to the gateway's log (util/opcua-logging.ts)
// from its first one on: the routing is set in the same turn as the import that loads it,
// before the asynchronous check that prints its first message can finish.
import type { Logger } from "pino";

/** Loads node-opcua with its messages routed into `log`, then `load` (a module that uses it). */
export async function withOpcua<T>(log: Logger, load: () => Promise<T>): Promise<T> {
  const { routeOpcuaLogs } = await import("./opcua-logging.js");
  routeOpcuaLogs(log);
  return load();
}
