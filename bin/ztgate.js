#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader, so `npx ztgate` and `npm start`
// work right after `npm ci` with no build step and can never run stale output.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/index.ts");
process.exitCode = await main(process.argv.slice(2));
// The command is done (for `start`: every part stopped, the log flushed and checkpointed).
// Work a library left behind must not hold the exit: node-opcua, once loaded, runs a 4096-bit
// RSA key generation to probe for CVE-2023-46809 that can take seconds on a busy machine, and
// its clients keep timers. An unref'd timer never delays an exit that happens on its own.
setTimeout(() => process.exit(), 2000).unref();
