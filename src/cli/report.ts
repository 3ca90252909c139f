// `ztgate report`: the evidence report for auditors, from the decision log (and the policy
// directory), as one self-contained HTML page or Markdown.
import { existsSync } from "node:fs";
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { KeyObject } from "node:crypto";
import { UsageError, ZtError } from "../errors.js";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { readVerifyKey } from "../audit/checkpoint.js";
import { parseTimeBound, readLog } from "../audit/query.js";
import type { LogRecord } from "../audit/record.js";
import { verifyLog } from "../audit/verify.js";
import { loadPolicyDir } from "../policy/load.js";
import { policyInvalidError } from "../policy/store.js";
import { buildReport, reportPolicy } from "../report/report.js";
import { REPORT_FORMATS, render } from "../report/render.js";
import type { ReportFormat } from "../report/render.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

export const REPORT_USAGE = "ztgate report [--log DIR] [--policies DIR] [--since 30d] [--until T] [--format html|md] [--out FILE] [--key PEM] [--config F]";

const HELP = `usage: ${REPORT_USAGE}
An evidence report for auditors: the decision log's integrity (checked over the whole log),
decisions by asset, subject, reason and day, denied write attempts, policy revisions and who
asked for reloads, sessions, use of the admin and audit endpoints, and a mapping of what the
gateway enforces to IEC 62443-3-3 SRs and NIST SP 800-171 requirements pointing at that evidence.
  --log DIR        the decision log (default: log.dir of gateway.yaml)
  --policies DIR   the policy directory shown as in force (default: policy.dir of gateway.yaml)
  --since T        start of the period: ISO time, or 90s / 15m / 2h / 30d back from now (default 30d)
  --until T        end of the period (default now)
  --format F       html (default; inline SVG charts, no script) or md (tables)
  --out FILE       write the report there (default: standard output); .md picks --format md
  --key PEM        the gateway's public (or private) signing key (default: log.keyFile of gateway.yaml)
exit: 0 written and the log is intact, 1 written but the log is broken (or an error), 2 usage`;

async function verifyKey(key: string | undefined, keyFile: string): Promise<KeyObject> {
  if (key !== undefined) return readVerifyKey(path.resolve(key));
  const pub = keyFile.replace(/\.key\.pem$/, ".pub.pem");
  for (const f of [keyFile, pub]) if (existsSync(f)) return readVerifyKey(f);
  throw new ZtError("ZT_LOG_KEY_INVALID", `no key to check the log's checkpoint signatures with: ${keyFile} does not exist; give --key with the gateway's public (or private) key PEM`);
}

function bound(flag: string, value: string, now: number): string {
  const t = parseTimeBound(value, now);
  if (t === null) throw new UsageError(`${flag} "${value}": give an ISO 8601 time (2026-03-04T10:00:00Z) or a duration back from now (90s, 15m, 2h, 30d)`);
  return t;
}

async function* records(dir: string): AsyncGenerator<LogRecord> {
  for await (const f of readLog(dir)) if (f.record) yield f.record;
}

export async function reportCommand(argv: string[], io: Io): Promise<number> {
  const str = { type: "string" } as const;
  const { values: v } = parse(argv, { log: str, policies: str, since: str, until: str, format: str, out: str, key: str, config: str, help: { type: "boolean", short: "h" } }, REPORT_USAGE);
  if (v.help) {
    io.out(HELP);
    return 0;
  }
  if (v.format !== undefined && !(REPORT_FORMATS as readonly string[]).includes(v.format)) throw new UsageError(`--format "${v.format}": must be one of ${REPORT_FORMATS.join(", ")}; usage: ${REPORT_USAGE}`);
  const format: ReportFormat = (v.format as ReportFormat | undefined) ?? (v.out?.endsWith(".md") ? "md" : "html");
  const now = Date.now();
  const since = bound("--since", v.since ?? "30d", now);
  const until = v.until !== undefined ? bound("--until", v.until, now) : undefined;

  // gateway.yaml is read only for what the flags do not give.
  const needConfig = v.log === undefined || v.policies === undefined || v.key === undefined;
  const config = needConfig ? await loadConfig(v.config !== undefined ? path.resolve(v.config) : defaultConfigPath()) : null;
  const logDir = v.log !== undefined ? path.resolve(v.log) : (config?.log.dir as string);
  if (!(await stat(logDir).catch(() => null))?.isDirectory()) throw new ZtError("ZT_LOG_UNREADABLE", `decision log directory ${logDir}: does not exist or is not a directory`);
  const policyDir = v.policies !== undefined ? path.resolve(v.policies) : (config?.policy.dir as string);
  const loaded = await loadPolicyDir(policyDir);
  if (!loaded.set) throw policyInvalidError(policyDir, loaded.diagnostics);

  const key = await verifyKey(v.key, config?.log.keyFile ?? "");
  const integrity = await verifyLog(logDir, key);
  const report = await buildReport({
    records: records(logDir), logDir, since, ...(until !== undefined && { until }), integrity, policy: reportPolicy(policyDir, loaded.set), generatedAt: new Date(now).toISOString(),
  });
  const text = render(report, format);
  if (v.out !== undefined) {
    await writeFile(path.resolve(v.out), text).catch((e: unknown) => {
      throw new UsageError(`--out ${v.out}: cannot write: ${(e as Error).message}`);
    });
    const d = report.evidence.decisions;
    io.out(`wrote ${v.out} (${format}): ${d.allow + d.deny + d.wouldDeny} decisions since ${since}; log ${integrity.ok ? "intact" : "BROKEN"}`);
  } else io.out(text.replace(/\n$/, ""));
  if (!integrity.ok) io.err(`ztgate: the decision log is broken: ${integrity.problem?.file}:${integrity.problem?.seq}: ${integrity.problem?.why}`);
  return integrity.ok ? 0 : 1;
}
