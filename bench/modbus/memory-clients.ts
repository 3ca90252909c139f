// The other process of bench/modbus/memory.ts: the simulated PLC and the Modbus clients, kept
// out of the gateway's process so that its RSS is the gateway's own. Driven over the IPC channel.
import { once } from "node:events";
import net from "node:net";
import { SimulatedPlc } from "../../src/sim/plc.js";

export type ClientsCommand =
  /** Opens `connections` connections, each making `reads` reads, and keeps them open. */
  | { readonly kind: "open"; readonly port: number; readonly connections: number; readonly reads: number }
  /** Closes the clients' connections (the PLC stays). */
  | { readonly kind: "drop" }
  /** Closes everything; the process ends. */
  | { readonly kind: "close" };

export type ClientsReport =
  | { readonly kind: "plc"; readonly port: number }
  | { readonly kind: "opened"; readonly open: number; readonly answered: number; readonly errors: number; readonly seconds: number }
  | { readonly kind: "dropped" };

/** FC3 read of holding 100..101 (setpoint and mode), framed by hand. */
function request(tid: number): Buffer {
  return Buffer.from([tid >> 8, tid & 0xff, 0, 0, 0, 6, 1, 3, 0, 100, 0, 2]);
}

/** One request on `s`; true when the answer is the normal FC3 answer to it. */
function read(s: net.Socket, tid: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 6 || got.length < 6 + got.readUInt16BE(4)) return;
      done(got.readUInt16BE(0) === tid && got[7] === 3);
    };
    const done = (ok: boolean) => {
      s.off("data", onData).off("close", onClose);
      resolve(ok);
    };
    const onClose = () => done(false);
    s.on("data", onData).once("close", onClose);
    s.write(request(tid));
  });
}

const sockets: net.Socket[] = [];

async function open(port: number, connections: number, reads: number): Promise<ClientsReport> {
  const t0 = performance.now();
  let answered = 0;
  let errors = 0;
  let next = 0;
  // 50 connecting at a time: well inside the listen backlog.
  const lanes = Array.from({ length: 50 }, async () => {
    while (next < connections) {
      next++;
      const s = net.connect({ host: "127.0.0.1", port, noDelay: true });
      s.on("error", () => undefined);
      try {
        await once(s, "connect");
      } catch {
        errors++;
        continue;
      }
      sockets.push(s);
      for (let i = 1; i <= reads; i++) {
        if (await read(s, i)) answered++;
        else errors++;
      }
    }
  });
  await Promise.all(lanes);
  return { kind: "opened", open: sockets.filter((s) => !s.destroyed).length, answered, errors, seconds: (performance.now() - t0) / 1000 };
}

const plc = new SimulatedPlc({ scanMs: 100 });
const send = (r: ClientsReport) => process.send?.(r);
send({ kind: "plc", port: await plc.start() });
process.on("message", (m: ClientsCommand) => {
  if (m.kind === "open") void open(m.port, m.connections, m.reads).then(send);
  else {
    sockets.splice(0).forEach((s) => s.destroy());
    if (m.kind === "drop") send({ kind: "dropped" });
    else void plc.stop().then(() => process.disconnect());
  }
});
