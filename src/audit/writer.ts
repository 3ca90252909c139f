// The decision log writer (SPEC §6): hash chain, write-ahead hand-off, group commit, segment
// rotation, signed checkpoints, fail-closed with recovery, torn-tail recovery on open.
//
// One record's life: append() gives it seq, id and time, chains it (prev → hash) and queues its
// line in the open batch, all before it returns (write-ahead: the caller forwards the operation
// only after that). A timer cuts the batch at most every `syncMs`: one positional write of the
// whole batch, one fdatasync, then the batch's `durable` promise resolves. In strict mode the
// caller awaits `durable` before forwarding a write.
//
// When a write or fsync fails the log is unavailable: the batch (and everything queued behind
// it) stays in memory, its `durable` rejects, append() refuses new records with
// AuditUnavailableError so the caller denies with `audit-unavailable`, and a timer retries. The
// retry reopens the segment and rewrites the whole batch at the same offset: a partial write is
// overwritten, and nothing is trusted to a page cache whose fsync failed (Linux may drop dirty
// pages after a failed fsync). When a retry succeeds the log is available again.
import { createPublicKey, hash as oneShotHash, randomUUID } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { EventEmitter } from "node:events";
import { constants, mkdir, open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import type { LogSettings } from "../config/schema.js";
import { ZtError } from "../errors.js";
import type { Action } from "../pdp/operation.js";
import type { SignedHead, SigningKeyInput } from "./checkpoint.js";
import { prepareSigningKey, signHead, writeHeadFile } from "./checkpoint.js";
import type { AnyBody, RecordBody } from "./record.js";
import { GENESIS_PREV, LOG_FORMAT_VERSION, Outcome, isoMicros, jcs, jsonKey, jsonString, orderedJson } from "./record.js";

/** The envelope fields the writer adds, in code-point order. */
const ENVELOPE_KEYS = ["id", "prev", "seq", "time", "v"] as const;
import type { Batch } from "./batch.js";
import { newBatch } from "./batch.js";
import type { ExportedRecord } from "./batch.js";
import { systemClock } from "./clock.js";
import { checkSignedHead, recoverTail } from "./recover.js";
import type { Recovered } from "./recover.js";
import { lockLogDir } from "./lock.js";
import { listSegments, segmentName, syncDir } from "./segments.js";

/** Thrown by append() (and rejected by `durable`) when the log cannot take or keep a record. */
export class AuditUnavailableError extends ZtError {
  /** The decision reason the caller answers with. */
  readonly reason = "audit-unavailable" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super("ZT_AUDIT_UNAVAILABLE", message);
    this.name = "AuditUnavailableError";
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The `log:` settings the writer runs on (the rest of the section is other parts' business). */
export type WriterSettings = Pick<LogSettings, "dir" | "syncMs" | "durability" | "onFailure" | "segmentBytes" | "segmentMaxAgeSec" | "checkpointEvery">;

export interface OpenOptions {
  /** The gateway's Ed25519 private key (jose generateKeyPair, or readSigningKey(log.keyFile)). */
  readonly signingKey: SigningKeyInput;
  /** Wall clock, epoch milliseconds; a fractional part gives the records' microseconds. */
  readonly now?: () => number;
  /** Record ids; default random UUIDs. */
  readonly ids?: () => string;
  /** How often an unavailable log retries writing; default 1000 ms. */
  readonly retryMs?: number;
  /** Refuse new records while this much is queued and not yet written; default 64 MiB. */
  readonly maxPendingBytes?: number;
}

export interface Appended {
  readonly id: string;
  readonly seq: number;
  /** Resolves once the record is fsynced; rejects with AuditUnavailableError if that failed. */
  readonly durable: Promise<void>;
}

export interface LogStats {
  readonly healthy: boolean;
  /** Last seq given out, and last seq known to be on disk. */
  readonly seq: number;
  readonly durableSeq: number;
  readonly batches: number;
  readonly bytes: number;
  readonly checkpoints: number;
  readonly writeFailures: number;
  /** Records refused (unavailable, closed, backlog): the caller denied these operations. */
  readonly refused: number;
  readonly segment: string;
}

export interface DecisionLogEvents {
  unavailable: [error: Error];
  available: [];
  checkpoint: [head: SignedHead];
  rotate: [file: string];
  /** Something failed that does not stop the log (a head.jws update, a signature). */
  warning: [error: Error];
}

interface Segment {
  index: number;
  path: string;
  size: number;
  startedAt: number | null;
}

const RW_CREATE = constants.O_RDWR | constants.O_CREAT;
/** Largest batch buffer kept for reuse. */
const SPARE_MAX = 4 << 20;

/** Bytes after a record's text on its line: `,"hash":"` + 64 hex digits + `"}` + newline. */
const LINE_TAIL_BYTES = 9 + 64 + 3;

/**
 * The canonical text of `body` with the envelope's fields merged in key order (id, prev, time:
 * their JSON), without the closing brace; undefined when the body is not in canonical key
 * order (or holds something orderedJson leaves to the library).
 */
function orderedRecord(body: AnyBody, id: string, prev: string, seq: number | string, time: string): string | undefined {
  const fields = body as unknown as Record<string, unknown>;
  let s = "{";
  let e = 0;
  let last = "";
  for (const k in fields) {
    if (!(last < k)) return undefined;
    last = k;
    const x = fields[k];
    if (x === undefined) continue;
    while (e < ENVELOPE_KEYS.length && (ENVELOPE_KEYS[e] as string) < k) s += envelopeField(e++, s.length === 1, id, prev, seq, time);
    if (k === ENVELOPE_KEYS[e]) return undefined; // a body field named like an envelope field: the library's way
    const j = orderedJson(x);
    if (j === undefined) return undefined;
    s += (s.length === 1 ? "" : ",") + jsonKey(k) + ":" + j;
  }
  while (e < ENVELOPE_KEYS.length) s += envelopeField(e++, s.length === 1, id, prev, seq, time);
  return s;
}

function envelopeField(e: number, first: boolean, id: string, prev: string, seq: number | string, time: string): string {
  const text = e === 0 ? id : e === 1 ? prev : e === 2 ? "" + seq : e === 3 ? time : "" + LOG_FORMAT_VERSION;
  return (first ? '"' : ',"') + (ENVELOPE_KEYS[e] as string) + '":' + text;
}

/**
 * A body logged again and again (decisionBody() gives a client that repeats a request the same
 * frozen body): its canonical text with the envelope merged in, cut where the id, prev, seq and
 * time values go, made once. Markers hold those places while the text is made; a record's text
 * never holds a raw NUL (JSON escapes it), so they cannot be confused with it.
 */
type Template = readonly [string, string, string, string, string];
const MARK = ["\0id\0", "\0prev\0", "\0seq\0", "\0time\0"] as const;

function templateOf(body: AnyBody): Template | null {
  const text = orderedRecord(body, MARK[0], MARK[1], MARK[2], MARK[3]);
  if (text === undefined) return null;
  const parts: string[] = [];
  let from = 0;
  for (const m of MARK) {
    const at = text.indexOf(m, from);
    if (at < 0) return null;
    parts.push(text.slice(from, at));
    from = at + m.length;
  }
  parts.push(text.slice(from));
  return parts as unknown as Template;
}

/** orderedRecord()'s answer for any body: the record sorted and written by the canonicalize library. */
function sortedRecord(body: AnyBody, values: readonly unknown[]): string {
  const record: Record<string, unknown> = { ...(body as unknown as Record<string, unknown>) };
  ENVELOPE_KEYS.forEach((k, i) => (record[k] = values[i]));
  return jcs(record).slice(0, -1);
}

/** `s` is printable ASCII with nothing JSON escapes: its JSON text is `s` between quotes, byte for byte. */
function plain(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

const OUTCOME_END = `","type":"outcome","v":${LOG_FORMAT_VERSION}`;

/** An outcome record's text (`writable()`), field by field in code-point order, less its closing brace. */
function outcomeText(o: Outcome, id: string, prev: string, seq: number, time: string): string {
  return (
    (o.cacheAgeMs === undefined ? '{"' : '{"cacheAgeMs":' + o.cacheAgeMs + ',"') +
    (o.exception === undefined ? "" : 'exception":' + (typeof o.exception === "number" ? o.exception : jsonString(o.exception)) + ',"') +
    'id":"' + id + '","latencyMs":' + o.latencyMs + ',"prev":"' + prev + '","ref":"' + o.ref + '","seq":' + seq + ',"status":"' + o.status + '","time":"' + time + OUTCOME_END
  );
}

/** An outcome the writer writes field by field: every number one JSON can carry, the ref plain. */
function writable(o: Outcome): boolean {
  return plain(o.ref) && plain(o.status) && Number.isFinite(o.latencyMs) && (o.cacheAgeMs === undefined || Number.isFinite(o.cacheAgeMs)) && (typeof o.exception !== "number" || Number.isFinite(o.exception));
}

/** Writes `s`, which is ASCII (hex digits, a UUID, a number, an ISO time), at `at`; returns where it ends. */
function latin1(buf: Buffer, s: string, at: number): number {
  return at + buf.write(s, at, "latin1");
}

/** Room for `bytes` more in the batch's buffer, growing it by doubling. */
function room(b: Batch, bytes: number): void {
  if (b.len + bytes <= b.buf.length) return;
  const grown = Buffer.allocUnsafe(Math.max(b.len + bytes, b.buf.length * 2, 1 << 20));
  b.buf.copy(grown, 0, 0, b.len);
  b.buf = grown;
}

export class DecisionLog extends EventEmitter<DecisionLogEvents> {
  /** What open() found and moved aside; the gateway logs it. */
  readonly recovered: Recovered;

  /** Last seq given out, and last seq chained (they differ while a checkpoint is signed). */
  private seq: number;
  private chainedSeq: number;
  private headHash: string;
  private durableSeq: number;
  private batch = newBatch();
  private exportSink: ((record: ExportedRecord, line: string) => void) | null = null;
  private inflight: Batch | null = null;
  /** The buffer of the last batch written, for the next batch: no fresh megabyte every syncMs. */
  private spare: Buffer | null = null;
  /** Releases the directory's writer lock (audit/lock.ts); called by close(). */
  private unlock: () => Promise<void> = async () => undefined;
  private failed: Batch | null = null;
  private lastError: Error | null = null;
  private writing = false;
  private signing: Promise<void> | null = null;
  private held: Array<{ seq: number; id: string; time: string; body: RecordBody }> = [];
  /** What held records' `durable` is: settled with the batch they are chained into. */
  private heldBatch = newBatch();
  private flushTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private lastFlushAt = -Infinity;
  private sinceCheckpoint = 0;
  private lastCheckpointAt: number;
  private headToWrite: { seq: number; jws: string } | null = null;
  private headWrites: Promise<void> = Promise.resolve();
  private closing = false;
  private retrying: Promise<void> | null = null;
  private counters = { batches: 0, bytes: 0, checkpoints: 0, writeFailures: 0, refused: 0 };
  /** Frozen bodies: "seen" once, then their template (null when they cannot have one). */
  private readonly templates = new WeakMap<object, Template | null | "seen">();
  /** Ids from randomUUID: JSON text as they are, no escaping to check. */
  private readonly plainIds: boolean;

  private constructor(
    readonly settings: WriterSettings,
    private readonly key: KeyObject,
    private readonly kid: string,
    private fh: FileHandle | null,
    private segment: Segment,
    recovered: Recovered,
    private readonly now: () => number,
    private readonly ids: () => string,
    private readonly retryMs: number,
    private readonly maxPending: number,
  ) {
    super();
    this.recovered = recovered;
    this.seq = recovered.last?.seq ?? 0;
    this.chainedSeq = this.seq;
    this.headHash = recovered.last?.hash ?? GENESIS_PREV;
    this.durableSeq = this.seq;
    this.lastCheckpointAt = now();
    this.plainIds = ids === randomUUID;
  }

  /**
   * Opens (or creates) the log in `settings.dir`: recovers a torn tail, resumes the chain from
   * the last whole record, and checkpoints what it found if that is not signed yet.
   */
  static async open(settings: WriterSettings, options: OpenOptions): Promise<DecisionLog> {
    const { key, kid } = await prepareSigningKey(options.signingKey);
    const now = options.now ?? systemClock();
    await mkdir(settings.dir, { recursive: true, mode: 0o750 });
    // One writer per directory, taken before anything is recovered (audit/lock.ts).
    const unlock = await lockLogDir(settings.dir);
    let fh: FileHandle | undefined;
    try {
      const segments = await listSegments(settings.dir);
      const recovered = await recoverTail(segments, isoMicros(now()).replace(/[-:.]/g, ""));
      await checkSignedHead(settings.dir, createPublicKey(key), recovered.last);
      const lastSeg = segments.at(-1);
      const index = lastSeg?.index ?? 1;
      const file = path.join(settings.dir, segmentName(index));
      fh = await open(file, RW_CREATE, 0o640);
      if (!lastSeg) await syncDir(settings.dir);
      const segment = { index, path: file, size: recovered.size, startedAt: recovered.startedAt };
      const log = new DecisionLog(settings, key, kid, fh, segment, recovered, now, options.ids ?? randomUUID, options.retryMs ?? 1000, options.maxPendingBytes ?? 64 << 20);
      log.unlock = unlock;
      await log.resumeCheckpoints();
      return log;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await unlock();
      throw e;
    }
  }

  /** strict durability: a write operation waits for its record's fsync before it is forwarded. */
  mustAwaitDurable(action: Action): boolean {
    return this.settings.durability === "strict" && action !== "read" && action !== "browse";
  }

  /** With `onFailure: allow-reads`, a read may go on unlogged while the log is unavailable. */
  allowsUnlogged(action: Action): boolean {
    return this.settings.onFailure === "allow-reads" && action === "read";
  }

  /** Hands every record, once durable, to an export (the syslog exporter); never blocks the log. */
  exportTo(sink: ((record: ExportedRecord, line: string) => void) | null): void {
    this.exportSink = sink;
  }

  healthy(): boolean {
    return this.failed === null && !this.closing;
  }

  /**
   * Hands a record to the log: it has its seq and id, and is chained and queued, when this
   * returns (while a checkpoint is being signed, ~0.5 ms, it is chained right after it).
   * Throws AuditUnavailableError when the log cannot take it: the caller denies with
   * `audit-unavailable` (or, allowsUnlogged(action), lets a read go on).
   */
  append(body: RecordBody): Appended {
    if (!this.healthy()) {
      this.counters.refused++;
      throw new AuditUnavailableError(this.closing ? "the decision log is closed" : `the decision log cannot be written: ${this.lastError?.message ?? "unknown error"}`, { cause: this.lastError });
    }
    if (this.batch.len > this.maxPending) {
      this.counters.refused++;
      throw new AuditUnavailableError(`the decision log is ${this.batch.len} bytes behind the disk`);
    }
    // The seq is taken only once the record is known to serialize: a body that cannot be
    // written as canonical JSON (NaN, a BigInt) is refused without a gap in the chain.
    const seq = this.seq + 1;
    const id = this.ids();
    const t = this.now();
    const time = isoMicros(t);
    // A checkpoint being signed owns the next place in the chain; records wait right behind it
    // (their text is tried now, so that chaining them later cannot fail).
    let batch = this.batch;
    try {
      if (this.signing) {
        this.text(body, id, GENESIS_PREV, seq, time);
        this.held.push({ seq, id, time, body });
        batch = this.heldBatch;
      } else this.chain(seq, id, time, body);
    } catch (e) {
      this.counters.refused++;
      throw new AuditUnavailableError(`a ${body.type} record that cannot be written as canonical JSON was refused: ${(e as Error).message}`, { cause: e });
    }
    this.seq = seq;
    this.sinceCheckpoint++;
    if (this.sinceCheckpoint >= this.settings.checkpointEvery.records || t - this.lastCheckpointAt >= this.settings.checkpointEvery.seconds * 1000) this.startCheckpoint();
    this.scheduleFlush();
    return { id, seq, durable: batch.done };
  }

  /** Resolves when every record appended so far is on disk. */
  flush(): Promise<void> {
    if (this.failed) return Promise.reject(new AuditUnavailableError(`the decision log cannot be written: ${this.lastError?.message}`));
    if (this.held.length > 0) return this.heldBatch.done;
    if (this.batch.count === 0) return this.inflight?.done ?? Promise.resolve();
    this.scheduleFlush(true);
    return this.batch.done;
  }

  /** The last record chained: what the next checkpoint would sign. */
  head(): SignedHead {
    return { seq: this.chainedSeq, hash: this.headHash };
  }

  stats(): LogStats {
    return { healthy: this.healthy(), seq: this.seq, durableSeq: this.durableSeq, ...this.counters, segment: this.segment.path };
  }

  /** Signs a checkpoint of the current head now (it is also done by count, time and close). */
  async checkpoint(): Promise<void> {
    await this.signing;
    this.startCheckpoint();
    await this.signing;
    await this.flush();
    await this.headWrites;
  }

  /**
   * Checkpoints and writes everything, then closes the file. Rejects with AuditUnavailableError
   * if records could not be written (the disk never came back).
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true; // appends are refused from here on
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.signing;
    this.startCheckpoint();
    await this.signing;
    let lost: unknown = null;
    await this.flushAll().catch((e: unknown) => (lost = e));
    await this.headWrites;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.fh?.close().catch(() => undefined);
    this.fh = null;
    await this.unlock();
    if (lost !== null || this.failed) {
      const n = (this.failed?.count ?? 0) + this.batch.count;
      throw new AuditUnavailableError(`the decision log closed with ${n} records not written`, { cause: lost });
    }
  }

  // --- chain ---------------------------------------------------------------------------------

  private chain(seq: number, id: string, time: string, body: AnyBody): void {
    const prev = this.headHash;
    const b = this.batch;
    const start = b.len;
    // The canonical text of the record (envelope and body, keys in code-point order), less its
    // closing brace, as one string (one encoding call): an outcome written field by field; a
    // body logged before from the text kept for it; else in one pass when the body is built
    // in order (decisionBody is), else through the canonicalize library. It is encoded
    // straight into the batch behind `prev`, and line() hashes and ends it.
    const open = this.text(body, id, prev, seq, time);
    room(b, prev.length + open.length * 3 + LINE_TAIL_BYTES);
    const n = b.buf.write(open, latin1(b.buf, prev, start));
    const hash = this.line(b, start, prev.length, n);
    this.headHash = hash;
    this.chainedSeq = seq;
    if (this.exportSink) {
      const decision = (body as { decision?: unknown }).decision;
      (b.exports ??= []).push([{ type: body.type, seq, id, time, hash, ...(typeof decision === "string" && { decision }) }, b.buf.toString("utf8", start, b.len - 1)]);
    }
    b.count++;
    b.lastSeq = seq;
    b.lastHash = hash;
  }

  /** The canonical text of a record less its closing brace (see chain()); throws for a body that does not serialize. */
  private text(body: AnyBody, id: string, prev: string, seq: number, time: string): string {
    let open: string;
    if (body instanceof Outcome && this.plainIds && writable(body)) open = outcomeText(body, id, prev, seq, time);
    else {
      const idText = this.plainIds ? '"' + id + '"' : jsonString(id);
      const t = Object.isFrozen(body) ? this.template(body) : null;
      open =
        t !== null
          ? t[0] + idText + t[1] + '"' + prev + '"' + t[2] + seq + t[3] + '"' + time + '"' + t[4]
          : (orderedRecord(body, idText, '"' + prev + '"', seq, '"' + time + '"') ?? sortedRecord(body, [id, prev, seq, time, LOG_FORMAT_VERSION]));
    }
    return open;
  }

  /**
   * The record's text (`n` bytes, less its closing brace) sits in the batch at `start + p`
   * behind the `p` bytes of `prev`: takes the hash, sha256hex(prev + canonical) as chainHash()
   * computes it, over those bytes, moves the record over prev and ends the line with the hash
   * field. The stored line is the canonical text with `hash` added last: still JSON, and its
   * prefix is exactly what was hashed (verifiers recompute from the parsed record anyway).
   */
  private line(b: Batch, start: number, p: number, n: number): string {
    const buf = b.buf;
    buf[start + p + n] = 0x7d; // "}"
    const hash = oneShotHash("sha256", buf.subarray(start, start + p + n + 1), "hex");
    buf.copyWithin(start, start + p, start + p + n);
    b.len = latin1(buf, ',"hash":"' + hash + '"}\n', start + n);
    return hash;
  }

  /** The template of a frozen body: none the first time it is seen (most are seen once), made the second. */
  private template(body: AnyBody): Template | null {
    const t = this.templates.get(body);
    if (t === undefined) {
      this.templates.set(body, "seen");
      return null;
    }
    if (t !== "seen") return t;
    const made = templateOf(body);
    this.templates.set(body, made);
    return made;
  }

  // --- group commit --------------------------------------------------------------------------

  private scheduleFlush(now = false): void {
    if (this.writing || this.failed || this.batch.count === 0) return;
    if (this.flushTimer) {
      if (!now) return;
      clearTimeout(this.flushTimer);
    }
    const wait = now ? 0 : Math.max(0, this.lastFlushAt + this.settings.syncMs - performance.now());
    this.flushTimer = setTimeout(() => void this.commit(), wait);
  }

  private async commit(): Promise<void> {
    this.flushTimer = null;
    if (this.writing || this.failed || this.batch.count === 0) return;
    this.writing = true;
    this.lastFlushAt = performance.now();
    const b = this.batch;
    this.batch = newBatch();
    if (this.spare) {
      this.batch.buf = this.spare;
      this.spare = null;
    }
    this.inflight = b;
    try {
      const buf = b.buf.subarray(0, b.len);
      if (this.rotationDue(buf.length)) await this.rotate();
      await this.writeAt(buf);
      this.committed(b, buf.length);
    } catch (err) {
      this.fail(b, err as Error);
    } finally {
      this.writing = false;
      this.inflight = null;
    }
    this.afterCommit();
  }

  private async writeAt(buf: Buffer): Promise<void> {
    if (!this.fh) this.fh = await open(this.segment.path, RW_CREATE, 0o640);
    const fh = this.fh;
    // Positional writes: a retry rewrites the same bytes at the same offset.
    for (let off = 0; off < buf.length; ) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, this.segment.size + off);
      if (bytesWritten <= 0) throw new Error("write made no progress");
      off += bytesWritten;
    }
    await fh.datasync();
  }

  private committed(b: Batch, bytes: number): void {
    if (this.segment.size === 0) this.segment.startedAt = this.now();
    this.segment.size += bytes;
    this.durableSeq = b.lastSeq;
    this.counters.batches++;
    this.counters.bytes += bytes;
    // Written and synced: nothing reads this buffer any more (exports hold their own lines).
    if (b.buf.length <= SPARE_MAX) this.spare = b.buf;
    b.resolve();
    // Exported only once on disk: the local log stays the record, the export follows it.
    const sink = this.exportSink;
    if (sink && b.exports) for (const [r, line] of b.exports) sink(r, line);
  }

  private afterCommit(): void {
    const h = this.headToWrite;
    if (h && this.durableSeq >= h.seq) {
      this.headToWrite = null;
      this.headWrites = this.headWrites
        .then(() => writeHeadFile(this.settings.dir, h.jws))
        .catch((e: unknown) => void this.emit("warning", e as Error));
    }
    this.scheduleFlush();
  }

  private async flushAll(): Promise<void> {
    while (this.batch.count > 0 || this.inflight || this.failed) {
      if (this.failed) {
        await this.retry();
        if (this.failed) throw this.lastError ?? new Error("unwritten records");
        continue;
      }
      if (this.inflight) await this.inflight.done.catch(() => undefined);
      else await this.commitNow();
    }
  }

  private async commitNow(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.commit();
  }

  // --- segments ------------------------------------------------------------------------------

  private rotationDue(incoming: number): boolean {
    const s = this.segment;
    if (s.size === 0) return false;
    if (s.size + incoming > this.settings.segmentBytes) return true;
    return s.startedAt !== null && this.now() - s.startedAt >= this.settings.segmentMaxAgeSec * 1000;
  }

  private async rotate(): Promise<void> {
    const index = this.segment.index + 1;
    const file = path.join(this.settings.dir, segmentName(index));
    const fh = await open(file, RW_CREATE, 0o640);
    try {
      // Never write into someone else's file: a segment we create must start empty.
      const st = await fh.stat();
      if (st.isFile() && st.size > 0) throw new Error(`${file} already exists and is not empty`);
      await syncDir(this.settings.dir);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    await this.fh?.close().catch(() => undefined);
    this.fh = fh;
    this.segment = { index, path: file, size: 0, startedAt: null };
    this.emit("rotate", file);
  }

  // --- failure and recovery ------------------------------------------------------------------

  private fail(b: Batch, err: Error): void {
    // Everything not on disk, oldest first, becomes one batch to retry; its waiters learn now.
    const queued = this.batch;
    const error = new AuditUnavailableError(`the decision log cannot be written: ${err.message}`, { cause: err });
    if (queued.count > 0) {
      b.buf = Buffer.concat([b.buf.subarray(0, b.len), queued.buf.subarray(0, queued.len)]);
      b.len = b.buf.length;
      b.count += queued.count;
      b.lastSeq = queued.lastSeq;
      b.lastHash = queued.lastHash;
      if (queued.exports) b.exports = [...(b.exports ?? []), ...queued.exports];
      queued.reject(error);
      this.batch = newBatch();
    }
    b.reject(error);
    if (this.signing) this.heldBatch.reject(error);
    this.failed = b;
    this.lastError = err;
    this.counters.writeFailures++;
    void this.fh?.close().catch(() => undefined);
    this.fh = null;
    this.emit("unavailable", err);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.closing) return;
    this.retryTimer = setTimeout(() => void this.retry(), this.retryMs);
  }

  /** One retry at a time: the timer's and close()'s must not both commit the same batch. */
  private retry(): Promise<void> {
    this.retryTimer = null;
    this.retrying ??= this.rewriteFailed().finally(() => (this.retrying = null));
    return this.retrying;
  }

  private async rewriteFailed(): Promise<void> {
    const b = this.failed;
    if (!b) return;
    const buf = b.buf.subarray(0, b.len);
    try {
      await this.writeAt(buf);
    } catch (err) {
      this.counters.writeFailures++;
      this.lastError = err as Error;
      void this.fh?.close().catch(() => undefined);
      this.fh = null;
      this.scheduleRetry();
      return;
    }
    this.committed(b, buf.length);
    this.failed = null;
    this.lastError = null;
    this.emit("available");
    this.afterCommit();
    if (this.sinceCheckpoint >= this.settings.checkpointEvery.records) this.startCheckpoint();
  }

  // --- checkpoints ---------------------------------------------------------------------------

  private async resumeCheckpoints(): Promise<void> {
    const last = this.recovered.last;
    if (last?.type === "checkpoint" && last.jws) await writeHeadFile(this.settings.dir, last.jws);
    else if (last) {
      // Records from before a crash: sign them now, so they are covered from here on.
      this.sinceCheckpoint = 1;
      await this.checkpoint();
    }
    const every = this.settings.checkpointEvery.seconds * 1000;
    this.checkpointTimer = setInterval(() => {
      if (this.sinceCheckpoint > 0 && this.healthy()) this.startCheckpoint();
    }, every);
    this.checkpointTimer.unref();
  }

  private startCheckpoint(): void {
    if (this.signing || this.sinceCheckpoint === 0 || this.failed) return;
    const head = this.head();
    const seq = ++this.seq;
    const id = this.ids();
    const t = this.now();
    const time = isoMicros(t);
    this.sinceCheckpoint = 0;
    this.lastCheckpointAt = t;
    this.signing = signHead(this.key, this.kid, head)
      .catch((e: unknown) => {
        this.emit("warning", e as Error);
        return null;
      })
      .then((jws) => {
        this.chain(seq, id, time, { type: "checkpoint", head, jws, kid: this.kid });
        for (const r of this.held) this.chain(r.seq, r.id, r.time, r.body);
        const held = this.heldBatch;
        this.batch.done.then(held.resolve, held.reject);
        this.held = [];
        this.heldBatch = newBatch();
        this.signing = null;
        this.counters.checkpoints++;
        if (jws) this.headToWrite = { seq, jws };
        this.emit("checkpoint", head);
        // Records that came in while signing may already make the next one due.
        if (this.sinceCheckpoint >= this.settings.checkpointEvery.records) this.startCheckpoint();
        this.scheduleFlush();
      });
  }
}
