// A scripted Modbus TCP device for the pool's tests: it hands every frame it reads to the
// test, which answers whatever it likes (wrong byte counts, other unit ids, duplicates,
// broken MBAP) or closes the connection. Framing by hand, independent of src/wire.
import { once } from "node:events";
import net from "node:net";

export interface FakeFrame {
  transactionId: number;
  unitId: number;
  pdu: Buffer;
  /** Which accepted connection it came on, from 0. */
  conn: number;
}

export interface FakeReply {
  /** Sends a frame with this PDU (transaction and unit ids of the request unless given). */
  answer(pdu: Buffer | number[], ids?: { transactionId?: number; unitId?: number; protocolId?: number }): void;
  raw(bytes: Buffer): void;
  close(): void;
}

export type FakeHandler = (f: FakeFrame, reply: FakeReply) => void;

export class FakeDevice {
  readonly frames: FakeFrame[] = [];
  private readonly sockets = new Set<net.Socket>();
  private accepted = 0;
  private server: net.Server | undefined;
  port = 0;

  constructor(private readonly handler: FakeHandler) {}

  async start(): Promise<number> {
    const server = net.createServer((socket) => this.accept(socket));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise((r) => server.close(r));
  }

  connections(): number {
    return this.accepted;
  }

  private accept(socket: net.Socket): void {
    const conn = this.accepted++;
    this.sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => this.sockets.delete(socket));
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 7 && buf.length >= 6 + buf.readUInt16BE(4)) {
        const len = buf.readUInt16BE(4);
        const f: FakeFrame = { transactionId: buf.readUInt16BE(0), unitId: buf[6] as number, pdu: Buffer.from(buf.subarray(7, 6 + len)), conn };
        buf = buf.subarray(6 + len);
        this.frames.push(f);
        this.handler(f, {
          answer: (pdu, ids = {}) => {
            const body = Buffer.from(pdu);
            const head = Buffer.alloc(7);
            head.writeUInt16BE(ids.transactionId ?? f.transactionId, 0);
            head.writeUInt16BE(ids.protocolId ?? 0, 2);
            head.writeUInt16BE(body.length + 1, 4);
            head[6] = ids.unitId ?? f.unitId;
            socket.write(Buffer.concat([head, body]));
          },
          raw: (bytes) => socket.write(bytes),
          close: () => socket.destroy(),
        });
      }
    });
  }
}
