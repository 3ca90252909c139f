// Composition root: load config, build the parts, start them in order, stop in reverse.
// Today the gateway holds the policy (loaded, watched, reloaded on SIGHUP); the protocol
// fronts, the decision log and the HTTP API are added here as they land.
import { pino } from "pino";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config/schema.js";
import { PolicyStore } from "./policy/store.js";
import { displayPath } from "./policy/load.js";

export interface Gateway {
  readonly policy: PolicyStore;
  stop(): Promise<void>;
}

export function createLogger(): Logger {
  return pino({ name: "ztgate", level: process.env["ZTGATE_LOG_LEVEL"] ?? "info" });
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<Gateway> {
  const policy = await PolicyStore.open(config.policy.dir, { watch: config.policy.watch, debounceMs: config.policy.debounceMs });
  const set = policy.current();
  log.info({ revision: set.revision, dir: displayPath(config.policy.dir), assets: [...set.assets.keys()] }, "policy loaded");
  policy.on("reloaded", (r) => log.info({ revision: r.revision, previousRevision: r.previousRevision, trigger: r.trigger }, "policy reloaded"));
  policy.on("rejected", (r) => log.warn({ revision: r.revision, trigger: r.trigger, errors: r.errors }, "policy change rejected; previous policy stays in force"));
  const onHup = () => void policy.reload("sighup");
  process.on("SIGHUP", onHup);
  return {
    policy,
    async stop() {
      process.off("SIGHUP", onHup);
      policy.close();
    },
  };
}
