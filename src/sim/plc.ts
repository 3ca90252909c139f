// The simulated Modbus TCP PLC behind `boiler-plc` (SPEC §2.1): its own listener, parsing
// MBAP with the gateway's codec (src/wire), serving FC 1–6, 15, 16, 22, 23 and 43/14 from
// four 65,536-entry tables, with the boiler of boiler.ts moving the values on a scan timer.
//
// It is also the test double of every Modbus test, so it counts what a device would rather
// not see: `stats().malformed` is every frame it could not frame (bad protocol id or length:
// the connection is closed) plus every well-framed PDU that parseRequest refuses (answered
// with that exception). The gateway must keep both at zero. Faults for the upstream pool's
// tests: `setSilent` (reads and never answers), `setDelay` (answers late, still in order),
// and stop/start on the same port.
//
// Unit ids: the PLC answers its own unit id and 0xFF (the Modbus Messaging on TCP/IP guide,
// §4.4.2: the value to use when a TCP device is addressed directly). Any other unit id is
// ignored, counted in `stats().ignored`, and not answered: that is what a serial device
// behind a gateway does, and exception 0A/0B are a gateway's answers, not a device's. The
// gateway only sends the unit id an asset names, so this shows up there as a timeout (0B),
// the right answer for a target that does not respond.
//
// Answers on one connection leave in the order the requests came (pipelining works); many
// connections are served at once. The answers to the requests that arrived together (one read
// of the socket) leave together, in one write, as pipelining servers do (Redis, HTTP/1.1
// servers); `answerWrites: "each"` gives every answer its own write instead, as libmodbus's
// modbus_reply() does. `stats().answerWrites` counts the writes.
import { EventEmitter, once } from "node:events";
import net from "node:net";
import { readFrame, encodeFrame } from "../wire/mbap.js";
import { ExceptionCode, parseRequest } from "../wire/pdu.js";
import type { Bit, ModbusRequest } from "../wire/pdu.js";
import { deviceIdentificationFor, encodeException, encodeResponse } from "../wire/response.js";
import { Boiler, float32FromWords, BOILER_POINTS } from "./boiler.js";
import type { BoilerOptions, PlcMemory } from "./boiler.js";
import { startScan } from "./scan.js";

export const TABLE_SIZE = 0x10000;
/** The longest identification object value one FC43/14 answer can carry (253 − 7 − 2 bytes). */
const MAX_ID_OBJECT = 244;
/** The unit id of a Modbus TCP device addressed directly (always answered). */
export const DIRECT_UNIT_ID = 0xff;

export interface SimulatedPlcOptions {
  /** Scan period in ms: the boiler moves by this much time every period. 0 = no timer (call `step()`). Default 100. */
  readonly scanMs?: number;
  readonly boiler?: BoilerOptions;
  /** Addresses per table (default 65,536): requests past it get exception 02, as on a PLC with less memory. */
  readonly tableSize?: number;
  /** Identification objects (FC43/14). */
  readonly identity?: { readonly vendor?: string; readonly productCode?: string; readonly revision?: string };
  /** Connections accepted at once; more are closed at once, like a PLC with few sockets. Default unbounded. */
  readonly maxConnections?: number;
  /**
   * "together" (default): the answers to requests read from the socket at once leave in one
   * write. "each": one write per answer (a device that serves one request at a time).
   */
  readonly answerWrites?: "together" | "each";
}

export interface PlcListenOptions {
  /** Default 127.0.0.1 (SPEC §9: nothing on other addresses unless configured). */
  readonly host?: string;
  /** 0 (default) = a random free port; start() returns the bound one. */
  readonly port?: number;
  /** Default 1. */
  readonly unitId?: number;
}

export interface PlcStats {
  /** malformedFrames + invalidRequests: what a gateway must never let through. */
  readonly malformed: number;
  /** MBAP framing errors (the connection was closed). */
  readonly malformedFrames: number;
  /** Well-framed PDUs that parseRequest refuses (answered with its exception). */
  readonly invalidRequests: number;
  /** Requests answered, normally or with an exception, by function code. */
  readonly served: Readonly<Record<number, number>>;
  /** Exception answers by exception code (invalid requests included). */
  readonly exceptions: Readonly<Record<number, number>>;
  /** Requests for another unit id, not answered. */
  readonly ignored: number;
  /** Requests read while silent, not answered. */
  readonly dropped: number;
  /** Connections open now, and accepted since construction. */
  readonly connections: number;
  readonly accepted: number;
  /** Socket writes of answers (one per answer with answerWrites "each"). */
  readonly answerWrites: number;
}

/** One request as the PLC saw it (the `request` event), for tests that watch the device side. */
export interface PlcRequestEvent {
  readonly transactionId: number;
  readonly unitId: number;
  readonly fc: number;
}

interface Pending {
  readonly due: number;
  readonly transactionId: number;
  readonly unitId: number;
  readonly fc: number;
  /** The parsed request, or the exception parseRequest gave. */
  readonly req: ModbusRequest | number;
}

interface Conn {
  readonly socket: net.Socket;
  rest: Buffer | undefined;
  readonly pending: Pending[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * Events: `request` for every well-framed request, answered or not (before it is carried
 * out); `malformed` with the reason, for every frame counted in `stats().malformed`;
 * `connection` when one is accepted; `scan` after every timer scan.
 */
export class SimulatedPlc extends EventEmitter<{ request: [PlcRequestEvent]; malformed: [reason: string]; connection: []; scan: [] }> {
  readonly memory: PlcMemory;
  readonly boiler: Boiler;
  private readonly scanMs: number;
  private readonly size: number;
  private readonly catalog: ReadonlyMap<number, string>;
  private readonly maxConnections: number | undefined;
  private server: net.Server | undefined;
  private readonly conns = new Set<Conn>();
  private scanTimer: NodeJS.Timeout | undefined;
  private unit = 1;
  private silent = false;
  private delayMs = 0;
  private boundPort = 0;
  private boundHost = "127.0.0.1";
  private counts = { malformedFrames: 0, invalidRequests: 0, ignored: 0, dropped: 0, accepted: 0, answerWrites: 0 };
  private readonly together: boolean;
  private readonly served: Record<number, number> = {};
  private readonly exceptions: Record<number, number> = {};

  constructor(options: SimulatedPlcOptions = {}) {
    super();
    this.scanMs = options.scanMs ?? 100;
    this.size = options.tableSize ?? TABLE_SIZE;
    if (!Number.isInteger(this.size) || this.size < 1 || this.size > TABLE_SIZE) throw new RangeError(`SimulatedPlc: tableSize ${this.size} is not 1..${TABLE_SIZE}`);
    this.maxConnections = options.maxConnections;
    this.together = (options.answerWrites ?? "together") === "together";
    // Full-size arrays whatever tableSize says: the boiler's addresses always exist.
    this.memory = { coils: new Uint8Array(TABLE_SIZE), discrete: new Uint8Array(TABLE_SIZE), input: new Uint16Array(TABLE_SIZE), holding: new Uint16Array(TABLE_SIZE) };
    this.boiler = new Boiler(this.memory, options.boiler);
    const id = options.identity ?? {};
    // One object must fit an FC43/14 answer (253-byte PDU: 7 bytes of header, 2 per object).
    for (const [name, value] of Object.entries(id)) {
      const bytes = Buffer.byteLength(String(value));
      if (bytes > MAX_ID_OBJECT) throw new RangeError(`SimulatedPlc: identity.${name} is ${bytes} bytes; an identification object holds at most ${MAX_ID_OBJECT}`);
    }
    this.catalog = new Map([
      [0x00, id.vendor ?? "ztgate"],
      [0x01, id.productCode ?? "SIM-BOILER"],
      [0x02, id.revision ?? "1.0"],
      [0x03, "https://github.com/ztgate/ztgate"],
      [0x04, "ztgate simulated boiler PLC"],
      [0x05, "SIM-BOILER-1"],
    ]);
  }

  /** Listens; resolves with the bound port. */
  async start(options: PlcListenOptions = {}): Promise<number> {
    if (this.server) throw new Error(`SimulatedPlc: already listening on ${this.boundHost}:${this.boundPort}`);
    this.unit = options.unitId ?? 1;
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    if (this.maxConnections !== undefined) server.maxConnections = this.maxConnections;
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1");
    await once(server, "listening");
    this.server = server;
    const addr = server.address() as net.AddressInfo;
    this.boundHost = addr.address;
    this.boundPort = addr.port;
    this.scanTimer = startScan(this, this.scanMs);
    return addr.port;
  }

  /** Closes the listener and every connection (the memory stays: a restart keeps the values). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    for (const c of this.conns) this.drop(c);
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Where it listens, while it does. */
  address(): { host: string; port: number } | undefined {
    return this.server ? { host: this.boundHost, port: this.boundPort } : undefined;
  }

  /** One scan of the process, `seconds` long (the timer calls it; tests with `scanMs: 0` do). */
  step(seconds: number): void {
    this.boiler.step(seconds);
  }

  /** The temperature as a client reads it from input registers 0–1. */
  temperature(): number {
    const a = BOILER_POINTS.temperature.address;
    return float32FromWords(this.memory.input[a] as number, this.memory.input[a + 1] as number);
  }

  /** While silent, requests are read and never answered (connections stay open). */
  setSilent(silent: boolean): void {
    this.silent = silent;
  }

  /** Answers leave `ms` after their request came in (still in order per connection). */
  setDelay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`SimulatedPlc: delay ${ms} is not a number of ms >= 0`);
    this.delayMs = ms;
  }

  stats(): PlcStats {
    const c = this.counts;
    return {
      malformed: c.malformedFrames + c.invalidRequests,
      malformedFrames: c.malformedFrames,
      invalidRequests: c.invalidRequests,
      served: { ...this.served },
      exceptions: { ...this.exceptions },
      ignored: c.ignored,
      dropped: c.dropped,
      connections: this.conns.size,
      accepted: c.accepted,
      answerWrites: c.answerWrites,
    };
  }

  private accept(socket: net.Socket): void {
    const conn: Conn = { socket, rest: undefined, pending: [], timer: undefined };
    this.conns.add(conn);
    this.counts.accepted++;
    socket.on("data", (chunk: Buffer) => this.receive(conn, chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => this.drop(conn));
    this.emit("connection");
  }

  private drop(conn: Conn): void {
    clearTimeout(conn.timer);
    conn.pending.length = 0;
    conn.socket.destroy();
    this.conns.delete(conn);
  }

  private receive(conn: Conn, chunk: Buffer): void {
    const buf = conn.rest ? Buffer.concat([conn.rest, chunk]) : chunk;
    const out: Buffer[] = [];
    let off = 0;
    while (off < buf.length) {
      const f = readFrame(buf, off);
      if (f.kind === "need-more") break;
      if (f.kind === "malformed") {
        this.counts.malformedFrames++;
        this.emit("malformed", f.reason);
        this.send(conn, out); // the answers to the valid frames in front of it
        this.drop(conn);
        return;
      }
      off += f.length;
      const parsed = parseRequest(f.pdu);
      if (!parsed.ok) {
        this.counts.invalidRequests++;
        this.emit("malformed", parsed.reason);
      }
      const fc = parsed.ok ? parsed.request.fc : parsed.fc;
      this.emit("request", { transactionId: f.transactionId, unitId: f.unitId, fc });
      if (f.unitId !== this.unit && f.unitId !== DIRECT_UNIT_ID) {
        this.counts.ignored++;
        continue;
      }
      if (this.silent) {
        this.counts.dropped++;
        continue;
      }
      const p: Pending = { due: 0, transactionId: f.transactionId, unitId: f.unitId, fc, req: parsed.ok ? parsed.request : parsed.exception };
      if (this.delayMs === 0 && conn.pending.length === 0) this.answer(conn, p, out);
      else this.defer(conn, { ...p, due: Date.now() + this.delayMs });
    }
    conn.rest = off < buf.length ? Buffer.from(buf.subarray(off)) : undefined;
    this.send(conn, out);
  }

  private defer(conn: Conn, p: Pending): void {
    conn.pending.push(p);
    if (conn.pending.length === 1) this.schedule(conn);
  }

  private schedule(conn: Conn): void {
    const head = conn.pending[0];
    if (!head) return;
    conn.timer = setTimeout(() => {
      const now = Date.now();
      const out: Buffer[] = [];
      while (conn.pending.length > 0 && (conn.pending[0] as Pending).due <= now) this.answer(conn, conn.pending.shift() as Pending, out);
      this.send(conn, out);
      this.schedule(conn);
    }, Math.max(0, head.due - Date.now()));
  }

  /** Carries out `p` and queues its answer frame in `out` (written now with answerWrites "each"). */
  private answer(conn: Conn, p: Pending, out: Buffer[]): void {
    if (this.silent) {
      this.counts.dropped++;
      return;
    }
    const pdu = typeof p.req === "number" ? encodeException(p.fc, p.req) : this.execute(p.req);
    this.served[p.fc] = (this.served[p.fc] ?? 0) + 1;
    if (pdu.length === 2 && ((pdu[0] as number) & 0x80) !== 0) this.exceptions[pdu[1] as number] = (this.exceptions[pdu[1] as number] ?? 0) + 1;
    out.push(encodeFrame(p.transactionId, p.unitId, pdu));
    if (!this.together) this.send(conn, out);
  }

  /** Writes the answers queued in `out` (one write) and empties it. */
  private send(conn: Conn, out: Buffer[]): void {
    if (out.length === 0) return;
    if (!conn.socket.destroyed) {
      conn.socket.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
      this.counts.answerWrites++;
    }
    out.length = 0;
  }

  /** Carries out one valid request on the memory; returns the response PDU. */
  private execute(req: ModbusRequest): Buffer {
    const m = this.memory;
    switch (req.kind) {
      case "read-coils":
      case "read-discrete-inputs": {
        if (!this.inside(req.address, req.quantity)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        const table = req.kind === "read-coils" ? m.coils : m.discrete;
        return encodeResponse(req, Array.from(table.subarray(req.address, req.address + req.quantity)) as Bit[]);
      }
      case "read-holding-registers":
      case "read-input-registers": {
        if (!this.inside(req.address, req.quantity)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        const table = req.kind === "read-holding-registers" ? m.holding : m.input;
        return encodeResponse(req, Array.from(table.subarray(req.address, req.address + req.quantity)));
      }
      case "write-single-coil":
        if (!this.inside(req.address, 1)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        m.coils[req.address] = req.value;
        return encodeResponse(req);
      case "write-single-register":
        if (!this.inside(req.address, 1)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        m.holding[req.address] = req.value;
        return encodeResponse(req);
      case "write-multiple-coils":
        if (!this.inside(req.address, req.quantity)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        m.coils.set(req.values, req.address);
        return encodeResponse(req);
      case "write-multiple-registers":
        if (!this.inside(req.address, req.quantity)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        m.holding.set(req.values, req.address);
        return encodeResponse(req);
      case "mask-write-register": {
        if (!this.inside(req.address, 1)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        const current = m.holding[req.address] as number;
        m.holding[req.address] = (current & req.andMask) | (req.orMask & ~req.andMask & 0xffff);
        return encodeResponse(req);
      }
      case "read-write-multiple-registers": {
        const { read, write } = req;
        if (!this.inside(read.address, read.quantity) || !this.inside(write.address, write.quantity)) return encodeException(req.fc, ExceptionCode.IllegalDataAddress);
        // The Modbus spec: the write is performed before the read.
        m.holding.set(write.values, write.address);
        return encodeResponse(req, Array.from(m.holding.subarray(read.address, read.address + read.quantity)));
      }
      case "read-device-identification": {
        // 0x82: regular identification, stream and individual access.
        const r = deviceIdentificationFor(req, this.catalog, 0x82);
        return r.ok ? encodeResponse(req, r.data) : encodeException(req.fc, r.exception);
      }
      case "diagnostics":
      case "unsupported":
        return encodeException(req.fc, ExceptionCode.IllegalFunction);
    }
  }

  private inside(address: number, quantity: number): boolean {
    return address + quantity <= this.size;
  }
}
