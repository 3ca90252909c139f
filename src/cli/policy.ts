// `ztgate policy check | explain | test`: the same compiler and decision core the gateway runs.
import path from "node:path";
import { decodeJwt } from "jose";
import { UsageError, ZtError } from "../errors.js";
import { explain } from "../pdp/explain.js";
import type { Explanation } from "../pdp/explain.js";
import type { Principal } from "../pdp/principal.js";
import type { PolicySet } from "../pdp/policy-set.js";
import { TokenBucketRates } from "../pdp/conditions/rate.js";
import type { Reason } from "../pdp/reasons.js";
import { TokenVerifier } from "../auth/tokens.js";
import { loadPolicyDir } from "../policy/load.js";
import { policyInvalidError } from "../policy/store.js";
import { buildOperation, parseScalar, parseTime } from "../policy/request.js";
import { runPolicyTests } from "../policy/testing.js";
import { formatDiagnostic, sortDiagnostics } from "../util/yaml-source.js";
import { loadConfig, defaultConfigPath } from "../config/load.js";
import type { Io } from "./io.js";
import { colours, parse } from "./io.js";
import { diffCmd, suggestCmd } from "./policy-ops.js";

const EXPLAIN_USAGE =
  "ztgate policy explain [--policies DIR] --asset A --action ACT (--point P | --target T) [--value V] (--token JWT [--no-verify] [--config F] | --sub S --role R…) [--claim k=v]… [--at ISO] [--from IP] [--json]";

/** The policy directory: the argument, else gateway.yaml's policy.dir. */
async function policyDir(arg: string | undefined): Promise<string> {
  if (arg !== undefined) return path.resolve(arg);
  return (await loadConfig(defaultConfigPath())).policy.dir;
}

async function loadOrThrow(dir: string): Promise<PolicySet> {
  const r = await loadPolicyDir(dir);
  if (!r.set) throw policyInvalidError(dir, r.diagnostics);
  return r.set;
}

export async function policyCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "check": return check(rest, io);
    case "explain": return explainCmd(rest, io);
    case "test": return testCmd(rest, io);
    case "diff": return diffCmd(rest, io);
    case "suggest": return suggestCmd(rest, io);
    default: throw new UsageError(`${sub === undefined ? "no policy command given" : `unknown policy command "${sub}"`}; usage: ztgate policy (check [DIR] | explain … | test [DIR] | diff OLD NEW --replay LOG | suggest --from LOG --asset A)`);
  }
}

async function check(argv: string[], io: Io): Promise<number> {
  const { positionals } = parse(argv, {}, "ztgate policy check [DIR]", 1);
  const dir = await policyDir(positionals[0]);
  const r = await loadPolicyDir(dir);
  if (!r.set) {
    for (const d of sortDiagnostics(r.diagnostics)) io.err(formatDiagnostic(d));
    io.err(`${r.diagnostics.length} error${r.diagnostics.length === 1 ? "" : "s"}`);
    return 1;
  }
  const set = r.set;
  io.out(`ok: ${set.files.length} policy file${set.files.length === 1 ? "" : "s"}, ${[...set.assets.values()].map((a) => `${a.id} (${a.rules.length} rules, ${a.points.size} points)`).join(", ")}; revision ${set.revision}`);
  return 0;
}

function claimsFrom(list: readonly string[] | undefined): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  for (const c of list ?? []) {
    const i = c.indexOf("=");
    if (i <= 0) throw new UsageError(`--claim "${c}": must be key=value`);
    claims[c.slice(0, i)] = parseScalar(c.slice(i + 1));
  }
  return claims;
}

type Subject = { principal: Principal; note: string } | { refused: { reason: Reason; detail: string } };

/**
 * The subject of an explanation. A --token is verified against the issuers of gateway.yaml,
 * exactly as the gateway would (a refused token is the decision); --no-verify only decodes it.
 */
async function subjectFrom(v: { token?: string; sub?: string; role?: string[]; claim?: string[]; "no-verify"?: boolean; config?: string }): Promise<Subject> {
  const claims = claimsFrom(v.claim);
  if (v.token === undefined) {
    if (v.sub === undefined) throw new UsageError(`give --token JWT or --sub S [--role R]…; usage: ${EXPLAIN_USAGE}`);
    return { principal: { sub: v.sub, iss: "explain", roles: v.role ?? [], claims, via: "explain" }, note: "" };
  }
  if (v.sub !== undefined || v.role !== undefined) throw new UsageError("give --token or --sub/--role, not both");
  let payload;
  try {
    payload = decodeJwt(v.token);
  } catch (e) {
    throw new ZtError("ZT_TOKEN_MALFORMED", `--token: not a JWT (${(e as Error).message})`);
  }
  if (v["no-verify"]) {
    const roles = Array.isArray(payload["roles"]) ? payload["roles"].map(String) : [];
    const principal = { sub: String(payload.sub ?? ""), iss: String(payload.iss ?? ""), roles, claims: { ...payload, ...claims }, via: "explain" as const };
    return { principal, note: " (claims decoded from the token, signature not verified)" };
  }
  const config = await loadConfig(v.config !== undefined ? path.resolve(v.config) : defaultConfigPath());
  const verifier = await TokenVerifier.fromConfig(config.issuers, { cacheMax: 0 });
  try {
    const r = await verifier.verify(v.token);
    if (!r.ok) return { refused: { reason: r.reason, detail: r.detail } };
    return { principal: { ...r.principal, claims: { ...r.principal.claims, ...claims } }, note: " (token verified)" };
  } finally {
    verifier.close();
  }
}

async function explainCmd(argv: string[], io: Io): Promise<number> {
  const { values: v } = parse(argv, {
    policies: { type: "string" }, asset: { type: "string" }, action: { type: "string" },
    point: { type: "string" }, target: { type: "string" }, value: { type: "string" },
    token: { type: "string" }, sub: { type: "string" }, role: { type: "string", multiple: true },
    claim: { type: "string", multiple: true }, at: { type: "string" }, from: { type: "string" }, json: { type: "boolean" },
    "no-verify": { type: "boolean" }, config: { type: "string" },
  }, EXPLAIN_USAGE);
  if (v.asset === undefined || v.action === undefined) throw new UsageError(`--asset and --action are required; usage: ${EXPLAIN_USAGE}`);
  if ((v.point === undefined) === (v.target === undefined)) throw new UsageError(`give exactly one of --point or --target; usage: ${EXPLAIN_USAGE}`);
  const now = v.at !== undefined ? parseTime(v.at) : Date.now();
  if (Number.isNaN(now)) throw new UsageError(`--at "${v.at}": not an ISO 8601 time (e.g. 2026-03-02T08:00:00+01:00)`);
  const subject = await subjectFrom(v);
  const set = await loadOrThrow(await policyDir(v.policies));
  if ("refused" in subject) {
    const { reason, detail } = subject.refused;
    if (v.json) io.out(JSON.stringify({ effect: "deny", rule: null, reason, policyRevision: set.revision, detail, considered: [] }, null, 2));
    else io.out(`DENY  reason: ${reason}  rule: (none)  policy revision: ${set.revision}\ntoken refused: ${detail}`);
    return 1;
  }
  const principal = subject.principal;
  let op;
  try {
    op = buildOperation(set, {
      asset: v.asset, action: v.action,
      ...(v.point !== undefined && { point: v.point }), ...(v.target !== undefined && { target: v.target }),
      ...(v.value !== undefined && { value: v.point !== undefined ? parseScalar(v.value) : v.value }),
      ...(v.from !== undefined && { from: v.from }),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const x = explain(set, op, principal, { now, rates: new TokenBucketRates() });
  if (v.json) io.out(JSON.stringify({ effect: x.effect, rule: x.rule, reason: x.reason, policyRevision: x.policyRevision, mode: x.mode, ...(x.values && { values: x.values }), considered: x.considered }, null, 2));
  else printExplanation(io, x, principal, subject.note);
  return x.effect === "allow" ? 0 : 1;
}

function printExplanation(io: Io, x: Explanation, p: Principal, note: string): void {
  const would = x.mode === "monitor" && x.reason !== "allowed" ? " (monitor mode: would be denied)" : "";
  const c = colours();
  io.out(`${(x.effect === "allow" ? c.green : c.red)(x.effect.toUpperCase())}${would}  reason: ${x.reason}  rule: ${x.rule ?? "(none)"}  policy revision: ${x.policyRevision}`);
  io.out(`subject: ${p.sub} roles [${p.roles.join(", ")}]${note}`);
  for (const v of x.values ?? []) io.out(`value: ${v.point ?? `${v.table ?? "node"} ${v.address ?? v.node}`} = ${JSON.stringify(v.value)}${v.raw ? ` (raw ${v.raw.join(",")})` : ""}`);
  if (x.considered.length > 0) io.out("rules considered:");
  for (const c of x.considered) io.out(`  ${c.outcome === "matched" ? "*" : "-"} ${c.rule} (${c.effect}, ${c.file}:${c.line}): ${c.outcome}: ${c.detail}`);
}

async function testCmd(argv: string[], io: Io): Promise<number> {
  const { positionals } = parse(argv, {}, "ztgate policy test [DIR]", 1);
  const dir = await policyDir(positionals[0]);
  const set = await loadOrThrow(dir);
  const run = await runPolicyTests(set, dir);
  for (const d of sortDiagnostics([...run.diagnostics])) io.err(formatDiagnostic(d));
  for (const r of run.results) {
    io.out(`${r.pass ? "ok  " : "FAIL"} ${r.file}:${r.line} ${r.name}`);
    if (r.detail !== undefined) io.out(`     ${r.detail}`);
  }
  const failed = run.results.filter((r) => !r.pass).length;
  io.out(`${run.results.length - failed} passed, ${failed} failed${run.diagnostics.length > 0 ? `, ${run.diagnostics.length} error(s) in test files` : ""}`);
  return failed > 0 || run.diagnostics.length > 0 ? 1 : 0;
}
