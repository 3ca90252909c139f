#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader, so `npx ztgate` and `npm start`
// work right after `npm ci` with no build step and can never run stale output.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/index.ts");
process.exitCode = await main(process.argv.slice(2));
