// `ztgate policy diff … --replay LOG` and `ztgate policy suggest --from LOG --asset A`: thin
// wrappers over src/policy/replay.ts and src/policy/suggest.ts, reading the log with the same
// reader as `ztgate log query`.
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { UsageError, ZtError } from "../errors.js";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { parseTimeBound, readLog } from "../audit/query.js";
import type { LogRecord } from "../audit/record.js";
import type { PolicySet } from "../pdp/policy-set.js";
import type { PolicySource } from "../policy/compile.js";
import { compilePolicies } from "../policy/compile.js";
import { readYamlFiles } from "../policy/load.js";
import { policyInvalidError } from "../policy/store.js";
import { Replayer, claimRules, formatReplay } from "../policy/replay.js";
import { suggest } from "../policy/suggest.js";
import { formatDiagnostic, sortDiagnostics } from "../util/yaml-source.js";
import type { Io } from "./io.js";
import { parse, progressLine } from "./io.js";

export const DIFF_USAGE = "ztgate policy diff OLD_DIR NEW_DIR --replay LOG_DIR [--since T] [--examples N] [--json]";
export const SUGGEST_USAGE = "ztgate policy suggest --from LOG_DIR --asset A [--policies DIR] [--since T] [--out FILE]";

const DIFF_HELP = `usage: ${DIFF_USAGE}
Decides every decision record of LOG_DIR again against the policies of OLD_DIR and of NEW_DIR
(each record at its own time, with its own subject, source address and values) and lists every
decision that changes (allow→deny, deny→allow, and would-deny in monitor mode), grouped by
asset, change, subject and rules, with examples (record seq and id).
  --since T       only records from T on (ISO time, or 90s / 15m / 2h / 7d back from now)
  --examples N    examples per group (default 3)
  --json          the report as JSON (for CI)
exit: 0 no decision changes, 1 changes (or an error), 2 usage`;

const SUGGEST_HELP = `usage: ${SUGGEST_USAGE}
Proposes least-privilege allow rules for asset A from the decisions of LOG_DIR (allowed,
would-deny in monitor mode, and denied for a permission reason): per role, per action, per
point or merged address range, with the observed value range for writes. Prints the asset's
policy file (header and deny rules kept, allow rules replaced, a comment on what each rule is
based on), or writes it to FILE.
  --policies DIR  the current policy directory (default: policy.dir of gateway.yaml)
  --since T       only decisions from T on (ISO time, or 90s / 15m / 2h / 7d back from now)
  --out FILE      write the file there instead of printing it
exit: 0 written, 1 nothing to learn (or an error), 2 usage`;

function timeBound(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = parseTimeBound(value, Date.now());
  if (t === null) throw new UsageError(`${flag} "${value}": give an ISO 8601 time (2026-03-04T10:00:00Z) or a duration back from now (90s, 15m, 2h, 7d)`);
  return t;
}

/** A log directory that does not exist is an error here: a typo must not look like a quiet log. */
async function logDirectory(dir: string): Promise<string> {
  const full = path.resolve(dir);
  const s = await stat(full).catch(() => null);
  if (!s?.isDirectory()) throw new ZtError("ZT_LOG_UNREADABLE", `decision log directory ${dir}: does not exist or is not a directory`);
  return full;
}

async function policies(dir: string): Promise<{ set: PolicySet; sources: PolicySource[] }> {
  const { sources, diagnostics } = await readYamlFiles(dir);
  if (diagnostics.length === 0 && sources.length === 0) throw policyInvalidError(dir, [{ file: dir, line: 0, col: 0, message: "no policy files (*.yaml, *.yml) in this directory" }]);
  const compiled = compilePolicies(sources);
  if (!compiled.set || diagnostics.length > 0) throw policyInvalidError(dir, [...diagnostics, ...compiled.diagnostics]);
  return { set: compiled.set, sources };
}

async function* records(dir: string, since: string | undefined): AsyncGenerator<LogRecord> {
  for await (const f of readLog(dir)) if (f.record && (since === undefined || f.record.time >= since)) yield f.record;
}

export async function diffCmd(argv: string[], io: Io): Promise<number> {
  const { values: v, positionals } = parse(argv, {
    replay: { type: "string" }, since: { type: "string" }, examples: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
  }, DIFF_USAGE, 2);
  if (v.help) {
    io.out(DIFF_HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError(`give OLD_DIR and NEW_DIR; usage: ${DIFF_USAGE}`);
  if (v.replay === undefined) throw new UsageError(`--replay LOG_DIR is required (the decisions to replay); usage: ${DIFF_USAGE}`);
  if (v.examples !== undefined && !/^\d+$/.test(v.examples)) throw new UsageError(`--examples "${v.examples}": must be a whole number; usage: ${DIFF_USAGE}`);
  const since = timeBound("--since", v.since);
  const [oldDir, newDir] = positionals.map((p) => path.resolve(p)) as [string, string];
  const logDir = await logDirectory(v.replay);
  const before = await policies(oldDir);
  const after = await policies(newDir);
  const replayer = new Replayer(before.set, after.set, {
    oldClaims: claimRules(before.sources),
    newClaims: claimRules(after.sources),
    ...(v.examples !== undefined && { examples: Number(v.examples) }),
  });
  const progress = progressLine();
  let n = 0;
  try {
    for await (const r of records(logDir, since)) {
      replayer.add(r);
      if (++n % 1000 === 0) progress.update(`replaying ${v.replay}: ${n.toLocaleString("en")} records`);
    }
  } finally {
    progress.done();
  }
  const report = replayer.report();
  if (v.json) io.out(JSON.stringify(report, null, 2));
  else for (const line of formatReplay(report)) io.out(line);
  return report.changes.total > 0 ? 1 : 0;
}

export async function suggestCmd(argv: string[], io: Io): Promise<number> {
  const { values: v } = parse(argv, {
    from: { type: "string" }, asset: { type: "string" }, policies: { type: "string" }, since: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" },
  }, SUGGEST_USAGE);
  if (v.help) {
    io.out(SUGGEST_HELP);
    return 0;
  }
  if (v.from === undefined || v.asset === undefined) throw new UsageError(`--from LOG_DIR and --asset A are required; usage: ${SUGGEST_USAGE}`);
  const since = timeBound("--since", v.since);
  const logDir = await logDirectory(v.from);
  const dir = v.policies !== undefined ? path.resolve(v.policies) : (await loadConfig(defaultConfigPath())).policy.dir;
  const { set, sources } = await policies(dir);
  if (!set.assets.has(v.asset)) throw new UsageError(`--asset "${v.asset}": not defined in ${dir} (assets: ${[...set.assets.keys()].join(", ")})`);
  const all: LogRecord[] = [];
  for await (const r of records(logDir, since)) if (r.type === "decision" && (r as { asset?: unknown }).asset === v.asset) all.push(r);
  const s = suggest(all, sources, set, { asset: v.asset, from: v.from, ...(since !== undefined && { since }), generatedAt: new Date().toISOString() });
  const skipped = Object.entries(s.skipped).map(([k, n]) => `${k} ${n}`).join(", ");
  if (s.learned === 0) {
    io.err(`ztgate: no decisions of asset "${v.asset}" to learn from in ${v.from}${since !== undefined ? ` since ${since}` : ""}${skipped ? ` (not learned: ${skipped})` : ""}`);
    return 1;
  }
  if (s.diagnostics.length > 0) {
    for (const d of sortDiagnostics([...s.diagnostics])) io.err(formatDiagnostic(d));
    io.err("ztgate: the suggested policy does not validate (a bug: please report it with the lines above)");
    return 1;
  }
  const note = `${s.rules} rule${s.rules === 1 ? "" : "s"} learned from ${s.learned} decision${s.learned === 1 ? "" : "s"}${skipped ? `; not learned: ${skipped}` : ""}`;
  if (v.out !== undefined) {
    await writeFile(path.resolve(v.out), s.text).catch((e: unknown) => {
      throw new UsageError(`--out ${v.out}: cannot write: ${(e as Error).message}`);
    });
    io.out(`wrote ${v.out}: ${note}`);
  } else {
    io.out(s.text.replace(/\n$/, ""));
    io.err(note);
  }
  return 0;
}
