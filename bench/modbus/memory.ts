// Memory benchmark (SPEC §8): the gateway's RSS with 1,000 open Modbus client connections
// (target ≤ 200 MB). The gateway runs in this process as bench/modbus/run.ts starts it (lease
// listener, policy, decision log; no HTTP API, no OPC UA front); the simulated PLC and the
// clients run in a child process (memory-clients.ts), so that the RSS measured is the gateway's.
// Every client connects from 127.0.0.1 (the lease's source), makes BENCH_READS FC3 reads and
// stays open; RSS is read with all of them open, then again after a full GC.
// Run: npm run bench:modbus-memory   (BENCH_CONNECTIONS, BENCH_READS to change the load)
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { startBenchGateway } from "./gateway.js";
import type { ClientsCommand, ClientsReport } from "./memory-clients.js";

const CONNECTIONS = Number(process.env["BENCH_CONNECTIONS"] ?? 1000);
const READS = Number(process.env["BENCH_READS"] ?? 1);
const TARGET_MB = 200;

function next<K extends ClientsReport["kind"]>(child: ChildProcess, kind: K): Promise<Extract<ClientsReport, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ClientsReport) => {
      if (m.kind !== kind) return;
      child.off("message", onMessage).off("exit", onExit);
      resolve(m as Extract<ClientsReport, { kind: K }>);
    };
    const onExit = (code: number | null) => reject(new Error(`the clients' process exited (${code}) before reporting "${kind}"`));
    child.on("message", onMessage).once("exit", onExit);
  });
}

const command = (child: ChildProcess, c: ClientsCommand) => child.send(c);
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

function snapshot(): NodeJS.MemoryUsage {
  return process.memoryUsage();
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const child = fork(new URL("./memory-clients.ts", import.meta.url), { execArgv: ["--import", "tsx"] });
  const root = await mkdtemp(path.join(tmpdir(), "ztgate-bench-memory-"));
  try {
    const plc = await next(child, "plc");
    const g = await startBenchGateway(root, plc.port, { maxConnections: Math.max(CONNECTIONS, 1) });
    // Warm up on a few connections (JIT, buffer pools), then measure the gateway idle.
    command(child, { kind: "open", port: g.port, connections: 4, reads: 200 });
    await next(child, "opened");
    command(child, { kind: "drop" });
    await next(child, "dropped");
    await new Promise((r) => setTimeout(r, 200));
    gc();
    const idle = snapshot();

    command(child, { kind: "open", port: g.port, connections: CONNECTIONS, reads: READS });
    const opened = await next(child, "opened");
    const open = g.gw.modbus[0]?.stats().open ?? 0;
    const loaded = snapshot();
    gc();
    const afterGc = snapshot();
    const peakRss = process.resourceUsage().maxRSS * 1024;
    const records = g.gw.log.stats().seq;
    command(child, { kind: "close" });
    await g.gw.stop();

    console.log(`Modbus gateway memory, ${CONNECTIONS.toLocaleString("en")} leased client connections × ${READS} FC3 read(s), node ${process.version}\n`);
    console.log(`clients: ${opened.open} open, ${opened.answered} answers, ${opened.errors} errors, in ${opened.seconds.toFixed(1)} s; gateway: ${open} connections open, ${records.toLocaleString("en")} records logged`);
    const row = (name: string, m: NodeJS.MemoryUsage) => console.log(`${name.padEnd(34)} ${mb(m.rss).padStart(9)} ${mb(m.heapUsed).padStart(10)} ${mb(m.external).padStart(9)}`);
    console.log(`\n${"".padEnd(34)} ${"RSS".padStart(9)} ${"heap used".padStart(10)} ${"external".padStart(9)}`);
    row("gateway idle (after warm-up, GC)", idle);
    row(`${open} connections open`, loaded);
    row(`${open} connections open, after GC`, afterGc);
    console.log(`\nper connection: ${((loaded.rss - idle.rss) / Math.max(1, open) / 1024).toFixed(1)} KB RSS, ${((afterGc.heapUsed - idle.heapUsed) / Math.max(1, open) / 1024).toFixed(1)} KB heap`);
    console.log(`peak RSS: ${mb(peakRss)}`);
    const ok = open >= CONNECTIONS && opened.errors === 0;
    console.log(`RSS with ${open} open connections: ${mb(loaded.rss)} (target ≤ ${TARGET_MB} MB with 1,000: ${!ok ? "NOT measured (connections missing)" : loaded.rss <= TARGET_MB * 2 ** 20 ? "met" : "NOT met"})`);
  } finally {
    child.kill();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
