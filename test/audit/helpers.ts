// Shared by the decision log tests: settings, a key pair, realistic record bodies, a clock
// the test moves, and small readers of the files the log writes.
import { KeyObject, createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { generateKeyPair } from "jose";
import type { DecisionBody, OutcomeBody } from "../../src/audit/record.js";
import { jcs, chainHash } from "../../src/audit/record.js";
import type { WriterSettings } from "../../src/audit/writer.js";

export function settings(dir: string, over: Partial<WriterSettings> = {}): WriterSettings {
  return {
    dir,
    syncMs: 2,
    durability: "group",
    onFailure: "deny",
    segmentBytes: 64 << 20,
    segmentMaxAgeSec: 86400,
    checkpointEvery: { records: 1000, seconds: 60 },
    ...over,
  };
}

export async function keys(): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  const { privateKey } = await generateKeyPair("EdDSA");
  const priv = KeyObject.from(privateKey);
  return { privateKey: priv, publicKey: createPublicKey(priv) };
}

export function decision(i: number, over: Partial<DecisionBody> = {}): DecisionBody {
  const write = i % 3 === 1;
  return {
    type: "decision",
    decision: i % 4 === 3 ? "deny" : "allow",
    reason: i % 4 === 3 ? "no-matching-rule" : "allowed",
    rule: i % 4 === 3 ? null : write ? "mes-setpoint" : "historian-read",
    policyRevision: "0123456789abcdef",
    mode: "enforce",
    subject: { sub: write ? "mes-1" : "hist-1", iss: "ztgate-dev", roles: [write ? "mes" : "historian"], sessionId: `s-${i % 2}`, jti: `j-${i % 2}` },
    client: { address: "127.0.0.1", port: 40000 + (i % 10), protocol: "modbus", transport: "tcp" },
    asset: i % 2 ? "boiler-plc" : "packaging-line",
    zone: "cell-1",
    action: write ? "write" : "read",
    target: write ? { point: "setpoint" } : { table: "input", address: 0, count: 2 },
    ...(write && { values: [{ point: "setpoint", raw: [40 + i], value: 40 + i }] }),
    ...over,
  };
}

export function outcome(ref: string): OutcomeBody {
  return { type: "outcome", ref, status: "ok", latencyMs: 1.25 };
}

/** A clock the test moves: epoch ms with microseconds. */
export function testClock(start = Date.parse("2026-03-04T10:00:00Z")) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** Sequential ids, so tests can name records. */
export function testIds(prefix = "r") {
  let n = 0;
  return () => `${prefix}-${++n}`;
}

export type Rec = Record<string, unknown> & { seq: number; hash: string; prev: string; type: string };

export function readRecords(file: string): Rec[] {
  return readFileSync(file, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l) as Rec);
}

/** Writes records as the writer does: each line the canonical JSON with `hash` added last (what verify requires). */
export function writeRecords(file: string, records: readonly Rec[]): void {
  writeFileSync(file, records.map((r) => canonicalLine(r) + "\n").join(""));
}

function canonicalLine(r: Rec): string {
  const { hash, ...rest } = r as Rec & { hash?: unknown };
  const text = jcs(rest);
  return hash === undefined ? text : `${text.slice(0, -1)},"hash":${JSON.stringify(hash)}}`;
}

/** What someone rewriting history would do: recompute every hash from `from` on. */
export function rehash(records: Rec[], prev = "0".repeat(64)): Rec[] {
  return records.map((r) => {
    const { hash: _h, ...rest } = r;
    const next = { ...rest, prev };
    const hash = chainHash(prev, jcs(next));
    prev = hash;
    return { ...next, hash } as Rec;
  });
}
