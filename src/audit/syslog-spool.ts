// The syslog export's disk spool: a bounded FIFO of frames kept while the collector cannot take
// them, so that neither an outage nor a gateway restart loses them (SPEC §6).
//
// On disk, in `dir`:
//
//   0001000000000000.spool   frames exactly as they go on the wire, back to back:
//   0001000000000001.spool     MSG-LEN SP SYSLOG-MSG MSG-LEN SP SYSLOG-MSG …   (RFC 6587 §3.4.1)
//   cursor                   "<file> <offset>\n" per file read in part: where to go on
//
// Files are append-only and numbered in order; the newest one is appended to until it reaches
// the segment size. Reading takes frames from the oldest file and deletes each file once it is
// read to the end. Frames that were taken out but never reached the collector (the connection
// dropped) are put back in a new file numbered before all others (`prepend`).
//
// The bound counts the bytes on disk plus the appends not yet written. When a new frame would
// exceed it, the oldest file is deleted whole and its unread frames are counted as dropped:
// the decision log stays the record, the export only loses its oldest copies.
//
// File I/O here is synchronous and small (one buffered write per event-loop turn, one read of at
// most `chunk` bytes per socket drain), so the order of frames never depends on the completion
// order of asynchronous calls. Nothing here throws into a caller after open(): I/O errors
// become dropped frames.
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { mkdir, readFile, readdir, truncate, unlink } from "node:fs/promises";
import path from "node:path";

/** One frame found in a buffer, or why none is there yet. Need-more is not malformed. */
export type FrameScan =
  | { readonly kind: "frame"; readonly start: number; readonly end: number }
  /** `end`: where the frame will end, once MSG-LEN has been read. */
  | { readonly kind: "need-more"; readonly end?: number }
  | { readonly kind: "malformed" };

/** MSG-LEN has at most this many digits (frames up to ~1 GB; a record is a few hundred bytes). */
const MAX_LEN_DIGITS = 9;

/**
 * The octet-counted frame that starts at `off`: `MSG-LEN = NONZERO-DIGIT 0*8DIGIT`, one SP,
 * then MSG-LEN bytes. `start`..`end` is the SYSLOG-MSG; `end` is where the next frame starts.
 */
export function scanFrame(buf: Uint8Array, off: number): FrameScan {
  let len = 0;
  let i = off;
  for (; i < buf.length; i++) {
    const c = buf[i] as number;
    if (c === 0x20 && i > off) break;
    if (c < 0x30 || c > 0x39 || (i === off && c === 0x30) || i - off >= MAX_LEN_DIGITS) return { kind: "malformed" };
    len = len * 10 + (c - 0x30);
  }
  if (i >= buf.length) return { kind: "need-more" };
  if (i + 1 + len > buf.length) return { kind: "need-more", end: i + 1 + len };
  return { kind: "frame", start: i + 1, end: i + 1 + len };
}

export type SpoolDropReason = "spool-full" | "spool-torn" | "spool-io";

export interface SpoolOptions {
  readonly dir: string;
  /** Bytes on disk plus bytes waiting to be written, at most. */
  readonly maxBytes: number;
  /** Files are closed and a new one started at this size; default maxBytes / 8. */
  readonly segmentBytes?: number;
  /** Called for every loss, with the number of frames lost. */
  readonly onDrop: (frames: number, reason: SpoolDropReason) => void;
}

interface SpoolFile {
  readonly n: number;
  readonly path: string;
  /** Bytes on disk. */
  size: number;
  /** Whole frames on disk. */
  frames: number;
  /** Byte offset and frame count read so far (0 except for the file being read). */
  readOffset: number;
  readFrames: number;
  /** Open for appending (the newest file only). */
  fd: number | null;
}

const FILE = /^(\d{16})\.spool$/;
const CURSOR = "cursor";
/** Numbers start here so that prepended files (numbered down from the oldest) have room below. */
const FIRST_N = 1_000_000_000_000;
/** Write the buffered appends at once beyond this many bytes instead of on the next turn. */
const FLUSH_BYTES = 256 * 1024;

export class FrameSpool {
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly onDrop: SpoolOptions["onDrop"];
  private files: SpoolFile[] = [];
  private opened = false;
  private nextN = FIRST_N;
  /** Frames appended but not yet written (they come after every file). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** Length of the cursor file as last written. */
  private cursorLength = 0;
  private diskBytes = 0;
  private unreadBytes = 0;
  private unreadFrames = 0;

  constructor(options: SpoolOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.segmentBytes = Math.max(1, options.segmentBytes ?? Math.floor(options.maxBytes / 8));
    this.onDrop = options.onDrop;
  }

  /** Frames waiting, on disk and buffered. */
  get frames(): number {
    return this.unreadFrames + this.pending.length;
  }

  /** Bytes waiting, on disk and buffered. */
  get bytes(): number {
    return this.unreadBytes + this.pendingBytes;
  }

  get empty(): boolean {
    return this.frames === 0;
  }

  /**
   * Creates `dir` (mode 0700) and takes over what an earlier run left: counts the frames of each
   * file, cuts a torn last frame off (a crash in mid-append), and resumes at the cursor. Appends
   * made before open() are kept and written after the files found. Throws if `dir` cannot be
   * created or listed.
   */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const names = (await readdir(this.dir)).filter((n) => FILE.test(n)).sort();
    const cursor = await this.readCursor();
    for (const name of names) {
      const file = await this.scanFile(name, cursor);
      if (file) this.files.push(file);
    }
    const last = this.files[this.files.length - 1];
    if (last) this.nextN = last.n + 1;
    // Only lines for files that are still here and read in part.
    this.writeCursor();
    this.opened = true;
    this.enforceBound(0);
    if (this.pending.length > 0) this.flush();
  }

  /** Adds a frame at the end; written on the next event-loop turn (or at once when much is buffered). */
  append(frame: Buffer): void {
    if (!this.makeRoom(frame.length)) return;
    this.pending.push(frame);
    this.pendingBytes += frame.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** Puts frames back before everything else, in one new file, written at once. */
  prepend(all: readonly Buffer[]): void {
    // These are the oldest frames: if they do not all fit, the first of them go.
    let bytes = all.reduce((sum, f) => sum + f.length, 0);
    let skip = 0;
    while (skip < all.length && this.diskBytes + this.pendingBytes + bytes > this.maxBytes) bytes -= (all[skip++] as Buffer).length;
    if (skip > 0) this.onDrop(skip, "spool-full");
    const frames = skip > 0 ? all.slice(skip) : all;
    if (frames.length === 0) return;
    const n = (this.files[0]?.n ?? this.nextN) - 1;
    const file: SpoolFile = { n, path: this.fileName(n), size: 0, frames: 0, readOffset: 0, readFrames: 0, fd: null };
    try {
      writeFileSync(file.path, Buffer.concat(frames, bytes), { mode: 0o600 });
    } catch {
      this.onDrop(frames.length, "spool-io");
      return;
    }
    file.size = bytes;
    file.frames = frames.length;
    this.files.unshift(file);
    this.diskBytes += bytes;
    this.unreadBytes += bytes;
    this.unreadFrames += frames.length;
  }

  /** Writes the buffered appends to the newest file, starting new files at the segment size. */
  flush(): void {
    if (!this.opened || this.pending.length === 0) return;
    const frames = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    let i = 0;
    while (i < frames.length) {
      const file = this.appendTarget();
      if (!file) {
        this.onDrop(frames.length - i, "spool-io");
        return;
      }
      // At least one frame per file, so that a frame larger than a segment still goes somewhere.
      let j = i + 1;
      let size = (frames[i] as Buffer).length;
      while (j < frames.length && file.size + size + (frames[j] as Buffer).length <= this.segmentBytes) size += (frames[j++] as Buffer).length;
      const chunk = Buffer.concat(frames.slice(i, j), size);
      if (!this.writeAll(file, chunk)) {
        this.onDrop(frames.length - i, "spool-io");
        return;
      }
      file.size += size;
      file.frames += j - i;
      this.diskBytes += size;
      this.unreadBytes += size;
      this.unreadFrames += j - i;
      if (file.size >= this.segmentBytes) this.seal(file);
      i = j;
    }
  }

  /**
   * Takes frames from the front, about `chunk` bytes (at least one frame), and deletes each file
   * read to its end. A file that stops making sense (changed behind our back) is dropped.
   */
  read(chunk: number): Buffer[] {
    this.flush();
    const out: Buffer[] = [];
    let taken = 0;
    while (taken < chunk && this.files.length > 0) {
      const file = this.files[0] as SpoolFile;
      const left = file.size - file.readOffset;
      let buf = left > 0 ? this.readAt(file, file.readOffset, Math.min(left, Math.max(chunk - taken, 64))) : Buffer.alloc(0);
      if (!buf) continue;
      // A frame longer than what was read: read that frame.
      const first = scanFrame(buf, 0);
      if (first.kind === "need-more" && buf.length < left) buf = this.readAt(file, file.readOffset, Math.min(left, first.end ?? MAX_LEN_DIGITS + 1));
      if (!buf) continue;
      let off = 0;
      for (;;) {
        const f = scanFrame(buf, off);
        if (f.kind !== "frame") break;
        out.push(buf.subarray(off, f.end));
        taken += f.end - off;
        file.readOffset += f.end - off;
        file.readFrames += 1;
        this.unreadBytes -= f.end - off;
        this.unreadFrames -= 1;
        off = f.end;
        if (taken >= chunk) break;
      }
      // Not one frame where one must be: the file changed behind our back.
      if (off === 0 && left > 0) this.dropFile(file, "spool-torn");
      else if (file.readOffset >= file.size) this.remove(file);
      else this.writeCursor();
    }
    return out;
  }

  /** Writes what is buffered, remembers the read position, closes the open file. */
  close(): void {
    this.flush();
    this.writeCursor();
    for (const f of this.files) this.seal(f);
  }

  /** Drops the oldest files (then the oldest buffered frames) until `incoming` more bytes fit. */
  private makeRoom(incoming: number): boolean {
    if (incoming > this.maxBytes) {
      this.onDrop(1, "spool-full");
      return false;
    }
    this.enforceBound(incoming);
    return true;
  }

  private enforceBound(incoming: number): void {
    while (this.diskBytes + this.pendingBytes + incoming > this.maxBytes) {
      const oldest = this.files[0];
      if (oldest) {
        this.dropFile(oldest, "spool-full");
        continue;
      }
      const frame = this.pending.shift();
      if (!frame) return;
      this.pendingBytes -= frame.length;
      this.onDrop(1, "spool-full");
    }
  }

  private appendTarget(): SpoolFile | null {
    const last = this.files[this.files.length - 1];
    if (last && last.fd !== null && last.size < this.segmentBytes) return last;
    const n = this.nextN++;
    const file: SpoolFile = { n, path: this.fileName(n), size: 0, frames: 0, readOffset: 0, readFrames: 0, fd: null };
    try {
      file.fd = openSync(file.path, "a", 0o600);
    } catch {
      return null;
    }
    this.files.push(file);
    return file;
  }

  /** Writes `chunk` at the end of `file`; on failure cuts the file back and closes it. */
  private writeAll(file: SpoolFile, chunk: Buffer): boolean {
    const fd = file.fd as number;
    let done = 0;
    try {
      while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
      return true;
    } catch {
      try {
        ftruncateSync(fd, file.size);
      } catch {
        // The partial frame stays; reading will drop it as torn.
      }
      this.seal(file);
      return false;
    }
  }

  /**
   * Closes a file for appending. No fsync: the page cache outlives a crash of the gateway, and
   * against a power cut the decision log, not this copy, is the record.
   */
  private seal(file: SpoolFile): void {
    if (file.fd === null) return;
    try {
      closeSync(file.fd);
    } catch {
      // Already closed: nothing to do.
    }
    file.fd = null;
  }

  /** Deletes a file with what is unread in it, and counts that as lost. */
  private dropFile(file: SpoolFile, reason: SpoolDropReason): void {
    const lost = file.frames - file.readFrames;
    this.unreadFrames -= lost;
    this.unreadBytes -= file.size - file.readOffset;
    this.remove(file);
    if (lost > 0) this.onDrop(lost, reason);
  }

  /** Deletes a file from the spool (unread counters are the caller's business). */
  private remove(file: SpoolFile): void {
    this.seal(file);
    try {
      unlinkSync(file.path);
    } catch {
      // Gone already, or undeletable: it is no longer ours either way.
    }
    this.files = this.files.filter((f) => f !== file);
    this.diskBytes -= file.size;
    // A stale cursor line could later match a prepended file that reuses this number.
    if (file.readOffset > 0) this.writeCursor();
  }

  private readAt(file: SpoolFile, offset: number, length: number): Buffer | null {
    let fd: number | null = null;
    try {
      fd = openSync(file.path, "r");
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, buf, got, length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return got === length ? buf : buf.subarray(0, got);
    } catch {
      this.dropFile(file, "spool-io");
      return null;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  private fileName(n: number): string {
    return path.join(this.dir, `${String(n).padStart(16, "0")}.spool`);
  }

  /**
   * Overwrites the cursor in place. Offsets have a fixed width, so while the same files are
   * being read the text keeps its length and needs no truncation (which costs milliseconds on
   * ext4, and this runs once per chunk drained).
   */
  private writeCursor(): void {
    const text = this.files
      .filter((f) => f.readOffset > 0)
      .map((f) => `${path.basename(f.path)} ${String(f.readOffset).padStart(16, "0")}\n`)
      .join("");
    if (text === "" && this.cursorLength === 0) return;
    const where = path.join(this.dir, CURSOR);
    let fd: number | null = null;
    try {
      try {
        fd = openSync(where, "r+");
      } catch {
        fd = openSync(where, "w", 0o600);
      }
      writeSync(fd, text, 0);
      if (text.length < this.cursorLength) ftruncateSync(fd, text.length);
      this.cursorLength = text.length;
    } catch {
      // Without a cursor a restart sends the read part of this file again: duplicates, not loss.
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  /** File name → offset read; a line that does not parse is ignored (that file is sent whole). */
  private async readCursor(): Promise<Map<string, number>> {
    const text = await readFile(path.join(this.dir, CURSOR), "utf8").catch(() => "");
    this.cursorLength = text.length;
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^(\d{16}\.spool) (\d{1,16})$/gm)) out.set(m[1] as string, Number(m[2]));
    return out;
  }

  /** Counts a file's frames; cuts off a torn tail; applies the cursor if it names this file. */
  private async scanFile(name: string, cursor: ReadonlyMap<string, number>): Promise<SpoolFile | null> {
    const filePath = path.join(this.dir, name);
    let buf: Buffer;
    try {
      buf = await readFile(filePath);
    } catch {
      this.onDrop(1, "spool-io");
      return null;
    }
    const file: SpoolFile = { n: Number(FILE.exec(name)?.[1]), path: filePath, size: 0, frames: 0, readOffset: 0, readFrames: 0, fd: null };
    const at = cursor.get(name) ?? 0;
    let off = 0;
    for (;;) {
      if (off === at && at > 0) {
        file.readOffset = off;
        file.readFrames = file.frames;
      }
      const f = scanFrame(buf, off);
      if (f.kind !== "frame") break;
      file.frames += 1;
      off = f.end;
    }
    if (off < buf.length) {
      await truncate(filePath, off).catch(() => undefined);
      this.onDrop(1, "spool-torn");
    }
    file.size = off;
    if (file.frames === 0 || file.readOffset >= file.size) {
      await unlink(filePath).catch(() => undefined);
      return null;
    }
    this.diskBytes += file.size;
    this.unreadBytes += file.size - file.readOffset;
    this.unreadFrames += file.frames - file.readFrames;
    return file;
  }
}
