// One client connection of a Modbus front (SPEC §5.1): MBAP frames in, one answer per request
// out, in request order, each with the client's own transaction id and unit id.
//
//   socket ─► readFrame ─► slot (tid, unit) ─► ordered: route → parse → operations → enforce ─► device
//                            │                                                        │
//   socket ◄── answers, head of the slot queue first ◄───── the answer PDU of its slot ◄┘
//
// - Ordering: requests are decided and handed to the device one after another (a later write
//   never overtakes an earlier one), while their answers are awaited in parallel, so a
//   pipelining client is served at the device's pace; answers leave in request order.
// - Backpressure: at most MAX_PENDING requests of one connection are outstanding; beyond that,
//   and while the socket's write buffer is full, the socket is not read.
// - A framing error (bad protocol id or length) closes the connection: the stream cannot be
//   resynchronised. A well-framed but invalid request is answered with parseRequest's
//   exception (03, or 01 for codes that are no request) and logged as a deny.
import type net from "node:net";
import type { Logger } from "pino";
import type { ClientRef, SessionBody } from "../audit/record.js";
import { subjectOf } from "../audit/record.js";
import type { Session, SessionEnded } from "../auth/sessions.js";
import type { DeviceResult } from "../devices/modbus.js";
import { gatewayException } from "../devices/modbus.js";
import { decide } from "../pdp/evaluate.js";
import type { Operation } from "../pdp/operation.js";
import type { Asset, PolicySet } from "../pdp/policy-set.js";
import type { Principal } from "../pdp/principal.js";
import type { Reason } from "../pdp/reasons.js";
import type { ApprovalHold, Enforcer, Forwarded } from "../pep/enforce.js";
import type { MbapFrame } from "../wire/mbap.js";
import { encodeFrame, readFrame } from "../wire/mbap.js";
import type { ModbusRequest, ParseRequestResult } from "../wire/pdu.js";
import { ExceptionCode, parseRequest } from "../wire/pdu.js";
import { encodeException } from "../wire/response.js";
import { BROADCAST_UNIT_ID, toOperations } from "../wire/operations.js";

/** Requests of one connection decided or at the device at once; more wait in the socket. */
export const MAX_PENDING = 64;

/** What a front needs of a Modbus device: DeviceRegistry.modbus() gives it. */
export interface ModbusUpstream {
  request(unitId: number, pdu: Buffer, opts?: { readonly request?: ModbusRequest }): Promise<DeviceResult>;
}

export interface ModbusDevices {
  modbus(asset: string): { readonly device: ModbusUpstream; readonly unit: number } | undefined;
}

/** Counters of a front (for tests and metrics). */
export interface FrontCounters {
  accepted: number;
  refused: number;
  overLimit: number;
  requests: number;
  answered: number;
  denied: number;
  malformedFrames: number;
  idleClosed: number;
  sessionClosed: number;
}

/** What every connection of one front shares. */
export interface ConnectionContext {
  readonly listener: string;
  readonly denyException: number;
  /** A write held for approval: `ack` answers exception 05 at once (the write goes out if approved), `wait` answers once it is decided. */
  readonly approval?: ApprovalHold;
  readonly policy: () => PolicySet;
  /** The asset answering `unitId` on this listener, in `set`. */
  readonly route: (set: PolicySet, unitId: number) => Asset | undefined;
  readonly enforcer: Enforcer;
  readonly devices: ModbusDevices;
  readonly log: Logger;
  readonly now: () => number;
  readonly counters: FrontCounters;
  readonly audit?: ((body: SessionBody) => void) | undefined;
  readonly onClose: (c: ModbusConnection) => void;
}

/** One request of the connection, from its frame to its answer. */
class Slot {
  /** The answer frame, once there is one (answers leave in request order). */
  frame: Buffer | undefined = undefined;
  /** The next request of the connection may be decided (this one is at the device, or done). */
  released = false;
  constructor(
    readonly tid: number,
    readonly unit: number,
    /** A copy: the receive buffer is not ours to keep once the request waits in a queue. */
    readonly pdu: Buffer,
  ) {}
}

/** Targets of refusals that name no point: they never reach the pdp, only the decision log. */
const NOT_A_POINT = { connection: "(connection)", frame: "(frame)", deviceId: "(device identification)" } as const;

function pseudo(point: string): Operation["target"] {
  return { kind: "point", point };
}

/**
 * The operation a refusal is recorded with, before (or instead of) the policy: the asset id
 * of a Modbus front is `modbus:LISTENER` for the connection itself and
 * `modbus:LISTENER:unit-N` for a unit id no asset answers on (asset ids cannot contain ":").
 */
export function connectionOperation(listener: string, point: string = NOT_A_POINT.connection): Operation {
  return { asset: `modbus:${listener}`, action: "diagnostic", target: pseudo(point) };
}

/** The operation recorded for a request refused before the policy: what it asked, as far as it parses. */
function describe(asset: string, parsed: ParseRequestResult, source: string | undefined): Operation {
  if (!parsed.ok) return { asset, action: "diagnostic", target: pseudo(`(invalid request, FC ${parsed.fc})`), ...(source !== undefined && { source }) };
  // unit 1 only to learn the operation: the caller has already dealt with the real unit id.
  const r = toOperations(asset, 1, parsed.request, source);
  if (r.kind === "operations") return r.operations[0] as Operation;
  return { asset, action: "read", target: pseudo(NOT_A_POINT.deviceId), ...(source !== undefined && { source }) };
}

/**
 * FC43/14 (SPEC §4.1): a read allowed to whoever may read at least one point of the asset. The
 * pdp is asked, without counting rates, about a read of each point in turn; the request is
 * then enforced (and logged, once) as a read of the first point allowed, or of the first point
 * when none is, so that the deny carries that point's reason.
 */
function deviceIdOperation(set: PolicySet, asset: Asset, principal: Principal, source: string | undefined, now: number): Operation {
  let first: Operation | undefined;
  for (const name of asset.points.keys()) {
    const op: Operation = { asset: asset.id, action: "read", target: { kind: "point", point: name }, ...(source !== undefined && { source }) };
    first ??= op;
    if (decide(set, op, principal, { now, dryRun: true }).effect === "allow") return op;
  }
  return first ?? { asset: asset.id, action: "read", target: pseudo(NOT_A_POINT.deviceId), ...(source !== undefined && { source }) };
}

const EMPTY = Buffer.alloc(0);

/** The outcome and answer PDU of a device result. */
function forwarded(fc: number, r: DeviceResult): Forwarded<Buffer> {
  switch (r.kind) {
    case "ok":
      return { status: "ok", result: r.pdu };
    case "exception":
      return { status: "device-exception", exception: r.code, result: encodeException(fc, r.code) };
    case "unavailable":
      return { status: "unavailable", result: encodeException(fc, gatewayException(r)) };
    case "timeout":
      return { status: "timeout", result: encodeException(fc, gatewayException(r)) };
    case "malformed":
      return { status: "timeout", exception: "malformed-answer", result: encodeException(fc, gatewayException(r)) };
  }
}

export class ModbusConnection {
  private buf: Buffer = EMPTY;
  private off = 0;
  private readonly slots: Slot[] = [];
  private pending = 0;
  private paused = false;
  private closed = false;
  /** The client half-closed: close once every answer is out. */
  private ended = false;
  /** The front is stopping: no more requests are taken; called once every answer due is out. */
  private drained: (() => void) | undefined;
  /**
   * Requests are decided and dispatched one after another: while one is being decided, the
   * next wait here, in order (a later write never overtakes an earlier one on the way to the device).
   */
  private deciding = false;
  private readonly waiting: Slot[] = [];
  private readonly unsubscribe: () => void;
  private readonly log: Logger;

  constructor(
    private readonly ctx: ConnectionContext,
    readonly socket: net.Socket,
    readonly session: Session,
    readonly client: ClientRef,
    /** Normalised client address, for `from` conditions. */
    private readonly source: string | undefined,
    idleTimeoutMs: number,
  ) {
    this.log = ctx.log.child({ client: `${client.address}:${client.port}`, session: session.id });
    socket.setNoDelay(true);
    // Half-open connections: keepalive probes find a dead peer, the idle timer one that went quiet.
    socket.setKeepAlive(true, Math.min(idleTimeoutMs, 30_000));
    socket.setTimeout(idleTimeoutMs, this.onIdle);
    socket.on("data", this.onData);
    socket.on("drain", this.onDrain);
    // A client that half-closes after its last request still gets every answer, then the close.
    socket.on("end", this.onEnd);
    socket.on("error", (e) => this.log.debug({ err: e.message }, "modbus client connection error"));
    socket.once("close", this.onSocketClose);
    this.unsubscribe = session.onEnd(this.onSessionEnd);
  }

  /** Closes the connection at once (the front stops, or the session ended). */
  close(): void {
    this.socket.destroy();
  }

  /**
   * Graceful stop: takes no more requests, lets the ones already taken be answered (each is
   * bounded by the device timeout), then closes. Resolves when the connection is closed.
   */
  drain(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.drained = resolve;
      this.paused = true;
      this.socket.pause();
      if (this.pending === 0) this.socket.end();
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.off < this.buf.length ? Buffer.concat([this.buf.subarray(this.off), chunk]) : chunk;
    this.off = 0;
    this.pump();
  };

  private readonly onDrain = (): void => this.pump();

  private readonly onEnd = (): void => {
    this.ended = true;
    if (this.pending === 0) this.socket.end();
  };

  /** Takes whole frames off the buffer while the window has room; pauses the socket when it has none. */
  private pump(): void {
    while (!this.closed && this.drained === undefined && this.pending < MAX_PENDING) {
      const f = readFrame(this.buf, this.off);
      if (f.kind === "need-more") break;
      if (f.kind === "malformed") {
        this.malformed(f.reason);
        return;
      }
      this.off += f.length;
      this.handle(f);
    }
    if (this.off >= this.buf.length) {
      this.buf = EMPTY;
      this.off = 0;
    }
    if (this.closed) return;
    // Draining (stop) reads nothing more: an answer leaving must not resume the socket.
    const full = this.drained !== undefined || this.pending >= MAX_PENDING || this.socket.writableNeedDrain;
    if (full !== this.paused) {
      this.paused = full;
      if (full) this.socket.pause();
      else this.socket.resume();
    }
  }

  private malformed(reason: string): void {
    // Nothing more is read from this stream: answers still due must not pump it again.
    this.closed = true;
    this.ctx.counters.malformedFrames++;
    this.log.warn({ reason }, "malformed Modbus frame: connection closed");
    this.record("unsupported-function", connectionOperation(this.ctx.listener, NOT_A_POINT.frame));
    this.socket.destroy();
  }

  private handle(f: MbapFrame): void {
    this.ctx.counters.requests++;
    const slot = new Slot(f.transactionId, f.unitId, Buffer.from(f.pdu));
    this.slots.push(slot);
    this.pending++;
    if (this.deciding) this.waiting.push(slot);
    else {
      this.deciding = true;
      this.process(slot);
    }
  }

  /** The request being decided has been dispatched (or answered): decide the next one. */
  private release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    const n = this.waiting.shift();
    if (n) this.process(n);
    else this.deciding = false;
  }

  /** Decides one request and hands it to the device; releases it once it is dispatched or answered. */
  private process(slot: Slot): void {
    try {
      this.decide(slot);
    } catch (e) {
      this.release(slot);
      this.log.error({ err: (e as Error).stack ?? String(e) }, "modbus request failed in the gateway");
      this.answer(slot, encodeException(slot.pdu[0] ?? 0, ExceptionCode.ServerDeviceFailure));
    }
  }

  private decide(slot: Slot): void {
    if (this.closed) return this.release(slot);
    const ctx = this.ctx;
    const principal = this.session.principal;
    const pdu = slot.pdu;
    const parsed = parseRequest(pdu);
    const fc = parsed.ok ? parsed.request.fc : parsed.fc;

    if (this.session.ended) return this.refuse(slot, this.session.ended.reason, describe(`modbus:${ctx.listener}`, parsed, this.source), encodeException(fc, ctx.denyException));
    if (slot.unit === BROADCAST_UNIT_ID) {
      // Broadcast (SPEC §4.1): always refused; a device would not answer, so no outcome could be recorded.
      return this.refuse(slot, "unsupported-function", describe(`modbus:${ctx.listener}:unit-0`, parsed, this.source), encodeException(fc, ctx.denyException));
    }
    const set = ctx.policy();
    const asset = ctx.route(set, slot.unit);
    if (!asset) {
      // No path to a device for this unit id on this listener: a gateway's 0A.
      return this.refuse(slot, "unknown-asset", describe(`modbus:${ctx.listener}:unit-${slot.unit}`, parsed, this.source), encodeException(fc, ExceptionCode.GatewayPathUnavailable));
    }
    if (!parsed.ok) return this.refuse(slot, "unsupported-function", describe(asset.id, parsed, this.source), encodeException(parsed.fc, parsed.exception));

    const req = parsed.request;
    const mapped = toOperations(asset.id, slot.unit, req, this.source);
    let ops: readonly Operation[];
    if (mapped.kind === "operations") ops = mapped.operations;
    else if (mapped.kind === "device-id") ops = [deviceIdOperation(set, asset, principal, this.source, ctx.now())];
    else return this.refuse(slot, mapped.reason, describe(asset.id, parsed, this.source), encodeException(fc, ctx.denyException));

    // The forward step is called by the enforcer once every operation is allowed and logged
    // (write-ahead), within enforce() itself unless it had to wait for the log. (An inline
    // arrow: a named per-request closure costs a defineProperty under tsx's keepNames.)
    ctx.enforcer
      .enforce(principal, ops, this.client, (): Promise<Forwarded<Buffer>> => {
        const binding = ctx.devices.modbus(asset.id);
        const p: Promise<Forwarded<Buffer>> = binding
          ? binding.device.request(binding.unit, pdu, { request: req }).then((r) => {
              const f = forwarded(fc, r);
              // The client has its answer before the outcome is recorded (its decision already is).
              this.answer(slot, f.result as Buffer);
              return f;
            })
          : Promise.resolve({ status: "unavailable", result: encodeException(fc, ExceptionCode.GatewayPathUnavailable) });
        this.release(slot); // in the device's queue: the next request of this connection may be decided
        return p;
      }, ctx.approval)
      .then(
        (r) => {
          this.release(slot);
          if (r.held) this.answer(slot, encodeException(fc, ExceptionCode.Acknowledge));
          else if (r.allowed && r.forwarded?.result) this.answer(slot, r.forwarded.result);
          else {
            if (!r.allowed) ctx.counters.denied++;
            this.answer(slot, encodeException(fc, ctx.denyException));
          }
        },
        (e: unknown) => {
          this.release(slot);
          this.log.error({ err: (e as Error).stack ?? String(e) }, "modbus request failed in the gateway");
          this.answer(slot, encodeException(fc, ExceptionCode.ServerDeviceFailure));
        },
      );
  }

  /** A refusal decided before the policy: logged as a deny, answered with `answer`. */
  private refuse(slot: Slot, reason: Reason, op: Operation, answer: Buffer): void {
    this.ctx.counters.denied++;
    this.ctx.enforcer.refuse(reason, this.session.principal, op, this.client).then(
      () => {
        this.release(slot);
        this.answer(slot, answer);
      },
      (e: unknown) => {
        this.release(slot);
        this.log.error({ err: (e as Error).message }, "could not record a refusal");
        this.answer(slot, answer);
      },
    );
  }

  private record(reason: Reason, op: Operation): void {
    this.ctx.enforcer.refuse(reason, this.session.principal, op, this.client).catch((e: unknown) => this.log.error({ err: (e as Error).message }, "could not record a refusal"));
  }

  /** Fills a slot and sends every answer at the head of the queue that is ready. */
  private answer(slot: Slot, pdu: Buffer): void {
    if (slot.frame !== undefined) return;
    slot.frame = encodeFrame(slot.tid, slot.unit, pdu);
    this.pending--;
    if (this.closed) return;
    const slots = this.slots;
    if (slots.length === 1 || (slots[1] as Slot).frame === undefined) {
      // The usual case, one request at a time: its answer, if it is the head of the queue.
      if ((slots[0] as Slot).frame !== undefined) {
        this.socket.write((slots.shift() as Slot).frame as Buffer);
        this.ctx.counters.answered++;
      }
    } else if ((slots[0] as Slot).frame !== undefined) {
      // Answers that became ready together (a pipelining client) leave in one write.
      const ready: Buffer[] = [];
      while (slots.length > 0 && (slots[0] as Slot).frame !== undefined) ready.push((slots.shift() as Slot).frame as Buffer);
      this.socket.write(Buffer.concat(ready));
      this.ctx.counters.answered += ready.length;
    }
    if ((this.ended || this.drained) && this.pending === 0) this.socket.end();
    this.pump();
  }

  private readonly onIdle = (): void => {
    if (this.pending > 0) return; // waiting for the device is not idleness; its timeout bounds it
    this.ctx.counters.idleClosed++;
    this.log.info("modbus client connection idle: closed");
    this.socket.destroy();
  };

  /** Continuous verification (SPEC §3): the token expired or the lease or session was revoked. */
  private readonly onSessionEnd = (e: SessionEnded): void => {
    if (this.closed) return;
    this.ctx.counters.sessionClosed++;
    const event: SessionBody["event"] = e.why === "expired" ? "expired" : e.why === "replaced" ? "replaced" : e.why === "closed" ? "closed" : "revoked";
    this.ctx.audit?.({
      type: "session",
      event,
      session: e.session.id,
      subject: subjectOf(this.session.principal),
      client: this.client,
      detail: `modbus connection on listener ${this.ctx.listener} closed: ${e.detail}`,
    });
    this.log.info({ why: e.why, detail: e.detail }, "modbus client connection closed: its session ended");
    this.socket.destroy();
  };

  private readonly onSocketClose = (): void => {
    this.closed = true;
    this.drained?.();
    this.unsubscribe();
    this.slots.length = 0;
    this.waiting.length = 0;
    this.buf = EMPTY;
    this.log.debug("modbus client connection closed");
    this.ctx.onClose(this);
  };
}
