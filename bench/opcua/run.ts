// OPC UA benchmark (SPEC §8): in one run, the simulated packaging line's OPC UA server read
// directly and through the gateway, side by side.
//
//   latency     N sequential reads of Line1.Speed after a warm-up, p50/p99: direct to the
//               simulated server (SignAndEncrypt Basic256Sha256, anonymous; and None for
//               reference) and through the gateway's OPC UA front (SignAndEncrypt
//               Basic256Sha256, a UserName token carrying a JWT, policy and decision log on).
//               The paths are measured in interleaved rounds, so that load from elsewhere on
//               the machine falls on all of them alike. Target: gateway p50 ≤ 1.5 × direct p50
//               in the same security mode. Each is measured with maxAge 0 (every read from the
//               device: two OPC UA hops, two node-opcua stacks) and with maxAge BENCH_MAX_AGE
//               (default 1000 ms, a historian's poll: the gateway may answer from its
//               subscription, see README "Reads within maxAge"), direct and through the gateway.
//   monitoring  K clients × M monitored items on speed and count (alternating), sampled every
//               100 ms (the front's default minimum; the same asked of the direct server):
//               notifications delivered per second, direct and through the gateway.
//
// The gateway is a full startGateway (src/main.ts) with free ports everywhere and the simulated
// plant on, exactly as `npm start` runs it: the simulated OPC UA server lives in the gateway's
// process, on its main thread. The direct path reads that very server, so both paths have the
// same server on the same thread, and the only difference is the gateway's hop (front, policy,
// decision log, one upstream session). The clients run on a worker thread (bench/opcua/
// clients.ts), off the main thread. Phase 1 runs the default config (the upstream session to
// the simulated server with security None); phase 2 starts the gateway again with the
// upstream session SignAndEncrypt Basic256Sha256, as towards a real server.
//
// The line moves fast for the monitoring part: the simulated server's own scan is off
// (sim.opcua.scanMs 0) and the bench steps the line every 10 ms by one second of line time and
// changes its speed, so that every sample of an item sees a new value (left to its own 100 ms
// scan, Count changes about once a second and Speed not at all).
//
// Run: npm run bench:opcua   (BENCH_READS reads per path, default 2000; BENCH_MONITOR levels as
// KxM, default 4x25,8x100; BENCH_SECONDS per monitoring run, default 5; BENCH_MAX_AGE, default
// 1000; BENCH_PHASES=1 skips
// phase 2; BENCH_LOG=info shows the gateway's log on stderr). The simulated server takes at
// most 10 connections: K ≤ 8.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pino } from "pino";
import { issueToken } from "../../src/auth/issue.js";
import { issueClientCertificate } from "../../src/auth/certs.js";
import { KEY_FILES, initKeys, privateKeyPem, readCa, readPrivateKey, writeKeyFile } from "../../src/auth/keys.js";
import { parseConfig } from "../../src/config/load.js";
import type { Gateway } from "../../src/main.js";
import { startGateway } from "../../src/main.js";
import { LINE_NODES } from "../../src/sim/opcua.js";
import { routeOpcuaLogs } from "../../src/util/opcua-logging.js";
import type { ClientAnswer, ClientPkiFiles, ClientRequest, MonitorResult, SessionSpec } from "./clients.js";

// node-opcua's own messages on stderr as log lines, errors only unless BENCH_LOG says otherwise
// (the upstream client warns on every failed connection attempt while the policies name port 1,
// the front on the host name missing from its certificate): stdout is the table.
routeOpcuaLogs(pino({ level: process.env["BENCH_LOG"] ?? "error" }, pino.destination(2)));

const READS = Number(process.env["BENCH_READS"] ?? 2000);
const WARMUP = Math.min(300, Math.max(50, Math.round(READS / 10)));
const ROUNDS = 5;
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? 5);
const SAMPLING_MS = 100;
const LEVELS = (process.env["BENCH_MONITOR"] ?? "4x25,8x100").split(",").map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`BENCH_MONITOR: "${s}" is not KxM (clients x items per client)`);
  return { clients: Number(m[1]), items: Number(m[2]) };
});
const PHASES = Number(process.env["BENCH_PHASES"] ?? 2);
const MAX_AGE = Number(process.env["BENCH_MAX_AGE"] ?? 1000);
const POLICIES = fileURLToPath(new URL("../../policies/", import.meta.url));
const GW_SPEED = "ns=1;s=packaging-line.speed";
const GW_COUNT = "ns=1;s=packaging-line.count";

/** A request as the main thread writes it (the sequence number is added on sending). */
type Ask = ClientRequest extends infer R ? (R extends unknown ? Omit<R, "seq"> : never) : never;

/** The client thread: one request at a time, one answer each. */
class Clients {
  private readonly worker = new Worker(new URL("./worker-boot.mjs", import.meta.url));
  private seq = 0;
  private readonly waiting = new Map<number, (a: ClientAnswer) => void>();

  constructor() {
    this.worker.on("message", (a: ClientAnswer) => {
      const w = this.waiting.get(a.seq);
      this.waiting.delete(a.seq);
      w?.(a);
    });
    this.worker.on("error", (e) => {
      for (const w of this.waiting.values()) w({ seq: -1, ok: false, error: e.message });
      this.waiting.clear();
    });
  }

  async ask(r: Ask): Promise<Extract<ClientAnswer, { ok: true }>> {
    const seq = ++this.seq;
    const a = await new Promise<ClientAnswer>((resolve) => {
      this.waiting.set(seq, resolve);
      this.worker.postMessage({ ...r, seq });
    });
    if (!a.ok) throw new Error(`bench client (${r.op}): ${a.error}`);
    return a;
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

/** CPU time of the main thread (the gateway and the simulated server) so far, ms (Linux; undefined elsewhere). */
function mainThreadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

interface Path {
  readonly name: string;
  readonly id: string;
  readonly nodeId: string;
  readonly spec: SessionSpec;
  /** The reads' maxAge, ms (default 0: the value must come from the device). */
  readonly maxAge?: number;
}

interface LatencyRow {
  readonly name: string;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  /** Main-thread CPU per read, µs (the server side: gateway and simulated server). */
  readonly cpu: number | undefined;
  readonly errors: number;
}

/** Warm-up, then READS reads per path in ROUNDS interleaved rounds. */
async function latency(clients: Clients, paths: readonly Path[]): Promise<LatencyRow[]> {
  for (const p of paths) await clients.ask({ op: "open", id: p.id, spec: p.spec });
  const micros = new Map<string, number[]>(paths.map((p) => [p.id, []]));
  const cpu = new Map<string, number | undefined>(paths.map((p) => [p.id, 0]));
  const errors = new Map<string, number>(paths.map((p) => [p.id, 0]));
  for (const p of paths) await clients.ask({ op: "reads", id: p.id, nodeId: p.nodeId, n: WARMUP, ...(p.maxAge !== undefined && { maxAge: p.maxAge }) });
  const per = Math.ceil(READS / ROUNDS);
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of paths) {
      const c0 = mainThreadCpuMs();
      const a = await clients.ask({ op: "reads", id: p.id, nodeId: p.nodeId, n: per, ...(p.maxAge !== undefined && { maxAge: p.maxAge }) });
      const c1 = mainThreadCpuMs();
      micros.get(p.id)?.push(...(a.micros ?? []));
      const before = cpu.get(p.id);
      cpu.set(p.id, before === undefined || c0 === undefined || c1 === undefined ? undefined : before + (c1 - c0));
      errors.set(p.id, (errors.get(p.id) ?? 0) + (a.errors ?? 0));
    }
  }
  for (const p of paths) await clients.ask({ op: "close", id: p.id });
  return paths.map((p) => {
    const m = micros.get(p.id) ?? [];
    const sorted = [...m].sort((a, b) => a - b);
    const c = cpu.get(p.id);
    return { name: p.name, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), mean: m.reduce((s, x) => s + x, 0) / Math.max(1, m.length), cpu: c === undefined ? undefined : (c * 1000) / Math.max(1, m.length), errors: errors.get(p.id) ?? 0 };
  });
}

interface MonitorRow extends MonitorResult {
  readonly name: string;
  readonly clients: number;
  readonly items: number;
}

/** A client PKI: an application certificate from the dev CA; the dev CA (and its CRL) and the simulated server's certificate trusted. */
async function clientPki(root: string, keysDir: string, simCertificate: string): Promise<ClientPkiFiles> {
  const dir = path.join(root, "bench-client-pki");
  const applicationUri = "urn:ztgate:bench:client";
  await mkdir(path.join(dir, "trusted", "certs"), { recursive: true });
  await mkdir(path.join(dir, "trusted", "crl"), { recursive: true });
  await copyFile(path.join(keysDir, KEY_FILES.caCert), path.join(dir, "trusted", "certs", "ztgate-dev-ca.pem"));
  await copyFile(path.join(keysDir, KEY_FILES.pkiCrl), path.join(dir, "trusted", "crl", "ztgate-dev-ca.crl.der"));
  await copyFile(simCertificate, path.join(dir, "trusted", "certs", "sim-packaging-line.pem"));
  const issued = await issueClientCertificate(await readCa(keysDir), { cn: "bench-client", opcuaAppUri: applicationUri });
  const certificateFile = path.join(dir, "own", "certs", "bench-client.pem");
  const privateKeyFile = path.join(dir, "own", "private", "bench-client.key.pem");
  await writeKeyFile(privateKeyFile, await privateKeyPem(issued.keys), 0o600);
  await writeKeyFile(certificateFile, issued.cert.toString("pem") + "\n", 0o644);
  return { dir, applicationUri, certificateFile, privateKeyFile };
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Running {
  readonly gw: Gateway;
  readonly sim: NonNullable<Gateway["opcuaSim"]>;
  readonly front: string;
  stop(): Promise<void>;
}

/**
 * startGateway in `root` with free ports everywhere and the simulated plant on; the policies
 * then name the simulated devices' ports (known only once they listen) and are reloaded, and
 * the upstream session is up before this resolves.
 */
async function gateway(root: string, upstream: "None" | "SignAndEncrypt"): Promise<Running> {
  const policies = path.join(root, "policies");
  await mkdir(policies, { recursive: true });
  const line = await readFile(path.join(POLICIES, "packaging-line.yaml"), "utf8");
  const boiler = await readFile(path.join(POLICIES, "boiler-plc.yaml"), "utf8");
  // Until the simulated devices listen, the policies name port 1 (nothing listens there): never
  // the default ports, where some other process on the machine may be listening.
  const at = (text: string, endpoint: string) => text.replace(/^endpoint: .*$/m, `endpoint: ${endpoint}`);
  await writeFile(path.join(policies, "packaging-line.yaml"), at(line, "opc.tcp://127.0.0.1:1"));
  await writeFile(path.join(policies, "boiler-plc.yaml"), at(boiler, "tcp://127.0.0.1:1"));
  const yaml = [
    "policy: { dir: policies, watch: false }",
    "log: { dir: data/decisions }",
    "modbus:",
    "  listeners: [{ name: lease, mode: lease, port: 0 }]",
    "opcua:",
    "  front: { port: 0 }",
    `  upstream: { securityMode: ${upstream}, securityPolicy: ${upstream === "None" ? "None" : "Basic256Sha256"} }`,
    "sim:",
    "  modbus: { port: 0 }",
    "  opcua: { port: 0, scanMs: 0 }",
    "http: { port: 0, tls: false }",
    "",
  ].join("\n");
  const file = path.join(root, "gateway.yaml");
  await writeFile(file, yaml);
  // The simulated server accepts any self-signed client certificate, but one issued by a CA only
  // with that CA in its PKI: the dev CA and its CRL, so both paths use the same client certificate.
  const keysDir = path.join(root, "certs");
  await initKeys(keysDir);
  const simTrusted = path.join(keysDir, "sim-opcua-pki", "server", "trusted");
  await mkdir(path.join(simTrusted, "certs"), { recursive: true });
  await mkdir(path.join(simTrusted, "crl"), { recursive: true });
  await copyFile(path.join(keysDir, KEY_FILES.caCert), path.join(simTrusted, "certs", "ztgate-dev-ca.pem"));
  await copyFile(path.join(keysDir, KEY_FILES.pkiCrl), path.join(simTrusted, "crl", "ztgate-dev-ca.crl.der"));
  const gw = await startGateway(parseConfig(file, yaml), pino({ level: process.env["BENCH_LOG"] ?? "silent" }, pino.destination(2)));
  try {
    const sim = gw.opcuaSim;
    const plc = gw.plc?.address();
    const simAddress = sim?.address();
    const front = gw.opcua?.address()?.endpointUrl;
    if (!sim || !simAddress || !plc || !front) throw new Error("bench: the gateway started without its simulated plant or OPC UA front");
    await writeFile(path.join(policies, "packaging-line.yaml"), at(line, `opc.tcp://127.0.0.1:${simAddress.port}`));
    await writeFile(path.join(policies, "boiler-plc.yaml"), at(boiler, `tcp://127.0.0.1:${plc.port}`));
    const r = await gw.policy.reload("manual");
    if (!r.ok) throw new Error(`bench: policy reload rejected: ${r.errors.join("; ")}`);
    const endpoint = `opc.tcp://127.0.0.1:${simAddress.port}`;
    await until(`the upstream session to ${endpoint}`, () => {
      const d = gw.devices.opcua("packaging-line");
      return d?.endpoint === endpoint && d.state() === "connected";
    });
    return { gw, sim, front, stop: () => gw.stop() };
  } catch (e) {
    await gw.stop();
    throw e;
  }
}

/** Every 10 ms, one second of line time and a new speed: each sample sees a change. */
function driveLine(sim: Running["sim"]): () => void {
  let k = 0;
  const timer = setInterval(() => {
    sim.line.setSpeed(20 + (k++ % 100));
    sim.step(1);
  }, 10);
  return () => clearInterval(timer);
}

const us = (n: number) => `${n.toFixed(0)} µs`;
const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);

function printLatency(title: string, rows: readonly LatencyRow[]): void {
  console.log(`\n${title}`);
  console.log(`${"path".padEnd(62)} ${"p50".padStart(9)} ${"p99".padStart(9)} ${"mean".padStart(9)} ${"server CPU/read".padStart(16)} ${"errors".padStart(7)}`);
  for (const r of rows) console.log(`${r.name.padEnd(62)} ${us(r.p50).padStart(9)} ${us(r.p99).padStart(9)} ${us(r.mean).padStart(9)} ${(r.cpu === undefined ? "-" : us(r.cpu)).padStart(16)} ${String(r.errors).padStart(7)}`);
}

async function monitoring(clients: Clients, spec: { direct: SessionSpec; gateway: SessionSpec }): Promise<MonitorRow[]> {
  const rows: MonitorRow[] = [];
  for (const level of LEVELS) {
    for (const [name, s, nodes] of [
      ["direct, SignAndEncrypt", spec.direct, [LINE_NODES.speed, LINE_NODES.count]],
      ["gateway, SignAndEncrypt (JWT), upstream None", spec.gateway, [GW_SPEED, GW_COUNT]],
    ] as const) {
      const a = await clients.ask({ op: "monitor", spec: s, clients: level.clients, items: level.items, nodes, samplingMs: SAMPLING_MS, warmupMs: 2000, ms: SECONDS * 1000 });
      const m = a.monitor as MonitorResult;
      rows.push({ name, clients: level.clients, items: level.items, ...m });
    }
  }
  return rows;
}

function printMonitoring(rows: readonly MonitorRow[]): void {
  console.log(`\nMonitored items on speed and count, sampling ${SAMPLING_MS} ms, line changing every 10 ms, ${SECONDS} s per run (ideal: items × ${1000 / SAMPLING_MS}/s)`);
  console.log(`${"path".padEnd(48)} ${"K×M".padStart(7)} ${"created".padStart(8)} ${"notif/s".padStart(9)} ${"ideal/s".padStart(8)} ${"per item/s".padStart(11)} ${"bad".padStart(5)}`);
  for (const r of rows) {
    const rate = r.notifications / r.seconds;
    console.log(`${r.name.padEnd(48)} ${`${r.clients}×${r.items}`.padStart(7)} ${String(r.created).padStart(8)} ${Math.round(rate).toLocaleString("en").padStart(9)} ${Math.round((r.clients * r.items * 1000) / SAMPLING_MS).toLocaleString("en").padStart(8)} ${(rate / Math.max(1, r.created)).toFixed(2).padStart(11)} ${String(r.bad).padStart(5)}`);
  }
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const d = rows[i] as MonitorRow;
    const g = rows[i + 1] as MonitorRow;
    console.log(`gateway / direct notifications at ${d.clients}×${d.items}: ${ratio(g.notifications / g.seconds, d.notifications / d.seconds).toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), "ztgate-bench-opcua-"));
  const clients = new Clients();
  console.log(`OPC UA read of Line1.Speed, ${READS.toLocaleString("en")} sequential reads per path after ${WARMUP} warm-up reads, ${ROUNDS} interleaved rounds; node ${process.version}`);
  try {
    // Phase 1: the default config (upstream None to the simulated server).
    const run = await gateway(root, "None");
    const stopLine = driveLine(run.sim);
    try {
      const keysDir = run.gw.config.keys.dir;
      const pki = await clientPki(root, keysDir, run.sim.certificateFile());
      const key = await readPrivateKey(path.join(keysDir, KEY_FILES.issuerKey));
      const jwt = await issueToken({ key, sub: "bench-historian", roles: ["historian"], ttl: 3600 });
      const direct = run.sim.endpointUrl() as string;
      const specs = {
        directNone: { endpoint: direct, secure: false, pki },
        direct: { endpoint: direct, secure: true, pki },
        gateway: { endpoint: run.front, secure: true, user: { name: "bench-historian", password: jwt }, pki },
      } satisfies Record<string, SessionSpec>;
      const rows = await latency(clients, [
        { name: "direct, None (reference)", id: "d-none", nodeId: LINE_NODES.speed, spec: specs.directNone },
        { name: "direct, SignAndEncrypt Basic256Sha256", id: "d-sae", nodeId: LINE_NODES.speed, spec: specs.direct },
        { name: "gateway, SignAndEncrypt Basic256Sha256 (JWT), upstream None", id: "gw", nodeId: GW_SPEED, spec: specs.gateway },
        { name: `direct, SignAndEncrypt, maxAge ${MAX_AGE} ms`, id: "d-sae-age", nodeId: LINE_NODES.speed, spec: specs.direct, maxAge: MAX_AGE },
        { name: `gateway, SignAndEncrypt (JWT), maxAge ${MAX_AGE} ms`, id: "gw-age", nodeId: GW_SPEED, spec: specs.gateway, maxAge: MAX_AGE },
      ]);
      printLatency("Phase 1: default config (upstream session to the simulated server with security None)", rows);
      const [, d, g, da, ga] = rows as [LatencyRow, LatencyRow, LatencyRow, LatencyRow, LatencyRow];
      const p50 = ratio(g.p50, d.p50);
      console.log(`maxAge 0 (every read from the device): gateway p50 / direct p50 (both SignAndEncrypt): ${p50.toFixed(2)} (target ≤ 1.5: ${p50 <= 1.5 ? "met" : "NOT met"}); p99 ratio ${ratio(g.p99, d.p99).toFixed(2)}`);
      const p50a = ratio(ga.p50, da.p50);
      const cache = (run.gw.devices.opcua("packaging-line") as { stats?: () => { cacheHits: number; cacheMisses: number } } | undefined)?.stats?.();
      console.log(`maxAge ${MAX_AGE} ms (a historian's poll): gateway p50 / direct p50: ${p50a.toFixed(2)} (target ≤ 1.5: ${p50a <= 1.5 ? "met" : "NOT met"}); p99 ratio ${ratio(ga.p99, da.p99).toFixed(2)}; the gateway's reads from its subscription: ${cache ? `${cache.cacheHits.toLocaleString("en")} hits, ${cache.cacheMisses.toLocaleString("en")} misses` : "-"}`);
      const mon = await monitoring(clients, specs);
      printMonitoring(mon);
      const stats = run.gw.log.stats();
      console.log(`\ngateway decision log records (phase 1): ${stats.seq.toLocaleString("en")}`);
    } finally {
      stopLine();
      await run.stop();
    }

    if (PHASES < 2) return;
    // Phase 2: the upstream session SignAndEncrypt too; the gateway trusts the sim's certificate.
    const keysDir = path.join(root, "certs");
    const trusted = path.join(keysDir, "opcua-upstream-pki", "trusted", "certs");
    await mkdir(trusted, { recursive: true });
    await copyFile(path.join(keysDir, "sim-opcua-pki", "server", "own", "certs", "certificate.pem"), path.join(trusted, "sim-packaging-line.pem"));
    const run2 = await gateway(root, "SignAndEncrypt");
    try {
      const pki = await clientPki(root, keysDir, run2.sim.certificateFile());
      const key = await readPrivateKey(path.join(keysDir, KEY_FILES.issuerKey));
      const jwt = await issueToken({ key, sub: "bench-historian", roles: ["historian"], ttl: 3600 });
      const rows = await latency(clients, [
        { name: "direct, SignAndEncrypt Basic256Sha256", id: "d-sae", nodeId: LINE_NODES.speed, spec: { endpoint: run2.sim.endpointUrl() as string, secure: true, pki } },
        { name: "gateway, SignAndEncrypt (JWT), upstream SignAndEncrypt", id: "gw", nodeId: GW_SPEED, spec: { endpoint: run2.front, secure: true, user: { name: "bench-historian", password: jwt }, pki } },
        { name: `direct, SignAndEncrypt, maxAge ${MAX_AGE} ms`, id: "d-sae-age", nodeId: LINE_NODES.speed, spec: { endpoint: run2.sim.endpointUrl() as string, secure: true, pki }, maxAge: MAX_AGE },
        { name: `gateway, upstream SignAndEncrypt, maxAge ${MAX_AGE} ms`, id: "gw-age", nodeId: GW_SPEED, spec: { endpoint: run2.front, secure: true, user: { name: "bench-historian", password: jwt }, pki }, maxAge: MAX_AGE },
      ]);
      printLatency("Phase 2: upstream session SignAndEncrypt Basic256Sha256 too", rows);
      const [d, g, da, ga] = rows as [LatencyRow, LatencyRow, LatencyRow, LatencyRow];
      console.log(`maxAge 0: gateway p50 / direct p50 (both SignAndEncrypt, upstream SignAndEncrypt): ${ratio(g.p50, d.p50).toFixed(2)}; p99 ratio ${ratio(g.p99, d.p99).toFixed(2)}`);
      console.log(`maxAge ${MAX_AGE} ms: gateway p50 / direct p50: ${ratio(ga.p50, da.p50).toFixed(2)}; p99 ratio ${ratio(ga.p99, da.p99).toFixed(2)}`);
    } finally {
      await run2.stop();
    }
  } finally {
    await clients.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
