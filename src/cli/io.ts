// What a command writes to; tests pass their own to read the output in-process.
import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.js";

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

// A reader that goes away early (`ztgate policy explain … | head -1`) is not ztgate's error:
// output stops and the command still ends with its own exit code, not an EPIPE stack trace.
let stdoutGone = false;
let watchingStdout = false;
function writeOut(line: string): void {
  if (!watchingStdout) {
    watchingStdout = true;
    process.stdout.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") throw e;
      stdoutGone = true;
    });
  }
  if (!stdoutGone) process.stdout.write(line + "\n");
}

export const processIo: Io = {
  out: writeOut,
  err: (line) => process.stderr.write(line + "\n"),
};

type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs, strict, with its errors turned into one-line usage errors. */
export function parse<O extends Options>(argv: string[], options: O, usage: string, maxPositionals = 0) {
  let r;
  try {
    r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]}; usage: ${usage}`);
  }
  if (r.positionals.length > maxPositionals) throw new UsageError(`unexpected argument "${r.positionals[maxPositionals]}"; usage: ${usage}`);
  return r;
}
