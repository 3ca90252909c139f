// Decision log benchmark (SPEC §8): records per second, sustained, with the hash chain and
// group commit, and with strict durability, against a baseline in the same run: the same
// records as plain JSON lines appended with fs.appendFile (no chain, no fsync).
// Target: ≥ 100,000 records/s with chain and group commit. Run: npm run bench:log
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setImmediate as yieldToIo } from "node:timers/promises";
import { generateKeyPair } from "jose";
import type { DecisionBody } from "../../src/audit/record.js";
import { canonicalJson, chainHash, jcs } from "../../src/audit/record.js";
import { DecisionLog } from "../../src/audit/writer.js";
import type { WriterSettings } from "../../src/audit/writer.js";
import type { SigningKeyInput } from "../../src/audit/checkpoint.js";

const RECORDS = Number(process.env["BENCH_RECORDS"] ?? 300_000);
/** Records appended between two yields to the event loop: requests arriving in bursts. */
const BURST = 256;

/** A handful of realistic decisions: historian reads and MES writes with values. */
/** Objects with their keys in code-point order, as decisionBody() builds the records it logs. */
function inKeyOrder<T>(v: T): T {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(inKeyOrder) as T;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) out[k] = inKeyOrder((v as Record<string, unknown>)[k]);
  return out as T;
}

const BODIES: DecisionBody[] = Array.from({ length: 8 }, (_, i) => inKeyOrder<DecisionBody>({
  type: "decision",
  decision: i % 5 === 4 ? "deny" : "allow",
  reason: i % 5 === 4 ? "value-out-of-range" : "allowed",
  rule: i % 2 ? "mes-setpoint" : "historian-read",
  policyRevision: "3f2a9c0d1e4b5a67",
  mode: "enforce",
  subject: { sub: `client-${i}`, iss: "https://idp.plant.example", roles: [i % 2 ? "mes" : "historian"], sessionId: `s-${i}`, jti: `jti-${i}` },
  client: { address: `10.20.1.${i + 10}`, port: 50_000 + i, protocol: "modbus", transport: "tcp" },
  asset: "boiler-plc",
  zone: "cell-1",
  action: i % 2 ? "write" : "read",
  target: i % 2 ? { point: "setpoint", table: "holding", address: 100, count: 1 } : { table: "input", address: 0, count: 3 },
  ...(i % 2 ? { values: [{ point: "setpoint", table: "holding" as const, address: 100, raw: [50 + i], value: 50 + i }] } : {}),
}));


function settings(dir: string, durability: "group" | "strict", syncMs = 20): WriterSettings {
  return { dir, syncMs, durability, onFailure: "deny", segmentBytes: 64 << 20, segmentMaxAgeSec: 86_400, checkpointEvery: { records: 1000, seconds: 60 } };
}

interface Row {
  name: string;
  records: number;
  seconds: number;
}

/** The baseline: JSON lines built in one string per burst and appended, no chain, no fsync. */
async function baseline(dir: string): Promise<Row> {
  const file = path.join(dir, "plain.jsonl");
  const t0 = performance.now();
  for (let n = 0; n < RECORDS; ) {
    let text = "";
    for (let k = 0; k < BURST && n < RECORDS; k++, n++) text += JSON.stringify({ v: 1, seq: n, ...BODIES[n % BODIES.length] }) + "\n";
    await appendFile(file, text);
  }
  return { name: "baseline: appendFile, no chain, no fsync", records: RECORDS, seconds: (performance.now() - t0) / 1000 };
}

/** Producers append in bursts and yield to I/O; the clock stops when the last record is durable. */
async function groupCommit(dir: string, signingKey: SigningKeyInput, syncMs: number): Promise<Row> {
  const log = await DecisionLog.open(settings(dir, "group", syncMs), { signingKey });
  const t0 = performance.now();
  let last: Promise<void> = Promise.resolve();
  for (let n = 0; n < RECORDS; ) {
    for (let k = 0; k < BURST && n < RECORDS; k++, n++) last = log.append(BODIES[n % BODIES.length] as DecisionBody).durable;
    await yieldToIo();
  }
  await last;
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  return { name: `DecisionLog group commit, syncMs ${syncMs} (chain + fdatasync)`, records: RECORDS, seconds };
}

/** `clients` concurrent writers, each waiting for its record's fsync before the next. */
async function strict(dir: string, signingKey: SigningKeyInput, clients: number, records: number): Promise<Row> {
  const log = await DecisionLog.open(settings(dir, "strict"), { signingKey });
  const t0 = performance.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (n < records) await log.append(BODIES[n++ % BODIES.length] as DecisionBody).durable;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  return { name: `DecisionLog strict, ${clients} concurrent writers`, records, seconds };
}

async function main(): Promise<void> {
  const { privateKey } = await generateKeyPair("EdDSA");
  const root = await mkdtemp(path.join(tmpdir(), "ztgate-bench-log-"));
  const dir = (name: string) => path.join(root, name);
  try {
    const rows: Row[] = [];
    rows.push(await baseline(root));
    rows.push(await groupCommit(dir("group20"), privateKey, 20));
    rows.push(await groupCommit(dir("group5"), privateKey, 5));
    for (const clients of [16, 256, 4096]) rows.push(await strict(dir(`strict${clients}`), privateKey, clients, Math.min(RECORDS, clients * 40)));
    print(rows);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Where a record's time goes, in µs, measured here: JCS dominates the chain's cost. */
function breakdown(): string {
  const N = 50_000;
  const time = (f: (i: number) => unknown) => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) f(i);
    return (((performance.now() - t0) * 1000) / N).toFixed(2);
  };
  const rec = (i: number) => Object.assign({ v: 1, seq: i, id: "0b0e6f3c-8a4c-4f53-9d0f-0f4b7b0d2a11", time: "2026-03-04T10:00:00.123456Z", prev: "0".repeat(64) }, BODIES[i % BODIES.length]);
  const canonical = jcs(rec(1));
  time((i) => jcs(rec(i))); // warm-up
  return `per record: JCS (canonicalize) ${time((i) => jcs(rec(i)))} µs, canonicalJson (the writer's; fast path for key-ordered records) ${time((i) => canonicalJson(rec(i)))} µs, JSON.stringify ${time((i) => JSON.stringify(rec(i)))} µs, sha256 ${time(() => chainHash("0".repeat(64), canonical))} µs`;
}

function print(rows: Row[]): void {
  const base = rows[0] as Row;
  const rate = (r: Row) => r.records / r.seconds;
  console.log(`decision log, ${RECORDS.toLocaleString("en")} records per group run, node ${process.version}\n`);
  console.log(`${"run".padEnd(58)} ${"records".padStart(9)} ${"seconds".padStart(8)} ${"records/s".padStart(11)} ${"× baseline".padStart(11)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(58)} ${r.records.toLocaleString("en").padStart(9)} ${r.seconds.toFixed(2).padStart(8)} ${Math.round(rate(r)).toLocaleString("en").padStart(11)} ${(rate(r) / rate(base)).toFixed(2).padStart(11)}`);
  }
  const group = rows[1] as Row;
  console.log(`\n${breakdown()}`);
  console.log(`SPEC §8 target: ≥ 100,000 records/s with chain and group commit: ${rate(group) >= 100_000 ? "met" : "NOT met"} (${Math.round(rate(group)).toLocaleString("en")}/s)`);
}

await main();
