// `ztgate keys init [--dir DIR] [--force]`: the development keys and certificates (SPEC §2).
import path from "node:path";
import { UsageError } from "../errors.js";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { initKeys } from "../auth/keys.js";
import { displayPath } from "../policy/load.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

const USAGE = "ztgate keys init [--dir DIR] [--force]";

/** DIR of --dir, else keys.dir of gateway.yaml (shared by keys, token and cert). */
export async function keysDir(arg: string | undefined): Promise<string> {
  return arg !== undefined ? path.resolve(arg) : (await loadConfig(defaultConfigPath())).keys.dir;
}

export async function keysCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "init") throw new UsageError(`${sub === undefined ? "no keys command given" : `unknown keys command "${sub}"`}; usage: ${USAGE}`);
  const { values } = parse(rest, { dir: { type: "string" }, force: { type: "boolean" } }, USAGE);
  const dir = await keysDir(values.dir);
  const r = await initKeys(dir, { force: values.force === true });
  for (const f of r.files) io.out(`${f.status.padEnd(8)} ${displayPath(path.join(dir, f.file))}`);
  const created = r.files.filter((f) => f.status !== "kept").length;
  io.out(created === 0 ? `nothing to do: every key in ${displayPath(dir)} exists (--force recreates them all)` : `${created} file${created === 1 ? "" : "s"} written in ${displayPath(dir)}; private keys are mode 0600`);
  return 0;
}
