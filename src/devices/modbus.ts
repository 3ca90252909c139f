// The upstream side of one Modbus TCP device (SPEC §5.1): a few connections shared by every
// client of every front, with the gateway's own transaction ids.
//
//   clients' requests ─► queue (maxQueue) ─► connection 1 ─► in flight: Map<tid, entry> ─► device
//                                        └─► connection N   (maxInFlight pipelined each)
//
// - Transaction ids: each connection numbers its requests itself (16-bit, sequential, never
//   one still in flight), so clients that reuse ids never collide; the front restores the
//   client's id. An answer is matched by id, checked against its request (unit id, then
//   parseResponse): one that does not fit is `malformed` and never passed on as good. An
//   answer with no request in flight (late after a timeout, duplicate, invented) is dropped
//   and counted. A framing error closes the connection: the stream cannot be trusted after it.
// - Timeouts: one deadline per request from the moment it is asked (queue time counts), one
//   timer for the whole device armed at the earliest deadline.
// - Unreachable: while no connection is up and none is being made (state "down"), requests
//   fail at once as `unavailable`; while one is being made ("connecting") they wait in the
//   queue, and fail as `unavailable` if it fails.
// - Reconnect: a connection that was up for at least `backoff.initialMs` and drops is made
//   again at once; a failed attempt (or a connection that drops straight away) waits
//   min(maxMs, initialMs·2^attempt), half of it random (jitter), before the next one.
// - A dropped connection fails what it had in flight as `unavailable`, except reads
//   (FC 1–4, 43/14), which go back to the head of the queue once, within their deadline: a
//   read has no effect on the process, so asking again is safe; a write is never sent twice
//   by the gateway, since the device may have done it before the connection dropped.
import { EventEmitter } from "node:events";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { encodeFrame, readFrame } from "../wire/mbap.js";
import { ExceptionCode, parseRequest } from "../wire/pdu.js";
import type { ModbusRequest } from "../wire/pdu.js";
import { parseResponse } from "../wire/response.js";

export type ConnectionState = "connecting" | "connected" | "down";

/** Why a request could not be sent or answered: all are answered 0A (gateway path unavailable). */
export type UnavailableReason = "not-started" | "stopped" | "down" | "queue-full" | "connection-lost";

export type DeviceResult =
  /** The device's normal answer, checked against the request: pass it on as it is. */
  | { readonly kind: "ok"; readonly pdu: Buffer }
  /** The device's exception code: pass it through. */
  | { readonly kind: "exception"; readonly code: number }
  | { readonly kind: "unavailable"; readonly reason: UnavailableReason }
  | { readonly kind: "timeout" }
  /** The device answered with something that does not fit the request. */
  | { readonly kind: "malformed"; readonly reason: string };

/**
 * The exception a Modbus front answers for a result that is not `ok` (SPEC §5.1): the
 * device's own code, 0A when the device cannot be reached, 0B when it gave no (usable)
 * answer in time. A malformed answer is no answer: 0B.
 */
export function gatewayException(r: Exclude<DeviceResult, { kind: "ok" }>): number {
  switch (r.kind) {
    case "exception":
      return r.code;
    case "unavailable":
      return ExceptionCode.GatewayPathUnavailable;
    case "timeout":
    case "malformed":
      return ExceptionCode.GatewayTargetFailedToRespond;
  }
}

export interface ModbusDeviceOptions {
  /** `tcp://host:port` (port 502 when left out). */
  readonly endpoint: string;
  /** Connections to the device (default 1: many PLCs accept only a few). */
  readonly maxConnections?: number;
  /** Requests in flight per connection (default 32; 1 = no pipelining, for devices that cannot). */
  readonly maxInFlight?: number;
  /** Requests waiting for a connection (default 256); more are `unavailable`. */
  readonly maxQueue?: number;
  /** Default deadline of a request, queue time included (default 1000 ms). */
  readonly timeoutMs?: number;
  /** How long one connection attempt may take (default 2000 ms). */
  readonly connectTimeoutMs?: number;
  /** Reconnect delays (default 100 ms doubling up to 5000 ms). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** [0, 1) for the jitter (default Math.random). */
  readonly random?: () => number;
}

export interface RequestOptions {
  /** Deadline of this request in ms (default the device's `timeoutMs`). */
  readonly timeoutMs?: number;
  /** What parseRequest gave for `pdu`, when the caller has it: saves parsing it again. */
  readonly request?: ModbusRequest;
  /** Ask a read again once when its connection drops (default true; writes never are). */
  readonly retry?: boolean;
}

export interface DeviceStats {
  readonly state: ConnectionState;
  readonly connected: number;
  readonly inFlight: number;
  readonly queued: number;
  readonly sent: number;
  /** Socket writes that carried them: requests asked in one event-loop turn share one. */
  readonly writes: number;
  readonly answered: number;
  readonly timeouts: number;
  /** Answers for no request in flight (late, duplicate or unknown id): dropped. */
  readonly unmatched: number;
  /** Answers that did not fit their request. */
  readonly malformedAnswers: number;
  /** Framing errors from the device (each closed its connection). */
  readonly malformedFrames: number;
  readonly queueFull: number;
  readonly retries: number;
  readonly connects: number;
  readonly connectFailures: number;
  readonly drops: number;
}

/** `tcp://host:port` → host and port; throws a RangeError naming what is wrong. */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+)(?::(\d{1,5}))?\/?$/.exec(endpoint);
  if (!m) throw new RangeError(`Modbus endpoint "${endpoint}" is not tcp://host:port`);
  const port = m[2] === undefined ? 502 : Number(m[2]);
  if (port < 1 || port > 0xffff) throw new RangeError(`Modbus endpoint "${endpoint}": port ${port} is not 1..65535`);
  const host = (m[1] as string).replace(/^\[(.*)\]$/, "$1");
  return { host, port };
}

const READS = new Set<ModbusRequest["kind"]>(["read-coils", "read-discrete-inputs", "read-holding-registers", "read-input-registers", "read-device-identification"]);

const UNAVAILABLE: Readonly<Record<UnavailableReason, DeviceResult>> = Object.freeze({
  "not-started": Object.freeze({ kind: "unavailable", reason: "not-started" }),
  stopped: Object.freeze({ kind: "unavailable", reason: "stopped" }),
  down: Object.freeze({ kind: "unavailable", reason: "down" }),
  "queue-full": Object.freeze({ kind: "unavailable", reason: "queue-full" }),
  "connection-lost": Object.freeze({ kind: "unavailable", reason: "connection-lost" }),
});
const TIMEOUT: DeviceResult = Object.freeze({ kind: "timeout" });

class Entry {
  tid = -1;
  retried = false;
  settled = false;
  constructor(
    readonly unitId: number,
    readonly pdu: Buffer,
    readonly req: ModbusRequest,
    readonly deadline: number,
    readonly retryable: boolean,
    readonly resolve: (r: DeviceResult) => void,
  ) {}
}

class Connection {
  socket: net.Socket | undefined;
  state: ConnectionState | "stopped" = "down";
  readonly inFlight = new Map<number, Entry>();
  nextTid = 0;
  rest: Buffer | undefined;
  connectedAt = 0;
  attempt = 0;
  retryTimer: NodeJS.Timeout | undefined;
  /** Frames waiting for the end of this event-loop turn, then written together. */
  out: Buffer[] = [];
  flushing = false;
}

/** Writes every frame asked in this event-loop turn in one socket write. */
function flush(c: Connection, n: { writes: number }): void {
  c.flushing = false;
  const out = c.out;
  if (out.length === 0) return;
  c.out = [];
  const s = c.socket;
  if (!s || s.destroyed) return;
  n.writes++;
  s.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
}

export class ModbusDevice extends EventEmitter<{ state: [state: ConnectionState, error: string | undefined] }> {
  readonly protocol = "modbus" as const;
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  private readonly maxInFlight: number;
  private readonly maxQueue: number;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private readonly conns: Connection[];
  private readonly queue: Entry[] = [];
  private started = false;
  private stopped = false;
  private current: ConnectionState = "down";
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly n = { sent: 0, writes: 0, answered: 0, timeouts: 0, unmatched: 0, malformedAnswers: 0, malformedFrames: 0, queueFull: 0, retries: 0, connects: 0, connectFailures: 0, drops: 0 };

  constructor(options: ModbusDeviceOptions) {
    super();
    const { host, port } = parseEndpoint(options.endpoint);
    this.endpoint = `tcp://${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.host = host;
    this.port = port;
    const int = (v: number | undefined, dflt: number, min: number, what: string) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new RangeError(`ModbusDevice ${this.endpoint}: ${what} ${x} is not an integer >= ${min}`);
      return x;
    };
    this.conns = Array.from({ length: int(options.maxConnections, 1, 1, "maxConnections") }, () => new Connection());
    this.maxInFlight = Math.min(int(options.maxInFlight, 32, 1, "maxInFlight"), 0x8000);
    this.maxQueue = int(options.maxQueue, 256, 0, "maxQueue");
    this.timeoutMs = int(options.timeoutMs, 1000, 1, "timeoutMs");
    this.connectTimeoutMs = int(options.connectTimeoutMs, 2000, 1, "connectTimeoutMs");
    this.initialMs = int(options.backoff?.initialMs, 100, 1, "backoff.initialMs");
    this.maxMs = Math.max(this.initialMs, int(options.backoff?.maxMs, 5000, 1, "backoff.maxMs"));
    this.random = options.random ?? Math.random;
  }

  /** Opens the connections; resolves at once (requests wait in the queue while they connect). */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const c of this.conns) {
      c.attempt = 0;
      this.connect(c);
    }
  }

  /** Closes the connections; everything waiting or in flight is `unavailable` ("stopped"). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    const closing: Promise<unknown>[] = [];
    for (const c of this.conns) {
      clearTimeout(c.retryTimer);
      c.state = "stopped";
      const s = c.socket;
      if (s && !s.destroyed) {
        closing.push(new Promise((resolve) => s.once("close", resolve)));
        s.destroy();
      }
      this.failInFlight(c, "stopped");
    }
    this.failQueue("stopped");
    await Promise.all(closing);
    this.setState("down");
  }

  state(): ConnectionState {
    return this.current;
  }

  stats(): DeviceStats {
    let inFlight = 0;
    let connected = 0;
    for (const c of this.conns) {
      inFlight += c.inFlight.size;
      if (c.state === "connected") connected++;
    }
    return { state: this.current, connected, inFlight, queued: this.queue.length, ...this.n };
  }

  /**
   * Sends one request PDU to `unitId` at the device and resolves with what came of it; never
   * rejects for anything the device or the network does. Rejects with a RangeError for a
   * caller bug: a unit id outside 0..255 or a PDU that parseRequest refuses (the front
   * answers those itself; nothing malformed is ever put on the wire to a device).
   */
  request(unitId: number, pdu: Buffer, opts?: RequestOptions): Promise<DeviceResult> {
    if (!Number.isInteger(unitId) || unitId < 0 || unitId > 0xff) return Promise.reject(new RangeError(`ModbusDevice.request: unit id ${unitId} is not 0..255`));
    let req = opts?.request;
    if (req === undefined) {
      const p = parseRequest(pdu);
      if (!p.ok) return Promise.reject(new RangeError(`ModbusDevice.request: refusing to send an invalid request: ${p.reason}`));
      req = p.request;
    }
    if (!this.started) return Promise.resolve(UNAVAILABLE[this.stopped ? "stopped" : "not-started"]);
    if (this.current === "down") return Promise.resolve(UNAVAILABLE.down);
    const conn = this.queue.length === 0 ? this.pick() : undefined;
    if (!conn && this.queue.length >= this.maxQueue) {
      this.n.queueFull++;
      return Promise.resolve(UNAVAILABLE["queue-full"]);
    }
    const deadline = performance.now() + (opts?.timeoutMs ?? this.timeoutMs);
    const retryable = opts?.retry !== false && READS.has(req.kind);
    const r = req;
    return new Promise<DeviceResult>((resolve) => {
      const e = new Entry(unitId, pdu, r, deadline, retryable, resolve);
      if (conn) this.send(conn, e);
      else this.queue.push(e);
      if (deadline < this.timerAt) this.armTimer(deadline);
    });
  }

  /** The connected connection with room and the fewest requests in flight. */
  private pick(): Connection | undefined {
    let best: Connection | undefined;
    for (const c of this.conns) {
      if (c.state === "connected" && c.inFlight.size < this.maxInFlight && (!best || c.inFlight.size < best.inFlight.size)) best = c;
    }
    return best;
  }

  private send(c: Connection, e: Entry): void {
    let tid = c.nextTid;
    do tid = (tid + 1) & 0xffff;
    while (c.inFlight.has(tid));
    c.nextTid = tid;
    e.tid = tid;
    c.inFlight.set(tid, e);
    this.n.sent++;
    // Requests asked in the same event-loop turn (from any client) leave in one write.
    c.out.push(encodeFrame(tid, e.unitId, e.pdu));
    if (!c.flushing) {
      c.flushing = true;
      setImmediate(flush, c, this.n);
    }
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const c = this.pick();
      if (!c) return;
      this.send(c, this.queue.shift() as Entry);
    }
  }

  private settle(e: Entry, r: DeviceResult): void {
    if (e.settled) return;
    e.settled = true;
    e.resolve(r);
  }

  private connect(c: Connection): void {
    c.state = "connecting";
    c.rest = undefined;
    this.updateState();
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    c.socket = socket;
    socket.setTimeout(this.connectTimeoutMs, () => socket.destroy(new Error(`connect to ${this.endpoint} timed out after ${this.connectTimeoutMs} ms`)));
    socket.once("connect", () => {
      socket.setTimeout(0);
      socket.setKeepAlive(true, 10_000);
      c.state = "connected";
      c.connectedAt = performance.now();
      this.n.connects++;
      this.lastError = undefined;
      this.updateState();
      this.pump();
    });
    socket.on("data", (chunk: Buffer) => this.receive(c, chunk));
    socket.on("error", (err) => {
      this.lastError = err.message;
    });
    socket.once("close", () => this.closed(c, socket));
  }

  private receive(c: Connection, chunk: Buffer): void {
    const buf = c.rest ? Buffer.concat([c.rest, chunk]) : chunk;
    let off = 0;
    while (off < buf.length) {
      const f = readFrame(buf, off);
      if (f.kind === "need-more") break;
      if (f.kind === "malformed") {
        this.n.malformedFrames++;
        (c.socket as net.Socket).destroy(new Error(`malformed frame from ${this.endpoint}: ${f.reason}`));
        return;
      }
      off += f.length;
      const e = c.inFlight.get(f.transactionId);
      if (!e) {
        this.n.unmatched++;
        continue;
      }
      c.inFlight.delete(f.transactionId);
      this.n.answered++;
      if (f.unitId !== e.unitId) {
        this.n.malformedAnswers++;
        this.settle(e, { kind: "malformed", reason: `answer from unit ${f.unitId} to a request for unit ${e.unitId}` });
        continue;
      }
      const r = parseResponse(e.req, f.pdu);
      if (r.kind === "ok") this.settle(e, { kind: "ok", pdu: f.pdu });
      else if (r.kind === "exception") this.settle(e, { kind: "exception", code: r.exception });
      else {
        this.n.malformedAnswers++;
        this.settle(e, r);
      }
    }
    c.rest = off < buf.length ? Buffer.from(buf.subarray(off)) : undefined;
    this.pump();
  }

  private closed(c: Connection, socket: net.Socket): void {
    if (c.socket !== socket) return;
    c.socket = undefined;
    c.rest = undefined;
    c.out = []; // never sent: what they asked is in flight and fails (or is asked again) below
    if (c.state === "stopped") return;
    const wasUp = c.state === "connected";
    if (wasUp) this.n.drops++;
    else this.n.connectFailures++;
    this.failInFlight(c, "connection-lost");
    if (wasUp && performance.now() - c.connectedAt >= this.initialMs) {
      c.attempt = 0;
      this.connect(c);
    } else {
      c.state = "down";
      const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(c.attempt, 30));
      c.attempt++;
      c.retryTimer = setTimeout(() => this.connect(c), base / 2 + (this.random() * base) / 2);
      c.retryTimer.unref();
      this.updateState();
    }
    if (this.current === "down") this.failQueue("down");
    else this.pump();
  }

  /** Fails what `c` had in flight; reads go back to the head of the queue once, while the device may still answer them. */
  private failInFlight(c: Connection, reason: UnavailableReason): void {
    if (c.inFlight.size === 0) return;
    const again: Entry[] = [];
    const now = performance.now();
    for (const e of c.inFlight.values()) {
      if (reason === "connection-lost" && e.retryable && !e.retried && e.deadline > now) {
        e.retried = true;
        this.n.retries++;
        again.push(e);
      } else this.settle(e, UNAVAILABLE[reason]);
    }
    c.inFlight.clear();
    if (again.length > 0) this.queue.unshift(...again);
  }

  private failQueue(reason: UnavailableReason): void {
    const q = this.queue.splice(0);
    for (const e of q) this.settle(e, UNAVAILABLE[reason]);
  }

  private updateState(): void {
    let s: ConnectionState = "down";
    for (const c of this.conns) {
      if (c.state === "connected") {
        s = "connected";
        break;
      }
      if (c.state === "connecting") s = "connecting";
    }
    this.setState(s);
  }

  private setState(s: ConnectionState): void {
    if (s === this.current) return;
    this.current = s;
    this.emit("state", s, s === "connected" ? undefined : this.lastError);
  }

  private armTimer(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, Math.ceil(at - performance.now())));
    this.timer.unref();
  }

  /** Times out every request past its deadline, then arms the timer for the next one. */
  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    let kept = 0;
    for (const e of this.queue) {
      if (e.deadline <= now) this.timeout(e);
      else {
        this.queue[kept++] = e;
        if (e.deadline < next) next = e.deadline;
      }
    }
    this.queue.length = kept;
    for (const c of this.conns) {
      for (const [tid, e] of c.inFlight) {
        if (e.deadline <= now) {
          c.inFlight.delete(tid);
          this.timeout(e);
        } else if (e.deadline < next) next = e.deadline;
      }
    }
    if (next !== Infinity) this.armTimer(next);
    this.pump();
  }

  private timeout(e: Entry): void {
    this.n.timeouts++;
    this.settle(e, TIMEOUT);
  }
}
