// The whole gateway as `ztgate start` builds it (startGateway), on free ports of 127.0.0.1, in
// front of a real simulated PLC, with real keys made by initKeys in a test directory, real
// tokens from the dev issuer key and a real decision log. Helpers to talk to it the way its
// users do: leases over HTTPS, pymodbus (a client the project did not write), raw sockets.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Test } from "tap";
import { parseConfig } from "../../src/config/load.js";
import { startGateway } from "../../src/main.js";
import type { Gateway } from "../../src/main.js";
import { SimulatedPlc } from "../../src/sim/plc.js";
import { KEY_FILES, privateKeyPem, readCa, readPrivateKey } from "../../src/auth/keys.js";
import { issueClientCertificate } from "../../src/auth/certs.js";
import type { ClientCertificateOptions } from "../../src/auth/certs.js";
import { issueToken } from "../../src/auth/issue.js";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import type { FrontAddress, ModbusFront } from "../../src/fronts/modbus.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BOILER = readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8");
const CLIENT = join(ROOT, "test", "fixtures", "modbus-gateway-client.py");

/**
 * A second asset on the same PLC, on front unit 2, for what the default policy has no point
 * for: a float32 holding register with limits (decoded before they are checked), and raw
 * holding registers 300..399 that historians may read.
 */
/**
 * An asset on the harness's PLC (front unit 3) whose writes wait for a shift lead's approval:
 * `valve` (60 s), `quick` (1 s); holding 230..239 written by mes without approval.
 */
export const APPROVALS_BED = (port: number) => `asset: approvals-bed
zone: lab
protocol: modbus
endpoint: tcp://127.0.0.1:${port}
unit: 1
front: { unit: 3 }
points:
  valve: { table: holding, address: 220, type: uint16 }
  quick: { table: holding, address: 221, type: uint16 }
rules:
  - id: bed-read
    allow: [read]
    subjects: { roles: [mes, shift-lead] }
    points: ["*"]
  - id: valve-write
    allow: [write]
    subjects: { roles: [mes] }
    points: [valve]
    approval: { roles: [shift-lead], timeout: 60s }
  - id: quick-write
    allow: [write]
    subjects: { roles: [mes] }
    points: [quick]
    approval: { roles: [shift-lead], timeout: 1s }
  - id: raw-mode
    allow: [write]
    subjects: { roles: [mes] }
    targets: [{ table: holding, address: "230-239" }]
`;

export const TESTBED = (port: number) => `asset: testbed
zone: lab
protocol: modbus
endpoint: tcp://127.0.0.1:${port}
unit: 1
front: { unit: 2 }
points:
  limit:   { table: holding, address: 200, type: float32, words: big, min: -50, max: 150 }
  counter: { table: holding, address: 210, type: uint16 }
  locked:  { table: holding, address: 211, type: uint16 }
rules:
  - id: lab-read
    allow: [read]
    subjects: { roles: [mes] }
    points: ["*"]
  - id: lab-write
    allow: [write]
    subjects: { roles: [mes] }
    points: [limit, counter]
    values: { min: 0, max: 100 }
  - id: lab-raw-read
    allow: [read]
    subjects: { roles: [historian, mes] }
    targets: [{ table: holding, address: "300-399" }]
`;

export interface HarnessOptions {
  /** `modbus.upstream` overrides (timeouts, backoff). */
  readonly upstream?: Readonly<Record<string, unknown>>;
  /** Extra lines under each listener (indented by the harness). */
  readonly listener?: readonly string[];
  /** Extra policy files. */
  readonly policies?: Readonly<Record<string, string>>;
}

export interface Harness {
  readonly dir: string;
  readonly gw: Gateway;
  readonly plc: SimulatedPlc;
  readonly plcPort: number;
  readonly lease: FrontAddress;
  readonly mtls: FrontAddress;
  readonly leaseFront: ModbusFront;
  readonly mtlsFront: ModbusFront;
  readonly keysDir: string;
  token(sub: string, roles: readonly string[], opts?: { ttl?: number; jti?: string }): Promise<string>;
  /** One HTTPS request to the API, trusting the dev CA. */
  api(method: string, path: string, opts?: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> }): Promise<ApiResponse>;
  /** Opens a lease for 127.0.0.1 (or `source`) with a fresh token: its session id. */
  leaseFor(sub: string, roles: readonly string[], opts?: { ttl?: number }): Promise<{ id: string; token: string }>;
  /** Runs pymodbus against a front; results as the fixture prints them. */
  pymodbus(port: number, unit: number, ops: readonly Record<string, unknown>[], tls?: { cert: string; key: string } | "no-cert"): Promise<PyResult>;
  /** A client certificate (files in the test directory) from the dev CA. */
  clientCert(o: ClientCertificateOptions, ca?: "dev" | "other"): Promise<{ cert: string; key: string }>;
  /** Every record of the decision log so far (flushed first). */
  records(): Promise<LogRecord[]>;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: unknown;
  readonly text: string;
}

export interface PyResult {
  readonly connected: boolean;
  readonly results: Array<Record<string, unknown>>;
}

export async function startHarness(t: Test, o: HarnessOptions = {}): Promise<Harness> {
  const plc = new SimulatedPlc({ scanMs: 0 });
  const plcPort = await plc.start();
  t.teardown(() => plc.stop());
  const listenerExtra = (o.listener ?? []).map((l) => `      ${l}`);
  // A generous device deadline (a loaded CI box can stall the event loop for a while); the
  // tests of timeouts pass short ones themselves.
  const upstream = { timeoutMs: 5000, connectTimeoutMs: 3000, backoff: { initialMs: 20, maxMs: 100 }, ...o.upstream };
  const dir = t.testdir({
    "gateway.yaml": [
      "policy:",
      "  dir: policies",
      "  watch: false",
      "log:",
      "  dir: data/decisions",
      "  syncMs: 2",
      "modbus:",
      "  listeners:",
      "    - name: lease",
      "      mode: lease",
      "      port: 0",
      ...listenerExtra,
      "    - name: mtls",
      "      mode: mtls",
      "      port: 0",
      ...listenerExtra,
      `  upstream: ${JSON.stringify(upstream)}`,
      "sim:",
      "  modbus: { enabled: false }",
      "  opcua: { enabled: false }",
      "opcua:",
      "  front: { enabled: false }",
      "http:",
      "  port: 0",
      "",
    ].join("\n"),
    policies: {
      "boiler-plc.yaml": BOILER.replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${plcPort}`),
      "testbed.yaml": TESTBED(plcPort),
      ...o.policies,
    },
  });
  const file = join(dir, "gateway.yaml");
  const config = parseConfig(file, readFileSync(file, "utf8"));
  const gw = await startGateway(config, pino({ level: process.env["ZTGATE_TEST_LOG"] ?? "silent" }));
  t.teardown(() => gw.stop());
  const keysDir = config.keys.dir;
  const issuerKey = await readPrivateKey(join(keysDir, KEY_FILES.issuerKey));
  const caPem = readFileSync(join(keysDir, KEY_FILES.caCert), "utf8");
  const [leaseFront, mtlsFront] = gw.modbus as [ModbusFront, ModbusFront];
  const httpAddress = gw.http?.address as FrontAddress;
  let certs = 0;

  const api: Harness["api"] = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const payload = opts.rawBody ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
      const req = https.request(
        {
          host: httpAddress.host,
          port: httpAddress.port,
          method,
          path,
          ca: caPem,
          headers: {
            ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }),
            ...(payload !== undefined && { "content-type": "application/json" }),
            ...opts.headers,
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (text += d));
          res.on("end", () => {
            let body: unknown;
            try {
              body = text === "" ? undefined : JSON.parse(text);
            } catch {
              body = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });

  const token: Harness["token"] = (sub, roles, opts = {}) => issueToken({ key: issuerKey, sub, roles, ttl: opts.ttl ?? 900, ...(opts.jti !== undefined && { jti: opts.jti }) });

  return {
    dir,
    gw,
    plc,
    plcPort,
    lease: leaseFront.address() as FrontAddress,
    mtls: mtlsFront.address() as FrontAddress,
    leaseFront,
    mtlsFront,
    keysDir,
    token,
    api,
    async leaseFor(sub, roles, opts = {}) {
      const tok = await token(sub, roles, opts);
      const r = await api("POST", "/v1/sessions", { token: tok, body: { protocol: "modbus" } });
      if (r.status !== 201) throw new Error(`lease not opened: ${r.status} ${r.text}`);
      return { id: (r.body as { id: string }).id, token: tok };
    },
    pymodbus(port, unit, ops, tls) {
      const args = [CLIENT, "127.0.0.1", String(port), String(unit), JSON.stringify(ops)];
      if (tls) args.push("--tls", join(keysDir, KEY_FILES.caCert), tls === "no-cert" ? "-" : tls.cert, tls === "no-cert" ? "-" : tls.key);
      return new Promise((resolve, reject) => {
        const p = spawn("/usr/bin/python3", args, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        p.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
        p.on("error", reject);
        p.on("close", (code) => {
          try {
            resolve(JSON.parse(out) as PyResult);
          } catch {
            reject(new Error(`pymodbus client exited ${code}: ${out}${err}`));
          }
        });
      });
    },
    async clientCert(co, which = "dev") {
      const ca = which === "dev" ? await readCa(keysDir) : await import("../../src/auth/certs.js").then((m) => m.createCa());
      const issued = await issueClientCertificate(ca, co);
      const n = ++certs;
      const cert = join(dir, `client-${n}.pem`);
      const key = join(dir, `client-${n}.key.pem`);
      writeFileSync(cert, issued.cert.toString("pem") + "\n");
      writeFileSync(key, await privateKeyPem(issued.keys), { mode: 0o600 });
      return { cert, key };
    },
    async records() {
      await gw.log.flush();
      const out: LogRecord[] = [];
      for await (const f of readLog(config.log.dir)) if (f.record) out.push(f.record);
      return out;
    },
  };
}

/** Decision records only, as plain objects. */
export function decisions(records: readonly LogRecord[]): Array<Record<string, unknown>> {
  return records.filter((r) => r.type === "decision") as unknown as Array<Record<string, unknown>>;
}

/** A bare Modbus TCP client: any bytes out, whole frames in, in order. Framed by hand, not by src/wire. */
export class WireClient {
  private buf = Buffer.alloc(0);
  private readonly frames: Array<{ tid: number; unit: number; pdu: Buffer }> = [];
  private waiters: Array<{ n: number; resolve: (f: Array<{ tid: number; unit: number; pdu: Buffer }>) => void; reject: (e: Error) => void }> = [];
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 6 && this.buf.length >= 6 + this.buf.readUInt16BE(4)) {
        const len = this.buf.readUInt16BE(4);
        this.frames.push({ tid: this.buf.readUInt16BE(0), unit: this.buf[6] as number, pdu: Buffer.from(this.buf.subarray(7, 6 + len)) });
        this.buf = this.buf.subarray(6 + len);
      }
      this.wake();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed with ${this.frames.length} of ${w.n} frames`));
        resolve();
      }),
    );
  }

  static async connect(port: number): Promise<WireClient> {
    const socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
    await once(socket, "connect");
    return new WireClient(socket);
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  next(n = 1): Promise<Array<{ tid: number; unit: number; pdu: Buffer }>> {
    return new Promise((resolve, reject) => {
      if (this.isClosed && this.frames.length < n) return reject(new Error("connection closed"));
      this.waiters.push({ n, resolve, reject });
      this.wake();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.frames.length >= (this.waiters[0] as { n: number }).n) {
      const w = this.waiters.shift() as (typeof this.waiters)[number];
      w.resolve(this.frames.splice(0, w.n));
    }
  }
}

/** An MBAP frame built by hand. */
export function mbap(tid: number, unit: number, pdu: readonly number[] | Buffer): Buffer {
  const body = Buffer.isBuffer(pdu) ? pdu : Buffer.from(pdu);
  const head = Buffer.alloc(7);
  head.writeUInt16BE(tid, 0);
  head.writeUInt16BE(0, 2);
  head.writeUInt16BE(body.length + 1, 4);
  head[6] = unit;
  return Buffer.concat([head, body]);
}

/** Polls until `cond` holds (for effects with no event of their own). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
