// Modbus benchmark (SPEC §8): an FC3 read (holding 100..101 of the simulated PLC) three ways,
// in one run: direct to the device, through a plain Node TCP relay (a `net` pipe per client,
// no parsing), and through the gateway (lease session, policy, decision log with group commit).
// p50/p99 latency with 1 client, throughput with 16 concurrent clients, and the ratios:
//   targets: gateway p50 ≤ 1.25 × relay p50; gateway p99 ≤ 1 ms;
//            gateway throughput ≥ relay throughput (never below 75 %).
// The PLC and the clients run on worker threads; the relay or the gateway has the main thread.
// Run: npm run bench:modbus   (BENCH_REQUESTS, BENCH_SECONDS to change the run length;
// BENCH_ONLY=gateway measures the gateway alone, e.g. under --cpu-prof)
import { once } from "node:events";
import { mkdtemp, rm, writeFile, mkdir, readFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pino } from "pino";
import { parseConfig } from "../../src/config/load.js";
import { startGateway } from "../../src/main.js";
import { issueToken } from "../../src/auth/issue.js";
import { KEY_FILES, readPrivateKey } from "../../src/auth/keys.js";
import type { WorkerResult, WorkerTask } from "./workers.js";

const REQUESTS = Number(process.env["BENCH_REQUESTS"] ?? 20_000);
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? 5);
const CLIENTS = 16;
const ONLY_GATEWAY = process.env["BENCH_ONLY"] === "gateway";
const WORKER = new URL("./worker-boot.mjs", import.meta.url);
const BOILER = fileURLToPath(new URL("../../policies/boiler-plc.yaml", import.meta.url));

function work(task: WorkerTask): { result: Promise<WorkerResult>; worker: Worker } {
  const worker = new Worker(WORKER, { workerData: task });
  const result = new Promise<WorkerResult>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { result, worker };
}

interface Row {
  name: string;
  p50: number;
  p99: number;
  throughput: number;
  busyMicros: number;
  errors: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function measure(name: string, port: number, unit: number): Promise<Row> {
  const lat = (await work({ kind: "latency", port, unit, warmup: Math.min(2000, REQUESTS), requests: REQUESTS }).result) as Extract<WorkerResult, { kind: "latency" }>;
  const sorted = [...lat.micros].sort((a, b) => a - b);
  const elu0 = performance.eventLoopUtilization();
  const tp = (await work({ kind: "throughput", port, unit, clients: CLIENTS, warmupMs: 500, ms: SECONDS * 1000 }).result) as Extract<WorkerResult, { kind: "throughput" }>;
  const elu = performance.eventLoopUtilization(elu0);
  // Main-thread time per request under load (the whole throughput run, warm-up included).
  const busyMicros = (elu.active * 1000) / Math.max(1, tp.requests * (1 + 500 / (SECONDS * 1000)));
  return { name, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), throughput: tp.requests / tp.seconds, busyMicros, errors: lat.errors + tp.errors };
}

/** The baseline hop: a pipe per client, nothing parsed. */
async function relay(plcPort: number): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const up = net.connect({ host: "127.0.0.1", port: plcPort, noDelay: true });
    sockets.add(client).add(up);
    client.pipe(up).pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    },
  };
}

async function gateway(root: string, plcPort: number) {
  await mkdir(path.join(root, "policies"), { recursive: true });
  await writeFile(path.join(root, "policies", "boiler-plc.yaml"), (await readFile(BOILER, "utf8")).replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${plcPort}`));
  const yaml = [
    "policy: { dir: policies, watch: false }",
    "log: { dir: data/decisions }",
    "modbus:",
    "  listeners: [{ name: lease, mode: lease, port: 0 }]",
    "sim: { modbus: { enabled: false } }",
    "http: { enabled: false }",
    "",
  ].join("\n");
  const file = path.join(root, "gateway.yaml");
  await writeFile(file, yaml);
  const gw = await startGateway(parseConfig(file, yaml), pino({ level: "silent" }));
  // A lease for 127.0.0.1 on a verified token, as POST /v1/sessions opens it.
  const token = await issueToken({ key: await readPrivateKey(path.join(gw.config.keys.dir, KEY_FILES.issuerKey)), sub: "bench-historian", roles: ["historian"], ttl: 3600 });
  const v = await gw.verifier.verify(token);
  if (!v.ok) throw new Error(`token refused: ${v.detail}`);
  gw.sessions.open(v.principal, { kind: "lease", protocol: "modbus", source: "127.0.0.1" });
  return { gw, port: (gw.modbus[0]?.address() as { port: number }).port };
}

const us = (n: number) => `${n.toFixed(0)} µs`;

async function main(): Promise<void> {
  const plc = work({ kind: "plc" });
  const plcPort = ((await plc.result) as Extract<WorkerResult, { kind: "plc" }>).port;
  const root = await mkdtemp(path.join(tmpdir(), "ztgate-bench-modbus-"));
  const rows: Row[] = [];
  try {
    if (!ONLY_GATEWAY) {
      rows.push(await measure("direct to the simulated PLC", plcPort, 1));
      const r = await relay(plcPort);
      rows.push(await measure("plain Node TCP relay (net pipe)", r.port, 1));
      await r.close();
    }
    const g = await gateway(root, plcPort);
    rows.push(await measure("ztgate (lease, policy, decision log)", g.port, 1));
    const records = g.gw.log.stats();
    await g.gw.stop();
    print(rows, records.seq);
  } finally {
    await plc.worker.terminate();
    await rm(root, { recursive: true, force: true });
  }
}

function print(rows: Row[], records: number): void {
  console.log(`Modbus FC3 read (2 registers), ${REQUESTS.toLocaleString("en")} sequential requests for latency, ${CLIENTS} clients × ${SECONDS} s for throughput, node ${process.version}\n`);
  console.log(`${"path".padEnd(40)} ${"p50".padStart(8)} ${"p99".padStart(8)} ${"req/s (16 clients)".padStart(19)} ${"main thread/req".padStart(16)} ${"errors".padStart(7)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(40)} ${us(r.p50).padStart(8)} ${us(r.p99).padStart(8)} ${Math.round(r.throughput).toLocaleString("en").padStart(19)} ${us(r.busyMicros).padStart(16)} ${String(r.errors).padStart(7)}`);
  }
  if (rows.length < 3) return;
  const [, relayRow, gw] = rows as [Row, Row, Row];
  const p50 = gw.p50 / relayRow.p50;
  const tput = gw.throughput / relayRow.throughput;
  console.log(`\ngateway records written: ${records.toLocaleString("en")}`);
  console.log(`gateway p50 / relay p50: ${p50.toFixed(2)} (target ≤ 1.25: ${p50 <= 1.25 ? "met" : "NOT met"})`);
  console.log(`gateway p99: ${us(gw.p99)} (target ≤ 1 ms: ${gw.p99 <= 1000 ? "met" : "NOT met"})`);
  console.log(`gateway throughput / relay throughput: ${tput.toFixed(2)} (target ≥ 1.00, never < 0.75: ${tput >= 1 ? "met" : tput >= 0.75 ? "above the floor, below the target" : "NOT met"})`);
}

await main();
