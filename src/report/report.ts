// The evidence report: everything the renderers need, gathered once.
import type { LogRecord } from "../audit/record.js";
import type { VerifyResult } from "../audit/verify.js";
import type { PolicySet } from "../pdp/policy-set.js";
import type { ControlRow } from "./controls.js";
import { controls } from "./controls.js";
import type { Evidence } from "./evidence.js";
import { EvidenceCollector } from "./evidence.js";

/** The policy directory as the report shows it. */
export interface ReportPolicy {
  readonly dir: string;
  readonly revision: string;
  readonly assets: ReadonlyArray<{ readonly id: string; readonly zone?: string; readonly protocol: string; readonly mode: string; readonly rules: number; readonly points: number; readonly file: string }>;
}

export interface Report {
  readonly generatedAt: string;
  readonly logDir: string;
  readonly evidence: Evidence;
  /** null when not checked (no key). */
  readonly integrity: VerifyResult | null;
  readonly policy: ReportPolicy | null;
  readonly controls: readonly ControlRow[];
}

export function reportPolicy(dir: string, set: PolicySet): ReportPolicy {
  return {
    dir,
    revision: set.revision,
    assets: [...set.assets.values()].map((a) => ({ id: a.id, ...(a.zone !== undefined && { zone: a.zone }), protocol: a.protocol, mode: a.mode, rules: a.rules.length, points: a.points.size, file: a.file })),
  };
}

export interface ReportInput {
  readonly records: AsyncIterable<LogRecord> | Iterable<LogRecord>;
  readonly logDir: string;
  readonly since?: string;
  readonly until?: string;
  readonly integrity: VerifyResult | null;
  readonly policy: ReportPolicy | null;
  readonly generatedAt: string;
}

export async function buildReport(input: ReportInput): Promise<Report> {
  const c = new EvidenceCollector({ ...(input.since !== undefined && { since: input.since }), ...(input.until !== undefined && { until: input.until }) });
  for await (const r of input.records) c.add(r);
  const evidence = c.evidence;
  return {
    generatedAt: input.generatedAt,
    logDir: input.logDir,
    evidence,
    integrity: input.integrity,
    policy: input.policy,
    controls: controls({ evidence, integrity: input.integrity, policy: input.policy }),
  };
}
