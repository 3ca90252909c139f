// Modbus benchmark (SPEC §8): an FC3 read (holding 100..101 of the simulated PLC) three ways,
// in one run: direct to the device, through a plain Node TCP relay (a `net` pipe per client,
// no parsing), and through the gateway (lease session, policy, decision log with group commit).
// p50/p99 latency with 1 client, throughput with 16 concurrent clients, and the ratios:
//   targets: gateway p50 ≤ 1.25 × relay p50; gateway p99 ≤ 1 ms;
//            gateway throughput ≥ relay throughput (never below 75 %).
// The PLC and the clients run on worker threads; the relay and the gateway share the main
// thread (only one of them has clients at a time).
// The simulated PLC writes the answers to requests it read at once in one write, as
// pipelining servers do: a pipelined device connection saves the device writes as well as
// reads. A second gateway, in front of a PLC that writes each answer on its own (as libmodbus's
// modbus_reply() does), gives the figure against such a device. The direct and relay paths
// send one request at a time per connection, so for them the two PLCs behave the same.
//
// The paths are measured in interleaved rounds (direct, relay, gateway; again; …) rather than
// one after the other, so that load from elsewhere on the machine falls on the baseline and
// the gateway alike: each round gives a ratio, and the verdicts use the median round.
// Besides wall-clock figures, the CPU time per request under load: the main thread's (the
// relay's or the gateway's own work) and the whole process's (the clients and the PLC too).
//
// Run: npm run bench:modbus   (BENCH_ROUNDS, BENCH_REQUESTS (per path, all rounds), BENCH_SECONDS
// (per path, all rounds) to change the run length; BENCH_ONLY=gateway (or relay) measures that
// path alone, e.g. under --cpu-prof)
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { startBenchGateway } from "./gateway.js";
import type { Measurement, WorkerResult, WorkerTask } from "./workers.js";

const ROUNDS = Math.max(1, Number(process.env["BENCH_ROUNDS"] ?? 5));
const REQUESTS = Number(process.env["BENCH_REQUESTS"] ?? 20_000);
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? 5);
const CLIENTS = 16;
const WARMUP_MS = 300;
const ONLY = process.env["BENCH_ONLY"];
if (ONLY !== undefined && ONLY !== "gateway" && ONLY !== "relay") throw new Error(`BENCH_ONLY: "${ONLY}" is not gateway or relay`);
const WORKER = new URL("./worker-boot.mjs", import.meta.url);

function start(task: WorkerTask): { ready: Promise<WorkerResult>; worker: Worker } {
  const worker = new Worker(WORKER, { workerData: task });
  const ready = new Promise<WorkerResult>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { ready, worker };
}

function ask<K extends Measurement["kind"]>(worker: Worker, m: Measurement & { kind: K }): Promise<Extract<WorkerResult, { kind: K }>> {
  return new Promise((resolve, reject) => {
    worker.once("message", (r: WorkerResult) => (r.kind === m.kind ? resolve(r as Extract<WorkerResult, { kind: K }>) : reject(new Error(`expected ${m.kind}, got ${r.kind}`))));
    worker.postMessage(m);
  });
}

/** CPU time of the main thread so far, in ms (Linux: /proc; undefined elsewhere). */
function mainThreadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in ticks of 1/100 s (USER_HZ)
  } catch {
    return undefined;
  }
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function median(xs: readonly number[]): number {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}

/** One path's figures, summed over the rounds. */
class Path {
  readonly micros: number[] = [];
  readonly roundP50: number[] = [];
  readonly roundThroughput: number[] = [];
  requests = 0;
  seconds = 0;
  /** Requests served while CPU was counted (throughput runs, warm-up included). */
  served = 0;
  mainCpuMs = 0;
  mainCpuKnown = true;
  allCpuMicros = 0;
  errors = 0;
  constructor(
    readonly name: string,
    readonly port: number,
  ) {}

  async round(clients: Worker, requests: number, ms: number): Promise<void> {
    const lat = await ask(clients, { kind: "latency", port: this.port, unit: 1, warmup: Math.min(500, requests), requests });
    this.micros.push(...lat.micros);
    this.roundP50.push(median(lat.micros));
    const cpu0 = mainThreadCpuMs();
    const all0 = process.cpuUsage();
    const tp = await ask(clients, { kind: "throughput", port: this.port, unit: 1, clients: CLIENTS, warmupMs: WARMUP_MS, ms });
    const cpu1 = mainThreadCpuMs();
    const all = process.cpuUsage(all0);
    this.requests += tp.requests;
    this.seconds += tp.seconds;
    this.roundThroughput.push(tp.requests / tp.seconds);
    const served = tp.requests * (1 + WARMUP_MS / ms);
    this.served += served;
    if (cpu0 === undefined || cpu1 === undefined) this.mainCpuKnown = false;
    else this.mainCpuMs += cpu1 - cpu0;
    this.allCpuMicros += all.user + all.system;
    this.errors += lat.errors + tp.errors;
  }

  get p50(): number {
    return quantile([...this.micros].sort((a, b) => a - b), 0.5);
  }

  get p99(): number {
    return quantile([...this.micros].sort((a, b) => a - b), 0.99);
  }

  get throughput(): number {
    return this.requests / Math.max(1e-9, this.seconds);
  }
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
      sockets.delete(client);
      sockets.delete(up);
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

const us = (n: number) => `${n.toFixed(0)} µs`;
const range = (xs: readonly number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

async function main(): Promise<void> {
  const plc = start({ kind: "plc" });
  const clients = start({ kind: "clients" });
  const { port: plcPort, eachPort } = (await plc.ready) as Extract<WorkerResult, { kind: "plc" }>;
  await clients.ready;
  const root = await mkdtemp(path.join(tmpdir(), "ztgate-bench-modbus-"));
  const r = ONLY === "gateway" ? undefined : await relay(plcPort);
  const g = await startBenchGateway(path.join(root, "gateway"), plcPort);
  const ge = ONLY === undefined ? await startBenchGateway(path.join(root, "gateway-each"), eachPort) : undefined;
  try {
    const paths = [
      ...(ONLY === undefined ? [new Path("direct to the simulated PLC", plcPort)] : []),
      ...(r ? [new Path("plain Node TCP relay (net pipe)", r.port)] : []),
      ...(ONLY !== "relay" ? [new Path("ztgate (lease, policy, decision log)", g.port)] : []),
      ...(ge ? [new Path("ztgate, device writing each answer", ge.port)] : []),
    ];
    const perRound = Math.max(1, Math.round(REQUESTS / ROUNDS));
    const ms = Math.max(100, (SECONDS * 1000) / ROUNDS);
    for (let i = 0; i < ROUNDS; i++) for (const p of paths) await p.round(clients.worker, perRound, ms);
    const records = g.gw.log.stats().seq;
    const device = g.gw.devices.modbus("boiler-plc")?.device.stats();
    print(paths, perRound, ms);
    console.log(`\ngateway records written: ${records.toLocaleString("en")}`);
    if (device && device.writes !== undefined) console.log(`gateway device writes: ${device.writes.toLocaleString("en")} for ${device.sent.toLocaleString("en")} requests (${(device.sent / Math.max(1, device.writes)).toFixed(1)} per write)`);
    if (paths.length === 4) verdicts(paths[1] as Path, paths[2] as Path, paths[3] as Path);
  } finally {
    await g.gw.stop();
    await ge?.gw.stop();
    await r?.close();
    await plc.worker.terminate();
    await clients.worker.terminate();
    await rm(root, { recursive: true, force: true });
  }
}

function print(paths: readonly Path[], perRound: number, ms: number): void {
  console.log(
    `Modbus FC3 read (2 registers), node ${process.version}: ${ROUNDS} interleaved rounds, each ${perRound.toLocaleString("en")} sequential requests (latency) and ${CLIENTS} clients × ${(ms / 1000).toFixed(1)} s (throughput) per path\n`,
  );
  console.log(`${"path".padEnd(40)} ${"p50".padStart(8)} ${"p99".padStart(8)} ${"req/s (16 clients)".padStart(19)} ${"main CPU/req".padStart(13)} ${"all CPU/req".padStart(12)} ${"errors".padStart(7)}`);
  for (const p of paths) {
    const main = p.mainCpuKnown ? us((p.mainCpuMs * 1000) / Math.max(1, p.served)) : "-";
    console.log(`${p.name.padEnd(40)} ${us(p.p50).padStart(8)} ${us(p.p99).padStart(8)} ${Math.round(p.throughput).toLocaleString("en").padStart(19)} ${main.padStart(13)} ${us(p.allCpuMicros / Math.max(1, p.served)).padStart(12)} ${String(p.errors).padStart(7)}`);
  }
}

function verdicts(relayPath: Path, gw: Path, gwEach: Path): void {
  const p50 = gw.roundP50.map((x, i) => x / (relayPath.roundP50[i] as number));
  const tput = gw.roundThroughput.map((x, i) => x / (relayPath.roundThroughput[i] as number));
  const mp50 = median(p50);
  const mtput = median(tput);
  console.log(`gateway p50 / relay p50: ${mp50.toFixed(2)} median of rounds (${range(p50)}; all samples ${(gw.p50 / relayPath.p50).toFixed(2)}) (target ≤ 1.25: ${mp50 <= 1.25 ? "met" : "NOT met"})`);
  console.log(`gateway p99: ${us(gw.p99)} (target ≤ 1 ms: ${gw.p99 <= 1000 ? "met" : "NOT met"})`);
  console.log(
    `gateway throughput / relay throughput: ${mtput.toFixed(2)} median of rounds (${range(tput)}; all rounds ${(gw.throughput / relayPath.throughput).toFixed(2)}) (target ≥ 1.00, never < 0.75: ${mtput >= 1 ? "met" : mtput >= 0.75 ? "above the floor, below the target" : "NOT met"})`,
  );
  const each = gwEach.roundThroughput.map((x, i) => x / (relayPath.roundThroughput[i] as number));
  console.log(`  with a device writing each answer on its own: ${median(each).toFixed(2)} median of rounds (${range(each)}); p50 ${median(gwEach.roundP50.map((x, i) => x / (relayPath.roundP50[i] as number))).toFixed(2)} × the relay's`);
}

await main();
