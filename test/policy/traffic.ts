// Shared by the replay, suggest and report tests: policy directories written from the default
// policies, and decision logs made by the real writer from real decisions (pep/enforce).
import type { KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DecisionLog } from "../../src/audit/writer.js";
import type { ClientRef } from "../../src/audit/record.js";
import { Enforcer } from "../../src/pep/enforce.js";
import { TokenBucketRates } from "../../src/pdp/conditions/rate.js";
import type { Operation, Scalar, Table } from "../../src/pdp/operation.js";
import type { Principal } from "../../src/pdp/principal.js";
import type { PolicySet } from "../../src/pdp/policy-set.js";
import type { Reason } from "../../src/pdp/reasons.js";
import { loadPolicyDir } from "../../src/policy/load.js";
import { keys, settings, testClock, testIds } from "../audit/helpers.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BOILER = readFileSync(path.join(ROOT, "policies", "boiler-plc.yaml"), "utf8");
export const PACKAGING = readFileSync(path.join(ROOT, "policies", "packaging-line.yaml"), "utf8");
export const T0 = Date.parse("2026-03-02T08:00:00Z");

/** Replaces `from` (which must occur exactly once) by `to`: policy edits that fail loudly if the default changes. */
export function edit(text: string, from: string, to: string): string {
  if (text.split(from).length !== 2) throw new Error(`edit: ${JSON.stringify(from)} does not occur exactly once`);
  return text.replace(from, to);
}

/** A policy directory holding the given files (name → YAML text). */
export function policyDir(dir: string, files: Record<string, string> = { "boiler-plc.yaml": BOILER, "packaging-line.yaml": PACKAGING }): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

export async function compiled(dir: string): Promise<PolicySet> {
  const r = await loadPolicyDir(dir);
  if (!r.set) throw new Error(r.diagnostics.map((d) => `${d.file}:${d.line}: ${d.message}`).join("\n"));
  return r.set;
}

export function principal(sub: string, roles: string[], claims: Record<string, unknown> = {}): Principal {
  return { sub, iss: "ztgate-dev", roles, claims, sessionId: `s-${sub}`, tokenId: `j-${sub}`, via: "lease" };
}

export const modbusClient: ClientRef = { address: "10.20.1.5", port: 50200, protocol: "modbus", transport: "tcp" };
export const opcuaClient: ClientRef = { address: "10.20.1.6", port: 50300, protocol: "opcua", transport: "opcua-sign-encrypt" };

export const ops = {
  read: (asset: string, table: Table, address: number, count = 1): Operation => ({ asset, action: "read", target: { kind: "range", table, address, count }, source: modbusClient.address as string }),
  write: (asset: string, table: Table, address: number, raw: number[] | null): Operation => ({ asset, action: "write", target: { kind: "range", table, address, count: raw?.length ?? 1 }, raw, source: modbusClient.address as string }),
  point: (asset: string, action: Operation["action"], point: string, value?: Scalar): Operation => ({ asset, action, target: { kind: "point", point }, ...(value !== undefined && { value }), source: opcuaClient.address as string }),
};

/** One step of recorded traffic: an operation decided for a principal, or a refusal before the policy. */
export type Step =
  | { readonly who: Principal; readonly op: Operation; readonly client?: ClientRef; readonly after?: number }
  | { readonly refuse: Reason; readonly who: Principal | null; readonly op: Operation; readonly client?: ClientRef; readonly after?: number };

export interface Recorded {
  readonly dir: string;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
  /** Each step's decision effect and reason, in order (what the gateway answered). */
  readonly decided: Array<{ effect: string; reason: string; id: string | null }>;
}

/**
 * Runs `steps` through the real Enforcer against `set` and the real DecisionLog in `dir`, one
 * second apart (or `after` ms) from T0, and closes the log. `extra` is called with the open log
 * to append other records (sessions, policy events) between decisions.
 */
export async function record(dir: string, set: PolicySet, steps: readonly Step[], extra?: (log: DecisionLog, i: number) => void): Promise<Recorded> {
  const k = await keys();
  const clock = testClock(T0);
  const log = await DecisionLog.open(settings(dir, { checkpointEvery: { records: 50, seconds: 86400 } }), { signingKey: k.privateKey, now: clock.now, ids: testIds("d") });
  const pep = new Enforcer({ policy: () => set, log, rates: new TokenBucketRates(), now: clock.now });
  const decided: Recorded["decided"] = [];
  for (const [i, s] of steps.entries()) {
    extra?.(log, i);
    const client = s.client ?? (s.op.target.kind === "range" ? modbusClient : opcuaClient);
    const a = "refuse" in s ? await pep.refuse(s.refuse, s.who, s.op, client) : await pep.authorize(s.who, s.op, client);
    decided.push({ effect: a.decision.effect, reason: a.decision.reason, id: a.id });
    clock.advance(s.after ?? 1000);
  }
  extra?.(log, steps.length);
  await log.close();
  return { dir, publicKey: k.publicKey, privateKey: k.privateKey, decided };
}
