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

/**
 * Colour for a terminal only: the escape codes are added when `stream` is a TTY, NO_COLOR is
 * not set and TERM is not "dumb" (https://no-color.org); pipes, files and tests get plain text.
 */
export function colours(stream: { isTTY?: boolean } = process.stdout) {
  const env = process.env;
  const on = stream.isTTY === true && env["NO_COLOR"] === undefined && env["TERM"] !== "dumb";
  const paint = (code: number) => (s: string) => (on ? `\u001b[${code}m${s}\u001b[0m` : s);
  return { green: paint(32), red: paint(31), yellow: paint(33), bold: paint(1) };
}

export interface Progress {
  /** The current state of the work, shown on one line that rewrites itself (throttled). */
  update(text: string): void;
  /** Clears the line. */
  done(): void;
}

/** A progress line on stderr for long work, only when stderr is a terminal; otherwise it does nothing. */
export function progressLine(stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || process.env["TERM"] === "dumb") return { update: () => undefined, done: () => undefined };
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      shown = true;
      const width = (stream.columns ?? 80) - 1;
      stream.write(`\r${text.length > width ? text.slice(0, width) : text}\u001b[K`);
    },
    done() {
      if (shown) stream.write("\r\u001b[K");
      shown = false;
    },
  };
}
