// Decision log benchmark (SPEC §8): records per second, sustained, with the hash chain and
// group commit, and with strict durability, against a baseline in the same run: the same
// records as plain JSON lines appended with fs.appendFile (no chain, no fsync).
// Two kinds of traffic: what the gateway logs (per request a decision, as decisionBody() makes
// it for 16 polling clients, one request in eight a write with its values, then the outcome),
// and arbitrary records (every record a body the log has not seen: nothing kept to reuse).
// Target: ≥ 100,000 records/s with chain and group commit. Run: npm run bench:log
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setImmediate as yieldToIo } from "node:timers/promises";
import { generateKeyPair } from "jose";
import type { DecisionBody, RecordBody } from "../../src/audit/record.js";
import { Outcome, canonicalJson, chainHash, decisionBody, jcs } from "../../src/audit/record.js";
import type { Decision } from "../../src/pdp/evaluate.js";
import type { Operation } from "../../src/pdp/operation.js";
import type { Principal } from "../../src/pdp/principal.js";
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

/** Arbitrary records: a new object every time (a copy of one of BODIES), so nothing is reused. */
const arbitrary = (n: number): RecordBody => ({ ...(BODIES[n % BODIES.length] as DecisionBody) });

/** What the gateway logs: 16 clients polling (the same read, decided the same way, again and again), one request in eight a write. */
function gatewayTraffic(): (n: number, ref: string) => RecordBody {
  const principals: Principal[] = Array.from({ length: 16 }, (_, i) => ({ sub: `client-${i}`, iss: "https://idp.plant.example", roles: [i % 2 ? "mes" : "historian"], claims: {}, sessionId: `7c1f4a52-0d8e-4e1b-9a53-3d2f6b8e${String(1000 + i)}`, tokenId: `b2e9c0d4-5f61-4a7e-8c3b-1e0f9a7d${String(1000 + i)}`, via: "lease" }));
  const clients = principals.map((_, i) => ({ address: `10.20.1.${i + 10}`, port: 50_000 + i, protocol: "modbus" as const, transport: "tcp" }));
  const read: Decision = { effect: "allow", rule: "historian-read", reason: "allowed", policyRevision: "3f2a9c0d1e4b5a67", mode: "enforce", zone: "boiler-house" };
  const readOp: Operation = { asset: "boiler-plc", action: "read", target: { kind: "range", table: "holding", address: 100, count: 2 } };
  return (n, ref) => {
    if (n % 2 === 1) return new Outcome(ref, "ok", 0.117 + (n % 7) / 1000);
    const r = n >> 1;
    const k = r % 16;
    const body =
      r % 8 === 7
        ? decisionBody({ ...read, rule: "mes-setpoint", values: [{ point: "setpoint", raw: [40 + (r % 50)], value: 40 + (r % 50) }] }, { asset: "boiler-plc", action: "write", target: { kind: "point", point: "setpoint" }, value: 40 + (r % 50) }, principals[k] as Principal, clients[k] as (typeof clients)[number])
        : decisionBody(read, readOp, principals[k] as Principal, clients[k] as (typeof clients)[number]);
    return body;
  };
}

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
async function groupCommit(dir: string, signingKey: SigningKeyInput, syncMs: number, traffic: "gateway" | "arbitrary"): Promise<Row> {
  const log = await DecisionLog.open(settings(dir, "group", syncMs), { signingKey });
  const next = traffic === "gateway" ? gatewayTraffic() : arbitrary;
  let id = "";
  for (let n = 0; n < 1024; n++) id = log.append(next(n, id)).id; // warm-up: what the log keeps is made here
  await log.flush();
  const t0 = performance.now();
  let last: Promise<void> = Promise.resolve();
  for (let n = 0; n < RECORDS; ) {
    for (let k = 0; k < BURST && n < RECORDS; k++, n++) {
      const a = log.append(next(n, id));
      id = a.id;
      last = a.durable;
    }
    await yieldToIo();
  }
  await last;
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  return { name: `group commit, syncMs ${syncMs}, ${traffic === "gateway" ? "gateway traffic" : "arbitrary records"}`, records: RECORDS, seconds };
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
    rows.push(await groupCommit(dir("group20"), privateKey, 20, "gateway"));
    rows.push(await groupCommit(dir("group20a"), privateKey, 20, "arbitrary"));
    rows.push(await groupCommit(dir("group5"), privateKey, 5, "gateway"));
    rows.push(await groupCommit(dir("group5a"), privateKey, 5, "arbitrary"));
    for (const clients of [16, 256, 4096]) rows.push(await strict(dir(`strict${clients}`), privateKey, clients, Math.min(RECORDS, clients * 40)));
    print(rows);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Where an arbitrary record's time goes, in µs, measured here: making its canonical text dominates. */
function breakdown(): string {
  const N = 50_000;
  const time = (f: (i: number) => unknown) => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) f(i);
    return (((performance.now() - t0) * 1000) / N).toFixed(2);
  };
  const body = (i: number) => BODIES[i % BODIES.length] as DecisionBody;
  const canonical = jcs(body(1));
  time((i) => jcs(body(i))); // warm-up
  return `per record body: JCS (canonicalize) ${time((i) => jcs(body(i)))} µs, canonicalJson (the writer's one pass over key-ordered bodies) ${time((i) => canonicalJson(body(i)))} µs, JSON.stringify (not canonical; for scale) ${time((i) => JSON.stringify(body(i)))} µs, sha256 ${time(() => chainHash("0".repeat(64), canonical))} µs`;
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
  const arbitraryRow = rows[2] as Row;
  console.log(`\n${breakdown()}`);
  console.log(
    `SPEC §8 target: ≥ 100,000 records/s with chain and group commit (syncMs 20): gateway traffic ${rate(group) >= 100_000 ? "met" : "NOT met"} (${Math.round(rate(group)).toLocaleString("en")}/s); arbitrary records ${rate(arbitraryRow) >= 100_000 ? "met" : "NOT met"} (${Math.round(rate(arbitraryRow)).toLocaleString("en")}/s)`,
  );
}

await main();
