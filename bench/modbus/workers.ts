// The two helpers of bench/modbus/run.ts, each on its own thread so that neither competes with
// the component under test for the main event loop: the simulated PLC (the device) and the
// load generator (Modbus clients, driven by messages, one measurement at a time). The main
// thread runs the relay and the gateway. The PLC's thread runs two: the simulated PLC as it
// is (answers to requests read at once leave in one write) and one writing each answer on its
// own (as libmodbus's modbus_reply() does), for the gateway's figure against such a device.
import { once } from "node:events";
import net from "node:net";
import { parentPort, workerData } from "node:worker_threads";
import { SimulatedPlc } from "../../src/sim/plc.js";

export type WorkerTask = { readonly kind: "plc" } | { readonly kind: "clients" };

/** What the clients' worker is asked to measure. */
export type Measurement =
  | { readonly kind: "latency"; readonly port: number; readonly unit: number; readonly warmup: number; readonly requests: number }
  | { readonly kind: "throughput"; readonly port: number; readonly unit: number; readonly clients: number; readonly warmupMs: number; readonly ms: number };

export type WorkerResult =
  | { readonly kind: "plc"; readonly port: number; readonly eachPort: number }
  | { readonly kind: "clients" }
  | { readonly kind: "latency"; readonly micros: number[]; readonly errors: number }
  | { readonly kind: "throughput"; readonly requests: number; readonly seconds: number; readonly errors: number };

/** FC3 read of setpoint and mode (holding 100..101), framed by hand. */
function request(tid: number, unit: number): Buffer {
  return Buffer.from([tid >> 8, tid & 0xff, 0, 0, 0, 6, unit, 3, 0, 100, 0, 2]);
}

/** One Modbus client: one request at a time, as a polling historian does. */
class Client {
  private rest: Buffer = Buffer.alloc(0);
  private tid = 0;
  private waiting: ((ok: boolean) => void) | undefined;

  private constructor(private readonly socket: net.Socket, private readonly unit: number) {
    socket.on("data", (chunk: Buffer) => {
      this.rest = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
      while (this.rest.length >= 6 && this.rest.length >= 6 + this.rest.readUInt16BE(4)) {
        const len = 6 + this.rest.readUInt16BE(4);
        const ok = this.rest.readUInt16BE(0) === this.tid && this.rest[7] === 3;
        this.rest = this.rest.subarray(len);
        const w = this.waiting;
        this.waiting = undefined;
        w?.(ok);
      }
    });
  }

  static async connect(port: number, unit: number): Promise<Client> {
    const s = net.connect({ host: "127.0.0.1", port, noDelay: true });
    await once(s, "connect");
    return new Client(s, unit);
  }

  read(): Promise<boolean> {
    this.tid = (this.tid + 1) & 0xffff;
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.socket.write(request(this.tid, this.unit));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

async function measure(m: Measurement): Promise<WorkerResult> {
  switch (m.kind) {
    case "latency": {
      const c = await Client.connect(m.port, m.unit);
      let errors = 0;
      for (let i = 0; i < m.warmup; i++) if (!(await c.read())) errors++;
      const micros: number[] = new Array(m.requests);
      for (let i = 0; i < m.requests; i++) {
        const t0 = process.hrtime.bigint();
        if (!(await c.read())) errors++;
        micros[i] = Number(process.hrtime.bigint() - t0) / 1000;
      }
      c.close();
      return { kind: "latency", micros, errors };
    }
    case "throughput": {
      const clients = await Promise.all(Array.from({ length: m.clients }, () => Client.connect(m.port, m.unit)));
      let counting = false;
      let stop = false;
      let requests = 0;
      let errors = 0;
      const loops = clients.map(async (c) => {
        while (!stop) {
          const ok = await c.read();
          if (counting) {
            requests++;
            if (!ok) errors++;
          }
        }
      });
      await new Promise((r) => setTimeout(r, m.warmupMs));
      counting = true;
      const t0 = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, m.ms));
      counting = false;
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      stop = true;
      await Promise.all(loops);
      clients.forEach((c) => c.close());
      return { kind: "throughput", requests, seconds, errors };
    }
  }
}

if (parentPort) {
  const port = parentPort;
  const task = workerData as WorkerTask;
  if (task.kind === "plc") {
    const plc = new SimulatedPlc({ scanMs: 100 });
    const each = new SimulatedPlc({ scanMs: 100, answerWrites: "each" });
    void Promise.all([plc.start(), each.start()]).then(([p, e]) => port.postMessage({ kind: "plc", port: p, eachPort: e } satisfies WorkerResult));
  } else {
    port.on("message", (m: Measurement) => void measure(m).then((r) => port.postMessage(r)));
    port.postMessage({ kind: "clients" } satisfies WorkerResult);
  }
}
