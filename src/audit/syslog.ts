// Export of the decision log to a syslog collector (SPEC §6): every record, as written to the
// local log, goes out as one RFC 5424 message over TCP or TLS with octet counting (RFC 6587
// §3.4.1). The local log stays the record: the export never blocks, fails or throws into the
// gateway. While the collector cannot take messages they wait in a bounded disk spool
// (syslog-spool.ts), oldest dropped first and counted.
//
// One frame on the wire:
//
//   MSG-LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [ztgate@32473 seq="7" id="…" hash="…"] BOM MSG
//   └ bytes of everything after the SP            └ record type    MSG = the record's JSON line ┘
//
// Where a frame waits, oldest first: written to the socket but not yet handed to the kernel
// (`inflight`); in memory (`queue`: until the end of the event-loop turn, so that a turn's
// records go out in one write, behind a full socket, or while connecting); then the spool. A
// frame only moves forward in that order, and when the connection drops, inflight and queue go
// back to the front of the spool: order is kept across outages and restarts. What the kernel
// had already taken when the collector died is lost, as RFC 6587 transport has no
// acknowledgements; the `seq` parameter lets a collector see the gap.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import type { SyslogSettings } from "../config/schema.js";
import { ZtError } from "../errors.js";
import { FrameSpool } from "./syslog-spool.js";
import type { SpoolDropReason } from "./syslog-spool.js";

/** RFC 5424 §6.2.1 facility codes. */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  ntp: 12,
  audit: 13,
  alert: 14,
  clock: 15,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

/** The SD-ID of the element carrying the chain position (32473: the IANA example enterprise number, RFC 5612). */
export const SYSLOG_SD_ID = "ztgate@32473";

/** What send() needs of a record; the decision log's records have all of it. */
export interface SyslogRecord {
  readonly type: string;
  readonly seq: number;
  readonly id: string;
  readonly time: string;
  readonly hash: string;
  readonly decision?: string;
  readonly [k: string]: unknown;
}

export interface SyslogTlsOptions {
  /** CA certificate(s) the collector's certificate must chain to: PEM text or a PEM file path. Default: Node's CA bundle. */
  readonly ca?: string;
  /** Client certificate and key for mutual TLS: PEM text or PEM file paths. */
  readonly cert?: string;
  readonly key?: string;
  /** The name the collector's certificate must carry (and SNI). Default: host. */
  readonly servername?: string;
  /** Default true. */
  readonly rejectUnauthorized?: boolean;
}

export interface SyslogExporterOptions {
  readonly host: string;
  readonly port: number;
  /** Present: TLS (RFC 5425) instead of plain TCP. */
  readonly tls?: SyslogTlsOptions;
  readonly spoolDir: string;
  /** Default 64 MiB. */
  readonly spoolMaxBytes?: number;
  /** First reconnect delay, doubled on every failed attempt up to reconnectMaxMs. Default 1000. */
  readonly reconnectMs?: number;
  /** Default 30000. */
  readonly reconnectMaxMs?: number;
  /** A connection (with its TLS handshake) not up after this long is abandoned. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** Default local0. */
  readonly facility?: SyslogFacility | number;
  /** APP-NAME; default "ztgate". */
  readonly appName?: string;
  /** HOSTNAME; default os.hostname(). */
  readonly hostname?: string;
  /** Frames held in memory behind a full socket before they overflow to the spool. Default 1 MiB. */
  readonly memoryMaxBytes?: number;
}

export interface SyslogStats {
  readonly connected: boolean;
  /** Frames handed to the kernel on a connection to the collector. */
  readonly sent: number;
  /** Frames waiting in the spool, and their bytes (the spool depth). */
  readonly spooled: number;
  readonly spoolBytes: number;
  /** Frames lost: the spool was full, a spool file was unreadable or torn, a record could not be formatted. */
  readonly dropped: number;
}

export type SyslogDropReason = SpoolDropReason | "unformattable";

export interface SyslogEvents {
  connected: [info: { host: string; port: number; tls: boolean }];
  /** A connection ended or an attempt failed; the next attempt is in `retryInMs`. Not emitted by stop(). */
  disconnected: [info: { error?: Error; wasConnected: boolean; retryInMs: number }];
  dropped: [info: { count: number; reason: SyslogDropReason }];
}

export const SYSLOG_DEFAULTS = {
  spoolMaxBytes: 64 * 1024 * 1024,
  reconnectMs: 1000,
  reconnectMaxMs: 30000,
  connectTimeoutMs: 10000,
  memoryMaxBytes: 1024 * 1024,
  facility: "local0",
  appName: "ztgate",
} as const;

/** RFC 5424 field limits (§6). */
const MAX_HOSTNAME = 255;
const MAX_APP_NAME = 48;
const MAX_PROCID = 128;
const MAX_MSGID = 32;
/** Bytes read from the spool per socket drain. */
const SPOOL_CHUNK = 64 * 1024;
/** Frames go to the socket in writes of about this size. */
const WRITE_BATCH = 64 * 1024;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;

/** A header field as RFC 5424 allows it: 1..max PRINTUSASCII (33..126), anything else as `_`, empty as `-`. */
export function headerField(value: string, max: number): string {
  const s = value.replace(/[^\x21-\x7e]/g, "_").slice(0, max);
  return s === "" ? "-" : s;
}

/** An SD PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3). */
export function escapeParamValue(value: string): string {
  return value.replace(/["\\\]]/g, "\\$&");
}

/** decision deny → warning (4), allow → informational (6), every other record → notice (5). */
export function severityOf(record: Pick<SyslogRecord, "decision">): number {
  return record.decision === "deny" ? 4 : record.decision === "allow" ? 6 : 5;
}

export interface MessageHeader {
  /** Facility code 0..23. */
  readonly facility: number;
  /** Already valid header fields (see headerField). */
  readonly hostname: string;
  readonly appName: string;
  readonly procId: string;
}

/**
 * The SYSLOG-MSG of one record: header, one SD-ELEMENT with the chain position, BOM, the JSON
 * line (without its "\n"). The record's time is the TIMESTAMP (it is already RFC 3339 with at
 * most 6 fraction digits); a record without a usable one gets the current time.
 */
export function formatMessage(record: SyslogRecord, line: string, header: MessageHeader): string {
  const pri = header.facility * 8 + severityOf(record);
  const time = typeof record.time === "string" && TIMESTAMP.test(record.time) ? record.time : new Date().toISOString();
  const msgId = headerField(String(record.type), MAX_MSGID);
  const sd = `[${SYSLOG_SD_ID} seq="${escapeParamValue(String(record.seq))}" id="${escapeParamValue(String(record.id))}" hash="${escapeParamValue(String(record.hash))}"]`;
  const msg = line.endsWith("\n") ? line.slice(0, -1) : line;
  return `<${pri}>1 ${time} ${header.hostname} ${header.appName} ${header.procId} ${msgId} ${sd} \uFEFF${msg}`;
}

/** An octet-counted frame: MSG-LEN (in bytes) SP SYSLOG-MSG (RFC 6587 §3.4.1). */
export function frameMessage(message: string): Buffer {
  const len = Buffer.byteLength(message, "utf8");
  const prefix = `${len} `;
  const frame = Buffer.allocUnsafe(prefix.length + len);
  frame.write(prefix, 0, "latin1");
  frame.write(message, prefix.length, "utf8");
  return frame;
}

/** Every certificate of a PEM bundle, parsed; throws if there is none or one does not parse. */
function certificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error("no PEM certificate found");
  return blocks.map((b) => new X509Certificate(b));
}

/** A FIFO of frames with its byte count (shift() on a long array is O(n)). */
class FrameQueue {
  private items: Buffer[] = [];
  private head = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(frame: Buffer): void {
    this.items.push(frame);
    this.bytes += frame.length;
  }

  shift(): Buffer | undefined {
    if (this.head >= this.items.length) return undefined;
    const frame = this.items[this.head++] as Buffer;
    this.bytes -= frame.length;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return frame;
  }

  /** The oldest frames, at least one, up to `bytes` in all. */
  take(bytes: number): Buffer[] {
    const out: Buffer[] = [];
    let sum = 0;
    while (this.head < this.items.length && (out.length === 0 || sum + (this.items[this.head] as Buffer).length <= bytes)) {
      const frame = this.shift() as Buffer;
      out.push(frame);
      sum += frame.length;
    }
    return out;
  }

  /** Everything, oldest first; the queue is left empty. */
  takeAll(): Buffer[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    return all;
  }
}

type Socket = net.Socket | tls.TLSSocket;

/**
 * Sends every record to a syslog collector, keeping order across outages and restarts.
 * send() may be called before start() (the frames wait) and after stop() (they are spooled).
 */
export class SyslogExporter extends EventEmitter<SyslogEvents> {
  private readonly options: SyslogExporterOptions;
  private readonly header: MessageHeader;
  private readonly spool: FrameSpool;
  private readonly reconnectMs: number;
  private readonly reconnectMaxMs: number;
  private readonly connectTimeoutMs: number;
  private readonly memoryMaxBytes: number;
  private tlsContext: tls.ConnectionOptions | null = null;
  private socket: Socket | null = null;
  private connecting: Socket | null = null;
  private blocked = false;
  private pumpScheduled = false;
  /** Written to the socket, write callback not yet called: oldest first. */
  private inflight = new FrameQueue();
  /** Behind a full socket or waiting for the connection: after inflight, before the spool. */
  private queue = new FrameQueue();
  private timer: NodeJS.Timeout | null = null;
  private attempts = 0;
  private started = false;
  private stopped = false;
  private sent = 0;
  private dropped = 0;

  constructor(options: SyslogExporterOptions) {
    super();
    if (!options.host) throw new TypeError("syslog: host is required");
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw new TypeError(`syslog: port ${options.port} is not 1..65535`);
    const facility = typeof options.facility === "number" ? options.facility : SYSLOG_FACILITIES[options.facility ?? SYSLOG_DEFAULTS.facility];
    if (!Number.isInteger(facility) || facility < 0 || facility > 23) throw new TypeError(`syslog: facility ${String(options.facility)} is not a facility name or 0..23`);
    this.options = options;
    this.header = {
      facility,
      hostname: headerField(options.hostname || os.hostname(), MAX_HOSTNAME),
      appName: headerField(options.appName ?? SYSLOG_DEFAULTS.appName, MAX_APP_NAME),
      procId: headerField(String(process.pid), MAX_PROCID),
    };
    this.reconnectMs = Math.max(1, options.reconnectMs ?? SYSLOG_DEFAULTS.reconnectMs);
    this.reconnectMaxMs = Math.max(this.reconnectMs, options.reconnectMaxMs ?? SYSLOG_DEFAULTS.reconnectMaxMs);
    this.connectTimeoutMs = options.connectTimeoutMs ?? SYSLOG_DEFAULTS.connectTimeoutMs;
    this.memoryMaxBytes = options.memoryMaxBytes ?? SYSLOG_DEFAULTS.memoryMaxBytes;
    this.spool = new FrameSpool({
      dir: options.spoolDir,
      maxBytes: options.spoolMaxBytes ?? SYSLOG_DEFAULTS.spoolMaxBytes,
      onDrop: (count, reason) => this.drop(count, reason),
    });
  }

  /**
   * Opens the spool (taking over what an earlier run left in it) and starts connecting; does
   * not wait for the collector. Rejects with ZT_CONFIG_INVALID when a TLS file cannot be read
   * or the spool directory cannot be created: those are configuration errors, not outages.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.options.tls) this.tlsContext = await this.loadTls(this.options.tls);
    try {
      await this.spool.open();
    } catch (err) {
      throw new ZtError("ZT_CONFIG_INVALID", `syslog spool directory ${this.options.spoolDir}: ${(err as Error).message}`);
    }
    if (this.stopped) this.spool.close();
    else this.connect();
  }

  /**
   * Hands one record to the export. `line` is the record's line exactly as written to the
   * local log. Never throws and never waits.
   */
  send(record: SyslogRecord, line: string): void {
    let frame: Buffer;
    try {
      frame = frameMessage(formatMessage(record, line, this.header));
    } catch {
      this.drop(1, "unformattable");
      return;
    }
    try {
      this.enqueue(frame);
    } catch {
      // Nothing above throws by design; this keeps the promise to the caller if it ever does.
      this.drop(1, "spool-io");
    }
  }

  /**
   * Stops connecting, gives the collector up to `graceMs` to take what is already written,
   * and spools everything else (a new exporter on the same spoolDir sends it).
   */
  async stop(graceMs = 1000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.connecting?.destroy();
    this.connecting = null;
    const sock = this.socket;
    // Not yet written: spooled now, so that only what is in flight is still up to the socket.
    this.spool.prepend(this.queue.takeAll());
    if (sock) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, graceMs);
        sock.once("finish", done);
        sock.once("close", done);
        sock.end();
      });
      this.socket = null;
      sock.destroy();
    }
    this.spool.prepend(this.inflight.takeAll());
    this.spool.close();
  }

  stats(): SyslogStats {
    return { connected: this.socket !== null, sent: this.sent, spooled: this.spool.frames, spoolBytes: this.spool.bytes, dropped: this.dropped };
  }

  private enqueue(frame: Buffer): void {
    if (this.stopped) {
      this.spool.append(frame);
      this.spool.close();
      return;
    }
    if (this.spool.empty) {
      if ((this.socket || this.connecting) && this.queue.bytes + frame.length <= this.memoryMaxBytes) {
        this.queue.push(frame);
        if (this.socket && !this.blocked) {
          // A full batch goes at once; a smaller one at the end of this event-loop turn.
          if (this.queue.bytes >= WRITE_BATCH) this.pump();
          else this.pumpSoon();
        }
        return;
      }
      // Overflow: everything still in memory goes ahead of it, so that the spool stays in order.
      this.spool.prepend(this.queue.takeAll());
    }
    this.spool.append(frame);
  }

  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Writes queued, then spooled frames, a batch per write, until the socket is full or nothing is left. */
  private pump(): void {
    const sock = this.socket;
    while (sock && this.socket === sock && !this.blocked && !this.stopped) {
      if (this.queue.length === 0) {
        for (const f of this.spool.read(SPOOL_CHUNK)) this.queue.push(f);
        if (this.queue.length === 0) return;
      }
      this.write(sock, this.queue.take(WRITE_BATCH));
    }
  }

  /** One write(2) for many frames: per-record writes would cost a system call each. */
  private write(sock: Socket, frames: Buffer[]): void {
    for (const f of frames) this.inflight.push(f);
    const n = frames.length;
    const more = sock.write(n === 1 ? (frames[0] as Buffer) : Buffer.concat(frames), (err) => {
      // After a disconnect the inflight frames went back to the spool: late callbacks are moot.
      if (err || this.socket !== sock) return;
      for (let i = 0; i < n; i++) this.inflight.shift();
      this.sent += n;
    });
    if (!more) this.blocked = true;
  }

  private connect(): void {
    this.timer = null;
    const { host, port } = this.options;
    let sock: Socket;
    try {
      sock = this.tlsContext ? tls.connect({ ...this.tlsContext, host, port }) : net.connect({ host, port });
    } catch (err) {
      // Bad options throw here rather than on the socket; start() checked them, so this is a
      // belt: a timer callback that throws would take the gateway down.
      this.retry(err as Error, false);
      return;
    }
    this.connecting = sock;
    sock.setTimeout(this.connectTimeoutMs, () => sock.destroy(new Error(`no connection to ${host}:${port} after ${this.connectTimeoutMs} ms`)));
    sock.once(this.tlsContext ? "secureConnect" : "connect", () => {
      if (this.connecting !== sock) return;
      sock.setTimeout(0);
      sock.setKeepAlive(true, 30000);
      sock.setNoDelay(true);
      this.connecting = null;
      this.socket = sock;
      this.blocked = false;
      this.attempts = 0;
      this.emitSafely("connected", { host, port, tls: this.tlsContext !== null });
      this.pump();
    });
    sock.on("drain", () => {
      if (this.socket !== sock) return;
      this.blocked = false;
      this.pump();
    });
    sock.on("error", (err) => this.lost(sock, err));
    // A collector that closes its side will not read what we send next.
    sock.on("end", () => this.lost(sock, new Error(`${host}:${port} closed the connection`)));
    sock.on("close", () => this.lost(sock));
    // A collector has nothing to say; read and discard so that its data cannot fill buffers.
    sock.resume();
  }

  /** A connection or an attempt ended: what did not reach the kernel goes to the spool front. */
  private lost(sock: Socket, error?: Error): void {
    if (this.stopped || (sock !== this.socket && sock !== this.connecting)) return;
    const wasConnected = sock === this.socket;
    this.socket = null;
    this.connecting = null;
    this.blocked = false;
    sock.destroy();
    this.spool.prepend([...this.inflight.takeAll(), ...this.queue.takeAll()]);
    this.retry(error, wasConnected);
  }

  private retry(error: Error | undefined, wasConnected: boolean): void {
    const delay = Math.min(this.reconnectMaxMs, this.reconnectMs * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    // Half to all of the delay: gateways restarted together do not all reconnect in step.
    const retryInMs = Math.round(delay / 2 + (Math.random() * delay) / 2);
    this.timer = setTimeout(() => this.connect(), retryInMs);
    this.timer.unref();
    this.emitSafely("disconnected", { ...(error && { error }), wasConnected, retryInMs });
  }

  private drop(count: number, reason: SyslogDropReason): void {
    this.dropped += count;
    this.emitSafely("dropped", { count, reason });
  }

  /** A listener that throws must not throw into send() and so into the decision log. */
  private emitSafely<K extends keyof SyslogEvents>(event: K, ...args: SyslogEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: SyslogEvents[K]) => boolean)(event, ...args);
    } catch {
      // Ignored: see above.
    }
  }

  private async loadTls(o: SyslogTlsOptions): Promise<tls.ConnectionOptions> {
    const pem = async (what: string, value: string | undefined): Promise<string | undefined> => {
      if (value === undefined || value === "" || value.includes("-----BEGIN")) return value || undefined;
      try {
        return await readFile(value, "utf8");
      } catch (err) {
        throw new ZtError("ZT_CONFIG_INVALID", `syslog TLS ${what} ${value}: ${(err as Error).message}`);
      }
    };
    const [ca, cert, key] = await Promise.all([pem("ca", o.ca), pem("cert", o.cert), pem("key", o.key)]);
    if ((cert === undefined) !== (key === undefined)) throw new ZtError("ZT_CONFIG_INVALID", "syslog TLS: cert and key go together");
    const material = { ...(ca !== undefined && { ca }), ...(cert !== undefined && { cert }), ...(key !== undefined && { key }) };
    // Parsed now, so that a broken file is a start error and not a retry loop (Node's TLS
    // ignores certificates it cannot parse; the handshake would then fail every time).
    try {
      if (ca !== undefined) certificates(ca);
      if (cert !== undefined) certificates(cert);
      if (key !== undefined) createPrivateKey(key);
      tls.createSecureContext(material);
    } catch (err) {
      throw new ZtError("ZT_CONFIG_INVALID", `syslog TLS: ${(err as Error).message}`);
    }
    return { ...material, ...(o.servername && { servername: o.servername }), rejectUnauthorized: o.rejectUnauthorized ?? true };
  }
}

/**
 * Exporter options from `log.syslog`, or null without that section (export off). Relative
 * `spoolDir` and TLS file paths resolve against `baseDir`, the config file's directory.
 */
export function syslogOptions(settings: SyslogSettings | undefined, baseDir: string): SyslogExporterOptions | null {
  if (settings === undefined) return null;
  const file = (p: string) => (p === "" ? undefined : path.resolve(baseDir, p));
  const t = settings.tls;
  return {
    host: settings.host,
    port: settings.port,
    ...(t.enabled && {
      tls: { ca: file(t.ca), cert: file(t.cert), key: file(t.key), ...(t.servername !== "" && { servername: t.servername }), rejectUnauthorized: t.rejectUnauthorized },
    }),
    spoolDir: path.resolve(baseDir, settings.spoolDir),
    spoolMaxBytes: settings.spoolMaxBytes,
    reconnectMs: settings.reconnectMs,
    reconnectMaxMs: settings.reconnectMaxMs,
    facility: settings.facility,
    appName: settings.appName,
    ...(settings.hostname !== "" && { hostname: settings.hostname }),
  };
}
