// A bare Modbus TCP client for the tests: writes any bytes, collects whole frames in order.
// It frames answers with its own few lines rather than src/wire, so a framing bug there
// cannot hide itself.
import { once } from "node:events";
import net from "node:net";

export interface RawFrame {
  transactionId: number;
  protocolId: number;
  unitId: number;
  pdu: Buffer;
}

export class RawClient {
  private buf = Buffer.alloc(0);
  private readonly frames: RawFrame[] = [];
  private waiters: { n: number; resolve: (f: RawFrame[]) => void }[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 6 && this.buf.length >= 6 + this.buf.readUInt16BE(4)) {
        const len = this.buf.readUInt16BE(4);
        this.frames.push({ transactionId: this.buf.readUInt16BE(0), protocolId: this.buf.readUInt16BE(2), unitId: this.buf[6] as number, pdu: this.buf.subarray(7, 6 + len) });
        this.buf = this.buf.subarray(6 + len);
      }
      this.wake();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
    await once(socket, "connect");
    return new RawClient(socket);
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** The next `n` frames (resolves when they have all come). */
  next(n = 1): Promise<RawFrame[]> {
    return new Promise((resolve) => {
      this.waiters.push({ n, resolve });
      this.wake();
    });
  }

  /** Frames received and not yet taken by next(). */
  pending(): number {
    return this.frames.length;
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.frames.length >= (this.waiters[0] as { n: number }).n) {
      const w = this.waiters.shift() as { n: number; resolve: (f: RawFrame[]) => void };
      w.resolve(this.frames.splice(0, w.n));
    }
  }
}

/** An MBAP frame built by hand: any protocol id and length, for malformed cases too. */
export function frame(transactionId: number, unitId: number, pdu: Buffer | number[], protocolId = 0, length?: number): Buffer {
  const body = Buffer.isBuffer(pdu) ? pdu : Buffer.from(pdu);
  const head = Buffer.alloc(7);
  head.writeUInt16BE(transactionId, 0);
  head.writeUInt16BE(protocolId, 2);
  head.writeUInt16BE(length ?? body.length + 1, 4);
  head[6] = unitId;
  return Buffer.concat([head, body]);
}

/** Polls `cond` on the event loop until it holds (for counters that have no event of their own). */
export async function until(cond: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
