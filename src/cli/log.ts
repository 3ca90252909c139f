// `ztgate log verify | query | tail`: the same reader and verifier the gateway's API uses.
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { KeyObject } from "node:crypto";
import { UsageError, ZtError } from "../errors.js";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { readVerifyKey } from "../audit/checkpoint.js";
import { OUTPUT_FORMATS, csvHeader, csvRow, tableHeader, tableRow } from "../audit/format.js";
import type { OutputFormat } from "../audit/format.js";
import { followLog, lastRecords, parseTimeBound, queryLog } from "../audit/query.js";
import type { Found, QueryFilter } from "../audit/query.js";
import { RECORD_TYPES } from "../audit/record.js";
import type { RecordType } from "../audit/record.js";
import { verifyLog } from "../audit/verify.js";
import type { Io } from "./io.js";
import { colours, parse, progressLine } from "./io.js";

const VERIFY_USAGE = "ztgate log verify [DIR] [--key PEM] [--config F]";
const QUERY_USAGE =
  "ztgate log query [--dir DIR] [--since T] [--until T] [--type T] [--decision allow|deny] [--asset A] [--subject S] [--action A] [--rule R] [--reason R] [--limit N] [--format table|json|csv]";
const TAIL_USAGE = "ztgate log tail [--dir DIR] [-f] [-n N] [--format table|json]";

/** Lets a test (or an embedding) stop `tail -f`; the command also stops on SIGINT/SIGTERM. */
export interface LogCommandOptions {
  readonly signal?: AbortSignal;
}

export async function logCommand(argv: string[], io: Io, options: LogCommandOptions = {}): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "verify": return verifyCmd(rest, io);
    case "query": return queryCmd(rest, io);
    case "tail": return tailCmd(rest, io, options.signal);
    default: throw new UsageError(`${sub === undefined ? "no log command given" : `unknown log command "${sub}"`}; usage: ztgate log (verify [DIR] | query … | tail [-f])`);
  }
}

const configOption = { config: { type: "string" } } as const;

async function settings(config: string | undefined) {
  return (await loadConfig(config !== undefined ? path.resolve(config) : defaultConfigPath())).log;
}

/** --dir (or verify's DIR), else `log.dir` of the configuration. */
async function logDir(dir: string | undefined, config: string | undefined): Promise<string> {
  return dir !== undefined ? path.resolve(dir) : (await settings(config)).dir;
}

/** --key, else the configured signing key (its public half), else its `.pub.pem` sibling. */
async function verifyKey(key: string | undefined, config: string | undefined): Promise<KeyObject> {
  if (key !== undefined) return readVerifyKey(path.resolve(key));
  const keyFile = (await settings(config)).keyFile;
  const pub = keyFile.replace(/\.key\.pem$/, ".pub.pem");
  for (const f of [keyFile, pub]) if (existsSync(f)) return readVerifyKey(f);
  throw new ZtError("ZT_LOG_KEY_INVALID", `no key to check the checkpoint signatures with: ${keyFile} does not exist; give --key with the gateway's public (or private) key PEM`);
}

async function verifyCmd(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { key: { type: "string" }, dir: { type: "string" }, ...configOption }, VERIFY_USAGE, 1);
  if (positionals[0] !== undefined && values.dir !== undefined) throw new UsageError(`give DIR or --dir, not both; usage: ${VERIFY_USAGE}`);
  const dir = await logDir(positionals[0] ?? values.dir, values.config);
  const key = await verifyKey(values.key, values.config);
  // verifyLog reports nothing while it works: on a terminal, a line says what it is checking.
  const progress = progressLine();
  const size = await logSize(dir);
  const started = Date.now();
  const ticker = setInterval(() => progress.update(`verifying ${size.segments} segment${size.segments === 1 ? "" : "s"} (${(size.bytes / 1e6).toFixed(1)} MB) … ${Math.round((Date.now() - started) / 1000)} s`), 250);
  let r;
  try {
    r = await verifyLog(dir, key);
  } finally {
    clearInterval(ticker);
    progress.done();
  }
  const c = colours();
  for (const n of r.notes) io.err(`note: ${n}`);
  if (r.problem) {
    io.out(`${r.problem.file}:${r.problem.seq}: ${r.problem.why}`);
    io.out(`${c.red("BROKEN")}: checked ${r.records} records in ${r.segments} segments before the first problem`);
    return 1;
  }
  const head = r.signedHead ? `head.jws signs seq ${r.signedHead.seq}` : "no records";
  io.out(`${c.green("ok")}: ${r.records} records (seq 1..${r.lastSeq}) in ${r.segments} segment${r.segments === 1 ? "" : "s"}, ${r.checkpoints} checkpoint signature${r.checkpoints === 1 ? "" : "s"} verified, ${head}`);
  return 0;
}

/** The segment files of a log directory: how many, and their bytes (for the progress line). */
async function logSize(dir: string): Promise<{ segments: number; bytes: number }> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let bytes = 0;
  let segments = 0;
  for (const n of names.filter((f) => f.endsWith(".jsonl"))) {
    segments++;
    bytes += (await stat(path.join(dir, n)).catch(() => ({ size: 0 }))).size;
  }
  return { segments, bytes };
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], usage: string): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} "${value}": must be one of ${allowed.join(", ")}; usage: ${usage}`);
  return value as T;
}

function count(flag: string, value: string | undefined, usage: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} "${value}": must be a whole number; usage: ${usage}`);
  return Number(value);
}

function timeBound(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = parseTimeBound(value, Date.now());
  if (t === null) throw new UsageError(`${flag} "${value}": give an ISO 8601 time (2026-03-04T10:00:00Z) or a duration back from now (90s, 15m, 2h, 7d)`);
  return t;
}

/** Prints records in a format, the header first. */
function printer(io: Io, format: OutputFormat): (f: Found) => void {
  if (format === "table") io.out(tableHeader());
  if (format === "csv") io.out(csvHeader());
  return (f) => io.out(format === "json" ? f.line : format === "csv" ? csvRow(f) : tableRow(f));
}

async function queryCmd(argv: string[], io: Io): Promise<number> {
  const str = { type: "string" } as const;
  const { values: v } = parse(
    argv,
    { dir: str, since: str, until: str, type: str, decision: str, asset: str, subject: str, action: str, rule: str, reason: str, limit: str, format: str, ...configOption },
    QUERY_USAGE,
  );
  const filter: QueryFilter = {
    since: timeBound("--since", v.since),
    until: timeBound("--until", v.until),
    type: oneOf<RecordType>("--type", v.type, RECORD_TYPES, QUERY_USAGE),
    decision: oneOf("--decision", v.decision, ["allow", "deny"] as const, QUERY_USAGE),
    asset: v.asset,
    subject: v.subject,
    action: v.action,
    rule: v.rule,
    reason: v.reason,
    limit: count("--limit", v.limit, QUERY_USAGE),
  };
  const format = oneOf("--format", v.format, OUTPUT_FORMATS, QUERY_USAGE) ?? "table";
  const dir = await logDir(v.dir, v.config);
  const print = printer(io, format);
  for await (const f of queryLog(dir, filter)) print(f);
  return 0;
}

async function tailCmd(argv: string[], io: Io, signal: AbortSignal | undefined): Promise<number> {
  const { values: v } = parse(argv, { dir: { type: "string" }, follow: { type: "boolean", short: "f" }, lines: { type: "string", short: "n" }, format: { type: "string" }, ...configOption }, TAIL_USAGE);
  const n = count("-n", v.lines, TAIL_USAGE) ?? 10;
  const format = oneOf("--format", v.format, ["table", "json"] as const, TAIL_USAGE) ?? "table";
  const dir = await logDir(v.dir, v.config);
  const print = printer(io, format);
  const { records, position } = await lastRecords(dir, n);
  for (const f of records) print(f);
  if (!v.follow) return 0;

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const linked = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  try {
    for await (const f of followLog(dir, position, linked)) print(f);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}
